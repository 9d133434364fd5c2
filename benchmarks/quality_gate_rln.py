"""RLN quality gate (issue 5): RLN trained on synthetic "mixed" data vs classic RL.

Part 1 — synthetic, unseen structures. RLN (Li et al., Nature Methods 2022) is trained only on
``lucyd synth --kind mixed`` volumes (``--density``: their object-density range) blurred with
a widefield Born–Wolf PSF, within a wall-time budget (default 14 min on the 2-core CPU), then
evaluated on held-out synthetic volumes of kinds it never saw (tubules, granules) with the
same PSF, against classic Richardson–Lucy at its best iteration count (searched over 5, 10,
…, 100 per volume and per metric). Metrics: :func:`lucyd.metrics.evaluate`
(percentile-normalised ground truth, affinely fitted prediction; PSNR and SSIM).

Part 2 — real widefield DAPI. RLN trained on synthetic mixed volumes made with the measured
Born–Wolf PSF ``PSF_dapi.tif`` (0.3/0.13/0.13 µm) is applied to ``dapi_001.tif``; figure raw /
RL (20 iterations) / RLN in xy and xz, and ground-truth-free resolution estimates (one-image
FRC and decorrelation analysis, :func:`lucyd.metrics.resolution`) for each.

Run::

    python benchmarks/quality_gate_rln.py [--work /tmp/lucyd_rln_gate] [--budget 840]

The headline of part 1 (sparse and crowded training scenes, local SSIM in the loss)::

    python benchmarks/quality_gate_rln.py --budget 840 --n-train 24 --shape 64,64,64 \
        --patch 24,32,32 --batch 2 --parts 1 --density 0.01,0.3 --loss rln_local

and part 2 with the reference recipe (a nucleus is a dense specimen)::

    python benchmarks/quality_gate_rln.py --budget-dapi 420 --patch 24,32,32 --batch 2 --parts 2

Results go to ``benchmarks/results/rln_gate.json`` and ``benchmarks/results/rln_*.png``; the
summary table is in ``benchmarks/results/rln.md``. Stages are cached in ``--work`` (delete it
to start over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
DAPI = (
    Path(
        os.environ.get(
            "LUCYD_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
        )
    )
    / "widefield_dapi"
)

#: widefield Born–Wolf optics of part 1 (water immersion, green emission)
OPTICS = {"psf_model": "born-wolf", "na": 1.1, "wavelength": 0.52, "ni": 1.33}
VOXEL = (0.2, 0.1, 0.1)
PSF_SHAPE = (31, 63, 63)
#: RLN schedule 0.015 · 0.95^(step / LR_DECAY_STEPS); the reference uses 600 over 10,000 steps,
#: ``--lr-decay-steps`` compresses it to a short budget; VAL_PATCHES fixed validation patches
TRAIN_OPTIONS = {"lr_decay_steps": 600, "val_patches": 4, "threads": 1, "loss": "rln", "seed": 0}
#: object-density range of the mixed training volumes (log-uniform per volume; 1,1 = the recipe)
DENSITY = (1.0, 1.0)
#: folder of the figures (that of ``--out``)
FIGURES = RESULTS


def _tag(patch, batch, budget) -> str:
    """Cache-folder tag of a training run: every setting that changes the model."""
    tag = f"{'x'.join(map(str, patch))}_b{batch}_t{int(budget)}"
    if (TRAIN_OPTIONS["lr_decay_steps"], TRAIN_OPTIONS["val_patches"]) != (600, 4):
        tag += f"_d{TRAIN_OPTIONS['lr_decay_steps']}_v{TRAIN_OPTIONS['val_patches']}"
    if TRAIN_OPTIONS["loss"] != "rln":
        tag += f"_{TRAIN_OPTIONS['loss']}"
    if TRAIN_OPTIONS["seed"]:
        tag += f"_seed{TRAIN_OPTIONS['seed']}"
    return tag + _density_tag()


def _settings(n_train: int, shape, patch, batch: int, budget: float) -> dict:
    """What a part's training was run with, for the results JSON."""
    return {**TRAIN_OPTIONS, "n_train": n_train, "density": DENSITY, "shape": shape, "patch": patch,
            "batch": batch, "budget_s": budget}


def _density_tag() -> str:
    return "" if DENSITY == (1.0, 1.0) else f"_dens{DENSITY[0]:g}-{DENSITY[1]:g}"


