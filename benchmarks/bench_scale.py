"""Scale benchmark: blocked = whole-image deconvolution, and the same result on every executor.

Run ``python benchmarks/bench_scale.py [--quick] [--workers 2]``.

The case of lucyd issue 13: a 64×256×256 ``tubules`` phantom (lucyd.synth.phantom, peak
~100 photons, Poisson noise, background 5) blurred by a 15³ Gaussian PSF (σ = 2.5, 2, 2
voxels), 10 Richardson–Lucy iterations, ``max_memory = 40 MB``. Compares

* the whole-image result (no budget),
* blocked with the halo rule of :func:`lucyd.deconv.blocked.rl_halo` (serial),
* blocked with a halo of one PSF size (the previous rule, crop-and-stitch),
* blocked with the halo rule on a dask LocalCluster of ``--workers`` processes,

reporting tiles, CPU seconds of this process, the relative L2 difference and the maximum
difference / peak of the interior (one PSF radius from the faces) against the whole image.
``--quick`` uses 32×128×128 and a 10 MB budget. Results: stdout (markdown table) and
``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.signal import fftconvolve

from lucyd.deconv import deconvolve
from lucyd.deconv.blocked import rl_halo
from lucyd.synth import phantom

RESULTS = Path(__file__).resolve().parent / "results"


def gaussian_psf(shape, sigma) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    r2 = sum(((grid[i] - (n - 1) / 2) / s) ** 2 for i, (n, s) in enumerate(zip(shape, sigma, strict=True)))
    p = np.exp(-r2 / 2)
    return (p / p.sum()).astype(np.float32)


def compare(result, whole, margin):
    inner = tuple(slice(m, -m) for m in margin)
    d = result[inner] - whole[inner]
    return float(np.linalg.norm(d) / np.linalg.norm(whole[inner])), float(
        np.abs(d).max() / whole.max()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shape, budget = ((32, 128, 128), 10e6) if args.quick else ((64, 256, 256), 40e6)
    rng = np.random.default_rng(0)
    x = phantom("tubules", shape, seed=0).astype(np.float32)
    x = x / x.max() * 100 + 5
    psf = gaussian_psf((15, 15, 15), (2.5, 2.0, 2.0))
    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    kw = dict(iterations=args.iterations, device="cpu", progress=False)
    rows = []

    def run(label, **extra):
        t0 = time.process_time()
        w0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = deconvolve(y, psf, **kw, **extra)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        return res, cpu, wall, [str(c.message) for c in caught]

    whole, cpu, wall, _ = run("whole")
    rows.append(dict(run="whole image", cpu_s=cpu, wall_s=wall))
    margin = tuple((n - 1) // 2 for n in psf.shape)
    halo = rl_halo(psf, args.iterations)
    serial, cpu, wall, warn = run("rule", max_memory=budget)
    l2, mx = compare(serial, whole, margin)
    rows.append(dict(run=f"blocked, halo {halo}", cpu_s=cpu, wall_s=wall, l2=l2, max=mx, warn=warn))

    from lucyd.deconv import blocked

    old = blocked.rl_halo
    blocked.rl_halo = lambda p, k, bp=None: tuple(int(n) for n in p.shape)
    try:
        res, cpu, wall, warn = run("psf", max_memory=budget)
    finally:
        blocked.rl_halo = old
    l2, mx = compare(res, whole, margin)
    rows.append(
        dict(run=f"blocked, halo {psf.shape} (old)", cpu_s=cpu, wall_s=wall, l2=l2, max=mx, warn=warn)
    )
    res, cpu, wall, warn = run("dask", max_memory=budget, cluster=f"local:{args.workers}")
    l2, mx = compare(res, whole, margin)
    same = float(np.abs(res - serial).max() / whole.max())
    rows.append(
        dict(run=f"blocked on local:{args.workers} (dask)", cpu_s=cpu, wall_s=wall, l2=l2, max=mx,
             vs_serial=same, warn=warn)
    )
    print(f"shape {shape}, PSF 15³ σ (2.5, 2, 2), {args.iterations} iterations, "
          f"max_memory {budget / 1e6:.0f} MB, {platform.processor() or platform.machine()}")
    print("| run | CPU s (this process) | wall s | rel. L2 (interior) | max / peak | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        notes = "; ".join(r.get("warn", []))
        if "vs_serial" in r:
            notes = f"max |dask − serial| / peak = {r['vs_serial']:.1e} " + notes
        l2 = f"{r['l2']:.1e}" if "l2" in r else "–"
        mx = f"{r['max']:.1e}" if "max" in r else "–"
        print(f"| {r['run']} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {l2} | {mx} | {notes} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(dict(shape=shape, budget=budget, rows=rows), indent=1))


if __name__ == "__main__":
    main()
