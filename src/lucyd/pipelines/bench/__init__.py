"""``lucyd bench``: methods x data sets, and where each method breaks.

Synthetic suite
    Held-out synthetic volumes of several kinds (``tubules``, ``granules``, ``nuclei``) imaged
    through a Born–Wolf widefield PSF with the RLN recipe's noise; methods: the restorer
    registry's methods of ``BenchConfig.methods`` (default the raw image, classic Richardson–Lucy
    with a fixed iteration count and Wiener–Butterworth RL, Guo et al. 2020, 2 iterations) and
    every network trained once on a synthetic ``mixed``
    set with one modest step budget (or given as a model folder). Then the "push it until it
    breaks" characterisation of Chen et al. (Nature Methods 2021, 3D-RCAN): quality as a
    function of the photon count and of the blur width (the PSF's numerical aperture), with
    the networks left as trained (nominal photons and NA) and the classical methods given the
    true PSF; the curves of PSNR gain over the raw image show where each method stops helping.

Real suite (``BenchConfig.real_data``, ``$LUCYD_REAL_DATA`` or ``../shared/data/real`` from the
working directory; skipped with a message when absent)
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

Modules: :mod:`~lucyd.pipelines.bench.config` (parameters), :mod:`~.synthetic`, :mod:`~.real`
(the suites), :mod:`~.report` (CSV and HTML). The methods are the restorer registry's
(:mod:`lucyd.methods`); the scripts in ``benchmarks/`` reuse :func:`widefield_psf`,
:func:`held_out_sample`, :func:`acquire`, :func:`restorers` and the timing helpers of
:mod:`lucyd.pipelines.common`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from lucyd.errors import InputError
from lucyd.pipelines.bench.config import CSV_COLUMNS, SUITES, BenchConfig
from lucyd.pipelines.bench.real import real_suite
from lucyd.pipelines.bench.report import table_rows, write_csv, write_report
from lucyd.pipelines.bench.synthetic import (
    HELP_THRESHOLD_DB,
    acquire,
    held_out_sample,
    restorers,
    stops_helping,
    synthetic_suite,
    widefield_psf,
)
from lucyd.pipelines.common import Stages, check_out_dir, child_seeds, write_json

__all__ = ["CSV_COLUMNS", "HELP_THRESHOLD_DB", "SUITES", "BenchConfig", "acquire",
           "held_out_sample", "restorers", "run_bench", "stops_helping", "table_rows",
           "widefield_psf"]


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
    syn = synthetic_suite(cfg, out, seeds, stages, bars) if do_syn else None
    real = real_suite(cfg, out, seeds, stages, bars) if do_real else None
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
    csv_path = write_csv(out / "bench.csv", rows)
    report = write_report(out, cfg, syn, real, rows, timings, command)
    return {"rows": rows, "breaks": payload["breaks"], "real": payload["real"],
            "timings": timings, "json": json_path, "csv": csv_path, "report": report,
            "out_dir": out}


