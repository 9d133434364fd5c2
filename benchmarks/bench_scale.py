"""Scale benchmark: blocked = whole image; throughput and per-worker memory as volumes grow.

Two parts:

``python benchmarks/bench_scale.py accuracy [--quick] [--workers 2]``
    Blocked = whole-image deconvolution and the same result on every executor. The case of
    lucyd issue 13: a 64×256×256 ``tubules`` phantom (peak ~100 photons, Poisson noise,
    background 5) blurred by a 15³ Gaussian PSF (σ = 2.5, 2, 2 voxels), 10 Richardson–Lucy
    iterations, ``max_memory = 40 MB``: whole image, blocked with the halo rule of
    :func:`lucyd.deconv.blocked.rl_halo`, blocked with a halo of one PSF size (the previous
    rule) and blocked on a dask LocalCluster. ``--quick``: 32×128×128, 10 MB.

``python benchmarks/bench_scale.py make --gb 4 --scratch /work/scratch/scale``
    Writes an OME-Zarr volume of ``gb`` GB (float32, i.e. ``gb·2.5e8`` voxels; z grows, y = x =
    2048), chunk slab by chunk slab (64 planes at a time, never the whole volume in memory): a
    ``tubules`` phantom blurred by a Gaussian PSF (15×31×31, σ = 3, 2, 2 voxels), repeated with
    shifts, Poisson noise per slab. Also writes the PSF and (``--model``) a 3D RLN model folder.

``python benchmarks/bench_scale.py run --method wb|rln --gb 4 [--cluster local:2] --max-memory 1GB``
    Runs ``lucyd deconvolve`` (Wiener–Butterworth back projector, 2 iterations) or
    ``lucyd predict`` (RLN) on that volume as a subprocess (1 torch thread per process) and
    samples the resident memory of the command and of every worker process (psutil, 0.2 s):
    voxels per second and peak memory per process are appended to
    ``benchmarks/results/scale_runs.jsonl``; the output is deleted afterwards.

``python benchmarks/bench_scale.py table``
    The markdown table of ``scale_runs.jsonl`` with the projection for the 250 GB reference
    volume (6370 × 7226 × 2850 voxels, RLN paper, Li et al., Nat. Methods 19, 1427–1437, 2022).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "scale_runs.jsonl"
#: voxels of the RLN paper's cleared-tissue volume (6370 × 7226 × 2850, 250 GB as uint16)
REFERENCE_VOXELS = 6370 * 7226 * 2850
#: volume geometry of the scale runs: y = x = 2048, z grows with the size
PLANE = (2048, 2048)
SLAB = 64
CHUNKS = (64, 256, 256)


def gaussian_psf(shape, sigma) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    r2 = sum(((grid[i] - (n - 1) / 2) / s) ** 2 for i, (n, s) in enumerate(zip(shape, sigma, strict=True)))
    p = np.exp(-r2 / 2)
    return (p / p.sum()).astype(np.float32)


# ---------------------------------------------------------------------------- accuracy
def compare(result, whole, margin):
    inner = tuple(slice(m, -m) for m in margin)
    d = result[inner] - whole[inner]
    return float(np.linalg.norm(d) / np.linalg.norm(whole[inner])), float(
        np.abs(d).max() / whole.max()
    )


def accuracy(args) -> None:
    import torch
    from scipy.signal import fftconvolve

    from lucyd.deconv import deconvolve
    from lucyd.deconv.blocked import rl_halo
    from lucyd.synth import phantom

    torch.set_num_threads(1)
    shape, budget = ((32, 128, 128), 10e6) if args.quick else ((64, 256, 256), 40e6)
    rng = np.random.default_rng(0)
    x = phantom("tubules", shape, seed=0).astype(np.float32)
    x = x / x.max() * 100 + 5
    psf = gaussian_psf((15, 15, 15), (2.5, 2.0, 2.0))
    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    kw = dict(iterations=args.iterations, device="cpu", progress=False)
    rows = []

    def run(**extra):
        t0 = time.process_time()
        w0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = deconvolve(y, psf, **kw, **extra)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        return res, cpu, wall, [str(c.message) for c in caught]

    whole, cpu, wall, _ = run()
    rows.append(dict(run="whole image", cpu_s=cpu, wall_s=wall))
    margin = tuple((n - 1) // 2 for n in psf.shape)
    halo = rl_halo(psf, args.iterations)
    serial, cpu, wall, warn = run(max_memory=budget)
    l2, mx = compare(serial, whole, margin)
    rows.append(dict(run=f"blocked, halo {halo}", cpu_s=cpu, wall_s=wall, l2=l2, max=mx, warn=warn))

    from lucyd.deconv import blocked

    old = blocked.rl_halo
    blocked.rl_halo = lambda p, k, bp=None: tuple(int(n) for n in p.shape)
    try:
        res, cpu, wall, warn = run(max_memory=budget)
    finally:
        blocked.rl_halo = old
    l2, mx = compare(res, whole, margin)
    rows.append(
        dict(run=f"blocked, halo {psf.shape} (old)", cpu_s=cpu, wall_s=wall, l2=l2, max=mx, warn=warn)
    )
    res, cpu, wall, warn = run(max_memory=budget, cluster=f"local:{args.workers}")
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


def throughput(args) -> None:
    """Blocked against whole-image throughput at large blocks (issue 13: at least 0.8×).

    One volume, 15³ Gaussian PSF, RL with the flipped back projector; the whole-image job, then
    blocked jobs whose budget is a fraction of the whole job's estimated peak (so the blocks are
    large). Throughput in voxels per CPU second of this process (one thread), so the figure does
    not depend on the machine's load; each run is repeated and the best kept.
    """
    import torch

    from lucyd.deconv import deconvolve, estimate_memory
    from lucyd.synth import phantom

    torch.set_num_threads(1)
    shape = tuple(int(v) for v in args.shape.split(","))
    rng = np.random.default_rng(0)
    x = phantom("tubules", shape, seed=0).astype(np.float32)
    x = x / x.max() * 100 + 5
    psf = gaussian_psf((15, 15, 15), (2.5, 2.0, 2.0))
    from scipy.signal import fftconvolve

    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    need = estimate_memory(shape, psf.shape, symmetric_psf=True)
    voxels = float(np.prod(shape))

    def best_cpu(**extra) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.process_time()
            deconvolve(y, psf, iterations=args.iterations, device="cpu", progress=False, **extra)
            times.append(time.process_time() - t0)
        return min(times)

    whole = best_cpu()
    print(f"shape {shape}, PSF 15³, {args.iterations} iterations, 1 thread, whole-image job peak "
          f"{need / 1e6:.0f} MB (model), load {args.load:.1f}")
    print(f"| run | budget | CPU s (best of {args.repeats}) | voxels per CPU s | × whole |")
    print("|---|---|---|---|---|")
    print(f"| whole image | – | {whole:.2f} | {voxels * args.iterations / whole:.3g} | 1.00 |")
    for fraction in (0.5, 0.25):
        cpu = best_cpu(max_memory=int(need * fraction))
        print(f"| blocked | {fraction:g} × the whole job ({need * fraction / 1e6:.0f} MB) | {cpu:.2f} | "
              f"{voxels * args.iterations / cpu:.3g} | {whole / cpu:.2f} |")


# ---------------------------------------------------------------------------- volumes
def volume_path(scratch: Path, gb: float) -> Path:
    return scratch / f"volume_{gb:g}GB.ome.zarr"


def volume_shape(gb: float) -> tuple[int, int, int]:
    voxels = gb * 1e9 / 4
    z = max(SLAB, int(round(voxels / (PLANE[0] * PLANE[1]) / SLAB)) * SLAB)
    return (z, *PLANE)


def make_volume(args) -> None:
    """Write the volume slab by slab (and the PSF, and with --model a small trained RLN)."""
    import torch
    from scipy.signal import fftconvolve

    from lucyd.io import ImageMetadata, write_image
    from lucyd.io.omezarr import create_omezarr
    from lucyd.synth import phantom

    torch.set_num_threads(1)
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    psf = gaussian_psf((15, 31, 31), (3.0, 2.0, 2.0))
    meta = ImageMetadata("ZYX", (0.3, 0.1, 0.1))
    write_image(scratch / "psf.tif", psf, meta)
    if args.model:
        make_model(scratch, psf)
    if args.gb is None:
        return
    shape = volume_shape(args.gb)
    path = volume_path(scratch, args.gb)
    if path.exists():
        print(f"{path} exists")
        return
    base = phantom("tubules", (SLAB + 16, 512, 512), seed=0).astype(np.float32)
    base = fftconvolve(base / base.max() * 100, psf, "same")[8:-8].clip(0) + 5
    rng = np.random.default_rng(1)
    # four independent Poisson draws of the blurred phantom; each slab tiles them with shifts
    # (drawing noise for 5e9 voxels would take longer than the runs themselves)
    noisy = [rng.poisson(base).astype(np.float32) for _ in range(4)]
    tmp = path.with_name(path.name + ".tmp")
    arr = create_omezarr(tmp, shape, np.float32, meta, CHUNKS)
    t0 = time.perf_counter()
    reps = (1, PLANE[0] // 512, PLANE[1] // 512)
    for i, z0 in enumerate(range(0, shape[0], SLAB)):
        shift = rng.integers(0, 512, 2)
        arr[z0 : z0 + SLAB] = np.tile(np.roll(noisy[i % 4], tuple(shift), axis=(1, 2)), reps)
    os.replace(tmp, path)
    print(f"wrote {path} {shape} ({np.prod(shape) * 4 / 1e9:.1f} GB float32) "
          f"in {time.perf_counter() - t0:.0f} s")


def make_model(scratch: Path, psf) -> Path:
    """A 3D RLN trained for a few steps on synthetic pairs (its speed is that of any RLN)."""
    from scipy.signal import fftconvolve

    from lucyd.io import ImageMetadata, write_image
    from lucyd.synth import phantom
    from lucyd.train import TrainConfig, train

    folder = scratch / "rln_model"
    if (folder / "model.json").exists():
        return folder
    data = scratch / "rln_data"
    rng = np.random.default_rng(0)
    for i in range(2):
        gt = phantom("tubules", (32, 64, 64), seed=i).astype(np.float32)
        raw = rng.poisson(fftconvolve(gt / gt.max() * 100, psf, "same").clip(0) + 5)
        meta = ImageMetadata("ZYX", (0.3, 0.1, 0.1))
        write_image(data / "raw" / f"{i:04d}.tif", raw.astype(np.float32), meta)
        write_image(data / "gt" / f"{i:04d}.tif", gt, meta)
    (data / "dataset.json").write_text(json.dumps({"kind": "bench_scale"}))
    cfg = TrainConfig.build(model="rln", patch=(16, 32, 32), batch=2, steps=20, val_interval=10,
                            val_patches=2, device="cpu", seed=0)
    train(cfg, data, folder)
    return folder


# ---------------------------------------------------------------------------- runs
class PeakMemory:
    """Samples the resident memory of a process and its descendants (per process, max)."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            self.loads.append(os.getloadavg()[0])
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                    self.cpu[p.pid] = times.user + times.system
                    if p.pid not in self.names:
                        self.names[p.pid] = " ".join(p.cmdline())[:120]
                except psutil.Error:
                    continue
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), rss)
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        root = self.root.pid
        workers = {
            pid: v for pid, v in self.peaks.items()
            if pid != root and "resource_tracker" not in self.names.get(pid, "")
        }
        return {
            "cpu_sampled_s": sum(self.cpu.values()),
            "load_mean": float(np.mean(self.loads)) if self.loads else None,
            "client_peak_mb": self.peaks.get(root, 0) / 1e6,
            "worker_peaks_mb": sorted(v / 1e6 for v in workers.values()),
        }


