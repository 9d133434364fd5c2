"""RLN inference throughput (voxels per second) on CPU, and on GPU when one is present.

Li et al. (Nature Methods 2022) report RLN as four- to 50-fold faster than purely data-driven
networks; its cost is a few small 3×3×3 convolutions (15,968 parameters). This benchmark times
``RestorationModel.predict`` (normalisation, padding, network, mapping back) on random volumes,
whole and tiled, for an untrained RLN (timing does not depend on the weights).

Run::

    python benchmarks/bench_rln.py [--sizes 64,64,64 32,128,128] [--repeats 2] [--tile 64,128,128]

Prints a table and writes ``benchmarks/results/rln_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from lucyd.nets import build_network, count_parameters
from lucyd.pipelines.common import repeat_time
from lucyd.train.model import RestorationModel

RESULTS = Path(__file__).resolve().parent / "results"


def _model():
    torch.manual_seed(0)
    net = build_network("rln", ndim=3)
    info = {
        "network": {"name": "rln", "ndim": 3, "receptive_radius": [18, 18, 18]},
        "normalization": {"percentiles": [0.01, 99.5]},
    }
    return RestorationModel(net, info), count_parameters(net)


def main() -> None:
    ap = argparse.ArgumentParser(description="RLN inference throughput")
    ap.add_argument("--sizes", nargs="+", default=["64,64,64", "32,128,128"])
    ap.add_argument("--tile", default="64,128,128", help="tile shape for the tiled run")
    ap.add_argument("--tiled-size", default="64,192,192")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    rng = np.random.default_rng(0)
    for dev in devices:
        model, n_params = _model()
        sync = torch.cuda.synchronize if dev == "cuda" else None
        for s in args.sizes:
            shape = tuple(int(v) for v in s.split(","))
            img = rng.poisson(100, shape).astype(np.float32)
            t = repeat_time(
                lambda img=img, m=model, d=dev: m.predict(img, device=d, progress=False),
                args.repeats, reduce="min", sync=sync,
            )
            rows.append(
                {
                    "device": dev,
                    "mode": "whole",
                    "shape": shape,
                    "seconds": t,
                    "voxels_per_s": float(np.prod(shape)) / t,
                }
            )
        shape = tuple(int(v) for v in args.tiled_size.split(","))
        tile = tuple(int(v) for v in args.tile.split(","))
        img = rng.poisson(100, shape).astype(np.float32)
        t = repeat_time(
            lambda img=img, m=model, d=dev, tl=tile: m.predict(
                img, tile_shape=tl, device=d, progress=False
            ),
            max(1, args.repeats - 1), reduce="min", sync=sync,
        )
        rows.append(
            {
                "device": dev,
                "mode": f"tiled {tile}",
                "shape": shape,
                "seconds": t,
                "voxels_per_s": float(np.prod(shape)) / t,
            }
        )
    print(
        f"RLN, {n_params} parameters; torch {torch.__version__}, {args.threads} CPU threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'device':6} {'mode':22} {'shape':16} {'seconds':>8} {'voxels/s':>12}")
    for r in rows:
        print(
            f"{r['device']:6} {r['mode']:22} {str(r['shape']):16} {r['seconds']:8.2f} "
            f"{r['voxels_per_s']:12.3e}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rln_bench.json").write_text(
        json.dumps(
            {
                "parameters": n_params,
                "rows": rows,
                "threads": args.threads,
                "platform": platform.platform(),
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg(),
            },
            indent=2,
            default=list,
        )
    )


if __name__ == "__main__":
    main()
