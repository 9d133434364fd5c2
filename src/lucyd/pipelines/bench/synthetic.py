"""The synthetic suite of ``lucyd bench``: methods x held-out samples, and the breaking points.

Also the pieces the scripts in ``benchmarks/`` share with it: :func:`widefield_psf`,
:func:`held_out_sample`, :func:`acquire` and :func:`restorers` (the registry's methods with a
benchmark's parameters).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.io import ImageMetadata, write_image
from lucyd.methods import Restorer, build_method
from lucyd.pipelines.bench.config import BenchConfig
from lucyd.pipelines.common import Stages, quality, timed
from lucyd.pipelines.presets import NET_DEFAULTS, SAMPLE_DEFAULTS, psf_model_name
from lucyd.psf import fwhm, make_psf
from lucyd.report import save_line_plot, save_panel_figure
from lucyd.synth import SynthConfig, degrade, make_dataset, phantom
from lucyd.train import TrainConfig, train

__all__ = ["HELP_THRESHOLD_DB", "acquire", "held_out_sample", "restorers", "stops_helping",
           "synthetic_suite", "train_cap_s", "widefield_psf"]

#: a method "helps" at a point of a breaking-point series when it gains at least this much
#: PSNR (dB) over the raw image there
HELP_THRESHOLD_DB = 0.5


def widefield_psf(model: str, shape, voxel_size, *, na: float, wavelength: float,
                  ni: float) -> np.ndarray:
    """A widefield PSF (:func:`lucyd.psf.make_psf`), float32, normalised to sum 1."""
    psf = make_psf(model, shape, voxel_size, na=na, wavelength=wavelength,
                   ni=ni).astype(np.float32)
    return psf / psf.sum()


def held_out_sample(kind: str, shape, seed: int, background: float) -> np.ndarray:
    """A phantom of ``kind`` with the pipelines' sample parameters (:data:`SAMPLE_DEFAULTS`)."""
    return phantom(kind, shape, seed=seed, background=background, **SAMPLE_DEFAULTS[kind])


def acquire(gt: np.ndarray, psf: np.ndarray, *, photons: float, read_noise: float, seed: int,
            device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """``(raw, ground truth)``: raw in photo-electrons through the RLN recipe's forward model
    (:func:`lucyd.synth.degrade`), ground truth the expected photo-electrons without blur."""
    raw, _ = degrade(gt, "deconvolution", psf=psf, photons=photons, read_noise=read_noise,
                     seed=seed, device=device)
    return raw, (gt * np.float32(photons)).astype(np.float32)


def restorers(cfg: BenchConfig, model_dirs: dict[str, Path] | None = None) -> list[Restorer]:
    """The registry methods of ``cfg.methods`` then one ``network`` restorer per model folder
    (labelled with its key, e.g. ``"RLN"``), with the benchmark's parameters."""
    out = [build_method(name, **cfg.method_params(name)) for name in cfg.methods]
    for label, folder in (model_dirs or {}).items():
        r = build_method("network", model=str(folder), device=cfg.device)
        r.label = label
        out.append(r)
    return out


def _restore(r: Restorer, raw, psf, progress: bool) -> tuple[np.ndarray, float]:
    """(restored, seconds); the raw image's own time is 0 (nothing was computed)."""
    img, dt = timed(r.restore, raw, psf=psf, progress=progress)
    return img, (0.0 if r.method.task == "identity" else dt)


def _psf(cfg: BenchConfig, na: float) -> np.ndarray:
    return widefield_psf(cfg.psf_model, cfg.psf_shape, cfg.voxel_size, na=na,
                         wavelength=cfg.wavelength, ni=cfg.ni)


def _acquire(cfg: BenchConfig, gt_u, psf, photons: float, seed: int):
    return acquire(gt_u, psf, photons=photons, read_noise=cfg.read_noise, seed=seed,
                   device=cfg.device)


def train_cap_s(cfg: BenchConfig) -> float | None:
    """The per-network wall-clock cap in seconds (None: steps only)."""
    return None if cfg.train_minutes is None else 60.0 * cfg.train_minutes


def _train_networks(cfg: BenchConfig, out: Path, psf_path: Path, seeds: dict, stages: Stages,
                    progress: bool) -> dict[str, Path]:
    """Train ``cfg.networks`` once on one synthetic mixed set; return {label: model folder}."""
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
                           time_limit_s=train_cap_s(cfg), device=cfg.device)
        stages.say(f"    training {name.upper()}: {cfg.train_steps} steps, batch {cfg.batch} x "
                   f"{cfg.patch}")
        t0 = time.perf_counter()
        train(tcfg, data_dir, model_dir, overwrite=True)
        stages.say(f"    {name.upper()} trained in {time.perf_counter() - t0:.0f} s")
        models[name.upper()] = model_dir
    return models


