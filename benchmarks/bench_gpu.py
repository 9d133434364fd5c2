"""The speed-and-memory table on one device (CUDA when present, else the CPU fallback).

Run by ``benchmarks/gpu.sh``; writes a markdown table to ``--out``. Rows:

* the FFT bound of one RL iteration (2 ``rfftn`` + 2 ``irfftn`` of the padded job as the engine
  runs them: cuFFT through ``torch.fft`` on CUDA, pocketfft in place on the CPU) and lucyd's
  RL iteration (classic, Wiener–Butterworth; slope between a 2- and a 7-iteration run, minimum
  of ``--repeats``), with their ratio;
* the peak device memory of a 20-iteration classic RL job (``torch.cuda.max_memory_allocated``;
  resident high-water mark on the CPU) beside :func:`lucyd.deconv.estimate_memory`;
* RLN and CARE voxels per second through ``RestorationModel.predict`` after
  :func:`lucyd.nets.layers.optimise_for_inference`, float32 and, on CUDA, float16 autocast,
  with their peak memory.

Volume 64×256×256 (``--shape``), 31³ Gaussian PSF (σ 3, 1.5, 1.5 voxels), untrained networks.
"""

from __future__ import annotations

# isort: off
import lucyd  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
# isort: on

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    import ctypes

    from lucyd.validation import return_freed_memory

    return_freed_memory()  # else freed job arrays stay in the heap and are reused unseen
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    Path("/proc/self/clear_refs").write_text("5")
    return _rss("VmRSS")


def _peak(device, base):
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return _rss("VmHWM") - base


def _rss(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _time(func, device, repeats):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    func()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads on the CPU fallback")
    ap.add_argument("--out", default="benchmarks/results/gpu_run.md")
    args = ap.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    from scipy import ndimage

    from lucyd.deconv import deconvolve, estimate_memory
    from lucyd.forward.fft import FFTWorkspace, fast_shape, is_point_symmetric
    from lucyd.nets import build_network
    from lucyd.nets.layers import optimise_for_inference
    from lucyd.train import RestorationModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = tuple(int(v) for v in args.shape.split(","))
    vol = np.random.default_rng(0).poisson(50.0, shape).astype(np.float32)
    psf = np.zeros((31, 31, 31), np.float32)
    psf[15, 15, 15] = 1
    psf = ndimage.gaussian_filter(psf, (3.0, 1.5, 1.5))
    job = fast_shape(tuple(n + k - 1 for n, k in zip(shape, psf.shape, strict=True)))
    rows = []
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "CPU"
    header = (f"device: {device.type} ({name}), torch {torch.__version__}, "
              f"{'CUDA ' + str(torch.version.cuda) if device.type == 'cuda' else f'{args.threads} threads'}, "
              f"volume {shape}, PSF 31³, job {job}, load {os.getloadavg()}")
    print(header, flush=True)

    # the transforms lucyd's engine runs: cuFFT through torch.fft on CUDA, pocketfft in place
    # on the CPU (lucyd.forward.fft.FFTWorkspace)
    workspace = FFTWorkspace(job, device)
    workspace.real.copy_(torch.rand(job))

    def transforms():
        for _ in range(2):
            workspace.forward()
            workspace.inverse()

    bound = _time(transforms, device, args.repeats)
    workspace.release()
    rows.append(("FFT bound of one iteration (2 rfftn + 2 irfftn of the job)", f"{bound:.4f} s", "1.00"))
    for label, kw in (("lucyd RL, non-circulant", {}),
                      ("lucyd RL + Wiener–Butterworth", {"back_projector": "wiener-butterworth"})):
        def run(n, kw=kw):
            return deconvolve(vol, psf, iterations=n, device=device.type, progress=False, **kw)

        short, long_ = _time(lambda: run(2), device, args.repeats), _time(lambda: run(7), device, args.repeats)
        per = (long_ - short) / 5
        rows.append((f"{label}: s / iteration", f"{per:.4f} s", f"{per / bound:.2f}"))
    base = _peak_reset(device)
    t0 = time.perf_counter()
    deconvolve(vol, psf, iterations=20, device=device.type, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rl20 = time.perf_counter() - t0
    peak = _peak(device, base)
    model = estimate_memory(shape, psf.shape, symmetric_psf=is_point_symmetric(psf), device=device)
    rows.append(("RL 20 iterations: voxels/s", f"{vol.size / rl20:.3g}", ""))
    rows.append(("RL 20 iterations: peak memory / model", f"{peak / 1e6:.0f} MB / {model / 1e6:.0f} MB",
                 f"{peak / model:.2f}"))

    precisions = [("float32", contextlib.nullcontext)]
    if device.type == "cuda":
        precisions.append(("float16 autocast",
                           lambda: torch.autocast("cuda", dtype=torch.float16)))
    for net_name in ("rln", "care"):
        torch.manual_seed(0)
        net = optimise_for_inference(build_network(net_name, ndim=3))
        info = {"network": {"name": net_name, "ndim": 3},
                "normalization": {"percentiles": [0.01, 99.5]}}
        model_ = RestorationModel(net, info)
        for label, ctx in precisions:
            def predict(ctx=ctx, model_=model_):
                with ctx():
                    return model_.predict(vol, device=device.type, progress=False)

            predict()  # warm-up (cuDNN / oneDNN kernel choice)
            base = _peak_reset(device)
            seconds = _time(predict, device, args.repeats)
            peak = _peak(device, base)
            rows.append((f"{net_name.upper()} ({label}): voxels/s, peak memory / input",
                         f"{vol.size / seconds:.3g}", f"{peak / vol.nbytes:.1f}×"))
    lines = [f"# lucyd speed and memory on {device.type}", "", header, "",
             "| what | value | ratio |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