def _load(path: Path) -> np.ndarray:
    from lucyd.io import read_image

    return np.asarray(read_image(path)[0], dtype=np.float32)


def make_sets(work: Path, n_train: int, shape: tuple[int, ...], n_test: int) -> dict:
    """Training set (mixed) and test sets (tubules, granules) with one PSF."""
    from lucyd.synth import SynthConfig, make_dataset

    common = dict(OPTICS, voxel_size=VOXEL, psf_shape=PSF_SHAPE, shape=shape)
    sets = {"train" + _density_tag(): SynthConfig.build(kind="mixed", n=n_train, seed=1, density=DENSITY,
                                                         **common)}
    for k, kind in enumerate(("tubules", "granules")):
        sets[kind] = SynthConfig.build(kind=kind, n=n_test, seed=100 + k, **common)
    for name, cfg in sets.items():
        t = time.perf_counter()
        make_dataset(cfg, work / name, workers=1, progress=False, device="cpu")
        print(f"[data] {name}: {cfg.n} x {shape} in {time.perf_counter() - t:.0f} s", flush=True)
    return {name: str(work / name) for name in sets}


def train_rln(data: Path, model_dir: Path, budget_s: float, patch: tuple[int, ...], batch: int) -> dict:
    from lucyd.train import TrainConfig, train

    if (
        not (model_dir / "model.json").exists()
        or json.loads((model_dir / "model.json").read_text())["training"]["status"] == "running"
    ):
        cfg = TrainConfig.build(
            model="rln",
            patch=patch,
            batch=batch,
            steps=100_000,
            val_interval=50,
            val_patches=TRAIN_OPTIONS["val_patches"],
            lr_decay_steps=TRAIN_OPTIONS["lr_decay_steps"],
            loss=TRAIN_OPTIONS["loss"],
            val_fraction=0.1,
            time_limit_s=budget_s,
            seed=TRAIN_OPTIONS["seed"],
            device="cpu",
            # the reference network (Keras BN momentum 0.99); the trainer re-estimates the
            # batch-norm statistics exactly before every validation and checkpoint (precise BN)
            threads=TRAIN_OPTIONS["threads"],
        )
        train(cfg, data, model_dir, overwrite=True)
    info = json.loads((model_dir / "model.json").read_text())
    return info["training"]


def rl_search(
    raw: np.ndarray, psf: np.ndarray, gt: np.ndarray, max_it: int = 100, every: int = 5
) -> dict:
    """Classic RL (flipped PSF, non-circulant boundaries), scored every ``every`` iterations."""
    from lucyd.deconv import deconvolve
    from lucyd.metrics import evaluate

    scores = {}

    def cb(it, est):
        if it % every == 0 and it >= 5:
            scores[it] = evaluate(est, gt)

    t = time.perf_counter()
    deconvolve(
        raw,
        psf,
        iterations=max_it,
        back_projector="flipped",
        callback=cb,
        device="cpu",
        progress=False,
    )
    elapsed = time.perf_counter() - t
    best_psnr = max(scores, key=lambda k: scores[k]["psnr"])
    best_ssim = max(scores, key=lambda k: scores[k]["ssim"])
    return {
        "best_psnr": scores[best_psnr]["psnr"],
        "best_psnr_iterations": best_psnr,
        "best_ssim": scores[best_ssim]["ssim"],
        "best_ssim_iterations": best_ssim,
        "time_100_iterations_s": elapsed,
        "curve": {int(k): [v["psnr"], v["ssim"]] for k, v in sorted(scores.items())},
    }


