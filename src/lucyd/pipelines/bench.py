"""``lucyd bench``: methods x data sets, and where each method breaks.

Synthetic suite
    Held-out synthetic volumes of several kinds (``tubules``, ``granules``, ``nuclei``) imaged
    through a Born–Wolf widefield PSF with the RLN recipe's noise; methods: the raw image,
    classic Richardson–Lucy (flipped back projector, fixed iteration count), Wiener–Butterworth
    RL (Guo et al. 2020, 2 iterations) and every network trained once on a synthetic ``mixed``
    set with one modest step budget (or given as a model folder). Then the "push it until it
    breaks" characterisation of Chen et al. (Nature Methods 2021, 3D-RCAN): quality as a
    function of the photon count and of the blur width (the PSF's numerical aperture), with
    the networks left as trained (nominal photons and NA) and the classical methods given the
    true PSF; the curves of PSNR gain over the raw image show where each method stops helping.

Real suite (``<repo>/../shared/data/real`` or ``$LUCYD_REAL_DATA``; skipped with a message
when absent)
    * reference-output agreement of classic RL with deconwolf 0.4.7 (relative L2 error):
      ``widefield_dapi`` (20 iterations, Bertero boundary weights and circulant) and
      ``widefield_bead`` (25 iterations);
    * ground-truth-free lateral resolution (one-image FRC, decorrelation) of ``dapi_001`` raw,
      RL, WB RL and, when a model is given or trained (full suite), RLN trained on synthetic
      data made with ``PSF_dapi.tif``;
    * W2S denoising pairs (single frame vs 400-frame average, 2D): PSNR / SSIM / NRMSE of the
      raw frame after the affine fit, of a Gaussian filter (fixed sigma) and, in the full suite,
      of a small CARE trained on three fields of view and tested on the other two.

Outputs: ``bench.json``, ``bench.csv``, ``report.html`` and PNG plots in the output folder.
Real-data-derived training sets live in a temporary folder and are deleted afterwards; no
restored real image is written (only figures).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from lucyd.config import JobConfig
from lucyd.errors import InputError
from lucyd.pipelines.common import (
    Stages,
    check_out_dir,
    child_seeds,
    quality,
    real_data_dir,
    resolution_summary,
    write_json,
)
from lucyd.pipelines.demo import NET_DEFAULTS, SAMPLE_DEFAULTS, model_name

__all__ = ["SUITES", "BenchConfig", "run_bench", "CSV_COLUMNS"]

SUITES = ("synthetic", "real", "all")

#: columns of bench.csv, in order
CSV_COLUMNS = ("suite", "dataset", "method", "psnr", "ssim", "nrmse", "time_s", "parameters",
               "notes")

_PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "shape": (32, 128, 128),
        "breaks_shape": (32, 96, 96),
        "photon_series": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 50.0),
        "na_series": (0.7, 0.9, 1.1, 1.25, 1.4),
        "networks": ("rln", "ddn", "care"),
        "train_n": 8,
        "train_shape": (32, 96, 96),
        "train_steps": 150,
        "patch": (32, 32, 32),
        "batch": 4,
        "val_interval": 25,
        "train_minutes": 3.0,
        "dapi_network": True,
        "w2s_care_steps": 150,
    },
    "quick": {
        "shape": (24, 64, 64),
        "breaks_shape": (24, 64, 64),
        "photon_series": (0.01, 0.1, 1.0, 10.0, 50.0),
        "na_series": (0.8, 1.1, 1.4),
        "networks": ("rln",),
        "train_n": 3,
        "train_shape": (24, 64, 64),
        "train_steps": 20,
        "patch": (16, 32, 32),
        "batch": 4,
        "val_interval": 10,
        "train_minutes": 1.0,
        "dapi_network": False,
        "w2s_care_steps": 0,
    },
}


class BenchConfig(JobConfig):
    """Every parameter of ``lucyd bench`` (saved in ``bench.json``).

    Build it with :meth:`preset` (full or quick budget). Lengths in µm, arrays (z, y, x).

    Attributes
    ----------
    suite : {"synthetic", "real", "all"}
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
    rl_iterations, wb_iterations : fixed iteration counts of classic RL and WB RL.
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
    shape: tuple[int, int, int] = _PRESETS["full"]["shape"]
    photons: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_noise: float = Field(0.5, ge=0, allow_inf_nan=False)
    background: float = Field(30.0, ge=0, allow_inf_nan=False)
    rl_iterations: int = Field(20, ge=1)
    wb_iterations: int = Field(2, ge=1)
    breaks_kind: Literal["tubules", "granules", "nuclei"] = "granules"
    breaks_shape: tuple[int, int, int] = _PRESETS["full"]["breaks_shape"]
    photon_series: tuple[float, ...] = _PRESETS["full"]["photon_series"]
    na_series: tuple[float, ...] = _PRESETS["full"]["na_series"]
    networks: tuple[str, ...] = _PRESETS["full"]["networks"]
    models: dict[str, str] = Field(default_factory=dict)
    train_n: int = Field(_PRESETS["full"]["train_n"], ge=2)
    train_shape: tuple[int, int, int] = _PRESETS["full"]["train_shape"]
    train_steps: int = Field(_PRESETS["full"]["train_steps"], ge=1)
    patch: tuple[int, int, int] = _PRESETS["full"]["patch"]
    batch: int = Field(_PRESETS["full"]["batch"], ge=1)
    val_interval: int = Field(_PRESETS["full"]["val_interval"], ge=1)
    train_minutes: float | None = Field(_PRESETS["full"]["train_minutes"], gt=0,
                                        allow_inf_nan=False)
    real_rl_iterations: int = Field(20, ge=1)
    dapi_network: bool = _PRESETS["full"]["dapi_network"]
    w2s_sigma: float = Field(1.5, gt=0, allow_inf_nan=False)
    w2s_care_steps: int = Field(_PRESETS["full"]["w2s_care_steps"], ge=0)

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
        return self

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
        values: dict[str, Any] = dict(_PRESETS["quick" if quick else "full"])
        values.update(suite=suite, budget="quick" if quick else "full")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.build(**values)