def synthetic_suite(cfg: BenchConfig, out: Path, seeds: dict, stages: Stages,
                    progress: bool) -> dict[str, Any]:
    """Run the synthetic suite; returns ``rows``, ``breaks``, ``figures``, ``methods``."""
    result: dict[str, Any] = {"rows": [], "breaks": {}, "figures": []}
    vox = cfg.voxel_size
    with stages.stage("psf", f"nominal PSF: {psf_model_name(cfg.psf_model)}, NA {cfg.na:g}"):
        psf = _psf(cfg, cfg.na)
        psf_path = out / "work" / "psf.tif"
        write_image(psf_path, psf, ImageMetadata("ZYX", tuple(vox)))

    with stages.stage("train", f"networks trained once: {', '.join(cfg.networks) or 'none'}"):
        model_dirs = _train_networks(cfg, out, psf_path, seeds, stages, progress)
        model_dirs.update({label: Path(p) for label, p in cfg.models.items()
                           if not label.lower().endswith("-dapi")})
    methods = restorers(cfg, model_dirs)
    result["methods"] = [m.label for m in methods]
    params = {m.label: m.describe() for m in methods}

    with stages.stage("table", f"methods x data sets: {', '.join(cfg.kinds)}"):
        for i, kind in enumerate(cfg.kinds):
            gt_u = held_out_sample(kind, cfg.shape, seeds["samples"] + i, cfg.background)
            raw, gt = _acquire(cfg, gt_u, psf, cfg.photons, seeds["noise"] + i)
            panels = {}
            for m in methods:
                out_img, dt = _restore(m, raw, psf, progress)
                dataset = f"{kind}, NA {cfg.na:g}, {cfg.photons:g} ph/unit"
                result["rows"].append({"suite": "synthetic", "dataset": dataset,
                                       "method": m.label, **quality(out_img, gt), "time_s": dt,
                                       "parameters": params[m.label], "notes": ""})
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

    gt_u = held_out_sample(cfg.breaks_kind, cfg.breaks_shape, seeds["breaks"], cfg.background)
    with stages.stage("photons", f"photon series {list(cfg.photon_series)} "
                                 f"({cfg.breaks_kind})"):
        series = _series(methods, gt_u, cfg, psf, cfg.photon_series, "photons", seeds, progress)
        result["breaks"]["photons"] = series
    with stages.stage("blur", f"blur series: NA {list(cfg.na_series)} ({cfg.breaks_kind})"):
        blur_psfs = [_psf(cfg, na) for na in cfg.na_series]
        widths = [float(fwhm(p, vox)[-1]) for p in blur_psfs]
        series = _series(methods, gt_u, cfg, blur_psfs, widths, "blur", seeds, progress)
        series["na"] = list(cfg.na_series)
        result["breaks"]["blur"] = series
    result["figures"] += _break_plots(cfg, result["breaks"], out)
    return result


def _series(methods: list[Restorer], gt_u, cfg: BenchConfig, psf, xs, key: str, seeds: dict,
            progress: bool) -> dict[str, Any]:
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
            img, dt = _restore(m, raw, p, progress)
            q = quality(img, gt)
            out["psnr"][m.label].append(q["psnr"])
            out["ssim"][m.label].append(q["ssim"])
            out["time_s"][m.label].append(dt)
    return out


def _break_plots(cfg: BenchConfig, breaks: dict, out: Path) -> list[tuple[Path, str]]:
    """PSNR, SSIM and PSNR-gain plots of both series; sets each series' ``stops_helping``."""
    figures = []
    for key, xlabel, logx in (
        ("photons", "photo-electrons per phantom unit (networks trained at "
                    f"{cfg.photons:g})", True),
        ("blur", f"lateral FWHM of the PSF (µm; networks trained at NA {cfg.na:g})", False),
    ):
        s = breaks[key]
        x = s["x"]
        what = "photon count" if key == "photons" else "blur width"
        for metric, ylabel in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
            path = save_line_plot({m: (x, s[metric][m]) for m in s[metric]},
                                  out / f"breaks_{key}_{metric}.png", xlabel=xlabel,
                                  ylabel=ylabel, logx=logx,
                                  title=f"{cfg.breaks_kind}: {ylabel.split()[0]} vs {what}")
            figures.append((path, f"{ylabel.split()[0]} of every method against the "
                                  f"{'photon count' if key == 'photons' else 'blur'}."))
        gains = {m: (x, [v - r for v, r in zip(s["psnr"][m], s["psnr"]["raw"], strict=True)])
                 for m in s["psnr"]}
        path = save_line_plot(gains, out / f"breaks_{key}_gain.png", xlabel=xlabel,
                              ylabel="PSNR gain over raw (dB)", logx=logx,
                              title=f"{cfg.breaks_kind}: PSNR gain over the raw image")
        figures.append((path, "PSNR gain over the raw image; the flat line at 0 is the raw "
                              "image itself: below it a method makes the image worse."))
        s["stops_helping"] = stops_helping(s, key)
    return figures


def stops_helping(series: dict, key: str) -> dict[str, str]:
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