def run_job(args) -> None:
    scratch = Path(args.scratch)
    src = volume_path(scratch, args.gb)
    if not src.exists():
        raise SystemExit(f"{src}: make it first (bench_scale.py make --gb {args.gb:g})")
    out = scratch / f"out_{args.method}_{args.gb:g}GB.ome.zarr"
    for leftover in (out, out.with_name(f".{out.name}.partial")):
        shutil.rmtree(leftover, ignore_errors=True)
    lucyd = [sys.executable, "-m", "lucyd"]
    if args.method == "wb":
        cmd = [*lucyd, "deconvolve", str(src), "--psf", str(scratch / "psf.tif"), "-o", str(out),
               "--back-projector", "wiener-butterworth", "-n", str(args.iterations)]
    else:
        cmd = [*lucyd, "predict", str(scratch / "rln_model"), str(src), "-o", str(out)]
    cmd += ["--device", "cpu", "--max-memory", args.max_memory]
    if args.cluster:
        cmd += ["--cluster", args.cluster]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LUCYD_NO_PROGRESS="1")
    log = scratch / f"log_{args.method}_{args.gb:g}GB_{args.cluster or 'serial'}.txt"
    import resource

    with open(log, "w") as fh:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        monitor = PeakMemory(proc.pid)
        try:
            rc = proc.wait(timeout=args.time_limit)
        except subprocess.TimeoutExpired:  # stopped: the partial store says how far it got
            os.killpg(proc.pid, 9)
            rc = proc.wait()
        wall = time.perf_counter() - t0
        mem = monitor.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the command and of every process it waited for (its dask workers)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = max(cpu, mem["cpu_sampled_s"])  # workers of a stopped run are not waited for
    shape = volume_shape(args.gb)
    voxels = int(np.prod(shape))
    stopped = None
    if args.time_limit is not None and rc != 0:
        import zarr

        rec = zarr.open_group(str(out.with_name(f".{out.name}.partial")), mode="r")["0"].attrs
        rec = rec.get("lucyd_tiles", {})
        stopped = {"tiles_done": len(rec.get("done", [])), "tiles_total": rec.get("total")}
        voxels = int(voxels * stopped["tiles_done"] / max(1, stopped["tiles_total"] or 1))
        rc = 0 if stopped["tiles_done"] else rc
    row = dict(stopped_after_s=args.time_limit if stopped else None, stopped=stopped,
               method=args.method, gb=args.gb, shape=shape, voxels=voxels,
               cluster=args.cluster or "serial", max_memory=args.max_memory,
               iterations=args.iterations if args.method == "wb" else None, rc=rc, wall_s=wall,
               voxels_per_s=voxels / wall, cpu_s=cpu, voxels_per_cpu_s=voxels / cpu,
               load_before=args.load, load_after=os.getloadavg()[0],
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), command=" ".join(cmd[2:]),
               code=_git_commit(),
               **mem)
    print(json.dumps(row))
    if rc != 0:
        print(log.read_text()[-3000:])
    RUNS.parent.mkdir(exist_ok=True)
    with open(RUNS, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    for leftover in (out, out.with_name(f".{out.name}.partial")):
        shutil.rmtree(leftover, ignore_errors=True)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def table(args) -> None:
    """Markdown table; projections from CPU time (the machine is shared, wall time is not
    its own): an idle machine of this kind with ``cores`` cores runs ``cores`` workers. A run
    stopped before 5 % of its tiles measured mostly its start-up: no projection."""
    rows = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["date"] >= (args.since or "") and not r.get("superseded")]
    cores = os.cpu_count() or 1
    print("| method | volume | executor | --max-memory | wall s (load) | CPU s | voxels / wall s | "
          "voxels / CPU s | client peak MB | peak per worker MB | 250 GB on one "
          f"{cores}-core machine | machines for 1 h |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["rc"] != 0:
            continue
        workers = r["worker_peaks_mb"]
        per_worker = f"{max(workers):.0f} ({len(workers)} workers)" if workers else "–"
        name = "WB deconvolution" if r["method"] == "wb" else "RLN prediction"
        stopped = r.get("stopped") or {}
        too_early = stopped and stopped["tiles_done"] < 0.05 * stopped["tiles_total"]
        if "voxels_per_cpu_s" in r and not too_early:
            ref_h = REFERENCE_VOXELS / (r["voxels_per_cpu_s"] * cores) / 3600
            cpu, per_cpu = f"{r['cpu_s']:.0f}", f"{r['voxels_per_cpu_s'] / 1e6:.2f} M"
            proj, machines = f"{ref_h:.1f} h", f"{int(np.ceil(ref_h))}"
        elif "voxels_per_cpu_s" in r:  # mostly start-up: a lower bound, no projection
            cpu, per_cpu = f"{r['cpu_s']:.0f}", f"≥ {r['voxels_per_cpu_s'] / 1e6:.2f} M"
            proj = machines = "–"
        else:
            cpu = per_cpu = proj = machines = "–"
        load = (f"{r['load_mean']:.1f}" if r.get("load_mean") is not None
                else f"{r['load_before']:.0f}–{r['load_after']:.0f}")
        if r.get("stopped"):
            load += f"; stopped, {r['stopped']['tiles_done']}/{r['stopped']['tiles_total']} tiles"
        print(f"| {name} | {r['gb']:g} GB {tuple(r['shape'])} | {r['cluster']} | "
              f"{r['max_memory']} | {r['wall_s']:.0f} ({load}) | {cpu} | "
              f"{r['voxels_per_s'] / 1e6:.2f} M | {per_cpu} | {r['client_peak_mb']:.0f} | "
              f"{per_worker} | {proj} | {machines} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--quick", action="store_true")
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--iterations", type=int, default=10)
    t = sub.add_parser("throughput")
    t.add_argument("--shape", default="64,512,512")
    t.add_argument("--iterations", type=int, default=10)
    t.add_argument("--repeats", type=int, default=2)
    m = sub.add_parser("make")
    m.add_argument("--gb", type=float)
    m.add_argument("--model", action="store_true")
    r = sub.add_parser("run")
    r.add_argument("--method", choices=("wb", "rln"), required=True)
    r.add_argument("--gb", type=float, required=True)
    r.add_argument("--cluster")
    r.add_argument("--max-memory", default="1GB")
    r.add_argument("--iterations", type=int, default=2)
    r.add_argument("--time-limit", type=float, help="stop after this many seconds (resumable)")
    tb = sub.add_parser("table")
    tb.add_argument("--since", help='only runs from this date on, e.g. "2026-11-30 03:00"')
    for p in (m, r):
        p.add_argument("--scratch", default="/work/scratch/scale")
    args = ap.parse_args()
    args.load = os.getloadavg()[0]
    jobs = {"accuracy": accuracy, "throughput": throughput, "make": make_volume, "run": run_job, "table": table}
    jobs[args.what](args)


if __name__ == "__main__":
    main()
