"""Choice of compute device: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

from lucyd.errors import InputError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a :class:`torch.device` for ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` (or None) selects CUDA when available. Asking for CUDA on a machine
    without it is an error rather than a silent fall-back to the CPU.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device: unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device: CUDA was requested but no CUDA GPU is available; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device: unsupported device type {dev.type!r}; use auto, cpu or cuda")
    return dev
