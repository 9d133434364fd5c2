"""Inference throughput of RLN (with and without folded batch norm) and CARE on one volume.

Builds each network with its default 3D parameters (untrained weights: the speed does not
depend on them), wraps it in a :class:`lucyd.train.RestorationModel` and times ``predict`` on
one ``--shape`` volume (default 64×256×256, one tile) with ``--threads`` torch threads, after a
warm-up on a small volume. RLN is timed as trained (batch norms separate) and with its conv–BN
blocks folded (:func:`lucyd.nets.layers.fold_batch_norm`, what :func:`lucyd.train.load_model`
does); prediction already runs under ``torch.inference_mode``.

Usage::

    python benchmarks/bench_inference.py [--shape 64,256,256] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--networks", nargs="+", default=["rln", "rln-folded", "care"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lucyd.nets import build_network
    from lucyd.nets.layers import fold_batch_norm
    from lucyd.train import RestorationModel

    shape = tuple(int(v) for v in args.shape.split(","))
    vol = np.random.default_rng(0).poisson(50.0, shape).astype(np.float32)
    for label in args.networks:
        name = label.split("-")[0]
        torch.manual_seed(0)
        net = build_network(name, ndim=3).eval()
        if label.endswith("folded"):
            fold_batch_norm(net)
        info = {"network": {"name": name, "ndim": 3}, "normalization": {"percentiles": [0.01, 99.5]}}
        model = RestorationModel(net, info)
        model.predict(vol[:8, :64, :64], device="cpu", progress=False)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.predict(vol, device="cpu", progress=False)
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(json.dumps({"network": label, "shape": shape, "threads": args.threads,
                          "seconds": [round(t, 2) for t in times],
                          "voxels_per_s": round(vol.size / best)}), flush=True)


if __name__ == "__main__":
    main()
