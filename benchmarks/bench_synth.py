"""Benchmark of lucyd.synth: volumes per second for 128^3 phantoms, with and without degradation.

Run: python benchmarks/bench_synth.py [--size 128] [--repeats 3]

Prints a Markdown table (median of ``repeats`` runs after one warm-up: ``lucyd.pipelines.common.repeat_time``):
phantom generation alone, then phantom + each degradation (deconvolution with a Born-Wolf
PSF of 31 x 63 x 63 voxels at 0.2 x 0.1 x 0.1 um, NA 1.4, 520 nm; denoising with the same
PSF; isotropic with z_factor 4 and the Gaussian axial blur), and make_dataset throughput
with 1 and 2 worker processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

import numpy as np
import torch

from lucyd.io import ImageMetadata, write_image
from lucyd.pipelines.bench import widefield_psf
from lucyd.pipelines.common import repeat_time
from lucyd.synth import KINDS, SynthConfig, degrade, make_dataset, phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    shape = (args.size,) * 3
    psf = widefield_psf("born-wolf", (31, 63, 63), (0.2, 0.1, 0.1), na=1.4, wavelength=0.52,
                        ni=1.518)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}")
    print(f"\nshape {shape}, median of {args.repeats} runs\n")
    print("| kind | phantom only (vol/s) | + deconvolution (vol/s) | + denoising (vol/s) "
          "| + isotropic (vol/s) |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        counter = iter(range(10**6))

        def gen(kind=kind, counter=counter):
            return phantom(kind, shape, seed=next(counter))

        row = [repeat_time(gen, args.repeats)]
        for task, kw in (("deconvolution", {"psf": psf}), ("denoising", {"psf": psf}),
                         ("isotropic", {"z_factor": 4})):
            row.append(repeat_time(lambda task=task, kw=kw, gen=gen: degrade(
                gen(), task, seed=0, device="cpu", **kw), args.repeats))
        print(f"| {kind} | " + " | ".join(f"{1 / t:.2f} ({t:.3f} s)" for t in row) + " |")

    print("\nmake_dataset (mixed, deconvolution, 8 pairs of 64 x 128 x 128, Born-Wolf PSF file):\n")
    print("| workers | pairs/s |")
    print("|---|---|")
    tmp = tempfile.mkdtemp(prefix="bench_synth_")
    try:
        psf_path = os.path.join(tmp, "psf.tif")
        write_image(psf_path, psf, ImageMetadata("ZYX", (0.2, 0.1, 0.1)))
        cfg = SynthConfig.build(n=8, shape=(64, 128, 128), psf=psf_path, seed=0)
        for workers in (1, 2):
            out = os.path.join(tmp, f"w{workers}")
            t0 = time.perf_counter()
            make_dataset(cfg, out, workers=workers, progress=False, device="cpu")
            dt = time.perf_counter() - t0
            print(f"| {workers} | {cfg.n / dt:.2f} ({dt:.1f} s total) |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
