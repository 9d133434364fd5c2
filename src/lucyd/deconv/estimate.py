"""What a deconvolution will cost before it runs: :func:`estimate_deconvolution`."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from lucyd.deconv.config import DeconvConfig, job_config
from lucyd.deconv.engine import Stats, estimate_memory, job_plan, run_rl
from lucyd.deconv.psfprep import job_psf_shape
from lucyd.device import resolve_device

_ITERATION_COST: dict[str, float] = {}


def _iteration_seconds_per_unit(device) -> float:
    """Seconds per ``N·log2(N)`` (N job voxels) of one RL iteration on ``device``, measured once
    on a 56×120×120 job (about 0.1 s on a 2-core CPU)."""
    key = str(device)
    if key not in _ITERATION_COST:
        image = np.ones((48, 112, 112), np.float32)
        psf = np.full((9, 9, 9), 1 / 729, np.float32)
        stats = Stats(background=0.0, floor=1e-6, start_value=1.0, tiny=1e-6)
        kw = dict(boundary="non-circulant", stats=stats, start="mean", device=device,
                  progress=False)
        run_rl(image, psf, None, iterations=1, **kw)  # warm-up (FFT plans)
        t0 = time.perf_counter()
        run_rl(image, psf, None, iterations=3, **kw)
        n = 56 * 120 * 120
        _ITERATION_COST[key] = (time.perf_counter() - t0) / 3 / (n * math.log2(n))
    return _ITERATION_COST[key]


def estimate_deconvolution(image_shape, psf_shape, config: DeconvConfig | None = None,
                           **overrides) -> dict[str, Any]:
    """Peak memory and a rough running time of a deconvolution, before running it.

    ``config`` and ``overrides`` as for :func:`lucyd.deconv.deconvolve` (``iterations``,
    ``boundary``, ``back_projector``, ``acceleration``, ``tv``, ``max_memory``, ``device`` matter).

    Returns
    -------
    dict
        ``job_shape``; ``memory_bytes``: the whole-image job's peak
        (:func:`lucyd.deconv.estimate_memory`) or, when that exceeds ``max_memory``, the
        budget the blocks are sized to; ``blocked``; ``seconds``: iterations × the time of one
        classic RL iteration, measured once on ``device`` on a small job and scaled by N·log2 N
        (blocked jobs × 1.5 for the halos) — a rough figure (factor ~2), not a promise.
    """
    cfg = job_config(config, overrides, "estimate_deconvolution")
    image_shape = tuple(int(n) for n in image_shape)
    psf_shape = job_psf_shape(psf_shape, image_shape, cfg.boundary)
    need = estimate_memory(image_shape, psf_shape, boundary=cfg.boundary,
                           back_projector=cfg.back_projector, acceleration=cfg.acceleration,
                           tv=cfg.tv)
    budget = cfg.max_memory
    blocked = budget is not None and need > budget
    job = job_plan(image_shape, psf_shape, cfg.boundary).job_shape
    n = math.prod(job)
    per_iteration = _iteration_seconds_per_unit(resolve_device(cfg.device)) * n * math.log2(max(n, 2))
    seconds = cfg.iterations * per_iteration * (1.5 if blocked else 1.0)
    return {"job_shape": job, "memory_bytes": budget if blocked else need, "blocked": blocked,
            "seconds": seconds}
