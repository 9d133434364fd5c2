"""The one validation of a deconvolution job's options: :class:`DeconvConfig`.

:func:`lucyd.deconv.deconvolve` builds one from its ``config`` and keyword overrides, once;
:func:`lucyd.deconv.deconvolve_file` builds one and saves it beside the output;
``lucyd deconvolve`` builds one from its options and shows its one-line error; the restorer
registry's RL configurations (:mod:`lucyd.methods.classical`) reuse its field types. Nothing
downstream validates these options again. The field types below (``Iterations``, ``Boundary``,
``MemoryBudget``, ...) are the one definition of each option's rule.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator

from lucyd.boundaries import deconv_boundary
from lucyd.config import JobConfig, validation_message
from lucyd.deconv.backprojectors import BACK_PROJECTORS, DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_ORDER
from lucyd.errors import InputError

__all__ = ["MAX_ITERATIONS", "DeconvConfig", "check_iterations", "parse_memory"]

#: iteration counts above this are refused: RL and its accelerated variants settle within a few
#: thousand iterations; use ``tol`` to stop earlier
MAX_ITERATIONS = 100_000

_UNITS = {
    "": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12,
    "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_memory(value) -> int | None:
    """Bytes from ``None``, a number of bytes, or a string such as ``"2GB"``, ``"512 MiB"``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"max_memory: must be positive, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise InputError(f"max_memory: cannot parse {value!r}; use bytes or e.g. '2GB', '512MB'")
    result = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if result <= 0:
        raise InputError(f"max_memory: must be positive, got {value!r}")
    return result


def check_iterations(iterations) -> int:
    """``iterations`` as an int in [1, :data:`MAX_ITERATIONS`], or InputError."""
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or not 1 <= iterations <= MAX_ITERATIONS
    ):
        raise InputError(
            f"iterations: must be an integer from 1 to {MAX_ITERATIONS:,}, got {iterations!r} "
            "(use tol to stop early)"
        )
    return int(iterations)


def _as_pydantic_error(check):
    """A field rule raising ValueError (which pydantic names the field for) from an InputError."""

    def rule(value):
        try:
            return check(value)
        except InputError as exc:
            message = str(exc)
            raise ValueError(message.split(": ", 1)[1] if ": " in message else message) from None

    return rule


# ---------------------------------------------------------------- the options' rules, once
Iterations = Annotated[int, BeforeValidator(_as_pydantic_error(check_iterations))]
#: deconvolution boundary; the forward spelling ``"linear"`` is accepted (:mod:`lucyd.boundaries`)
Boundary = Annotated[str, AfterValidator(_as_pydantic_error(deconv_boundary))]
#: memory budget in bytes (parsed from e.g. ``"2GB"``), or None
MemoryBudget = Annotated[int | None, BeforeValidator(_as_pydantic_error(parse_memory))]
BackProjector = Literal[BACK_PROJECTORS]
Acceleration = Literal["biggs-andrews"] | None
TVWeight = Annotated[float, Field(ge=0.0, lt=1.0)]
Tolerance = Annotated[float | None, Field(gt=0.0)]
Background = float | Literal["auto"]
Start = Literal["auto", "mean", "image"] | float
Floor = float | Literal["auto"] | None


class DeconvConfig(JobConfig):
    """Every parameter of :func:`lucyd.deconv.deconvolve` plus the files involved.

    The one place where a deconvolution's options are validated (see the module notes); the
    parameters are documented in :func:`lucyd.deconv.deconvolve`. Saved as
    ``<output>.deconv.json`` by :func:`lucyd.deconv.deconvolve_file` and by ``lucyd
    deconvolve``; ``DeconvConfig.load(path)`` reads it back and :meth:`deconvolve_kwargs`
    turns it into keyword arguments.
    """

    input: str | None = None
    psf: str | None = None
    output: str | None = None
    iterations: Iterations = 20
    back_projector: BackProjector = "flipped"
    boundary: Boundary = "non-circulant"
    acceleration: Acceleration = None
    tv: TVWeight = 0.0
    background: Background = 0.0
    tol: Tolerance = None
    voxel_size: tuple[float, ...] | float | None = None
    psf_voxel_size: tuple[float, ...] | float | None = None
    device: str = "auto"
    max_memory: MemoryBudget = None
    start: Start = "auto"
    wb_alpha: float = Field(DEFAULT_ALPHA, gt=0.0)
    wb_beta: float = Field(DEFAULT_BETA, gt=0.0)
    wb_order: int = Field(DEFAULT_ORDER, ge=1)
    wb_resolution: tuple[float, ...] | float | None = None
    floor: Floor = "auto"
    offset: float = 0.0
    overlap: tuple[int, ...] | int | None = None
    centre_psf: bool = True
    #: trim the PSF to the box holding this fraction of its energy (None: no trim)
    psf_energy: float | None = Field(None, gt=0.0, le=1.0)
    #: fraction of the PSF's energy the trim kept (recorded by deconvolve_file)
    psf_energy_kept: float | None = None
    #: whole-voxel offset of the PSF's main lobe from its array centre, removed when centre_psf
    psf_offset_voxels: tuple[int, ...] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value, info):
        # before pydantic, whose message for NaN misleads
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"must be a finite number, got {value!r}")
        if isinstance(value, list):
            return tuple(value)
        return value

    @classmethod
    def from_call(cls, **kwargs: Any) -> DeconvConfig:
        """Build from ``deconvolve``-style keyword arguments (unknown/runtime ones dropped);
        a bad value raises :class:`InputError` with one line naming the option and the value."""
        try:
            return cls(**{k: v for k, v in kwargs.items() if k in cls.model_fields})
        except ValidationError as exc:
            message = validation_message(exc)
            given = exc.errors()[0].get("input")
            if repr(given) not in message:
                message += f" (got {given!r})"
            raise InputError(message) from None

    def resolved_start(self) -> str | float:
        """The start actually used: ``"auto"`` is ``"mean"`` for the flipped back projector and
        ``"image"`` for the unmatched ones (as the references)."""
        if self.start == "auto":
            return "mean" if self.back_projector == "flipped" else "image"
        return self.start

    def deconvolve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lucyd.deconv.deconvolve` (without files)."""
        data = self.model_dump()
        for key in ("input", "psf", "output", "psf_offset_voxels", "psf_energy_kept"):
            data.pop(key)
        return data


def job_config(config: DeconvConfig | None, overrides: dict[str, Any], caller: str = "deconvolve"
               ) -> DeconvConfig:
    """The job's one :class:`DeconvConfig`: ``config`` as given when there are no ``overrides``,
    else ``config``'s values (or the defaults) updated by ``overrides`` and validated once."""
    unknown = set(overrides) - set(DeconvConfig.model_fields)
    if unknown:
        raise InputError(f"{caller}: unknown argument(s) {', '.join(sorted(unknown))}")
    if config is not None and not isinstance(config, DeconvConfig):
        raise InputError(f"config: expected a DeconvConfig, got {type(config).__name__}")
    if not overrides:
        return config if config is not None else DeconvConfig()
    base = config.model_dump() if config is not None else {}
    return DeconvConfig.from_call(**{**base, **overrides})
