"""Classical restorers: the raw image, Richardson–Lucy and its variants, a Gaussian denoiser."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from lucyd.config import JobConfig
from lucyd.deconv import deconvolve
from lucyd.deconv.backprojectors import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_ORDER
from lucyd.deconv.config import (
    Background,
    Boundary,
    Floor,
    Iterations,
    MemoryBudget,
    Start,
    TVWeight,
)
from lucyd.denoise import gaussian_denoise
from lucyd.methods.registry import register_method

__all__ = ["AcceleratedRLConfig", "GaussianConfig", "RLConfig", "RawConfig", "WBRLConfig"]


class RawConfig(JobConfig):
    """No parameters: the raw image is the reference every method is compared with."""

    error_label: ClassVar[str] = "raw"


@register_method("raw", config=RawConfig, task="identity", label="raw",
                 describe=lambda cfg: "camera counts")
def raw_image(image, cfg, *, psf, voxel_size, progress, cache):
    """The raw image itself (a copy): the baseline row of every comparison."""
    return image.copy()


class RLConfig(JobConfig):
    """Parameters of classic Richardson–Lucy (:func:`lucyd.deconv.deconvolve`).

    ``boundary`` takes the deconvolution names or their forward-model spelling
    (``"linear"`` = ``"zero"``; see :mod:`lucyd.boundaries`). The fields' rules are those of
    :class:`lucyd.deconv.DeconvConfig` (the same types), which :func:`~lucyd.deconv.deconvolve`
    builds from :meth:`deconvolve_kwargs`.
    """

    error_label: ClassVar[str] = "rl config"
    #: back projector of this method (not a parameter)
    back_projector: ClassVar[str] = "flipped"
    acceleration: ClassVar[str | None] = None

    iterations: Iterations = 20
    boundary: Boundary = "non-circulant"
    background: Background = 0.0
    start: Start = "auto"
    floor: Floor = "auto"
    offset: float = 0.0
    tv: TVWeight = 0.0
    psf_voxel_size: tuple[float, ...] | None = None
    max_memory: MemoryBudget = None
    device: str = "auto"

    def deconvolve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`lucyd.deconv.deconvolve` for these parameters."""
        kwargs = self.model_dump()
        kwargs.update(back_projector=self.back_projector, acceleration=self.acceleration)
        return kwargs


class AcceleratedRLConfig(RLConfig):
    """Richardson–Lucy with Biggs–Andrews vector extrapolation (Appl. Opt. 1997)."""

    error_label: ClassVar[str] = "rl-biggs config"
    acceleration: ClassVar[str | None] = "biggs-andrews"


class WBRLConfig(RLConfig):
    """Wiener–Butterworth RL (Guo et al., Nat. Biotechnol. 2020): 1–2 iterations suffice."""

    error_label: ClassVar[str] = "wb-rl config"
    back_projector: ClassVar[str] = "wiener-butterworth"

    iterations: Iterations = 2
    wb_alpha: float = Field(DEFAULT_ALPHA, gt=0.0)
    wb_beta: float = Field(DEFAULT_BETA, gt=0.0)
    wb_order: int = Field(DEFAULT_ORDER, ge=1)
    wb_resolution: tuple[float, ...] | float | None = None


def _deconvolve(image, cfg: RLConfig, psf, voxel_size, progress) -> np.ndarray:
    return deconvolve(image, psf, voxel_size=voxel_size, progress=progress,
                      **cfg.deconvolve_kwargs())


def _rl_words(cfg: RLConfig) -> str:
    return f"{cfg.iterations} it., flipped PSF, {cfg.boundary}"


@register_method("rl", config=RLConfig, task="deconvolution", needs_psf=True, label="RL",
                 describe=_rl_words)
def richardson_lucy(image, cfg, *, psf, voxel_size, progress, cache):
    """Classic Richardson–Lucy (Richardson 1972; Lucy 1974), flipped-PSF back projector."""
    return _deconvolve(image, cfg, psf, voxel_size, progress)


@register_method("rl-biggs", config=AcceleratedRLConfig, task="deconvolution", needs_psf=True,
                 label="RL (Biggs-Andrews)",
                 describe=lambda cfg: _rl_words(cfg) + ", Biggs-Andrews acceleration")
def accelerated_richardson_lucy(image, cfg, *, psf, voxel_size, progress, cache):
    """Richardson–Lucy accelerated by Biggs–Andrews vector extrapolation (Appl. Opt. 1997)."""
    return _deconvolve(image, cfg, psf, voxel_size, progress)


@register_method("wb-rl", config=WBRLConfig, task="deconvolution", needs_psf=True,
                 label="WB RL",
                 describe=lambda cfg: f"{cfg.iterations} it., Wiener-Butterworth BP")
def wiener_butterworth_rl(image, cfg, *, psf, voxel_size, progress, cache):
    """Wiener–Butterworth RL: unmatched back projector (Guo et al., Nat. Biotechnol. 2020)."""
    return _deconvolve(image, cfg, psf, voxel_size, progress)


class GaussianConfig(JobConfig):
    """Gaussian-filter denoising baseline: ``sigma`` in pixels (one, or one per axis)."""

    error_label: ClassVar[str] = "gaussian config"

    sigma: float | tuple[float, ...] = 1.0

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, value):
        values = np.atleast_1d(np.asarray(value, dtype=float))
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"must be finite and >= 0, got {value!r}")
        return value


@register_method("gaussian", config=GaussianConfig, task="denoising",
                 label="Gaussian",
                 describe=lambda cfg: f"sigma {cfg.sigma} px (fixed)")
def gaussian(image, cfg, *, psf, voxel_size, progress, cache):
    """Gaussian smoothing (scipy.ndimage, reflecting edges): the classic denoising baseline."""
    return gaussian_denoise(image, cfg.sigma)