# ----------------------------------------------------------------------------- methods

class _Method:
    """A restoration method: ``apply(raw, psf) -> restored`` plus a label and parameters."""

    def __init__(self, label: str, apply, params: str, kind: str):
        self.label, self.apply, self.params, self.kind = label, apply, params, kind


def _classical_methods(cfg: BenchConfig, progress: bool) -> list[_Method]:
    from lucyd.deconv import deconvolve

    def rl(raw, psf):
        return deconvolve(raw, psf, iterations=cfg.rl_iterations, back_projector="flipped",
                          device=cfg.device, progress=progress)

    def wb(raw, psf):
        return deconvolve(raw, psf, iterations=cfg.wb_iterations,
                          back_projector="wiener-butterworth", device=cfg.device,
                          progress=progress)

    return [
        _Method("raw", lambda raw, psf: raw, "camera counts", "raw"),
        _Method("RL", rl, f"{cfg.rl_iterations} it., flipped PSF, non-circulant", "classical"),
        _Method("WB RL", wb, f"{cfg.wb_iterations} it., Wiener-Butterworth BP", "classical"),
    ]


def _network_method(label: str, model_dir: Path, cfg: BenchConfig, progress: bool) -> _Method:
    from lucyd.train import load_model

    model = load_model(model_dir)
    n = int(model.info["network"].get("parameters", 0))
    steps = model.info.get("training", {}).get("steps_done")
    params = f"{n:,} weights" + (f", {steps} steps" if steps is not None else "")

    def apply(raw, psf):
        return model.predict(raw, device=cfg.device, progress=progress).astype(np.float32)

    return _Method(label, apply, params, "network")


def _timed(func, *args) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = func(*args)
    return np.asarray(out, dtype=np.float32), time.perf_counter() - t0


# ----------------------------------------------------------------------------- synthetic

def _psf(cfg: BenchConfig, na: float) -> np.ndarray:
    from lucyd.psf import make_psf

    psf = make_psf(cfg.psf_model, cfg.psf_shape, cfg.voxel_size, na=na,
                   wavelength=cfg.wavelength, ni=cfg.ni).astype(np.float32)
    return psf / psf.sum()


def _sample(cfg: BenchConfig, kind: str, shape, seed: int) -> np.ndarray:
    from lucyd.synth import phantom

    return phantom(kind, shape, seed=seed, background=cfg.background, **SAMPLE_DEFAULTS[kind])