def part1(work: Path, budget: float, n_train: int, shape, patch, batch) -> dict:
    from lucyd.metrics import evaluate
    from lucyd.train import load_model

    sets = make_sets(work, n_train, shape, n_test=2)
    t = time.perf_counter()
    model_dir = work / f"model_synth_{_tag(patch, batch, budget)}"
    train_dir = Path(sets["train" + _density_tag()])
    summary = train_rln(train_dir, model_dir, budget, patch, batch)
    print(f"[train] {summary} ({time.perf_counter() - t:.0f} s)", flush=True)
    model = load_model(model_dir)
    psf = _load(train_dir / "psf.tif")
    rows = []
    for kind in ("tubules", "granules"):
        folder = Path(sets[kind])
        for raw_path in sorted((folder / "raw").glob("*.tif")):
            raw, gt = _load(raw_path), _load(folder / "gt" / raw_path.name)
            t = time.perf_counter()
            pred = model.predict(raw, device="cpu", progress=False)
            t_rln = time.perf_counter() - t
            rln = evaluate(pred, gt)
            raw_score = evaluate(raw, gt)
            rl = rl_search(raw, psf, gt)
            row = {
                "kind": kind,
                "name": raw_path.stem,
                "raw_psnr": raw_score["psnr"],
                "raw_ssim": raw_score["ssim"],
                "rln_psnr": rln["psnr"],
                "rln_ssim": rln["ssim"],
                "rln_time_s": t_rln,
                **{f"rl_{k}": v for k, v in rl.items()},
            }
            rows.append(row)
            print(
                f"[eval] {kind}/{raw_path.stem}: raw {raw_score['psnr']:.2f} dB | "
                f"RL best {rl['best_psnr']:.2f} dB @{rl['best_psnr_iterations']} / "
                f"SSIM {rl['best_ssim']:.3f} @{rl['best_ssim_iterations']} | "
                f"RLN {rln['psnr']:.2f} dB / SSIM {rln['ssim']:.3f}",
                flush=True,
            )
            if kind == "tubules" and raw_path.stem.endswith("0"):
                _figure(
                    {
                        "raw": raw,
                        f"RL ({rl['best_psnr_iterations']} it.)": _rl(
                            raw, psf, rl["best_psnr_iterations"]
                        ),
                        "RLN": pred,
                        "ground truth": gt,
                    },
                    FIGURES / "rln_synthetic_tubules.png",
                    VOXEL,
                    "Unseen tubules (RLN trained on mixed structures only)",
                )
    mean = {
        k: float(np.mean([r[k] for r in rows]))
        for k in ("raw_psnr", "raw_ssim", "rl_best_psnr", "rl_best_ssim", "rln_psnr", "rln_ssim")
    }
    passed = bool(
        all(r["rln_psnr"] > r["rl_best_psnr"] and r["rln_ssim"] > r["rl_best_ssim"] for r in rows)
    )
    return {
        "training": summary,
        "rows": rows,
        "mean": mean,
        "passed_every_volume": passed,
        "passed_on_mean": bool(
            mean["rln_psnr"] > mean["rl_best_psnr"] and mean["rln_ssim"] > mean["rl_best_ssim"]
        ),
        "settings": {
            **_settings(n_train, shape, patch, batch, budget),
            "optics": OPTICS,
            "voxel_size": VOXEL,
            "psf_shape": PSF_SHAPE,
        },
    }


def _rl(raw, psf, iterations, **kw):
    from lucyd.deconv import deconvolve

    return deconvolve(raw, psf, iterations=iterations, device="cpu", progress=False, **kw)


def _figure(panels, path, voxel, title):
    from lucyd.report import save_panel_figure

    save_panel_figure(panels, path, voxel_size=voxel, title=title)
    print(f"[figure] {path}", flush=True)


