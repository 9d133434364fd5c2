"""Outputs of ``lucyd demo``: the figures, the metrics table and ``report.html``."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import lucyd
from lucyd.metrics import fit_affine
from lucyd.pipelines.common import fmt_um
from lucyd.pipelines.demo.config import DemoConfig
from lucyd.pipelines.presets import psf_model_name
from lucyd.report import ReportSection, save_panel_figure, write_html_report

__all__ = ["METHOD_ORDER", "display_range", "fitted_panels", "method_labels", "method_params",
           "table_row", "write_figures", "write_report"]

#: methods in the order of the figure and the table
METHOD_ORDER = ("raw", "RL", "WB", "RLN")


def method_labels(cfg: DemoConfig) -> dict[str, str]:
    """Display names of the demo's methods (keys of :data:`METHOD_ORDER`)."""
    return {
        "raw": "raw (widefield)",
        "RL": f"RL, {cfg.rl_iterations} it.",
        "WB": f"WB RL, {cfg.wb_iterations} it.",
        "RLN": cfg.network.upper(),
    }


def method_params(cfg: DemoConfig, n_params: int | None, steps: int) -> dict[str, str]:
    """The parameters column of the demo's table."""
    return {
        "raw": "camera counts",
        "RL": f"{cfg.rl_iterations} iterations, flipped PSF, non-circulant",
        "WB": f"{cfg.wb_iterations} iterations, Wiener-Butterworth back projector",
        "RLN": (f"{n_params:,} weights, {steps} steps" if n_params else f"{steps} steps"),
    }


def table_row(label: str, m: dict, params: str) -> dict[str, Any]:
    """One row of the demo's metrics table."""
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


def write_figures(out: Path, cfg: DemoConfig, panels: dict[str, np.ndarray],
                  psf: np.ndarray) -> Path:
    """``figure.png`` (returned), ``figure_fitted.png`` and ``psf.png``."""
    title = (f"Synthetic {cfg.sample_kind} (a kind not in the training set) - widefield "
             f"{psf_model_name(cfg.psf_model)} NA {cfg.na:g}, {cfg.wavelength * 1000:.0f} nm, "
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


def write_report(out: Path, cfg: DemoConfig, rows, metrics, gt_res, psf_fwhm, figure: Path,
                 panels: dict[str, np.ndarray], paths: dict[str, Path], synth_cfg, train_cfg,
                 timings, n_params, steps_done: int, command: str | None) -> Path:
    """``report.html`` of a demo run."""
    labels = method_labels(cfg)
    best = max(METHOD_ORDER[1:], key=lambda k: metrics[k]["psnr"])
    gain = {k: metrics[k]["psnr"] - metrics["raw"]["psnr"] for k in METHOD_ORDER[1:]}
    summary = (
        f"A synthetic '{cfg.sample_kind}' volume ({cfg.sample_shape[0]} x {cfg.sample_shape[1]} x "
        f"{cfg.sample_shape[2]} voxels of {cfg.voxel_size[0]:g} x {cfg.voxel_size[1]:g} x "
        f"{cfg.voxel_size[2]:g} µm) was imaged through a {psf_model_name(cfg.psf_model)} "
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
            text=(f"{psf_model_name(cfg.psf_model)} model, array {cfg.psf_shape}, sum 1. "
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
        stop_reason = json.loads((paths["model"] / "model.json").read_text())["training"].get("stop_reason")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        stop_reason = ""
    if stop_reason == "time-limit":
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
