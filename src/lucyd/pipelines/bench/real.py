"""The real-data suite of ``lucyd bench``: reference agreement of RL with deconwolf, resolution
without ground truth on a real widefield stack, and W2S denoising pairs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.io import read_image, write_image
from lucyd.methods import Restorer, build_method
from lucyd.metrics import fit_affine
from lucyd.pipelines.bench.config import BenchConfig
from lucyd.pipelines.bench.synthetic import train_cap_s
from lucyd.pipelines.common import (
    REAL_DATA_ENV,
    Stages,
    quality,
    real_data_dir,
    resolution_summary,
    timed,
)
from lucyd.pipelines.presets import NET_DEFAULTS
from lucyd.report import save_panel_figure
from lucyd.synth import SynthConfig, make_dataset
from lucyd.train import TrainConfig, train

__all__ = ["real_suite"]


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _read_real(path: Path) -> tuple[np.ndarray, Any]:
    arr, meta = read_image(path)
    return np.asarray(arr, dtype=np.float32), meta


def real_suite(cfg: BenchConfig, out: Path, seeds: dict, stages: Stages,
               progress: bool) -> dict[str, Any]:
    """Run the real suite (skipped with a message when the data folder is absent)."""
    root = real_data_dir(cfg.real_data)
    result: dict[str, Any] = {"rows": [], "figures": [], "skipped": [], "data": str(root),
                              "reference": [], "resolution": []}
    if not root.is_dir():
        msg = (f"real data not found at {root} (give BenchConfig.real_data, set "
               f"{REAL_DATA_ENV}, or run from a folder whose ../shared/data/real holds the "
               "data); real suite skipped")
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
        rl = build_method("rl", device=cfg.device, **kwargs)
        est, dt = timed(rl.restore, img, psf=psf, progress=progress)
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
    for restorer in (build_method("rl", iterations=its, device=cfg.device),
                     build_method("wb-rl", iterations=cfg.wb_iterations, device=cfg.device)):
        est, dt = timed(restorer.restore, img, psf=psf, progress=progress)
        images[restorer.label] = (est, dt, restorer.describe())
    model_dir = cfg.models.get("RLN-dapi")
    if model_dir is None and cfg.dapi_network:
        model_dir = _train_dapi_rln(cfg, psf_p, vox, out, seeds, stages, progress)
    if model_dir is not None:
        rln = build_method("network", model=str(model_dir), device=cfg.device)
        pred, dt = timed(rln.restore, img, progress=progress)
        images["RLN"] = (pred, dt, rln.describe() + " (synthetic data, PSF_dapi)")
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
                           time_limit_s=train_cap_s(cfg), device=cfg.device)
        train(tcfg, data_dir, model_dir, overwrite=True)
    return model_dir


def _w2s(cfg: BenchConfig, root: Path, out: Path, result: dict, seeds: dict, stages: Stages,
         progress: bool) -> None:
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
    gaussian = build_method("gaussian", sigma=sigma)
    figure_panels = None
    for idx, (name, raw, target) in enumerate(loaded):
        held_out = idx >= n_train
        methods = [("raw frame", raw, 0.0, "single frame"),
                   (f"Gaussian sigma {sigma:g}", *timed(gaussian.restore, raw),
                    gaussian.describe())]
        if care is not None and held_out:
            pred, dt = timed(care.restore, raw)
            methods.append(("CARE (small, 2D)", pred, dt, care.describe()))
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


def _train_w2s_care(cfg: BenchConfig, train_pairs, out: Path, seeds: dict,
                    stages: Stages) -> Restorer:
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
                           seed=seeds["w2s"], time_limit_s=train_cap_s(cfg), device=cfg.device)
        train(tcfg, data, model_dir, overwrite=True)
    return build_method("network", model=str(model_dir), device=cfg.device)

