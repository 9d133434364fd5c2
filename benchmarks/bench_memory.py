"""Peak resident memory of `lucyd deconvolve --max-memory B` against the budget B.

Each run is a fresh process (``python -m lucyd deconvolve``) whose peak resident set size
(``ru_maxrss`` of the child, as ``/usr/bin/time -v`` reports it) is compared with the budget
plus the runtime's fixed cost: the peak RSS of a process that imports lucyd's deconvolution
stack (python, numpy, torch, scipy, zarr, tifffile) and runs one tiny FFT.

    python benchmarks/bench_memory.py [--shape 64,512,512] [--psf 31] [--budgets 256MB,512MB,1GB]

Prints one Markdown table row per budget.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
FIXED = (
    "import torch, lucyd.cli.main, lucyd.deconv, lucyd.io, lucyd.tiling, scipy.ndimage;"
    "torch.fft.irfftn(torch.fft.rfftn(torch.ones(8, 8, 8)), s=(8, 8, 8))"
)


def child_peak_rss(args: list[str]) -> tuple[int, float, int]:
    """(peak RSS bytes, CPU seconds, exit status) of ``python args`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(SRC), LUCYD_NO_PROGRESS="1")
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:]);"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(u.ru_maxrss * 1024, u.ru_utime + u.ru_stime, p.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code, sys.executable, *args], env=env,
                         capture_output=True, text=True, check=True)
    rss, cpu, rc = out.stdout.split()[-3:]
    return int(rss), float(cpu), int(rc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,512,512")
    parser.add_argument("--psf", type=int, default=31)
    parser.add_argument("--budgets", default="256MB,512MB,1GB")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--format", default="tif", help="tif, npy or ome.zarr (input and output)")
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    from lucyd.deconv import estimate_memory, parse_memory
    from lucyd.io import write_image

    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        image = rng.poisson(50, shape).astype(np.float32)
        k = args.psf
        grid = np.meshgrid(*[np.arange(k) - k // 2] * 3, indexing="ij")
        psf = np.exp(-sum(g.astype(np.float32) ** 2 for g in grid) / 8.0)
        src = tmp / f"image.{args.format}"
        write_image(src, image)
        write_image(tmp / "psf.tif", psf.astype(np.float32))
        del image
        fixed, _, _ = child_peak_rss(["-c", FIXED])
        whole = estimate_memory(shape, (k,) * 3)
        print(f"image {shape} float32 ({np.prod(shape) * 4 / 1e6:.0f} MB), PSF {k}^3, "
              f"{args.iterations} iterations, {args.format}; whole-image job model "
              f"{whole / 1e6:.0f} MB; fixed runtime cost {fixed / 1e6:.0f} MB")
        print("| budget | peak RSS | peak RSS − fixed | (peak − fixed) / budget | CPU s |")
        print("|---|---|---|---|---|")
        for budget in args.budgets.split(","):
            rss, cpu, rc = child_peak_rss([
                "-m", "lucyd", "deconvolve", str(src), "--psf", str(tmp / "psf.tif"),
                "-o", str(tmp / f"out.{args.format}"), "-n", str(args.iterations),
                "--max-memory", budget, "-q",
            ])
            b = parse_memory(budget)
            status = "" if rc == 0 else f" (exit {rc})"
            print(f"| {budget} | {rss / 1e6:.0f} MB{status} | {(rss - fixed) / 1e6:.0f} MB | "
                  f"{(rss - fixed) / b:.2f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
