"""Parameters of ``lucyd bench`` (:class:`BenchConfig`) and its suites."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lucyd.config import JobConfig
from lucyd.errors import InputError
from lucyd.methods import available_methods, get_method
from lucyd.pipelines.presets import BENCH_PRESETS

__all__ = ["CSV_COLUMNS", "SUITES", "BenchConfig"]

SUITES = ("synthetic", "real", "all")

#: columns of bench.csv, in order
CSV_COLUMNS = ("suite", "dataset", "method", "psnr", "ssim", "nrmse", "time_s", "parameters",
               "notes")


class BenchConfig(JobConfig):
    """Every parameter of ``lucyd bench`` (saved in ``bench.json``).

    Build it with :meth:`preset` (full or quick budget). Lengths in µm, arrays (z, y, x).

    Attributes
    ----------
    suite : {"synthetic", "real", "all"}
    real_data : str or None
        Folder of the real data of the real suite; None: :func:`lucyd.pipelines.real_data_dir`
        (``$LUCYD_REAL_DATA``, else ``../shared/data/real`` from the working directory).
    budget : {"full", "quick", "custom"}
        Preset the sizes came from (informational).
    seed, device :
        Base seed (data, noise and training derive theirs from it) and torch device.
    psf_model, na, wavelength, ni, voxel_size, psf_shape :
        Nominal widefield optics of the synthetic suite (Born–Wolf, NA 1.4 oil, 520 nm).
    kinds : tuple of str
        Held-out sample kinds of the methods x data sets table.
    shape : (int, int, int)
        Size of those samples.
    photons, read_noise, background :
        Nominal photo-electrons per phantom unit, read noise (e-), phantom background.
    methods : tuple of str
        Registered restorers (:func:`lucyd.methods.available_methods`) compared with the
        networks, in table order; ``raw`` is the baseline every gain is measured against.
    rl_iterations, wb_iterations : fixed iteration counts of classic RL and WB RL
        (the ``rl``, ``rl-biggs`` and ``wb-rl`` methods).
    breaks_kind, breaks_shape : the sample of the breaking-point series.
    photon_series : photo-electrons per phantom unit of the photon series.
    na_series : numerical apertures of the blur series (x axis: the lateral FWHM).
    networks : networks trained once (same data, steps, patch and batch for all).
    models : {label: model folder}
        Already trained models to benchmark as well (a label equal to a trained network's
        upper-case name replaces it, e.g. ``{"RLN": "demo/model"}``).
    train_n, train_shape, train_steps, patch, batch, val_interval :
        The synthetic ``mixed`` training set and the shared training budget.
    train_minutes : float or None
        Wall-clock cap per trained network (equal for all; None: steps only). The steps each
        network reached are reported with its results.
    real_rl_iterations : RL iterations of the dapi resolution comparison (20, as the reference).
    dapi_network : bool
        Train RLN on synthetic data made with ``PSF_dapi.tif`` for the dapi resolution table
        (unless ``models`` has a ``"RLN-dapi"`` entry).
    w2s_sigma : float
        Sigma (px) of the Gaussian-filter denoising baseline (fixed, not tuned on the targets).
    w2s_care_steps : int
        Steps of the small 2D CARE trained on three W2S fields of view (0: skip).
    """

    error_label: ClassVar[str] = "bench config"

    suite: Literal["synthetic", "real", "all"] = "synthetic"
    real_data: str | None = None
    budget: Literal["full", "quick", "custom"] = "full"
    seed: int = Field(0, ge=0)
    device: str = "auto"
    psf_model: Literal["born-wolf", "gibson-lanni", "vectorial", "gaussian"] = "born-wolf"
    na: float = Field(1.4, gt=0, allow_inf_nan=False)
    wavelength: float = Field(0.52, gt=0, allow_inf_nan=False)
    ni: float = Field(1.518, gt=0, allow_inf_nan=False)
    voxel_size: tuple[float, float, float] = (0.2, 0.1, 0.1)
    psf_shape: tuple[int, int, int] = (33, 65, 65)
    kinds: tuple[Literal["tubules", "granules", "nuclei"], ...] = ("tubules", "granules", "nuclei")
    shape: tuple[int, int, int] = BENCH_PRESETS["full"]["shape"]
    photons: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_noise: float = Field(0.5, ge=0, allow_inf_nan=False)
    background: float = Field(30.0, ge=0, allow_inf_nan=False)
    methods: tuple[str, ...] = ("raw", "rl", "wb-rl")
    rl_iterations: int = Field(20, ge=1)
    wb_iterations: int = Field(2, ge=1)
    breaks_kind: Literal["tubules", "granules", "nuclei"] = "granules"
    breaks_shape: tuple[int, int, int] = BENCH_PRESETS["full"]["breaks_shape"]
    photon_series: tuple[float, ...] = BENCH_PRESETS["full"]["photon_series"]
    na_series: tuple[float, ...] = BENCH_PRESETS["full"]["na_series"]
    networks: tuple[str, ...] = BENCH_PRESETS["full"]["networks"]
    models: dict[str, str] = Field(default_factory=dict)
    train_n: int = Field(BENCH_PRESETS["full"]["train_n"], ge=2)
    train_shape: tuple[int, int, int] = BENCH_PRESETS["full"]["train_shape"]
    train_steps: int = Field(BENCH_PRESETS["full"]["train_steps"], ge=1)
    patch: tuple[int, int, int] = BENCH_PRESETS["full"]["patch"]
    batch: int = Field(BENCH_PRESETS["full"]["batch"], ge=1)
    val_interval: int = Field(BENCH_PRESETS["full"]["val_interval"], ge=1)
    train_minutes: float | None = Field(BENCH_PRESETS["full"]["train_minutes"], gt=0,
                                        allow_inf_nan=False)
    real_rl_iterations: int = Field(20, ge=1)
    dapi_network: bool = BENCH_PRESETS["full"]["dapi_network"]
    w2s_sigma: float = Field(1.5, gt=0, allow_inf_nan=False)
    w2s_care_steps: int = Field(BENCH_PRESETS["full"]["w2s_care_steps"], ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if any(s < 1 or s % 2 == 0 for s in self.psf_shape):
            raise ValueError(f"psf_shape must be odd sizes, got {self.psf_shape}")
        for name in ("shape", "breaks_shape", "train_shape"):
            shape = getattr(self, name)
            if shape[0] < 8 or any(s < 16 for s in shape[1:]):
                raise ValueError(f"{name} must be at least (8, 16, 16) voxels, got {shape}")
        if len(self.photon_series) < 2 or any(p <= 0 for p in self.photon_series):
            raise ValueError("photon_series needs at least 2 positive values")
        if len(self.na_series) < 2 or any(not 0 < a < self.ni for a in self.na_series):
            raise ValueError(f"na_series needs at least 2 values in (0, ni={self.ni})")
        if any(p > t for p, t in zip(self.patch, self.train_shape, strict=True)):
            raise ValueError(f"patch {self.patch} is larger than train_shape {self.train_shape}")
        if not self.kinds:
            raise ValueError("kinds: give at least one sample kind")
        if "raw" not in self.methods:
            raise ValueError("methods must include 'raw' (the baseline of every gain)")
        usable = set(available_methods()) - {"network", "isotropic"}
        unknown = [m for m in self.methods if m not in usable]
        if unknown:
            raise ValueError(f"methods: {', '.join(unknown)} not usable here; choose from "
                             f"{', '.join(sorted(usable))} (networks: the networks and models "
                             "fields)")
        return self

    def method_params(self, name: str) -> dict[str, Any]:
        """Parameters of registered method ``name`` in this benchmark (iterations, device)."""
        fields = get_method(name).config.model_fields
        params: dict[str, Any] = {}
        if "iterations" in fields:
            params["iterations"] = self.wb_iterations if name == "wb-rl" else self.rl_iterations
        if "device" in fields:
            params["device"] = self.device
        return params

    @classmethod
    def preset(cls, suite: str = "synthetic", quick: bool = False, **overrides) -> BenchConfig:
        """The full (≤ ~30 min on a 2-core CPU) or quick (a few minutes) benchmark.

        Raises
        ------
        InputError
            Unknown suite, invalid or unknown field (one line naming it).
        """
        if suite not in SUITES:
            raise InputError(f"suite: unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
        values: dict[str, Any] = dict(BENCH_PRESETS["quick" if quick else "full"])
        values.update(suite=suite, budget="quick" if quick else "full")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)

