"""``lucyd demo``: a complete synthetic widefield experiment from nothing, with a visual report.

Stages (each prints a message; the parts show their own progress bars):

1. a Born–Wolf widefield PSF (Born & Wolf, *Principles of Optics*, §8.8);
2. a synthetic sample of a kind the network never sees in training (``tubules`` by default),
   imaged through the forward model ``Poisson(photons · (gt ⊛ psf)) + N(0, read_noise²)``
   (the RLN recipe, Li et al., Nature Methods 2022);
3. a synthetic ``mixed``-structure training set through the same PSF
   (:func:`lucyd.synth.make_dataset`);
4. classic Richardson–Lucy (flipped back projector, a fixed documented iteration count: choosing
   the count with the ground truth would flatter RL);
5. Wiener–Butterworth RL (Guo et al., Nature Biotechnology 2020; 2 iterations);
6. RLN training (Li et al. 2022) on the training set with a small, fixed step budget;
7. RLN restoration of the sample;
8. evaluation against the ground truth (:func:`lucyd.metrics.evaluate`: percentile-normalised
   ground truth, affinely fitted prediction) and ground-truth-free resolution estimates
   (one-image FRC, decorrelation analysis);
9. ``report.html``, ``figure.png``, ``metrics.json``.

Every file is written atomically; a finished stage is recorded in ``DIR/.state.json`` together
with a digest of the configuration, so re-running into the same folder with the same
configuration reuses finished stages (an interrupted training resumes from its last
checkpoint) and a different configuration recomputes everything.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from lucyd.config import JobConfig
from lucyd.errors import FileFormatError, InputError
from lucyd.pipelines.common import (
    Stages,
    StageState,
    check_out_dir,
    child_seeds,
    config_digest,
    fmt_um,
    quality,
    resolution_summary,
    write_json,
)

__all__ = ["DemoConfig", "run_demo", "METHOD_ORDER"]

#: methods in the order of the figure and the table
METHOD_ORDER = ("raw", "RL", "WB", "RLN")

#: phantom parameters of the test sample by kind (counts are per 128^3 voxels: these give a
#: field of view well filled with structures; the phantom defaults are sparser). Tubules get a
#: cross-section sigma of 1 px (0.1 µm): thinner ones are so far below the resolution that the
#: raw image hardly correlates with them and every score is dominated by the background.
SAMPLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tubules": {"n_tubules": 100, "width": 1.0},
    "granules": {"n_clusters": 30, "n_isolated": 180},
    "nuclei": {},
}

#: network keyword arguments used by the demo and the benchmark when none are given: the
#: reference RLN (Keras batch-norm momentum 0.99; the trainer re-estimates the batch-norm
#: statistics exactly before every validation and checkpoint, so a short training needs no
#: faster moving average)
NET_DEFAULTS: dict[str, dict[str, Any]] = {"rln": {}}

#: default (10 min class on a 2-core CPU) and quick (2 min class) budgets
_PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "sample_shape": (32, 128, 128),
        "train_n": 8,
        "train_shape": (32, 96, 96),
        "train_steps": 250,
        "patch": (32, 32, 32),
        "batch": 4,
        "val_interval": 50,
        "train_minutes": None,
    },
    "quick": {
        "sample_shape": (24, 96, 96),
        "train_n": 4,
        "train_shape": (24, 64, 64),
        "train_steps": 80,
        "patch": (16, 32, 32),
        "batch": 4,
        "val_interval": 40,
        "train_minutes": None,
    },
}


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
    sample_shape: tuple[int, int, int] = _PRESETS["default"]["sample_shape"]
    sample_params: dict[str, Any] | None = None
    photons: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_noise: float = Field(0.5, ge=0, allow_inf_nan=False)
    background: float = Field(30.0, ge=0, allow_inf_nan=False)
    train_n: int = Field(_PRESETS["default"]["train_n"], ge=2)
    train_shape: tuple[int, int, int] = _PRESETS["default"]["train_shape"]
    rl_iterations: int = Field(20, ge=1)
    wb_iterations: int = Field(2, ge=1)
    network: str = "rln"
    train_steps: int = Field(_PRESETS["default"]["train_steps"], ge=1)
    patch: tuple[int, int, int] = _PRESETS["default"]["patch"]
    batch: int = Field(_PRESETS["default"]["batch"], ge=1)
    val_interval: int = Field(_PRESETS["default"]["val_interval"], ge=1)
    lr: float | None = Field(None, gt=0, allow_inf_nan=False)
    net_kwargs: dict[str, Any] | None = None
    train_minutes: float | None = Field(_PRESETS["default"]["train_minutes"], gt=0,
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
        from lucyd.nets import available_networks

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


# ----------------------------------------------------------------------------- helpers

def _meta(voxel_size):
    from lucyd.io import ImageMetadata

    return ImageMetadata("ZYX", tuple(float(v) for v in voxel_size))


def _read(path: Path) -> np.ndarray:
    from lucyd.io import read_image

    arr, _ = read_image(path)
    return np.asarray(arr, dtype=np.float32)


def model_name(model: str) -> str:
    """Display name of a PSF model (``"born-wolf"`` -> ``"Born–Wolf"``)."""
    return {"born-wolf": "Born–Wolf", "gibson-lanni": "Gibson–Lanni", "vectorial": "vectorial",
            "gaussian": "Gaussian"}.get(model, model)


def _method_labels(cfg: DemoConfig) -> dict[str, str]:
    return {
        "raw": "raw (widefield)",
        "RL": f"RL, {cfg.rl_iterations} it.",
        "WB": f"WB RL, {cfg.wb_iterations} it.",
        "RLN": cfg.network.upper(),
    }


def _method_params(cfg: DemoConfig, n_params: int | None, steps: int) -> dict[str, str]:
    return {
        "raw": "camera counts",
        "RL": f"{cfg.rl_iterations} iterations, flipped PSF, non-circulant",
        "WB": f"{cfg.wb_iterations} iterations, Wiener-Butterworth back projector",
        "RLN": (f"{n_params:,} weights, {steps} steps" if n_params else f"{steps} steps"),
    }


def _deconvolve(raw, psf, cfg: DemoConfig, back_projector: str, iterations: int,
                progress: bool) -> np.ndarray:
    from lucyd.deconv import deconvolve

    return deconvolve(raw, psf, iterations=iterations, back_projector=back_projector,
                      boundary="non-circulant", background=0.0, device=cfg.device,
                      progress=progress)


# ----------------------------------------------------------------------------- pipeline

def run_demo(config: DemoConfig | None = None, out_dir: str | Path = "lucyd-demo", *,
             progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Run the whole demo and write its report (see the module docstring for the stages).

    Parameters
    ----------
    config : DemoConfig, optional
        Parameters (default: ``DemoConfig.preset()``, the ≤ 10-minute budget).
    out_dir : str or Path
        Output folder, created. Holds ``report.html``, ``figure.png``, ``metrics.json``,
        ``demo.json`` (the configuration), ``psf.tif``, ``sample_raw.tif``, ``sample_gt.tif``,
        ``restored_rl.tif``, ``restored_wb.tif``, ``restored_<network>.tif`` (all with voxel
        sizes), ``training_set/``, ``model/``, ``figure_fitted.png`` (the panels as evaluated:
        affinely fitted to the ground truth) and ``psf.png``.
    progress : bool
        Stage messages and the parts' progress bars (bars are also silenced by
        ``LUCYD_NO_PROGRESS=1``).
    command : str, optional
        The command line, recorded in the report.

    Returns
    -------
    dict
        ``metrics`` (per method: ``psnr``, ``ssim``, ``nrmse``, ``time_s``, resolution
        estimates), ``ground_truth`` (its resolution estimates), ``timings`` (per stage, s),
        ``report``, ``figure``, ``metrics_file``, ``out_dir`` (paths) and ``resumed``.

    Raises
    ------
    InputError
        Invalid configuration or an output path that is a file.

    Notes
    -----
    Intensities: the raw sample and the restorations are in photo-electrons; the ground
    truth is stored as ``photons × phantom`` (its expected photo-electrons without blur), so
    every panel of the figure shares one display range in one unit. The metrics do not depend
    on that choice (the evaluation fits each restoration affinely to the ground truth).
    """
    from lucyd.io import write_image
    from lucyd.psf import fwhm, make_psf
    from lucyd.synth import SynthConfig, degrade, make_dataset, phantom
    from lucyd.train import TrainConfig, load_model, train

    cfg = config if config is not None else DemoConfig.preset()
    if not isinstance(cfg, DemoConfig):
        raise InputError(f"config: expected a DemoConfig, got {type(cfg).__name__}")
    out = check_out_dir(out_dir)
    t_start = time.perf_counter()
    digest = config_digest(cfg.model_dump(mode="json"))
    state = StageState(out, digest)
    cfg.save(out / "demo.json")
    seeds = child_seeds(cfg.seed, ["sample", "noise", "training_set", "training"])
    stages = Stages(9, verbose=progress)
    bars = progress
    vox = tuple(float(v) for v in cfg.voxel_size)
    net_name = cfg.network.lower()
    paths = {
        "psf": out / "psf.tif",
        "raw": out / "sample_raw.tif",
        "gt": out / "sample_gt.tif",
        "RL": out / "restored_rl.tif",
        "WB": out / "restored_wb.tif",
        "RLN": out / f"restored_{net_name}.tif",
        "data": out / "training_set",
        "model": out / "model",
    }
    if state.resumed:
        stages.say(f"[dim]resuming in {out} (same configuration; finished stages are reused)[/dim]")
    stages.say(f"lucyd demo -> {out}  (budget: {cfg.budget}, seed {cfg.seed})")

    # 1. PSF ------------------------------------------------------------------------------
    done = state.done("psf", paths["psf"])
    with stages.stage("psf", f"{model_name(cfg.psf_model)} PSF {cfg.psf_shape}, NA {cfg.na:g}, "
                             f"{cfg.wavelength * 1000:.0f} nm, ni {cfg.ni:g}", skipped=done):
        if done:
            psf = _read(paths["psf"])
        else:
            psf = make_psf(cfg.psf_model, cfg.psf_shape, vox, na=cfg.na,
                           wavelength=cfg.wavelength, ni=cfg.ni).astype(np.float32)
            psf /= psf.sum()
            write_image(paths["psf"], psf, _meta(vox))
            state.record("psf", fwhm_um=list(fwhm(psf, vox)))
    psf_fwhm = tuple(float(v) for v in fwhm(psf, vox))

    # 2. sample ---------------------------------------------------------------------------
    done = state.done("sample", paths["raw"], paths["gt"])
    with stages.stage("sample", f"synthetic '{cfg.sample_kind}' sample {cfg.sample_shape}, "
                                f"{cfg.photons:g} photons/unit, read noise {cfg.read_noise:g} e-",
                      skipped=done):
        if done:
            raw, gt = _read(paths["raw"]), _read(paths["gt"])
        else:
            params = (SAMPLE_DEFAULTS[cfg.sample_kind] if cfg.sample_params is None
                      else cfg.sample_params)
            gt_units = phantom(cfg.sample_kind, cfg.sample_shape, seed=seeds["sample"],
                               background=cfg.background, **params)
            raw, _ = degrade(gt_units, "deconvolution", psf=psf, photons=cfg.photons,
                             read_noise=cfg.read_noise, seed=seeds["noise"], device=cfg.device)
            gt = (gt_units * np.float32(cfg.photons)).astype(np.float32)
            write_image(paths["gt"], gt, _meta(vox))
            write_image(paths["raw"], raw, _meta(vox))
            state.record("sample")

    # 3. training set ---------------------------------------------------------------------
    synth_cfg = SynthConfig(kind="mixed", task="deconvolution", n=cfg.train_n,
                            shape=cfg.train_shape, photons=cfg.photons, read_noise=cfg.read_noise,
                            background=cfg.background, seed=seeds["training_set"],
                            psf=str(paths["psf"]), voxel_size=vox)
    done = state.done("training_set", paths["data"] / "dataset.json")
    with stages.stage("training_set", f"training set: {cfg.train_n} 'mixed' volumes "
                                      f"{cfg.train_shape} through the same PSF", skipped=done):
        if not done:
            make_dataset(synth_cfg, paths["data"], progress=bars, overwrite=not state.resumed,
                         device=cfg.device)
            state.record("training_set")

    # 4./5. classical deconvolution --------------------------------------------------------
    restored: dict[str, np.ndarray] = {"raw": raw}
    method_time: dict[str, float] = {"raw": 0.0}
    for key, bp, its, text in (
        ("RL", "flipped", cfg.rl_iterations, f"classic Richardson-Lucy, {cfg.rl_iterations} "
                                             "iterations (flipped back projector)"),
        ("WB", "wiener-butterworth", cfg.wb_iterations,
         f"Wiener-Butterworth RL, {cfg.wb_iterations} iterations"),
    ):
        done = state.done(key, paths[key])
        with stages.stage(key, text, skipped=done):
            if done:
                restored[key] = _read(paths[key])
                method_time[key] = float(state.get(key).get("time_s", math.nan))
            else:
                t0 = time.perf_counter()
                restored[key] = _deconvolve(raw, psf, cfg, bp, its, bars)
                method_time[key] = time.perf_counter() - t0
                write_image(paths[key], restored[key], _meta(vox))
                state.record(key, time_s=method_time[key])

    # 6. training -------------------------------------------------------------------------
    train_cfg = TrainConfig(model=net_name, ndim=3, patch=cfg.patch, batch=cfg.batch,
                            steps=cfg.train_steps, val_interval=cfg.val_interval, lr=cfg.lr,
                            net_kwargs=(NET_DEFAULTS.get(net_name, {}) if cfg.net_kwargs is None
                                        else cfg.net_kwargs),
                            time_limit_s=(None if cfg.train_minutes is None
                                          else 60.0 * cfg.train_minutes),
                            seed=seeds["training"], device=cfg.device, threads=cfg.threads)
    done = state.done("train", paths["model"] / "model.json", paths["model"] / "best.pt")
    with stages.stage("train", f"training {cfg.network.upper()} for {cfg.train_steps} steps "
                               f"(batch {cfg.batch} x {cfg.patch})", skipped=done):
        if not done:
            t0 = time.perf_counter()
            _train(train, train_cfg, paths["data"], paths["model"], resume=state.resumed,
                   quiet=not bars)
            state.record("train", time_s=time.perf_counter() - t0)
    train_time = float(state.get("train").get("time_s", math.nan))

    # 7. network restoration --------------------------------------------------------------
    model = load_model(paths["model"])
    n_params = int(model.info["network"].get("parameters", 0)) or None
    steps_done = int(model.info.get("training", {}).get("steps_done") or cfg.train_steps)
    train_status = str(model.info.get("training", {}).get("status", ""))
    done = state.done("RLN", paths["RLN"])
    with stages.stage("RLN", f"restoring the sample with the trained {cfg.network.upper()}",
                      skipped=done):
        if done:
            restored["RLN"] = _read(paths["RLN"])
            method_time["RLN"] = float(state.get("RLN").get("time_s", math.nan))
        else:
            t0 = time.perf_counter()
            restored["RLN"] = model.predict(raw, tile_shape=cfg.tile_shape, device=cfg.device,
                                            progress=bars).astype(np.float32)
            method_time["RLN"] = time.perf_counter() - t0
            write_image(paths["RLN"], restored["RLN"], _meta(vox))
            state.record("RLN", time_s=method_time["RLN"])

    # 8. evaluation -----------------------------------------------------------------------
    with stages.stage("evaluate", "metrics against the ground truth and resolution estimates"):
        metrics: dict[str, dict[str, Any]] = {}
        for key in METHOD_ORDER:
            m: dict[str, Any] = quality(restored[key], gt)
            m.update(resolution_summary(restored[key], vox))
            m["time_s"] = method_time[key]
            metrics[key] = m
        gt_res = resolution_summary(gt, vox)

    # 9. report ---------------------------------------------------------------------------
    with stages.stage("report", "figure, HTML report and metrics.json"):
        labels = _method_labels(cfg)
        params = _method_params(cfg, n_params, steps_done)
        rows = [_row(labels[k], metrics[k], params[k]) for k in METHOD_ORDER]
        timings = dict(stages.times)
        timings["total"] = time.perf_counter() - t_start
        payload = {
            "kind": "lucyd-demo",
            "sample": cfg.sample_kind,
            "metrics": metrics,
            "ground_truth": gt_res,
            "psf_fwhm_um": list(psf_fwhm),
            "training": {"time_s": train_time, "steps": steps_done, "status": train_status,
                         "steps_requested": cfg.train_steps, "cap_minutes": cfg.train_minutes,
                         "parameters": n_params, "network": net_name},
            "timings_s": timings,
            "config": cfg.model_dump(mode="json"),
            "evaluation": "lucyd.metrics.evaluate: ground truth normalised to its 0.1/99.9 "
                          "percentiles, prediction fitted affinely (Weigert et al. 2018)",
        }
        metrics_file = write_json(out / "metrics.json", payload)
        panels = {labels[k]: restored[k] for k in METHOD_ORDER}
        panels["ground truth"] = gt
        figure = _write_figures(out, cfg, panels, psf)
        report = _write_report(out, cfg, rows, metrics, gt_res, psf_fwhm, figure, panels, paths,
                               synth_cfg, train_cfg, timings, n_params, steps_done, command)
    return {
        "metrics": metrics,
        "ground_truth": gt_res,
        "rows": rows,
        "timings": timings,
        "report": report,
        "figure": figure,
        "metrics_file": metrics_file,
        "out_dir": out,
        "resumed": state.resumed,
    }


