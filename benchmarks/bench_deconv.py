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

# isort: off
import lucyd  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
# isort: on

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


def fft_bound(job, device, repeats=5, clock=time.perf_counter):
    """Seconds for 2 rfftn + 2 irfftn of a float32 job as the engine runs them (in place in one
    :class:`lucyd.forward.fft.FFTWorkspace`: pocketfft on the CPU, torch.fft on CUDA), the
    minimum of ``repeats`` (the estimate least disturbed by other processes). ``clock``:
    ``time.perf_counter`` (wall) or ``time.process_time`` (CPU seconds of all threads)."""
    from lucyd.forward.fft import FFTWorkspace

    ws = FFTWorkspace(job, device)
    ws.real.copy_(torch.rand(job))
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up (plans)
        t0 = clock()
        for _ in range(2):
            ws.forward()
            ws.inverse()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, clock() - t0)
    ws.release()
    return best


def peak_memory_child(args):
    """Child process: peak RSS increase of one deconvolution (bytes)."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 200, (64, 256, 256)).astype(np.float32)
    psf = np.ones((31, 31, 31), np.float32)
    kw = json.loads(args.child_kwargs)
    # load the libraries the same options need (a first Wiener–Butterworth call imports more)
    deconvolve(image[:8, :32, :32], psf, iterations=1, progress=False, **kw)

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
    deconvolve(image, psf, iterations=2, progress=False, device="cpu", **kw)
    peak = status("VmHWM")
    print(json.dumps({"extra": peak - base, "image": image.nbytes}))


def speed(quick: bool, device: str, threads: int, rounds: int = 2):
    """Seconds per iteration of every tool, all with ``threads`` threads, in interleaved rounds.

    Per-iteration time = slope between an ``n_short`` and an ``n_long`` iteration run (setup
    excluded). Each round runs every tool once at both lengths (ABCABC: a change of machine
    load hits all tools alike); the minimum over rounds of each length is kept (the estimate
    least disturbed by other processes). Threads: torch (``torch.set_num_threads``, lucyd's
    elementwise work), pocketfft (lucyd's CPU FFTs take ``torch.get_num_threads()`` workers;
    scikit-image and RedLionfish run ``scipy.fft`` inside ``scipy.fft.set_workers(threads)``);
    OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``, set by ``import lucyd`` before torch).
    Times are wall seconds and CPU seconds of the process (all threads).
    """
    import scipy.fft

    torch.set_num_threads(threads)
    shape, pshape = (64, 256, 256), (31, 31, 31)
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 200, shape).astype(np.float32)
    psf = np.zeros(pshape, np.float32)
    psf[15, 15, 15] = 1
    psf = ndimage.gaussian_filter(psf, (3, 1.5, 1.5))
    job = fast_shape(tuple(n + k - 1 for n, k in zip(shape, pshape, strict=True)))
    n_short, n_long = 2, 7

    def lucyd_run(**kw):
        return lambda n: deconvolve(image, psf, iterations=n, device=device, progress=False, **kw)

    tools = {
        "lucyd non-circulant": lucyd_run(),
        "lucyd circulant": lucyd_run(boundary="circulant"),
        "lucyd non-circulant + WB": lucyd_run(back_projector="wiener-butterworth"),
        "lucyd non-circulant + Biggs-Andrews": lucyd_run(acceleration="biggs-andrews"),
    }
    if quick:
        tools = {k: v for k, v in tools.items() if not k.endswith(("WB", "Andrews"))}
    if device == "cpu":
        try:
            from skimage.restoration import richardson_lucy

            camera = np.round(image).astype(np.uint16)
            tools["skimage richardson_lucy"] = lambda n: richardson_lucy(image, psf, num_iter=n,
                                                                         clip=False)
            # what users get from camera data: scikit-image promotes uint16 to float64
            tools["skimage richardson_lucy, uint16 input (float64 inside)"] = (
                lambda n: richardson_lucy(camera, psf, num_iter=n, clip=False))
        except ImportError:
            print("scikit-image not installed")
        try:  # RedLionfish's CPU path (scipy FFTs, circulant, no padding); pip install RedLionfish
            from RedLionfishDeconv import doRLDeconvolutionFromNpArrays

            tools["redlionfish cpu"] = lambda n: doRLDeconvolutionFromNpArrays(image, psf, niter=n,
                                                                               method="cpu")
        except ImportError:
            print("RedLionfish not installed (pip install RedLionfish)")
    res = {"device": device, "threads": threads, "job": job, "load": [os.getloadavg()],
           "rounds": rounds}
    # wall seconds, and CPU seconds of the whole process (all threads): on a shared machine the
    # wall time depends on how much CPU the process was given, the CPU time much less
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    times = {c: {name: {"short": [], "long": []} for name in tools} for c in clocks}
    bounds = {c: {"padded": [], "circulant": []} for c in clocks}

    def once(func) -> dict[str, float]:
        start = {c: clock() for c, clock in clocks.items()}
        func()
        if sync is not None:
            sync()
        return {c: clock() - start[c] for c, clock in clocks.items()}

    sync = _sync(device)
    with scipy.fft.set_workers(threads):
        for run in tools.values():  # warm-up: imports, FFT plans, allocator
            run(1)
        for _ in range(rounds):
            for c, clock in clocks.items():
                bounds[c]["padded"].append(fft_bound(job, device, repeats=2, clock=clock))
                bounds[c]["circulant"].append(fft_bound(shape, device, repeats=2, clock=clock))
            for name, run in tools.items():
                for length, n in (("short", n_short), ("long", n_long)):
                    took = once(lambda r=run, n=n: r(n))
                    for c in clocks:
                        times[c][name][length].append(took[c])
            res["load"].append(os.getloadavg())
    for c in clocks:
        out = res[c] = {"fft_bound_padded": min(bounds[c]["padded"]),
                        "fft_bound_circulant": min(bounds[c]["circulant"])}
        for name, t in times[c].items():
            per_it = (min(t["long"]) - min(t["short"])) / (n_long - n_short)
            out[name] = {"per_iteration": per_it, "short_s": t["short"], "long_s": t["long"]}
            if name.startswith("lucyd"):
                circulant = "circulant" in name and "non" not in name
                bound = out["fft_bound_circulant"] if circulant else out["fft_bound_padded"]
                out[name]["ratio_to_fft_bound"] = per_it / bound
        base = out["lucyd non-circulant"]["per_iteration"]
        for name in tools:
            if not name.startswith("lucyd"):
                out[name]["lucyd_speedup"] = out[name]["per_iteration"] / base
                if "lucyd circulant" in out:
                    out[name]["lucyd_circulant_speedup"] = (out[name]["per_iteration"]
                                                            / out["lucyd circulant"]["per_iteration"])
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
        # the PSF (ones) is point-symmetric: its OTF is stored real
        model = estimate_memory(shape, pshape, symmetric_psf=True, **kw)
        mem[name] = {
            "peak_extra_over_image": val["extra"] / val["image"],
            # the model counts the image the job is given; the baseline already holds it
            "peak_with_image_over_image": val["extra"] / val["image"] + 1,
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
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the speed part")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--child-kwargs", default="{}")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.child:
        peak_memory_child(args)
        return
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    # the same thread count for subprocesses (OpenMP/MKL read these when their pools start)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    out = {}
    if args.part in ("all", "psnr"):
        out["psnr"] = psnr_curves(args.quick, args.device)
    if args.part in ("all", "speed"):
        out["speed"] = speed(args.quick, args.device, args.threads, args.rounds)
    if args.part in ("all", "memory"):
        out["memory"] = memory(args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
