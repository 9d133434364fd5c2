"""Parameters of ``lucyd demo`` (:class:`DemoConfig`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lucyd.config import JobConfig
from lucyd.nets import available_networks
from lucyd.pipelines.presets import DEMO_PRESETS, SAMPLE_DEFAULTS

__all__ = ["DemoConfig", "SAMPLE_DEFAULTS"]

#: the presets table DemoConfig.preset reads (one object with lucyd.pipelines.presets')
_PRESETS = DEMO_PRESETS


class DemoConfig(JobConfig):
    """Every parameter of ``lucyd demo`` (saved as ``DIR/demo.json``).

    Lengths in µm, arrays (z, y, x). Build the default or the quick budget with
    :meth:`preset`; any field can be overridden (tests use tiny sizes).

    Attributes
    ----------
    seed : int
        Base seed; the sample, its noise, the training set and the training draw independent
        seeds from it (``numpy.random.SeedSequence(seed).spawn``).
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    budget : {"default", "quick", "custom"}
        Which preset the sizes came from (informational).
    psf_model, na, wavelength, ni : PSF model name, numerical aperture, emission wavelength
        (µm, vacuum) and immersion refractive index. Default: Born–Wolf, NA 1.4 oil
        (ni 1.518), 520 nm (a GFP-like emission).
    voxel_size : (dz, dy, dx)
        Sampling, µm (0.2, 0.1, 0.1: Nyquist-like for NA 1.4 widefield).
    psf_shape : (int, int, int)
        Size of the PSF array (odd).
    sample_kind : {"tubules", "granules", "nuclei"}
        Kind of the test sample; never ``mixed``, the kind the network is trained on.
    sample_shape : (int, int, int)
        Test sample size in voxels.
    sample_params : dict or None
        Phantom parameters of the sample (:func:`lucyd.synth.phantom`); None: the
        :data:`SAMPLE_DEFAULTS` of its kind.
    photons : float
        Expected photo-electrons per phantom intensity unit (RLN recipe: 5).
    read_noise : float
        Camera read-noise sigma, electrons (RLN recipe: 0.5).
    background : float
        Phantom background, phantom units (RLN recipe: 30).
    train_n, train_shape : number and size of the ``mixed`` training volumes.
    rl_iterations : int
        Classic RL iterations (fixed, not tuned on the ground truth).
    wb_iterations : int
        Wiener–Butterworth RL iterations (Guo et al.: 1–2).
    network : str
        Registered network to train (``rln``).
    train_steps, patch, batch, val_interval, lr :
        Training budget: optimiser steps, patch size, patches per step, steps between
        validations; ``lr`` None = the network's published rate.
    net_kwargs : dict or None
        Network keyword arguments; None: :data:`NET_DEFAULTS` of the network.
    train_minutes : float or None
        Optional wall-clock cap on training (default None: no cap, the fixed ``train_steps``
        are done, so that the run is bit-for-bit reproducible under a seed). With a cap, a slow
        or shared machine may stop training early; the steps done are recorded in
        ``metrics.json`` and the report.
    tile_shape : (int, int, int) or None
        Prediction tiles (None: the whole sample at once).
    threads : int or None
        torch CPU threads during training (default 1: on the shared 2-core machine a 3D RLN
        step took 2–5× longer with 2 threads whenever another process was running; None:
        torch's default).
    """

    error_label: ClassVar[str] = "demo config"

    seed: int = Field(0, ge=0)
    device: str = "auto"
    budget: Literal["default", "quick", "custom"] = "default"
    psf_model: Literal["born-wolf", "gibson-lanni", "vectorial", "gaussian"] = "born-wolf"
    na: float = Field(1.4, gt=0, allow_inf_nan=False)
    wavelength: float = Field(0.52, gt=0, allow_inf_nan=False)
    ni: float = Field(1.518, gt=0, allow_inf_nan=False)
    voxel_size: tuple[float, float, float] = (0.2, 0.1, 0.1)
    psf_shape: tuple[int, int, int] = (33, 65, 65)
    sample_kind: Literal["tubules", "granules", "nuclei"] = "tubules"
    sample_shape: tuple[int, int, int] = DEMO_PRESETS["default"]["sample_shape"]
    sample_params: dict[str, Any] | None = None
    photons: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_noise: float = Field(0.5, ge=0, allow_inf_nan=False)
    background: float = Field(30.0, ge=0, allow_inf_nan=False)
    train_n: int = Field(DEMO_PRESETS["default"]["train_n"], ge=2)
    train_shape: tuple[int, int, int] = DEMO_PRESETS["default"]["train_shape"]
    rl_iterations: int = Field(20, ge=1)
    wb_iterations: int = Field(2, ge=1)
    network: str = "rln"
    train_steps: int = Field(DEMO_PRESETS["default"]["train_steps"], ge=1)
    patch: tuple[int, int, int] = DEMO_PRESETS["default"]["patch"]
    batch: int = Field(DEMO_PRESETS["default"]["batch"], ge=1)
    val_interval: int = Field(DEMO_PRESETS["default"]["val_interval"], ge=1)
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)
    net_kwargs: dict[str, Any] | None = None
    train_minutes: float | None = Field(DEMO_PRESETS["default"]["train_minutes"], gt=0,
                                        allow_inf_nan=False)
    tile_shape: tuple[int, int, int] | None = None
    threads: int | None = Field(1, ge=1)

    @model_validator(mode="after")
    def _consistent(self):
        if any(v <= 0 for v in self.voxel_size):
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if any(s < 1 or s % 2 == 0 for s in self.psf_shape):
            raise ValueError(f"psf_shape must be odd sizes, got {self.psf_shape}")
        for name in ("sample_shape", "train_shape"):
            shape = getattr(self, name)
            if any(s < 16 for s in shape[1:]) or shape[0] < 8:
                raise ValueError(f"{name} must be at least (8, 16, 16) voxels, got {shape}")
        if any(p > t for p, t in zip(self.patch, self.train_shape, strict=True)):
            raise ValueError(f"patch {self.patch} is larger than train_shape {self.train_shape}")
        if self.na >= self.ni:
            raise ValueError(f"na ({self.na}) must be smaller than ni ({self.ni})")
        if self.network.lower() not in available_networks():
            raise ValueError(f"unknown network {self.network!r}; available: "
                             f"{', '.join(available_networks())}")
        return self

    @classmethod
    def preset(cls, quick: bool = False, **overrides) -> DemoConfig:
        """The default (≤ 10 min on a 2-core CPU) or quick (≤ 2 min) demo, with overrides.

        Raises
        ------
        InputError
            An invalid or unknown field (one line naming it).
        """
        values: dict[str, Any] = dict(_PRESETS["quick" if quick else "default"])
        values["budget"] = "quick" if quick else "default"
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)