def _train(train, train_cfg, data_dir: Path, model_dir: Path, *, resume: bool, quiet: bool) -> None:
    """Train, resuming an interrupted run of the same configuration when possible."""
    env_key = "LUCYD_NO_PROGRESS"
    old = os.environ.get(env_key)
    if quiet:
        os.environ[env_key] = "1"
    try:
        if resume and (model_dir / "last.pt").is_file():
            try:
                train(train_cfg, data_dir, model_dir, resume=True)
                return
            except (InputError, FileFormatError):
                pass  # a checkpoint of another configuration: start again
        train(train_cfg, data_dir, model_dir, overwrite=True)
    finally:
        if quiet:
            if old is None:
                os.environ.pop(env_key, None)
            else:
                os.environ[env_key] = old


def _row(label: str, m: dict, params: str) -> dict[str, Any]:
    return {
        "method": label,
        "psnr": m["psnr"],
        "ssim": m["ssim"],
        "nrmse": m["nrmse"],
        "FRC res. (µm)": m.get("frc_um"),
        "time_s": m.get("time_s"),
        "parameters": params,
    }


_RANGE_NOTE = ("Range: 0 to the 99.9th percentile of the ground truth; blurred images have lower "
               "peaks - that is the blur, not the display.")


_NET_NOTE = ("The network's output is in its input's percentile range (the RLN convention), so "
             "its peaks can sit far below the ground truth's.")


