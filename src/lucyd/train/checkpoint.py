"""Checkpoints of a training run (``best.pt``, ``last.pt``): writing, reading, resuming.

Checkpoints are written atomically (temporary file, then rename), so an interrupted run never
corrupts ``best.pt`` or ``last.pt``. ``last.pt`` holds everything needed to continue exactly:
weights, optimiser, scheduler, step, early-stopping state and the RNG states of torch, numpy
(the patch sampler) and Python.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from lucyd.errors import FileFormatError, InputError
from lucyd.io.atomic import atomic_path
from lucyd.train.config import TrainConfig
from lucyd.train.data import PatchSampler

#: version of the checkpoint dictionaries in best.pt / last.pt
CHECKPOINT_VERSION = 1
#: the validation criterion whose best value ``best_val`` holds (minus the validation PSNR)
CRITERION = "neg_val_psnr"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary sibling renamed onto ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_states(sampler: PatchSampler) -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": sampler.state,
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict, sampler: PatchSampler) -> None:
    torch.set_rng_state(states["torch"])
    sampler.state = states["numpy"]
    random.setstate(_as_tuple(states["python"]))
    if torch.cuda.is_available() and states.get("cuda"):
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def check_resume_config(old: TrainConfig, new: TrainConfig) -> TrainConfig:
    """The saved configuration, with the fields that may change on resume taken from ``new``."""
    changeable = {"steps", "patience", "min_delta", "device", "val_interval", "time_limit_s", "threads"}
    fixed_old = old.model_dump(exclude=changeable)
    fixed_new = new.model_dump(exclude=changeable)
    for key, value in fixed_new.items():
        if value is not None and fixed_old.get(key) != value:
            raise InputError(
                f"resume: {key} was {fixed_old.get(key)!r} in the saved run but is "
                f"{value!r} now; only {', '.join(sorted(changeable))} may change"
            )
    return old.model_copy(update={k: getattr(new, k) for k in changeable})


def load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise FileFormatError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise FileFormatError(f"{path}: not a lucyd checkpoint")
    if ckpt.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise FileFormatError(
            f"{path}: unknown checkpoint version {ckpt.get('checkpoint_version')!r}"
        )
    return ckpt


def check_checkpoint_matches(ckpt: dict, cfg: TrainConfig, path: Path) -> None:
    if ckpt.get("model_name") != cfg.model:
        raise FileFormatError(
            f"{path}: holds network {ckpt.get('model_name')!r} but the "
            f"configuration says {cfg.model!r}"
        )