def _acquire(cfg: BenchConfig, gt: np.ndarray, psf: np.ndarray, photons: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw in photo-electrons, ground truth in expected photo-electrons without blur)."""
    from lucyd.synth import degrade

    raw, _ = degrade(gt, "deconvolution", psf=psf, photons=photons, read_noise=cfg.read_noise,
                     seed=seed, device=cfg.device)
    return raw, (gt * np.float32(photons)).astype(np.float32)


def _cap(cfg: BenchConfig) -> float | None:
    return None if cfg.train_minutes is None else 60.0 * cfg.train_minutes


def _train_networks(cfg: BenchConfig, out: Path, psf_path: Path, seeds: dict, stages: Stages,
                    progress: bool) -> dict[str, Path]:
    """Train ``cfg.networks`` once on one synthetic mixed set; return {label: model folder}."""
    from lucyd.synth import SynthConfig, make_dataset
    from lucyd.train import TrainConfig, train

    wanted = [n.lower() for n in cfg.networks if n.upper() not in cfg.models]
    if not wanted:
        return {}
    data_dir = out / "work" / "training_set"
    synth_cfg = SynthConfig(kind="mixed", task="deconvolution", n=cfg.train_n,
                            shape=cfg.train_shape, photons=cfg.photons, read_noise=cfg.read_noise,
                            background=cfg.background, seed=seeds["training_set"],
                            psf=str(psf_path), voxel_size=cfg.voxel_size)
    stages.say(f"    training set: {cfg.train_n} 'mixed' volumes {cfg.train_shape}")
    make_dataset(synth_cfg, data_dir, progress=progress, overwrite=True, device=cfg.device)
    models = {}
    for name in wanted:
        model_dir = out / "models" / name
        tcfg = TrainConfig(model=name, ndim=3, patch=cfg.patch, batch=cfg.batch,
                           steps=cfg.train_steps, val_interval=cfg.val_interval,
                           net_kwargs=NET_DEFAULTS.get(name, {}), seed=seeds["training"],
                           time_limit_s=_cap(cfg), device=cfg.device)
        stages.say(f"    training {name.upper()}: {cfg.train_steps} steps, batch {cfg.batch} x "
                   f"{cfg.patch}")
        t0 = time.perf_counter()
        train(tcfg, data_dir, model_dir, overwrite=True)
        stages.say(f"    {name.upper()} trained in {time.perf_counter() - t0:.0f} s")
        models[name.upper()] = model_dir
    return models


def _synthetic_suite(cfg: BenchConfig, out: Path, seeds: dict, stages: Stages,
                     progress: bool) -> dict[str, Any]:
    from lucyd.io import ImageMetadata, write_image
    from lucyd.psf import fwhm
    from lucyd.report import save_line_plot, save_panel_figure

    result: dict[str, Any] = {"rows": [], "breaks": {}, "figures": []}
    vox = cfg.voxel_size
    with stages.stage("psf", f"nominal PSF: {model_name(cfg.psf_model)}, NA {cfg.na:g}"):
        psf = _psf(cfg, cfg.na)
        psf_path = out / "work" / "psf.tif"
        write_image(psf_path, psf, ImageMetadata("ZYX", tuple(vox)))

    with stages.stage("train", f"networks trained once: {', '.join(cfg.networks) or 'none'}"):
        model_dirs = _train_networks(cfg, out, psf_path, seeds, stages, progress)
        model_dirs.update({label: Path(p) for label, p in cfg.models.items()
                           if not label.lower().endswith("-dapi")})
    methods = _classical_methods(cfg, progress)
    methods += [_network_method(label, d, cfg, progress) for label, d in model_dirs.items()]
    result["methods"] = [m.label for m in methods]

    # methods x data sets -----------------------------------------------------------------
    with stages.stage("table", f"methods x data sets: {', '.join(cfg.kinds)}"):
        for i, kind in enumerate(cfg.kinds):
            gt_u = _sample(cfg, kind, cfg.shape, seeds["samples"] + i)
            raw, gt = _acquire(cfg, gt_u, psf, cfg.photons, seeds["noise"] + i)
            panels = {}
            for m in methods:
                out_img, dt = _timed(m.apply, raw, psf)
                dt = 0.0 if m.kind == "raw" else dt
                q = quality(out_img, gt)
                dataset = f"{kind}, NA {cfg.na:g}, {cfg.photons:g} ph/unit"
                result["rows"].append({"suite": "synthetic", "dataset": dataset,
                                       "method": m.label, **q, "time_s": dt,
                                       "parameters": m.params, "notes": ""})
                panels[m.label] = out_img
            panels["ground truth"] = gt
            fig = save_panel_figure(panels, out / f"synthetic_{kind}.png", voxel_size=vox,
                                    display_range=(0.0, float(np.percentile(gt, 99.9))),
                                    reference="ground truth",
                                    title=f"Synthetic {kind} (held out), NA {cfg.na:g}, "
                                          f"{cfg.photons:g} photons/unit",
                                    intensity_label="photo-electrons per voxel",
                                    caption="Range 0 to the 99.9th percentile of the ground "
                                            "truth.")
            result["figures"].append((fig, f"Synthetic {kind}: every method, same display "
                                           "range."))

    # breaking points ---------------------------------------------------------------------
    gt_u = _sample(cfg, cfg.breaks_kind, cfg.breaks_shape, seeds["breaks"])
    with stages.stage("photons", f"photon series {list(cfg.photon_series)} "
                                 f"({cfg.breaks_kind})"):
        series = _series(methods, gt_u, cfg, psf, cfg.photon_series, "photons", seeds)
        result["breaks"]["photons"] = series
    with stages.stage("blur", f"blur series: NA {list(cfg.na_series)} ({cfg.breaks_kind})"):
        widths = []
        blur_points = []
        for na in cfg.na_series:
            p = _psf(cfg, na)
            widths.append(float(fwhm(p, vox)[-1]))
            blur_points.append(p)
        series = _series(methods, gt_u, cfg, blur_points, widths, "blur", seeds)
        series["na"] = list(cfg.na_series)
        result["breaks"]["blur"] = series

    # plots -------------------------------------------------------------------------------
    for key, xlabel, logx in (
        ("photons", "photo-electrons per phantom unit (networks trained at "
                    f"{cfg.photons:g})", True),
        ("blur", f"lateral FWHM of the PSF (µm; networks trained at NA {cfg.na:g})", False),
    ):
        s = result["breaks"][key]
        x = s["x"]
        for metric, ylabel in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
            path = save_line_plot({m: (x, s[metric][m]) for m in s[metric]},
                                  out / f"breaks_{key}_{metric}.png", xlabel=xlabel,
                                  ylabel=ylabel, logx=logx,
                                  title=f"{cfg.breaks_kind}: {ylabel.split()[0]} vs "
                                        f"{'photon count' if key == 'photons' else 'blur width'}")
            result["figures"].append((path, f"{ylabel.split()[0]} of every method against the "
                                            f"{'photon count' if key == 'photons' else 'blur'}."))
        gains = {m: (x, [v - r for v, r in zip(s["psnr"][m], s["psnr"]["raw"], strict=True)])
                 for m in s["psnr"]}
        path = save_line_plot(gains, out / f"breaks_{key}_gain.png", xlabel=xlabel,
                              ylabel="PSNR gain over raw (dB)", logx=logx,
                              title=f"{cfg.breaks_kind}: PSNR gain over the raw image")
        result["figures"].append((path, "PSNR gain over the raw image; the flat line at 0 is "
                                        "the raw image itself: below it a method makes the "
                                        "image worse."))
        s["stops_helping"] = _stops_helping(s, key)
    return result


def _series(methods, gt_u, cfg: BenchConfig, psf, xs, key: str, seeds: dict) -> dict[str, Any]:
    """Quality of every method at each point of a series (photon counts or PSFs)."""
    out: dict[str, Any] = {"x": [float(v) for v in xs], "psnr": {}, "ssim": {}, "time_s": {}}
    for m in methods:
        for d in ("psnr", "ssim", "time_s"):
            out[d][m.label] = []
    for j, xv in enumerate(xs):
        if key == "photons":
            p, photons = psf, float(xv)
        else:
            p, photons = psf[j], cfg.photons
        raw, gt = _acquire(cfg, gt_u, p, photons, seeds["breaks"] + 1 + j)
        for m in methods:
            img, dt = _timed(m.apply, raw, p)
            dt = 0.0 if m.kind == "raw" else dt
            q = quality(img, gt)
            out["psnr"][m.label].append(q["psnr"])
            out["ssim"][m.label].append(q["ssim"])
            out["time_s"][m.label].append(dt)
    return out


#: a method "helps" at a point of a breaking-point series when it gains at least this much
#: PSNR (dB) over the raw image there
HELP_THRESHOLD_DB = 0.5


def _stops_helping(series: dict, key: str) -> dict[str, str]:
    """Per method: the points of the series where it gains less than
    :data:`HELP_THRESHOLD_DB` of PSNR over the raw image (or loses)."""
    x = series["x"]
    raw = series["psnr"]["raw"]
    unit = "ph/unit" if key == "photons" else "µm FWHM"
    text = {}
    for m, values in series["psnr"].items():
        if m == "raw":
            continue
        bad = [(xv, v - r) for xv, v, r in zip(x, values, raw, strict=True)
               if not v - r >= HELP_THRESHOLD_DB]
        text[m] = ("helps at every point" if not bad else
                   "gain < 0.5 dB at " + ", ".join(f"{b:.3g} {unit} ({g:+.2f} dB)" for b, g in bad))
    return text


# ----------------------------------------------------------------------------- real

def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _read_real(path: Path) -> tuple[np.ndarray, Any]:
    from lucyd.io import read_image

    arr, meta = read_image(path)
    return np.asarray(arr, dtype=np.float32), meta


def _real_suite(cfg: BenchConfig, out: Path, seeds: dict, stages: Stages,
                progress: bool) -> dict[str, Any]:
    root = real_data_dir()
    result: dict[str, Any] = {"rows": [], "figures": [], "skipped": [], "data": str(root),
                              "reference": [], "resolution": []}
    if not root.is_dir():
        msg = (f"real data not found at {root} (set LUCYD_REAL_DATA or place the data in "
               "../shared/data/real); real suite skipped")
        stages.say(f"[yellow]{msg}[/yellow]")
        result["skipped"].append(msg)
        return result
    with stages.stage("reference", "RL agreement with deconwolf 0.4.7 reference outputs"):
        _reference_agreement(cfg, root, result, progress)
    with stages.stage("resolution", "ground-truth-free resolution on dapi_001"):
        _dapi_resolution(cfg, root, out, result, seeds, stages, progress)
    with stages.stage("w2s", "W2S denoising pairs"):
        _w2s(cfg, root, out, result, seeds, stages, progress)
    return result


def _reference_agreement(cfg: BenchConfig, root: Path, result: dict, progress: bool) -> None:
    from lucyd.deconv import deconvolve

    dapi = root / "widefield_dapi"
    cases = [
        ("dapi_001, 20 it., Bertero boundary weights", dapi / "dapi_001.tif",
         dapi / "PSF_dapi.tif", dapi / "reference_rl20_bertero.tif",
         {"iterations": 20, "offset": 5.0}),
        ("dapi_001, 20 it., circulant (no border)", dapi / "dapi_001.tif",
         dapi / "PSF_dapi.tif", dapi / "reference_rl20_noborder.tif",
         {"iterations": 20, "boundary": "circulant"}),
        ("bead, 25 it., Bertero boundary weights", root / "widefield_bead" / "bead.tif",
         root / "widefield_bead" / "psf_bead_63_centered.tif",
         root / "widefield_bead" / "reference_rl25_bertero.tif",
         {"iterations": 25, "offset": 5.0}),
    ]
    for name, img_p, psf_p, ref_p, kwargs in cases:
        missing = [p for p in (img_p, psf_p, ref_p) if not p.exists()]
        if missing:
            result["skipped"].append(f"{name}: missing {', '.join(str(p) for p in missing)}")
            continue
        img, _ = _read_real(img_p)
        psf, _ = _read_real(psf_p)
        ref, _ = _read_real(ref_p)
        est, dt = _timed(lambda i=img, p=psf, k=kwargs: deconvolve(
            i, p, device=cfg.device, progress=progress, **k))
        err = _rel_l2(est, ref)
        corr = float(np.corrcoef(est.ravel(), ref.ravel())[0, 1])
        opts = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        result["reference"].append({"case": name, "relative L2": err, "correlation": corr,
                                    "time_s": dt, "call": f"deconvolve(image, psf, {opts})"})
        result["rows"].append({"suite": "real", "dataset": f"reference: {name}",
                               "method": "RL (lucyd)", "psnr": None, "ssim": None,
                               "nrmse": None, "time_s": dt, "parameters": opts,
                               "notes": f"relative L2 vs deconwolf {err:.1e}, "
                                        f"correlation {corr:.7f}"})


def _dapi_resolution(cfg: BenchConfig, root: Path, out: Path, result: dict, seeds: dict,
                     stages: Stages, progress: bool) -> None:
    from lucyd.deconv import deconvolve
    from lucyd.report import save_panel_figure

    dapi = root / "widefield_dapi"
    img_p, psf_p = dapi / "dapi_001.tif", dapi / "PSF_dapi.tif"
    if not (img_p.exists() and psf_p.exists()):
        result["skipped"].append(f"resolution: missing {img_p} or {psf_p}")
        return
    img, meta = _read_real(img_p)
    psf, _ = _read_real(psf_p)
    vox = tuple(meta.voxel_size) if meta.voxel_size else (0.3, 0.13, 0.13)
    its = cfg.real_rl_iterations
    images: dict[str, tuple[np.ndarray, float, str]] = {"raw": (img, 0.0, "camera counts")}
    rl, dt = _timed(lambda: deconvolve(img, psf, iterations=its, device=cfg.device,
                                       progress=progress))
    images["RL"] = (rl, dt, f"{its} it., flipped PSF")
    wb, dt = _timed(lambda: deconvolve(img, psf, iterations=cfg.wb_iterations,
                                       back_projector="wiener-butterworth", device=cfg.device,
                                       progress=progress))
    images["WB RL"] = (wb, dt, f"{cfg.wb_iterations} it., Wiener-Butterworth BP")
    model_dir = cfg.models.get("RLN-dapi")
    if model_dir is None and cfg.dapi_network:
        model_dir = _train_dapi_rln(cfg, psf_p, vox, out, seeds, stages, progress)
    if model_dir is not None:
        m = _network_method("RLN", Path(model_dir), cfg, progress)
        pred, dt = _timed(m.apply, img, psf)
        images["RLN"] = (pred, dt, m.params + " (synthetic data, PSF_dapi)")
    else:
        result["skipped"].append("RLN on dapi_001: no model given (--model RLN-dapi=DIR) and "
                                 "training disabled in this budget")
    for label, (arr, dt, params) in images.items():
        res = resolution_summary(arr, vox)
        result["resolution"].append({"image": label, "FRC (µm)": res["frc_um"],
                                     "FRC status": res["frc_status"],
                                     "decorrelation (µm)": res["decorr_um"],
                                     "decorrelation status": res["decorr_status"],
                                     "time_s": dt, "parameters": params})
        result["rows"].append({"suite": "real", "dataset": "dapi_001 (no ground truth)",
                               "method": label, "psnr": None, "ssim": None, "nrmse": None,
                               "time_s": dt, "parameters": params,
                               "notes": f"FRC {res['frc_um']:.3f} µm ({res['frc_status']}), "
                                        f"decorrelation {res['decorr_um']:.3f} µm "
                                        f"({res['decorr_status']})"})
    panels = {k: v[0] for k, v in images.items()}
    lo = min(float(np.percentile(a, 0.1)) for a in panels.values())
    hi = max(float(np.percentile(a, 99.9)) for a in panels.values())
    fig = save_panel_figure(panels, out / "real_dapi.png", voxel_size=vox, display_range=(lo, hi),
                            title="dapi_001 (real widefield, NA 1.45): raw and restorations",
                            intensity_label="camera counts (offset ~1758 not removed)",
                            caption="Range: lowest 0.1th to highest 99.9th percentile over all "
                                    "panels.")
    result["figures"].append((fig, "dapi_001: raw, RL, WB RL (and RLN), same display range."))


def _train_dapi_rln(cfg: BenchConfig, psf_path: Path, vox, out: Path, seeds: dict,
                    stages: Stages, progress: bool) -> Path | None:
    """RLN trained on synthetic mixed data blurred with PSF_dapi (data in a temporary folder)."""
    from lucyd.synth import SynthConfig, make_dataset
    from lucyd.train import TrainConfig, train

    model_dir = out / "models" / "rln-dapi"
    with tempfile.TemporaryDirectory(prefix="lucyd-bench-") as tmp:
        data_dir = Path(tmp) / "dapi_training_set"
        synth_cfg = SynthConfig(kind="mixed", task="deconvolution", n=cfg.train_n,
                                shape=cfg.train_shape, photons=cfg.photons,
                                read_noise=cfg.read_noise, background=cfg.background,
                                seed=seeds["dapi_set"], psf=str(psf_path), voxel_size=tuple(vox))
        stages.say(f"    RLN for dapi: {cfg.train_n} synthetic volumes through PSF_dapi, "
                   f"{cfg.train_steps} steps")
        make_dataset(synth_cfg, data_dir, progress=progress, overwrite=True, device=cfg.device)
        tcfg = TrainConfig(model="rln", ndim=3, patch=cfg.patch, batch=cfg.batch,
                           steps=cfg.train_steps, val_interval=cfg.val_interval,
                           net_kwargs=NET_DEFAULTS["rln"], seed=seeds["training"],
                           time_limit_s=_cap(cfg), device=cfg.device)
        train(tcfg, data_dir, model_dir, overwrite=True)
    return model_dir


def _w2s(cfg: BenchConfig, root: Path, out: Path, result: dict, seeds: dict, stages: Stages,
         progress: bool) -> None:
    from scipy import ndimage

    from lucyd.report import save_panel_figure

    folder = root / "w2s_denoise"
    pairs = []
    for inp in sorted(folder.glob("input_avg1_*.tif")) if folder.is_dir() else []:
        tgt = folder / inp.name.replace("input_avg1_", "target_avg400_")
        if tgt.exists():
            pairs.append((inp.stem.removeprefix("input_avg1_"), inp, tgt))
    if not pairs:
        result["skipped"].append(f"W2S: no input/target pairs in {folder}")
        return
    loaded = [(name, _read_real(i)[0], _read_real(t)[0]) for name, i, t in pairs]
    n_train = 3 if len(loaded) >= 4 else 0
    care = None
    if cfg.w2s_care_steps > 0 and n_train:
        care = _train_w2s_care(cfg, loaded[:n_train], out, seeds, stages)
    sigma = cfg.w2s_sigma
    figure_panels = None
    for idx, (name, raw, target) in enumerate(loaded):
        held_out = idx >= n_train
        methods = [("raw frame", raw, 0.0, "single frame"),
                   (f"Gaussian sigma {sigma:g}", *_timed(ndimage.gaussian_filter, raw, sigma),
                    f"sigma {sigma:g} px (fixed)")]
        if care is not None and held_out:
            pred, dt = _timed(lambda r=raw: care.predict(r, device=cfg.device, progress=False))
            n = int(care.info["network"].get("parameters", 0))
            done = care.info.get("training", {}).get("steps_done", cfg.w2s_care_steps)
            methods.append(("CARE (small, 2D)", pred, dt, f"{n:,} weights, {done} steps"))
        panels = {}
        for label, arr, dt, params in methods:
            q = quality(arr, target)
            role = ("CARE training field" if care is not None and not held_out
                    else "held out" if care is not None else "")
            result["rows"].append({"suite": "real",
                                   "dataset": f"W2S {name}" + (f" ({role})" if role else ""),
                                   "method": label, **q, "time_s": dt, "parameters": params,
                                   "notes": "affine fit to the 400-frame average"})
            panels[label] = arr
        if held_out and figure_panels is None:
            figure_panels = (name, panels, target)
    if figure_panels is not None:
        from lucyd.metrics import fit_affine

        name, panels, target = figure_panels
        # each image shown after its affine fit to the target (how it is evaluated; the
        # files were contrast-stretched independently, so raw values are not comparable)
        fitted = {}
        for label, arr in panels.items():
            a, b = fit_affine(arr, target)
            fitted[f"{label} (fitted)"] = (a * arr + b).astype(np.float32)
        fitted["400-frame average"] = target
        h, w = target.shape
        crop = (slice(h // 4, h // 4 + h // 2), slice(w // 4, w // 4 + w // 2))
        fitted = {k: v[crop] for k, v in fitted.items()}
        fig = save_panel_figure(fitted, out / "real_w2s.png", reference="400-frame average",
                                cmap="gray",
                                title=f"W2S {name}: denoising ({h // 2} x {w // 2} centre crop)",
                                intensity_label="target grey level",
                                caption="Each image affinely fitted to the target (as evaluated).")
        result["figures"].append((fig, f"W2S field {name} (held out), centre crop."))


def _train_w2s_care(cfg: BenchConfig, train_pairs, out: Path, seeds: dict, stages: Stages):
    from lucyd.io import write_image
    from lucyd.train import TrainConfig, load_model, train

    model_dir = out / "models" / "care-w2s"
    stages.say(f"    small 2D CARE on {len(train_pairs)} W2S fields, {cfg.w2s_care_steps} steps")
    with tempfile.TemporaryDirectory(prefix="lucyd-bench-") as tmp:
        data = Path(tmp) / "w2s_train"
        for name, raw, target in train_pairs:
            write_image(data / "raw" / f"{name}.tif", raw)
            write_image(data / "gt" / f"{name}.tif", target)
        tcfg = TrainConfig(model="care", ndim=2, net_kwargs={"first_filters": 16},
                           patch=(128, 128), batch=4, steps=cfg.w2s_care_steps,
                           val_interval=max(1, cfg.w2s_care_steps // 3), val_fraction=0.0,
                           seed=seeds["w2s"], time_limit_s=_cap(cfg), device=cfg.device)
        train(tcfg, data, model_dir, overwrite=True)
    return load_model(model_dir)


# ----------------------------------------------------------------------------- entry point

def run_bench(suite: str = "synthetic", out_dir: str | Path = "lucyd-bench", *,
              config: BenchConfig | None = None, quick: bool = False, progress: bool = True,
              command: str | None = None) -> dict[str, Any]:
    """Run the benchmark suite(s) and write ``bench.json``, ``bench.csv``, ``report.html``, PNGs.

    Parameters
    ----------
    suite : {"synthetic", "real", "all"}
        Which suite (ignored when ``config`` is given: its ``suite`` is used).
    out_dir : str or Path
        Output folder (created). Trained models go to ``out_dir/models``, synthetic working
        files to ``out_dir/work``.
    config : BenchConfig, optional
        All parameters; default ``BenchConfig.preset(suite, quick)``.
    quick : bool
        The quick preset (a few minutes on a 2-core CPU) when ``config`` is None.
    progress : bool
        Stage messages and progress bars.
    command : str, optional
        Command line recorded in the report.

    Returns
    -------
    dict
        ``rows`` (one per method x data set, keys :data:`CSV_COLUMNS`), ``breaks`` (the
        photon and blur series), ``real`` (reference agreement, resolution, skipped parts),
        ``timings``, and the paths ``json``, ``csv``, ``report``.
    """
    cfg = config if config is not None else BenchConfig.preset(suite, quick)
    if not isinstance(cfg, BenchConfig):
        raise InputError(f"config: expected a BenchConfig, got {type(cfg).__name__}")
    out = check_out_dir(out_dir)
    for label, path in cfg.models.items():
        if not Path(path).is_dir():
            raise InputError(f"models: {label}={path}: no such model folder")
    t0 = time.perf_counter()
    seeds = child_seeds(cfg.seed, ["samples", "noise", "breaks", "training_set", "training",
                                   "dapi_set", "w2s"])
    do_syn = cfg.suite in ("synthetic", "all")
    do_real = cfg.suite in ("real", "all")
    stages = Stages(6 * do_syn + 3 * do_real, verbose=progress)
    stages.say(f"lucyd bench --suite {cfg.suite} -> {out} (budget: {cfg.budget}, seed {cfg.seed}, "
               f"{os.cpu_count()} CPU cores)")
    bars = progress and os.environ.get("LUCYD_NO_PROGRESS", "") in ("", "0")
    syn = _synthetic_suite(cfg, out, seeds, stages, bars) if do_syn else None
    real = _real_suite(cfg, out, seeds, stages, bars) if do_real else None
    rows = (syn["rows"] if syn else []) + (real["rows"] if real else [])
    timings = dict(stages.times)
    timings["total"] = time.perf_counter() - t0
    payload = {
        "kind": "lucyd-bench",
        "suite": cfg.suite,
        "rows": rows,
        "breaks": syn["breaks"] if syn else None,
        "methods": syn["methods"] if syn else None,
        "real": ({k: v for k, v in real.items() if k not in ("rows", "figures")}
                 if real else None),
        "timings_s": timings,
        "config": cfg.model_dump(mode="json"),
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
    }
    json_path = write_json(out / "bench.json", payload)
    csv_path = _write_csv(out / "bench.csv", rows)
    report = _write_report(out, cfg, syn, real, rows, timings, command)
    return {"rows": rows, "breaks": payload["breaks"], "real": payload["real"],
            "timings": timings, "json": json_path, "csv": csv_path, "report": report,
            "out_dir": out}


def _write_csv(path: Path, rows: list[dict]) -> Path:
    from lucyd.io.atomic import atomic_path

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float)
                                                        and not math.isfinite(r[k]))
                             else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r[k]))
                         for k in CSV_COLUMNS})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def table_rows(rows: list[dict], suite: str | None = None) -> list[dict]:
    """Rows for display (terminal / HTML): dataset, method, PSNR, SSIM, NRMSE, time, params."""
    out = []
    for r in rows:
        if suite is not None and r["suite"] != suite:
            continue
        out.append({"dataset": r["dataset"], "method": r["method"], "psnr": r.get("psnr"),
                    "ssim": r.get("ssim"), "nrmse": r.get("nrmse"), "time_s": r.get("time_s"),
                    "parameters": r.get("parameters", "")})
        if any(x.get("notes") for x in rows if suite is None or x["suite"] == suite):
            out[-1]["notes"] = r.get("notes", "")
    return out


def _write_report(out: Path, cfg: BenchConfig, syn, real, rows, timings, command) -> Path:
    import lucyd
    from lucyd.report import ReportSection, write_html_report

    sections = []
    if syn is not None:
        figs = syn["figures"]
        sample_figs = [f for f in figs if Path(f[0]).name.startswith("synthetic_")]
        break_figs = [f for f in figs if Path(f[0]).name.startswith("breaks_")]
        sections.append(ReportSection(
            "Synthetic: methods x data sets",
            text=(f"Held-out synthetic volumes ({', '.join(cfg.kinds)}; {cfg.shape}) through a "
                  f"{model_name(cfg.psf_model)} PSF (NA {cfg.na:g}, "
                  f"{cfg.wavelength * 1000:.0f} nm), "
                  f"{cfg.photons:g} photo-electrons per phantom unit, {cfg.read_noise:g} e- read "
                  "noise. Networks were trained once on synthetic 'mixed' volumes "
                  f"({cfg.train_n} x {cfg.train_shape}), {cfg.train_steps} steps, batch "
                  f"{cfg.batch} x {cfg.patch} - a small, equal budget for every network "
                  "(the published recipes use 10,000+ steps). Metrics: lucyd.metrics.evaluate "
                  "(percentile-normalised ground truth, affine fit). time_s is the restoration "
                  "time of one volume on this machine."),
            table=table_rows(rows, "synthetic"),
            images=sample_figs,
        ))
        ph, bl = syn["breaks"]["photons"], syn["breaks"]["blur"]
        stop_rows = [{"method": m, "photon series": ph["stops_helping"].get(m, ""),
                      "blur series": bl["stops_helping"].get(m, "")}
                     for m in ph["stops_helping"]]
        sections.append(ReportSection(
            "Push it until it breaks",
            text=(f"Following Chen et al. (Nature Methods 2021, 3D-RCAN): one '{cfg.breaks_kind}' "
                  f"volume ({cfg.breaks_shape}) acquired at photon counts "
                  f"{', '.join(f'{p:g}' for p in cfg.photon_series)} per phantom unit (NA "
                  f"{cfg.na:g}) and through PSFs of NA "
                  f"{', '.join(f'{a:g}' for a in cfg.na_series)} "
                  f"({cfg.photons:g} photons/unit). The classical methods get the true PSF at "
                  "every point; the networks stay as trained (nominal photons and NA), as a user "
                  "would apply them. A method stops helping where its PSNR gain over the raw "
                  f"image falls below {HELP_THRESHOLD_DB:g} dB (the table lists those points; "
                  "negative: it makes the image worse)."),
            table=stop_rows,
            images=break_figs,
            params={"photon_series": list(cfg.photon_series), "na_series": list(cfg.na_series),
                    "lateral_fwhm_um": bl["x"]},
        ))
    if real is not None:
        text = f"Data: {real['data']}."
        if real["skipped"]:
            text += "\n\nSkipped: " + "; ".join(real["skipped"])
        sections.append(ReportSection(
            "Real data: reference agreement of classic RL",
            text=text + ("\n\nlucyd's RL against deconwolf 0.4.7's outputs (same iterations, "
                         "boundary handling, start and clamp): relative L2 error "
                         "||lucyd - reference|| / ||reference||."),
            table=real["reference"] or None,
        ))
        sections.append(ReportSection(
            "Real data: resolution without ground truth (dapi_001)",
            text=("One-image FRC (1/7 threshold) and decorrelation analysis, lateral, in µm "
                  "(voxel 0.3 x 0.13 x 0.13 µm). 'nyquist' marks an upper bound limited by "
                  "sampling. Lower is sharper, but noise amplification can also look 'sharp': "
                  "read it with the picture."),
            table=real["resolution"] or None,
            images=[f for f in real["figures"] if "dapi" in Path(f[0]).name],
        ))
        sections.append(ReportSection(
            "Real data: W2S denoising",
            text=("Single widefield frames against the average of 400 frames (Widefield2SIM). "
                  "Each image was contrast-stretched independently, so every result is fitted "
                  "affinely to the target before PSNR / SSIM / NRMSE. The Gaussian filter's "
                  f"sigma ({cfg.w2s_sigma:g} px) is fixed, not tuned on the targets; the small "
                  "CARE (when trained) learns from three fields and is scored on the other two."),
            table=table_rows([r for r in rows if r["dataset"].startswith("W2S")]) or None,
            images=[f for f in real["figures"] if "w2s" in Path(f[0]).name],
        ))
    sections.append(ReportSection(
        "Timings and parameters",
        table=[{"stage": k, "time_s": v} for k, v in timings.items()],
        params=cfg.model_dump(mode="json"),
    ))
    metadata = {
        "command": command or f"lucyd bench --suite {cfg.suite}",
        "budget": cfg.budget,
        "seed": cfg.seed,
        "device": cfg.device,
        "lucyd": lucyd.__version__,
        "CPU cores": os.cpu_count(),
        "load average at the end": (", ".join(f"{v:.1f}" for v in os.getloadavg())
                                    if hasattr(os, "getloadavg") else "n/a"),
        "wall time": f"{timings.get('total', math.nan):.0f} s",
    }
    return write_html_report(out / "report.html", title=f"lucyd bench: {cfg.suite} suite",
                             sections=sections, metadata=metadata)