def fitted_panels(panels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every panel but the last (the ground truth) replaced by its least-squares affine fit to
    the ground truth (:func:`lucyd.metrics.fit_affine`)."""
    from lucyd.metrics import fit_affine

    names = list(panels)
    gt = panels[names[-1]]
    out = {}
    for name in names[:-1]:
        a, b = fit_affine(panels[name], gt)
        out[name] = (a * panels[name].astype(np.float64) + b).astype(np.float32)
    out[names[-1]] = gt
    return out


def display_range(panels: dict[str, np.ndarray]) -> tuple[float, float]:
    """The one display range of the demo figure: 0 photo-electrons to the 99.9th percentile
    of the ground truth (the last panel), so no panel is clipped at the dark end and the
    restorations are judged against the true peak intensities."""
    gt = list(panels.values())[-1]
    return 0.0, float(np.percentile(gt, 99.9))


def _write_figures(out: Path, cfg: DemoConfig, panels: dict[str, np.ndarray],
                   psf: np.ndarray) -> Path:
    from lucyd.report import save_panel_figure

    title = (f"Synthetic {cfg.sample_kind} (a kind not in the training set) - widefield "
             f"{model_name(cfg.psf_model)} NA {cfg.na:g}, {cfg.wavelength * 1000:.0f} nm, "
             f"{cfg.photons:g} photons/unit")
    figure = save_panel_figure(panels, out / "figure.png", voxel_size=cfg.voxel_size,
                               title=title, display_range=display_range(panels),
                               reference="ground truth", caption=_RANGE_NOTE + " " + _NET_NOTE,
                               intensity_label="photo-electrons per voxel")
    # the same panels as the metrics see them: each fitted affinely to the ground truth
    save_panel_figure(fitted_panels(panels), out / "figure_fitted.png",
                      voxel_size=cfg.voxel_size, display_range=display_range(panels),
                      title=title + " - as evaluated (affine fit to the ground truth)",
                      reference="ground truth", intensity_label="ground-truth photo-electrons",
                      caption="Each image is mapped by the least-squares gain and offset that "
                              "fit it to the ground truth (what PSNR/SSIM/NRMSE measure).")
    # the PSF on a log scale (a linear display shows only its core)
    log_psf = np.log10(np.maximum(psf / psf.max(), 1e-6)).astype(np.float32)
    centre = tuple(n // 2 for n in psf.shape)
    save_panel_figure({"PSF": log_psf}, out / "psf.png", voxel_size=cfg.voxel_size,
                      title="PSF (log10 of the peak-normalised intensity)",
                      z_index=centre[0], y_index=centre[1],
                      display_range=(-4.0, 0.0), intensity_label="log10(PSF / peak)",
                      cmap="magma", panel_width=3.0)
    return figure


_FILE_DESCRIPTIONS = {
    "psf": "PSF (sum 1) with its voxel size",
    "raw": "the simulated widefield sample (photo-electrons)",
    "gt": "its ground truth (photons x phantom)",
    "RL": "classic RL result",
    "WB": "Wiener-Butterworth RL result",
    "RLN": "network result (input's intensity range)",
    "data": "training pairs raw/ + gt/, psf.tif, dataset.json",
    "model": "trained network (weights, config.json, model.json, log, loss.png)",
}


def _write_report(out: Path, cfg: DemoConfig, rows, metrics, gt_res, psf_fwhm, figure: Path,
                  panels: dict[str, np.ndarray], paths: dict[str, Path], synth_cfg, train_cfg,
                  timings, n_params, steps_done: int, command: str | None) -> Path:
    import lucyd
    from lucyd.report import ReportSection, write_html_report

    labels = _method_labels(cfg)
    best = max(METHOD_ORDER[1:], key=lambda k: metrics[k]["psnr"])
    gain = {k: metrics[k]["psnr"] - metrics["raw"]["psnr"] for k in METHOD_ORDER[1:]}
    summary = (
        f"A synthetic '{cfg.sample_kind}' volume ({cfg.sample_shape[0]} x {cfg.sample_shape[1]} x "
        f"{cfg.sample_shape[2]} voxels of {cfg.voxel_size[0]:g} x {cfg.voxel_size[1]:g} x "
        f"{cfg.voxel_size[2]:g} µm) was imaged through a {model_name(cfg.psf_model)} "
        "widefield PSF "
        f"(NA {cfg.na:g}, {cfg.wavelength * 1000:.0f} nm, immersion n = {cfg.ni:g}; FWHM "
        f"z/y/x = {psf_fwhm[0]:.3f} / {psf_fwhm[1]:.3f} / {psf_fwhm[2]:.3f} µm) with Poisson "
        f"noise ({cfg.photons:g} photo-electrons per phantom unit, background "
        f"{cfg.background:g} units) and {cfg.read_noise:g} e- read noise.\n\n"
        f"PSNR gain over the raw image: "
        + ", ".join(f"{labels[k]} {gain[k]:+.2f} dB" for k in METHOD_ORDER[1:])
        + f". Best PSNR: {labels[best].rstrip('.')}. "
        f"The network was trained only on '{synth_cfg.kind}' structures, so the sample tests "
        f"generalisation. Its training budget is deliberately small ({steps_done} steps; "
        f"the published recipe uses 10,000), so its numbers are a floor, not RLN's ceiling.\n\n"
        "Metrics: lucyd.metrics.evaluate - the ground truth is normalised to its 0.1 / 99.9 "
        "percentiles and each image is fitted affinely to it (least squares, as CSBDeep's "
        "normalize_minmse) before PSNR, SSIM (Gaussian window sigma 1.5, 3D) and NRMSE. "
        "Resolution: one-image Fourier ring correlation (1/7 threshold) and decorrelation "
        "analysis, lateral, without ground truth; 'nyquist' marks an upper bound limited by "
        "sampling. Ground truth: FRC "
        f"{fmt_um(gt_res.get('frc_um'))} ({gt_res.get('frc_status')}), decorrelation "
        f"{fmt_um(gt_res.get('decorr_um'))} ({gt_res.get('decorr_status')})."
    )
    res_rows = [
        {"image": labels[k], "FRC (µm)": metrics[k]["frc_um"],
         "FRC status": metrics[k]["frc_status"],
         "decorrelation (µm)": metrics[k]["decorr_um"],
         "decorrelation status": metrics[k]["decorr_status"]}
        for k in METHOD_ORDER
    ]
    res_rows.append({"image": "ground truth", "FRC (µm)": gt_res["frc_um"],
                     "FRC status": gt_res["frc_status"], "decorrelation (µm)": gt_res["decorr_um"],
                     "decorrelation status": gt_res["decorr_status"]})
    files = {name: str(p.relative_to(out)) for name, p in paths.items()}
    sections = [
        ReportSection("Summary", text=summary, table=rows),
        ReportSection(
            "Restorations",
            text=("Columns: raw widefield image, classic RL, Wiener-Butterworth RL, the trained "
                  "network, ground truth. Rows: an xy slice and an xz slice. Intensities in "
                  "photo-electrons per voxel; the ground truth is the expected count without "
                  "blur (photons x phantom), so blurred images look dimmer at their peaks."),
            images=[(figure, "Caption in the figure. " + _RANGE_NOTE + " " + _NET_NOTE),
                    (out / "figure_fitted.png",
                     "The same slices as evaluated: every image fitted affinely (gain and "
                     "offset) to the ground truth, the convention behind the metrics table. "
                     "This undoes intensity-scale differences, not blur or noise.")],
        ),
        ReportSection("Resolution without ground truth", table=res_rows),
        ReportSection(
            "Point-spread function",
            text=(f"{model_name(cfg.psf_model)} model, array {cfg.psf_shape}, sum 1. "
                  "FWHM (z, y, x) = "
                  f"({psf_fwhm[0]:.3f}, {psf_fwhm[1]:.3f}, {psf_fwhm[2]:.3f}) µm; the Abbe "
                  f"estimate 0.51 λ/NA is {0.51 * cfg.wavelength / cfg.na:.3f} µm laterally."),
            images=[(out / "psf.png", "PSF, xy and xz through its centre, log10 scale from "
                                      "1e-4 to 1 of the peak.")],
            params={"model": cfg.psf_model, "na": cfg.na, "wavelength_um": cfg.wavelength,
                    "ni": cfg.ni, "voxel_size_um": list(cfg.voxel_size),
                    "shape": list(cfg.psf_shape), "fwhm_um": list(psf_fwhm)},
        ),
    ]
    loss_png = paths["model"] / "loss.png"
    train_text = (f"{cfg.network.upper()} ({n_params:,} weights) trained for {steps_done} "
                  f"steps in {timings.get('train', math.nan):.0f} s on '{synth_cfg.kind}' volumes "
                  f"({cfg.train_n} x {cfg.train_shape}); batch {cfg.batch} patches of {cfg.patch}; "
                  "validation on a held-out volume." if n_params else "")
    try:
        status = json.loads((paths["model"] / "model.json").read_text())["training"]["status"]
    except (OSError, ValueError, KeyError, TypeError):
        status = ""
    if status == "time-limit":
        train_text += (f" Training was stopped by the {cfg.train_minutes:g}-minute cap before "
                       f"its {cfg.train_steps} steps (a slow or busy machine), so this run's "
                       "network result depends on the machine's load.")
    sections.append(ReportSection(
        "Training",
        text=train_text or None,
        images=[(loss_png, "Training and validation loss.")] if loss_png.exists() else [],
        params={"training_set": synth_cfg.model_dump(mode="json"),
                "training": train_cfg.model_dump(mode="json")},
    ))
    sections.append(ReportSection(
        "Files and parameters",
        text=("Every parameter of this run (demo.json) and the files it wrote, relative to the "
              "output folder. The same command reproduces it bit for bit (same seed) when the "
              "training reaches its step count before the time cap."),
        table=[{"file": v, "content": _FILE_DESCRIPTIONS.get(k, k)} for k, v in files.items()]
        + [{"file": n, "content": d} for n, d in (
            ("figure.png", "the restorations, shared display range"),
            ("figure_fitted.png", "the same, each fitted affinely to the ground truth"),
            ("psf.png", "PSF picture (log scale)"), ("metrics.json", "all numbers of this report"),
            ("demo.json", "the configuration (DemoConfig)"))],
        params=cfg.model_dump(mode="json"),
    ))
    metadata = {
        "command": command or "lucyd demo",
        "seed": cfg.seed,
        "budget": cfg.budget,
        "device": cfg.device,
        "lucyd": lucyd.__version__,
        "python": sys.version.split()[0],
        "CPU cores": os.cpu_count(),
        "pipeline time": f"{timings.get('total', math.nan):.0f} s (without start-up)",
    }
    return write_html_report(out / "report.html", title="lucyd demo: widefield deconvolution, "
                             "classic vs network", sections=sections, metadata=metadata)
