"""Outputs of ``lucyd bench``: ``bench.csv``, the display tables and ``report.html``."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import lucyd
from lucyd.io.atomic import atomic_path
from lucyd.pipelines.bench.config import CSV_COLUMNS, BenchConfig
from lucyd.pipelines.bench.synthetic import HELP_THRESHOLD_DB
from lucyd.pipelines.presets import psf_model_name
from lucyd.report import ReportSection, write_html_report

__all__ = ["table_rows", "write_csv", "write_report"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    """``bench.csv``: one line per row, columns :data:`CSV_COLUMNS` (atomic)."""
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


def write_report(out: Path, cfg: BenchConfig, syn, real, rows, timings, command) -> Path:
    """``report.html`` of a benchmark run (every figure embedded)."""
    sections = []
    if syn is not None:
        figs = syn["figures"]
        sample_figs = [f for f in figs if Path(f[0]).name.startswith("synthetic_")]
        break_figs = [f for f in figs if Path(f[0]).name.startswith("breaks_")]
        sections.append(ReportSection(
            "Synthetic: methods x data sets",
            text=(f"Held-out synthetic volumes ({', '.join(cfg.kinds)}; {cfg.shape}) through a "
                  f"{psf_model_name(cfg.psf_model)} PSF (NA {cfg.na:g}, "
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
