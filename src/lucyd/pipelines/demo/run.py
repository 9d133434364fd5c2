"""The stages of ``lucyd demo``, declared once and run by :class:`~lucyd.pipelines.common.StageRunner`."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, read_image, write_image
from lucyd.methods import build_method
from lucyd.pipelines.common import (
    StageRunner,
    Stages,
    StageState,
    check_out_dir,
    child_seeds,
    config_digest,
    quality,
    resolution_summary,
    write_json,
)
from lucyd.pipelines.demo.config import DemoConfig
from lucyd.pipelines.demo.report import (
    METHOD_ORDER,
    method_labels,
    method_params,
    table_row,
    write_figures,
    write_report,
)
from lucyd.pipelines.presets import NET_DEFAULTS, SAMPLE_DEFAULTS, psf_model_name
from lucyd.psf import fwhm, make_psf
from lucyd.synth import SynthConfig, degrade, make_dataset, phantom
from lucyd.train import TrainConfig, load_model, train

__all__ = ["run_demo"]


def _meta(voxel_size) -> ImageMetadata:
    return ImageMetadata("ZYX", tuple(float(v) for v in voxel_size))


def _read(path: Path) -> np.ndarray:
    arr, _ = read_image(path)
    return np.asarray(arr, dtype=np.float32)


def _output_paths(out: Path, net_name: str) -> dict[str, Path]:
    return {
        "psf": out / "psf.tif",
        "raw": out / "sample_raw.tif",
        "gt": out / "sample_gt.tif",
        "RL": out / "restored_rl.tif",
        "WB": out / "restored_wb.tif",
        "RLN": out / f"restored_{net_name}.tif",
        "data": out / "training_set",
        "model": out / "model",
    }


def _restorer_specs(cfg: DemoConfig, paths: dict[str, Path]) -> list[tuple[str, str, str, dict]]:
    """(key, stage message, registry method, parameters) of the demo's restorations."""
    return [
        ("RL", f"classic Richardson-Lucy, {cfg.rl_iterations} iterations (flipped back projector)",
         "rl", {"iterations": cfg.rl_iterations, "device": cfg.device}),
        ("WB", f"Wiener-Butterworth RL, {cfg.wb_iterations} iterations",
         "wb-rl", {"iterations": cfg.wb_iterations, "device": cfg.device}),
        ("RLN", f"restoring the sample with the trained {cfg.network.upper()}",
         "network", {"model": str(paths["model"]), "tile_shape": cfg.tile_shape,
                     "device": cfg.device}),
    ]


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
    cfg = config if config is not None else DemoConfig.preset()
    if not isinstance(cfg, DemoConfig):
        raise InputError(f"config: expected a DemoConfig, got {type(cfg).__name__}")
    out = check_out_dir(out_dir)
    t_start = time.perf_counter()
    state = StageState(out, config_digest(cfg.model_dump(mode="json")))
    cfg.save(out / "demo.json")
    seeds = child_seeds(cfg.seed, ["sample", "noise", "training_set", "training"])
    stages = Stages(9, verbose=progress)
    runner = StageRunner(stages, state)
    vox = tuple(float(v) for v in cfg.voxel_size)
    net_name = cfg.network.lower()
    paths = _output_paths(out, net_name)
    if state.resumed:
        stages.say(f"[dim]resuming in {out} (same configuration; finished stages are reused)[/dim]")
    stages.say(f"lucyd demo -> {out}  (budget: {cfg.budget}, seed {cfg.seed})")

    def make_psf_file():
        psf = make_psf(cfg.psf_model, cfg.psf_shape, vox, na=cfg.na, wavelength=cfg.wavelength,
                       ni=cfg.ni).astype(np.float32)
        psf /= psf.sum()
        write_image(paths["psf"], psf, _meta(vox))
        return psf

    def make_sample():
        params = SAMPLE_DEFAULTS[cfg.sample_kind] if cfg.sample_params is None else cfg.sample_params
        gt_units = phantom(cfg.sample_kind, cfg.sample_shape, seed=seeds["sample"],
                           background=cfg.background, **params)
        raw, _ = degrade(gt_units, "deconvolution", psf=psf, photons=cfg.photons,
                         read_noise=cfg.read_noise, seed=seeds["noise"], device=cfg.device)
        gt = (gt_units * np.float32(cfg.photons)).astype(np.float32)
        write_image(paths["gt"], gt, _meta(vox))
        write_image(paths["raw"], raw, _meta(vox))
        return raw, gt

    # 1.-3. data: the PSF, the held-out sample and the training set
    psf = runner.run("psf", f"{psf_model_name(cfg.psf_model)} PSF {cfg.psf_shape}, NA {cfg.na:g}, "
                            f"{cfg.wavelength * 1000:.0f} nm, ni {cfg.ni:g}",
                     compute=make_psf_file, load=lambda rec: _read(paths["psf"]),
                     files=(paths["psf"],), record=lambda p: {"fwhm_um": list(fwhm(p, vox))})
    psf_fwhm = tuple(float(v) for v in fwhm(psf, vox))
    raw, gt = runner.run("sample", f"synthetic '{cfg.sample_kind}' sample {cfg.sample_shape}, "
                                   f"{cfg.photons:g} photons/unit, read noise {cfg.read_noise:g} e-",
                         compute=make_sample, files=(paths["raw"], paths["gt"]),
                         load=lambda rec: (_read(paths["raw"]), _read(paths["gt"])),
                         record=lambda value: {})
    synth_cfg = SynthConfig(kind="mixed", task="deconvolution", n=cfg.train_n,
                            shape=cfg.train_shape, photons=cfg.photons, read_noise=cfg.read_noise,
                            background=cfg.background, seed=seeds["training_set"],
                            psf=str(paths["psf"]), voxel_size=vox)
    runner.run("training_set", f"training set: {cfg.train_n} 'mixed' volumes {cfg.train_shape} "
                               "through the same PSF",
               compute=lambda: make_dataset(synth_cfg, paths["data"], progress=progress,
                                            overwrite=not state.resumed, device=cfg.device),
               files=(paths["data"] / "dataset.json",))

    # 4.-7. the restorations (registry methods) and, before the network's, its training
    train_cfg = TrainConfig(model=net_name, ndim=3, patch=cfg.patch, batch=cfg.batch,
                            steps=cfg.train_steps, val_interval=cfg.val_interval, lr=cfg.lr,
                            net_kwargs=(NET_DEFAULTS.get(net_name, {}) if cfg.net_kwargs is None
                                        else cfg.net_kwargs),
                            time_limit_s=(None if cfg.train_minutes is None
                                          else 60.0 * cfg.train_minutes),
                            seed=seeds["training"], device=cfg.device, threads=cfg.threads)
    restored: dict[str, np.ndarray] = {"raw": raw}
    method_time: dict[str, float] = {"raw": 0.0}
    for key, text, name, params in _restorer_specs(cfg, paths):
        if name == "network":
            runner.run("train", f"training {cfg.network.upper()} for {cfg.train_steps} steps "
                                f"(batch {cfg.batch} x {cfg.patch})",
                       compute=lambda: _timed_train(train_cfg, paths, resume=state.resumed,
                                                    quiet=not progress),
                       files=(paths["model"] / "model.json", paths["model"] / "best.pt"),
                       record=lambda seconds: {"time_s": seconds})

        def restore(name=name, params=params, key=key):
            t0 = time.perf_counter()
            image = build_method(name, **params).restore(raw, psf=psf, progress=progress)
            seconds = time.perf_counter() - t0
            write_image(paths[key], image, _meta(vox))
            return image, seconds

        restored[key], method_time[key] = runner.run(
            key, text, compute=restore, files=(paths[key],),
            load=lambda rec, key=key: (_read(paths[key]), float(rec.get("time_s", math.nan))),
            record=lambda value: {"time_s": value[1]})
    train_time = float(state.get("train").get("time_s", math.nan))
    info = load_model(paths["model"]).info
    n_params = int(info["network"].get("parameters", 0)) or None
    steps_done = int(info.get("training", {}).get("steps_done") or cfg.train_steps)
    train_status = str(info.get("training", {}).get("status", ""))

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
        labels = method_labels(cfg)
        params = method_params(cfg, n_params, steps_done)
        rows = [table_row(labels[k], metrics[k], params[k]) for k in METHOD_ORDER]
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
        figure = write_figures(out, cfg, panels, psf)
        report = write_report(out, cfg, rows, metrics, gt_res, psf_fwhm, figure, panels, paths,
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


def _timed_train(train_cfg: TrainConfig, paths: dict[str, Path], *, resume: bool,
                 quiet: bool) -> float:
    """Train (resuming an interrupted run of the same configuration when possible); seconds."""
    t0 = time.perf_counter()
    env_key = "LUCYD_NO_PROGRESS"
    old = os.environ.get(env_key)
    if quiet:
        os.environ[env_key] = "1"
    try:
        if resume and (paths["model"] / "last.pt").is_file():
            try:
                train(train_cfg, paths["data"], paths["model"], resume=True)
                return time.perf_counter() - t0
            except (InputError, FileFormatError):
                pass  # a checkpoint of another configuration: start again
        train(train_cfg, paths["data"], paths["model"], overwrite=True)
        return time.perf_counter() - t0
    finally:
        if quiet:
            if old is None:
                os.environ.pop(env_key, None)
            else:
                os.environ[env_key] = old
