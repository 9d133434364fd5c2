"""Deconvolution benchmarks: PSNR-vs-iteration curves and time per iteration.

Run ``python benchmarks/bench_deconv.py [--quick] [--device cpu|cuda] [--part psnr|speed|all]``.

(a) PSNR vs iteration on synthetic widefield data: the library's ``mixed`` phantom
    (lucyd.synth.phantom) through the benchmark pipeline's PSF and acquisition
    (lucyd.pipelines.bench.widefield_psf / acquire: Born–Wolf PSF, linear convolution, Poisson
    noise at 1 photon per unit), deconvolved with the flipped, Gaussian, Butterworth and
    Wiener–Butterworth back projectors and with Biggs–Andrews acceleration. Plot saved to
    benchmarks/results/deconv_psnr_curves.png.
(b) Time per iteration on a 64×256×256 volume with a 31³ PSF beside the FFT bound
    (2 rfftn + 2 irfftn of the same padded job, torch, measured in the same run),
    scikit-image's richardson_lucy and RedLionfish's CPU path (if installed); peak memory
    as a multiple of the image size (subprocess, ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from lucyd.deconv import deconvolve, estimate_memory
from lucyd.forward.fft import fast_shape
from lucyd.metrics import psnr as lpsnr
from lucyd.pipelines.bench import acquire, widefield_psf
from lucyd.pipelines.common import repeat_time
from lucyd.synth import phantom

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- (a) quality


def psnr(pred, gt):
    """PSNR over the ground truth's range (``lucyd.metrics.psnr``)."""
    return lpsnr(pred, gt, data_range=float(gt.max() - gt.min()))