def part2(work: Path, budget: float, n_train: int, shape, patch, batch) -> dict:
    from lucyd.io import read_image
    from lucyd.metrics import resolution
    from lucyd.synth import SynthConfig, make_dataset
    from lucyd.train import load_model

    psf_path = DAPI / "PSF_dapi.tif"
    img_path = DAPI / "dapi_001.tif"
    cfg = SynthConfig.build(
        kind="mixed",
        n=n_train,
        seed=7,
        shape=shape,
        psf=str(psf_path),
        voxel_size=(0.3, 0.13, 0.13),
        density=DENSITY,
    )
    t = time.perf_counter()
    train_dir = work / ("dapi_train" + _density_tag())
    make_dataset(cfg, train_dir, workers=1, progress=False, device="cpu")
    print(f"[data] {train_dir.name} in {time.perf_counter() - t:.0f} s", flush=True)
    model_dir = work / f"model_dapi_{_tag(patch, batch, budget)}"
    summary = train_rln(train_dir, model_dir, budget, patch, batch)
    print(f"[train] dapi {summary}", flush=True)
    model = load_model(model_dir)
    raw = np.asarray(read_image(img_path)[0], dtype=np.float32)
    psf = _load(psf_path)
    voxel = (0.3, 0.13, 0.13)
    t = time.perf_counter()
    rln = model.predict(raw, device="cpu", progress=False)
    t_rln = time.perf_counter() - t
    t = time.perf_counter()
    rl = _rl(raw, psf, 20)
    t_rl = time.perf_counter() - t
    panels = {"raw": raw, "RL (20 it.)": rl, "RLN": rln}
    # each panel scaled to its own 0.1-99.9 percentiles: RL's output carries the flux of the
    # PSF's far field (its mean is ~1.4x the input's), so one shared range would saturate it
    shown = {}
    for name, im in panels.items():
        lo, hi = np.percentile(im, [0.1, 99.9])
        shown[name] = (im - lo) / (hi - lo)
    from lucyd.report import save_panel_figure

    save_panel_figure(
        shown,
        FIGURES / "rln_dapi.png",
        voxel_size=voxel,
        title="dapi_001: raw / RL / RLN (trained on synthetic data with PSF_dapi)",
        display_range=(0.0, 1.0),
        intensity_label="each panel: (v - p0.1) / (p99.9 - p0.1)",
    )
    print(f"[figure] {FIGURES / 'rln_dapi.png'}", flush=True)
    res = {}
    for name, im in panels.items():
        res[name] = {}
        for method, axis in (("frc", "lateral"), ("frc", "axial"), ("decorrelation", "lateral")):
            try:
                r = resolution(im, voxel, method=method, axis=axis)
                res[name][f"{method}_{axis}"] = {
                    "um": r.get("resolution_um"),
                    "status": r.get("status"),
                }
            except Exception as exc:  # noqa: BLE001 - report, do not stop the gate
                res[name][f"{method}_{axis}"] = {"um": None, "status": f"error: {exc}"}
        print(f"[resolution] {name}: {res[name]}", flush=True)
    return {
        "training": summary,
        "resolution": res,
        "rln_time_s": t_rln,
        "rl20_time_s": t_rl,
        "settings": _settings(n_train, shape, patch, batch, budget),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lucyd_rln_gate"))
    ap.add_argument("--budget", type=float, default=840.0, help="training seconds, part 1")
    ap.add_argument("--budget-dapi", type=float, default=480.0, help="training seconds, part 2")
    ap.add_argument("--n-train", type=int, default=12)
    ap.add_argument("--shape", default="64,64,64")
    ap.add_argument("--patch", default="32,32,32")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--parts", default="1,2")
    ap.add_argument("--out", type=Path, default=RESULTS / "rln_gate.json", help="results JSON")
    ap.add_argument("--lr-decay-steps", type=int, default=600)
    ap.add_argument("--val-patches", type=int, default=4)
    ap.add_argument("--loss", default="rln", help="training loss (rln: the reference; rln_local: "
                    "its SSIM term over local windows)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--density", default="1,1",
                    help="object-density range lo,hi of the mixed training volumes (lucyd synth --density)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on the shared 2-core machine a 3D RLN step took "
                         "0.6 s with 1 thread and 3.3 s with 2)")
    args = ap.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    TRAIN_OPTIONS.update(lr_decay_steps=args.lr_decay_steps, val_patches=args.val_patches,
                         threads=args.threads, loss=args.loss, seed=args.seed)
    global DENSITY, FIGURES
    FIGURES = args.out.parent
    lo_hi = tuple(float(v) for v in args.density.split(","))
    DENSITY = lo_hi * 2 if len(lo_hi) == 1 else lo_hi
    shape = tuple(int(v) for v in args.shape.split(","))
    patch = tuple(int(v) for v in args.patch.split(","))
    FIGURES.mkdir(parents=True, exist_ok=True)
    out_path = args.out
    report = json.loads(out_path.read_text()) if out_path.exists() else {}
    report["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
    }
    t0 = time.perf_counter()
    if "1" in args.parts.split(","):
        report["part1"] = part1(args.work, args.budget, args.n_train, shape, patch, args.batch)
        out_path.write_text(json.dumps(report, indent=2))
    if "2" in args.parts.split(","):
        report["part2"] = part2(args.work, args.budget_dapi, 8, (40, 96, 96), patch, args.batch)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_time_s"] = time.perf_counter() - t0
    out_path.write_text(json.dumps(report, indent=2, default=str))
    print(
        json.dumps({k: report[k] for k in report if k.startswith("part")}, indent=1, default=str)[
            :4000
        ]
    )


if __name__ == "__main__":
    main()
