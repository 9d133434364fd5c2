"""Validated configuration of a deconvolution job, saved beside its output."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError

from lucyd.config import JobConfig
from lucyd.errors import InputError


class DeconvConfig(JobConfig):
    """Every parameter of :func:`lucyd.deconv.deconvolve` plus the files involved.

    Saved as ``<output>.deconv.json`` by :func:`lucyd.deconv.deconvolve_file` and by
    ``lucyd deconvolve``; ``DeconvConfig.load(path)`` reads it back and
    :meth:`deconvolve_kwargs` turns it into keyword arguments.
    """

    input: str | None = None
    psf: str | None = None
    output: str | None = None
    iterations: int = Field(20, ge=1)
    back_projector: Literal["flipped", "gaussian", "butterworth", "wiener-butterworth"] = "flipped"
    boundary: Literal["non-circulant", "circulant", "zero"] = "non-circulant"
    acceleration: Literal["biggs-andrews"] | None = None
    tv: float = Field(0.0, ge=0.0, lt=1.0)
    background: float | Literal["auto"] = 0.0
    tol: float | None = Field(None, gt=0.0)
    voxel_size: tuple[float, ...] | None = None
    psf_voxel_size: tuple[float, ...] | None = None
    device: str = "auto"
    max_memory: int | str | None = None
    start: Literal["auto", "mean", "image"] | float = "auto"
    wb_alpha: float = Field(0.05, gt=0.0)
    wb_beta: float = Field(1.0, gt=0.0)
    wb_order: int = Field(10, ge=1)
    wb_resolution: tuple[float, ...] | float | None = None
    floor: float | Literal["auto"] | None = "auto"
    offset: float = 0.0
    overlap: tuple[int, ...] | int | None = None
    centre_psf: bool = True
    #: whole-voxel offset of the PSF's main lobe from its array centre, removed when centre_psf
    psf_offset_voxels: tuple[int, ...] | None = None

    @classmethod
    def from_call(cls, **kwargs: Any) -> DeconvConfig:
        """Build from ``deconvolve``-style keyword arguments (unknown/runtime ones dropped)."""
        kwargs = {k: v for k, v in kwargs.items() if k in cls.model_fields}
        for key, value in kwargs.items():  # before pydantic, whose NaN message misleads
            values = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise InputError(f"{key}: must be a finite number, got {value!r}")
        for key in ("voxel_size", "psf_voxel_size", "wb_resolution", "overlap"):
            value = kwargs.get(key)
            if value is not None and not isinstance(value, (int, float)):
                kwargs[key] = tuple(value)
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first.get("loc", ()))
            raise InputError(f"{loc}: {first.get('msg')} (got {first.get('input')!r})") from None

    def deconvolve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lucyd.deconv.deconvolve` (without files)."""
        data = self.model_dump()
        for key in ("input", "psf", "output", "psf_offset_voxels"):
            data.pop(key)
        return data