def psnr_curves(quick: bool, device: str):
    shape = (32, 96, 96) if quick else (48, 128, 128)
    voxel = (0.2, 0.065, 0.065)
    # the library's mixed phantom (nuclei, granules, tubules; values up to ~850 on 10) and
    # forward model: linear convolution, Poisson noise at 1 photon per unit, no read noise
    gt = phantom("mixed", shape, seed=0, background=10.0)
    psf_kind = "born-wolf"
    psf = widefield_psf(psf_kind, (31, 63, 63), voxel, na=1.4, wavelength=0.52, ni=1.515)
    image, gt = acquire(gt, psf, photons=1.0, read_noise=0.0, seed=1, device=device)
    runs = {
        "flipped (classic RL)": dict(back_projector="flipped", iterations=30),
        "gaussian": dict(back_projector="gaussian", iterations=10),
        "butterworth": dict(back_projector="butterworth", iterations=10),
        "wiener-butterworth": dict(back_projector="wiener-butterworth", iterations=10),
        "wiener-butterworth, start=mean": dict(
            back_projector="wiener-butterworth", iterations=10, start="mean"
        ),
        "biggs-andrews (flipped)": dict(acceleration="biggs-andrews", iterations=20),
    }
    curves = {}
    for name, kw in runs.items():
        values = []
        t0 = time.perf_counter()
        deconvolve(
            image,
            psf,
            device=device,
            progress=False,
            callback=lambda i, est, v=values: v.append(psnr(est, gt)),
            **kw,
        )
        curves[name] = values
        print(
            f"{name:26s} {time.perf_counter() - t0:6.1f} s  PSNR by iteration: "
            + " ".join(f"{v:.2f}" for v in values)
        )
    base = psnr(image, gt)
    rl = curves["flipped (classic RL)"]
    wb = curves["wiener-butterworth"]
    ba = curves["biggs-andrews (flipped)"]
    reach = next((i + 1 for i, v in enumerate(ba) if v >= rl[19]), None)
    checks = {
        "input PSNR": base,
        "RL@10": rl[9],
        "RL@20": rl[19],
        "RL max": max(rl),
        "WB@1": wb[0],
        "WB@2": wb[1],
        "WB@2 >= RL@10": wb[1] >= rl[9],
        "BA iterations to reach RL@20": reach,
        "BA reaches RL@20 in <= 10": reach is not None and reach <= 10,
    }
    for k, v in checks.items():
        print(f"  {k}: {v}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.axhline(base, color="grey", ls=":", label="raw image")
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR (dB) vs ground truth")
    ax.set_title(f"RL deconvolution, {shape} phantom, {psf_kind} PSF, Poisson noise")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "deconv_psnr_curves.png"
    fig.savefig(out, dpi=120)
    print("saved", out)
    return {
        "shape": shape,
        "psf": psf_kind,
        "curves": curves,
        "checks": {
            k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in checks.items()
        },
    }


# --------------------------------------------------------------------------- (b) speed


def _sync(device):
    return torch.cuda.synchronize if device == "cuda" else None


def fft_bound(job, device, repeats=5):
    """Seconds for 2 rfftn + 2 irfftn of a float32 job (torch), minimum of ``repeats``.

    The minimum, not the mean, is the estimate least disturbed by other processes on a shared
    machine; every timing in this benchmark uses it (``repeat_time(reduce="min")``), so the
    ratios compare like with like.
    """
    x = torch.rand(job, device=device)
    spec = torch.fft.rfftn(x)

    def transforms():
        for _ in range(2):
            torch.fft.rfftn(x, out=spec)
            torch.fft.irfftn(spec, s=job, out=x)

    return repeat_time(transforms, repeats, reduce="min", sync=_sync(device))


def time_lucyd(image, psf, device, n_short=2, n_long=7, repeats=3, **kw):
    """Per-iteration time as the slope between two runs (excludes the setup); each run's time
    is the minimum of ``repeats`` (robust to other processes on a shared machine)."""

    def run(n):
        return repeat_time(lambda: deconvolve(image, psf, iterations=n, device=device,
                                              progress=False, **kw),
                           repeats, reduce="min", sync=_sync(device))

    short, long_ = run(n_short), run(n_long)
    return (long_ - short) / (n_long - n_short), short - n_short * (long_ - short) / (
        n_long - n_short
    )


def peak_memory_child(args):
    """Child process: peak RSS increase of one deconvolution (bytes)."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 200, (64, 256, 256)).astype(np.float32)
    psf = np.ones((31, 31, 31), np.float32)
    deconvolve(image[:8, :32, :32], psf[:5, :5, :5], iterations=1, progress=False)  # load libraries

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    try:  # reset the high-water mark (ru_maxrss survives fork+exec from a large parent)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = status("VmRSS")
    kw = json.loads(args.child_kwargs)
    deconvolve(image, psf, iterations=2, progress=False, device="cpu", **kw)
    peak = status("VmHWM")
    print(json.dumps({"extra": peak - base, "image": image.nbytes}))


def speed(quick: bool, device: str, threads: int):
    torch.set_num_threads(threads)
    shape, pshape = (64, 256, 256), (31, 31, 31)
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 200, shape).astype(np.float32)
    psf = np.zeros(pshape, np.float32)
    psf[15, 15, 15] = 1
    psf = ndimage.gaussian_filter(psf, (3, 1.5, 1.5))
    job = fast_shape(tuple(n + k - 1 for n, k in zip(shape, pshape, strict=True)))
    res = {"device": device, "threads": threads, "job": job, "load": os.getloadavg()}
    res["fft_bound_padded"] = fft_bound(job, device)
    res["fft_bound_circulant"] = fft_bound(shape, device)
    for name, kw in {
        "lucyd non-circulant": {},
        "lucyd circulant": {"boundary": "circulant"},
        "lucyd non-circulant + WB": {"back_projector": "wiener-butterworth"},
        "lucyd non-circulant + Biggs-Andrews": {"acceleration": "biggs-andrews"},
    }.items():
        if quick and name.endswith(("WB", "Andrews")):
            continue
        per_it, setup = time_lucyd(image, psf, device, **kw)
        bound = (
            res["fft_bound_circulant"]
            if "circulant" in name and "non" not in name
            else res["fft_bound_padded"]
        )
        res[name] = {"per_iteration": per_it, "setup": setup, "ratio_to_fft_bound": per_it / bound}
    res["fft_bound_padded_after"] = fft_bound(job, device)
    if device == "cpu":
        try:
            from skimage.restoration import richardson_lucy

            n = 2 if quick else 3

            def skimage_per_iteration(data) -> float:
                return repeat_time(lambda: richardson_lucy(data, psf, num_iter=n, clip=False),
                                   2, reduce="min") / n

            per = skimage_per_iteration(image)
            res["skimage richardson_lucy"] = {
                "per_iteration": per,
                "lucyd_speedup": per / res["lucyd non-circulant"]["per_iteration"],
            }
            # What users get from camera data: skimage promotes uint16 input to float64.
            per = skimage_per_iteration(np.round(image).astype(np.uint16))
            res["skimage richardson_lucy, uint16 input (float64 inside)"] = {
                "per_iteration": per,
                "lucyd_speedup": per / res["lucyd non-circulant"]["per_iteration"],
            }
        except ImportError:
            res["skimage richardson_lucy"] = "not installed"
        try:  # RedLionfish's CPU path (scipy FFTs, circulant, no padding); pip install RedLionfish
            from RedLionfishDeconv import doRLDeconvolutionFromNpArrays

            def rlf(n: int) -> float:
                return repeat_time(lambda: doRLDeconvolutionFromNpArrays(
                    image, psf, niter=n, method="cpu"), 3, reduce="min")

            short, long_ = rlf(2), rlf(7)
            per = (long_ - short) / 5
            res["redlionfish cpu"] = {
                "per_iteration": per,
                "lucyd_speedup": per / res["lucyd non-circulant"]["per_iteration"],
                "lucyd_circulant_speedup": per / res["lucyd circulant"]["per_iteration"],
            }
        except ImportError:
            res["redlionfish cpu"] = "not installed (pip install RedLionfish)"
    res["load_after"] = os.getloadavg()
    for k, v in res.items():
        print(f"{k}: {v}")
    return res


def memory(threads: int):
    """Peak resident memory of one deconvolution above the baseline, per configuration."""
    shape, pshape = (64, 256, 256), (31, 31, 31)
    mem = {}
    for name, kw in {
        "classic": {},
        "wiener-butterworth": {"back_projector": "wiener-butterworth"},
        "biggs-andrews": {"acceleration": "biggs-andrews"},
    }.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--child-kwargs", json.dumps(kw)],
            capture_output=True,
            text=True,
            env={**os.environ, "BENCH_THREADS": str(threads)},
        )
        try:
            val = json.loads(out.stdout.strip().splitlines()[-1])
        except Exception:  # pragma: no cover
            mem[name] = out.stderr[-300:]
            continue
        model = estimate_memory(shape, pshape, **kw)
        mem[name] = {
            "peak_extra_over_image": val["extra"] / val["image"],
            "model_over_image": model / val["image"],
        }
    for k, v in mem.items():
        print(f"memory {k}: {v}")
    return mem


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", default="all", choices=["all", "psnr", "speed", "memory"])
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--child-kwargs", default="{}")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.child:
        peak_memory_child(args)
        return
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    out = {}
    if args.part in ("all", "psnr"):
        out["psnr"] = psnr_curves(args.quick, args.device)
    if args.part in ("all", "speed"):
        out["speed"] = speed(args.quick, args.device, args.threads)
    if args.part in ("all", "memory"):
        out["memory"] = memory(args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
