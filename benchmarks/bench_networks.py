"""Every restoration network on one synthetic deconvolution set, plus real W2S denoising.

Part 1 (synthetic, 2D by default, ``--shape z,y,x --patch ...`` for 3D): one ``lucyd.synth``
deconvolution data set (RLN recipe: "mixed" phantoms, Born–Wolf PSF (NA 1.4, 520 nm), 5 photons
per unit, read noise 0.5; Li et al., Nature Methods 2022).
Every registered network (``rln``, ``care``, ``rcan``, ``rbcr``, ``ddn``) is trained through the
generic trainer (:func:`lucyd.train.train`, each with its published loss / learning rate /
schedule) with the *same* step budget, patch and batch, then evaluated on held-out volumes:
PSNR / SSIM after the field's affine fit (:func:`lucyd.metrics.evaluate`), parameter count,
training time and inference throughput (voxels/s of ``RestorationModel.predict``). Side by side:
classic Richardson–Lucy (best iteration, an oracle stopping rule) and Wiener–Butterworth RL
(Guo et al., Nat. Biotechnol. 2020; best of 1–3 iterations) from :func:`lucyd.deconv.deconvolve`.

Part 2 (real, 2D): the Widefield2SIM denoising pairs (``../shared/data/real/w2s_denoise``; Zhou
et al. 2020): for each pair held out in turn (``--w2s-folds``), a small CARE (Weigert et al.,
Nature Methods 2018) trained on the other pairs, against the raw frame and a Gaussian filter
whose width is chosen on the training pairs. Metrics after the affine fit (the images were
contrast-stretched independently).

Run (from the repository root)::

    python benchmarks/bench_networks.py [--steps 200] [--threads 1] [--out benchmarks/results]

2D by default: on the 2-core project machine a 3D RCAN step (16×32×32 patch) took ~18 s under
the shared load, which makes an equal 3D step budget for all five networks impractical on CPU.

Writes ``networks.json`` and prints Markdown tables. CPU only by default (``--device``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lucyd.deconv import deconvolve
from lucyd.denoise import best_gaussian_sigma, w2s_pair_folder, w2s_pairs
from lucyd.io import read_image
from lucyd.methods import build_method
from lucyd.metrics import evaluate
from lucyd.nets import count_parameters
from lucyd.pipelines.common import real_data_dir, timed
from lucyd.synth import SynthConfig, load_pairs, make_dataset
from lucyd.train import TrainConfig, load_model, train

RESULTS = Path(__file__).resolve().parent / "results"
NETWORKS = ("rln", "care", "rcan", "rbcr", "ddn")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def synthetic_data(root: Path, args) -> tuple[Path, list, np.ndarray]:
    """Training folder, held-out (raw, gt) volumes and the PSF."""
    shape = _ints(args.shape)
    psf_shape, voxel = ((15, 31, 31), (0.2, 0.1, 0.1)) if len(shape) == 3 else ((31, 31), (0.1, 0.1))
    common = dict(kind="mixed", task="deconvolution", shape=shape, photons=5.0,
                  read_noise=0.5, background=30.0, psf_model="born-wolf", na=1.4,
                  wavelength=0.52, ni=1.518, psf_shape=psf_shape, voxel_size=voxel)
    train_dir = make_dataset(SynthConfig(n=args.n_train, seed=1, **common), root / "train",
                             workers=1, progress=False, device="cpu")
    test_dir = make_dataset(SynthConfig(n=args.n_test, seed=2, **common), root / "test",
                            workers=1, progress=False, device="cpu")
    psf = np.asarray(read_image(train_dir / "psf.tif")[0])
    return train_dir, load_pairs(test_dir), psf


def _scores(preds: list[np.ndarray], tests: list) -> dict[str, float]:
    rows = [evaluate(p, t.gt) for p, t in zip(preds, tests, strict=True)]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim")}


def classic_baselines(tests: list, psf: np.ndarray, max_iter: int) -> list[dict]:
    """Raw, RL at its best iteration and Wiener–Butterworth RL at its best of 1–3 (the
    iteration scan with ``deconvolve``'s callback, the timing through the restorer registry)."""
    rows = [{"method": "raw input", **_scores([t.raw for t in tests], tests)}]
    for label, bp, iters, method in (("Richardson–Lucy (classic)", "flipped", max_iter, "rl"),
                                     ("Wiener–Butterworth RL", "wiener-butterworth", 3,
                                      "wb-rl")):
        per_iter: dict[int, list[dict]] = {}
        for t in tests:
            def cb(i, est, gt=t.gt, per_iter=per_iter):
                per_iter.setdefault(int(i), []).append(evaluate(est, gt))

            deconvolve(t.raw, psf, iterations=iters, back_projector=bp, callback=cb,
                       device="cpu", progress=False)
        means = {i: {k: float(np.mean([r[k] for r in v])) for k in ("psnr", "ssim")}
                 for i, v in per_iter.items()}
        best = max(means, key=lambda i: means[i]["psnr"])
        restorer = build_method(method, iterations=best, device="cpu")
        seconds = sum(timed(restorer.restore, t.raw, psf=psf)[1] for t in tests)
        vox = sum(t.raw.size for t in tests) / seconds
        rows.append({"method": f"{label}, best iteration {best}", **means[best],
                     "parameters": 0, "train_s": 0.0, "voxels_per_s": vox})
    return rows


def train_networks(train_dir: Path, tests: list, root: Path, args) -> list[dict]:
    rows = []
    for name in args.networks:
        cfg = TrainConfig(model=name, patch=_ints(args.patch), batch=args.batch, steps=args.steps,
                          val_interval=args.steps, device=args.device, seed=0)
        t0 = time.perf_counter()
        train(cfg, train_dir, root / f"model_{name}", overwrite=True)
        train_s = time.perf_counter() - t0
        model = load_model(root / f"model_{name}")
        network = build_method("network", model=str(root / f"model_{name}"), device=args.device)
        network.restore(tests[0].raw)  # warm-up
        preds, times = zip(*(timed(network.restore, t.raw) for t in tests), strict=True)
        infer_s = sum(times)
        row = {"method": name, **_scores(list(preds), tests),
               "parameters": count_parameters(model.net),
               "train_s": round(train_s, 1),
               "voxels_per_s": sum(t.raw.size for t in tests) / infer_s}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def w2s_benchmark(root: Path, args) -> list[dict] | None:
    """Leave-one-out CARE vs Gaussian vs raw on the W2S pairs (None when the data are absent)."""
    folder = real_data_dir(args.real_data) / "w2s_denoise"
    if not folder.is_dir():
        print(f"(W2S data not found at {folder}; skipping part 2)")
        return None
    names = list(w2s_pairs(folder))
    rows = []
    for held in names[-args.w2s_folds:]:
        view = w2s_pair_folder(folder, root / f"w2s_{held}", exclude=[held])
        train_pairs = load_pairs(view)
        sigmas = [best_gaussian_sigma(p.raw, p.gt, (0.5, 1.0, 1.5, 2.0, 2.5, 3.0))[0]
                  for p in train_pairs]
        sigma = float(np.median(sigmas))
        cfg = TrainConfig(model="care", net_kwargs={"first_filters": args.w2s_filters},
                          patch=(64, 64), batch=8, steps=args.w2s_steps,
                          val_interval=args.w2s_steps, device=args.device, seed=0)
        t0 = time.perf_counter()
        train(cfg, view, root / f"w2s_model_{held}", overwrite=True)
        train_s = time.perf_counter() - t0
        care = build_method("network", model=str(root / f"w2s_model_{held}"),
                            device=args.device)
        test = load_pairs(w2s_pair_folder(folder, root / f"w2s_test_{held}", include=[held]))[0]
        row = {"held_out": held, "sigma": sigma, "train_s": round(train_s, 1),
               "raw": evaluate(test.raw, test.gt),
               "gaussian": evaluate(build_method("gaussian", sigma=sigma).restore(test.raw),
                                    test.gt),
               "care": evaluate(care.restore(test.raw), test.gt)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS))
    ap.add_argument("--steps", type=int, default=200, help="training steps of every network")
    ap.add_argument("--shape", default="128,128", help="image shape y,x (2D) or z,y,x (3D)")
    ap.add_argument("--patch", default="64,64")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=6)
    ap.add_argument("--n-test", type=int, default=2)
    ap.add_argument("--rl-iterations", type=int, default=60)
    ap.add_argument("--w2s-steps", type=int, default=200)
    ap.add_argument("--w2s-filters", type=int, default=16)
    ap.add_argument("--w2s-folds", type=int, default=1, help="pairs held out in turn (from the end)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--real-data", type=Path, default=None,
                    help="real-data folder (default: $LUCYD_REAL_DATA, else ../shared/data/real "
                         "from the working directory)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("LUCYD_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), device {args.device}, load average at start "
              f"{load:.1f}")
    print(header, flush=True)
    result: dict = {"machine": header, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                for k, v in vars(args).items()}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lucyd_bench_networks_") as tmp:
        root = Path(tmp)
        if not args.skip_synthetic:
            train_dir, tests, psf = synthetic_data(root, args)
            rows = classic_baselines(tests, psf, args.rl_iterations)
            for r in rows:
                print(json.dumps(r), flush=True)
            rows += train_networks(train_dir, tests, root, args)
            result["synthetic"] = rows
            print("\n| method | PSNR (dB) | SSIM | parameters | training (s) | inference (voxels/s) |")
            print("|---|---|---|---|---|---|")
            for r in rows:
                params = f"{r['parameters']:,}" if "parameters" in r else "–"
                train_s = f"{r['train_s']:.0f}" if "train_s" in r else "–"
                vps = f"{r['voxels_per_s']:.3g}" if "voxels_per_s" in r else "–"
                print(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {params} | "
                      f"{train_s} | {vps} |")
        w2s = w2s_benchmark(root, args)
        if w2s is not None:
            result["w2s"] = w2s
            print("\n| held-out pair | raw PSNR / SSIM | Gaussian (σ) PSNR / SSIM | CARE PSNR / SSIM |")
            print("|---|---|---|---|")
            for r in w2s:
                print(f"| {r['held_out']} | {r['raw']['psnr']:.2f} / {r['raw']['ssim']:.3f} | "
                      f"{r['gaussian']['psnr']:.2f} / {r['gaussian']['ssim']:.3f} "
                      f"(σ {r['sigma']:g}) | {r['care']['psnr']:.2f} / {r['care']['ssim']:.3f} |")
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    print(f"\ntotal {result['total_s']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "networks.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
