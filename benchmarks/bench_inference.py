"""Inference throughput and peak memory of RLN and CARE beside classic RL and WB on one volume.

Every measurement is a fresh process (``--child``) that builds its restorer, warms it up on a
small volume, resets the resident high-water mark (``/proc/self/clear_refs``) and restores one
``--shape`` volume (default 64×256×256, Poisson noise around 50) once: it reports the seconds,
voxels per second and the peak resident memory above the process's baseline (the input
volume is already in the baseline). Networks have their default 3D parameters and untrained
weights (the speed does not depend on them) and run through
:meth:`lucyd.train.RestorationModel.predict` (one tile, ``torch.inference_mode``):

* ``rln`` / ``care``: as trained (batch norms separate, PyTorch's own convolution choice);
* ``rln-optimised`` / ``care-optimised``: after :func:`lucyd.nets.layers.optimise_for_inference`
  (what :func:`lucyd.train.load_model` does);
* ``rl-20``: classic Richardson–Lucy, 20 iterations, non-circulant, 31³ Gaussian PSF
  (σ 3, 1.5, 1.5 voxels); ``wb-2``: Wiener–Butterworth, 2 iterations, same PSF.

All with ``--threads`` torch threads (and ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``; RL's FFTs
use the same count). ``--repeats`` rounds run the labels interleaved (ABCABC), so a change of
machine load hits every label alike; the best round per label is reported.

Usage::

    python benchmarks/bench_inference.py [--shape 64,256,256] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

# isort: off
import lucyd  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
# isort: on

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LABELS = ["rln", "rln-optimised", "care", "care-optimised", "rl-20", "wb-2"]


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _restorer(label: str):
    """A function volume -> restored volume for ``label``."""
    import torch

    if label.startswith(("rl-", "wb-")):
        from scipy import ndimage

        from lucyd.deconv import deconvolve

        psf = np.zeros((31, 31, 31), np.float32)
        psf[15, 15, 15] = 1
        psf = ndimage.gaussian_filter(psf, (3.0, 1.5, 1.5))
        kind, n = label.split("-")
        bp = "flipped" if kind == "rl" else "wiener-butterworth"
        return lambda v: deconvolve(v, psf, iterations=int(n), back_projector=bp,
                                    device="cpu", progress=False)
    from lucyd.nets import build_network
    from lucyd.nets.layers import optimise_for_inference
    from lucyd.train import RestorationModel

    name = label.split("-")[0]
    torch.manual_seed(0)
    net = build_network(name, ndim=3).eval()
    if label.endswith("optimised"):
        optimise_for_inference(net)
    info = {"network": {"name": name, "ndim": 3}, "normalization": {"percentiles": [0.01, 99.5]}}
    model = RestorationModel(net, info)
    return lambda v: model.predict(v, device="cpu", progress=False)


def child(label: str, shape, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    vol = np.random.default_rng(0).poisson(50.0, shape).astype(np.float32)
    restore = _restorer(label)
    restore(vol[: min(16, shape[0]), :64, :64])  # warm-up: imports, plans, oneDNN kernels
    Path("/proc/self/clear_refs").write_text("5")
    base = _status("VmRSS")
    t0 = time.perf_counter()
    restore(vol)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - base
    print(json.dumps({"label": label, "seconds": seconds, "peak_extra_bytes": peak,
                      "input_bytes": vol.nbytes}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--labels", nargs="+", default=LABELS)
    ap.add_argument("--child", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.child:
        child(args.child, shape, args.threads)
        return
    env = {**os.environ, "LUCYD_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    runs: dict[str, list[dict]] = {label: [] for label in args.labels}
    loads = [os.getloadavg()]
    for _ in range(args.repeats):
        for label in args.labels:
            out = subprocess.run([sys.executable, __file__, "--child", label, "--shape", args.shape,
                                  "--threads", str(args.threads)],
                                 capture_output=True, text=True, env=env)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode or not lines:
                print(f"{label}: failed\n{out.stderr[-1500:]}", file=sys.stderr)
                continue
            runs[label].append(json.loads(lines[-1]))
            print(lines[-1], flush=True)
        loads.append(os.getloadavg())
    voxels = int(np.prod(shape))
    table = {}
    for label, rs in runs.items():
        if not rs:
            continue
        best = min(r["seconds"] for r in rs)
        table[label] = {"seconds": [round(r["seconds"], 2) for r in rs],
                        "voxels_per_s": voxels / best,
                        "peak_extra_over_input": max(r["peak_extra_bytes"] for r in rs) / rs[0]["input_bytes"]}
    print(json.dumps({"shape": shape, "threads": args.threads, "load": loads, "table": table}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": shape, "threads": args.threads,
                                               "load": loads, "table": table}, indent=1))


if __name__ == "__main__":
    main()
