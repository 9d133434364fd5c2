"""Leave-one-out denoising benchmark on the shared W2S pairs: raw, Gaussian, CARE, Noise2Void.

For every one of the W2S fields (single noisy frame ``input_avg1`` vs the 400-frame average),
train on the OTHER fields and test on it; nothing is tuned on the test field:

* ``gaussian``: the width with the best mean PSNR over the training fields;
* ``oracle``: the width with the best PSNR on the test field itself (an upper bound);
* ``care``: :func:`lucyd.denoise.denoise_config` ("care"), trained on the training pairs (one of
  them held out as validation field for the best checkpoint);
* ``n2v``: the same network trained with the blind-spot loss on the NOISY training inputs only.

PSNR / SSIM follow :func:`lucyd.metrics.evaluate` (target percentile-normalised, prediction
fitted affinely to it — every W2S image was contrast-stretched on its own). One torch thread;
CPU seconds per training step are measured with ``time.process_time``.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_denoise.py --steps 3000 \\
        --json benchmarks/results/denoise.json --figure benchmarks/results/denoise.png
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "w2s_denoise"
SIGMAS = tuple(np.round(np.arange(0.5, 4.01, 0.25), 2))


def load_fields(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from lucyd.denoise import w2s_pairs
    from lucyd.io import read_image

    return {
        name: (np.asarray(read_image(r)[0], np.float32), np.asarray(read_image(g)[0], np.float32))
        for name, (r, g) in w2s_pairs(data_dir).items()
    }


def gaussian_scores(fields) -> dict[str, dict[float, float]]:
    """PSNR of every Gaussian width on every field."""
    from lucyd.denoise import gaussian_denoise
    from lucyd.metrics import evaluate

    return {n: {s: evaluate(gaussian_denoise(raw, s), gt)["psnr"] for s in SIGMAS}
            for n, (raw, gt) in fields.items()}


def train_fold(method: str, data_dir: Path, pairs, test: str, work: Path, steps: int, seed: int,
               overrides: dict, n2v_sees_test: bool = False):
    """Train ``method`` on every pair but ``test``; return (model, CPU s per step, info).

    ``n2v_sees_test``: N2V also trains on the held-out field's noisy input (never its target),
    as a user would train it on the images to be denoised."""
    import torch

    from lucyd.denoise import denoise_config, pair_folder
    from lucyd.train import load_model, train

    folder = work / f"data_{method}_{test}"
    if method == "n2v":  # noisy inputs only: gt/ is the same noisy frame (the loss ignores it)
        pairs = {n: (r, r) for n, (r, _) in pairs.items()}
    keep_test = method == "n2v" and n2v_sees_test
    pair_folder(pairs, folder, exclude=[] if keep_test else [test], overwrite=True)
    cfg = denoise_config(method, steps=steps, seed=seed, **overrides)
    torch.manual_seed(seed)
    t0 = time.process_time()
    model_dir = train(cfg, folder, work / f"model_{method}_{test}", overwrite=True)
    cpu = time.process_time() - t0
    info = json.loads((model_dir / "model.json").read_text())["training"]
    return load_model(model_dir), cpu / max(1, info["steps_done"]), info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--steps", type=int, default=3000, help="CARE training steps")
    ap.add_argument("--n2v-steps", type=int, default=None, help="N2V training steps (default: --steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", default="all", help="comma-separated test fields, or all")
    ap.add_argument("--methods", default="care,n2v")
    ap.add_argument("--overrides", default="{}", help="JSON of TrainConfig fields (exploration)")
    ap.add_argument("--n2v-sees-test", action="store_true",
                    help="N2V also trains on the held-out field's noisy input (self-supervised use)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from lucyd.denoise import gaussian_denoise, w2s_pairs
    from lucyd.metrics import evaluate

    pairs = w2s_pairs(args.data)
    fields = load_fields(args.data)
    names = list(fields) if args.folds == "all" else args.folds.split(",")
    methods = [m for m in args.methods.split(",") if m]
    overrides = json.loads(args.overrides)
    g = gaussian_scores(fields)
    rows, crops = [], {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lucyd_bench_denoise_") as tmp:
        for test in names:
            raw, gt = fields[test]
            train_names = [n for n in fields if n != test]
            s_train = max(SIGMAS, key=lambda s: np.mean([g[n][s] for n in train_names]))
            s_oracle = max(SIGMAS, key=lambda s: g[test][s])
            row = {"field": test, "raw": evaluate(raw, gt)["psnr"],
                   "gaussian": g[test][s_train], "gaussian_sigma": float(s_train),
                   "oracle": g[test][s_oracle], "oracle_sigma": float(s_oracle)}
            outs = {"noisy": raw, "gaussian": gaussian_denoise(raw, s_train)}
            for m in methods:
                steps = args.n2v_steps if (m == "n2v" and args.n2v_steps) else args.steps
                model, cpu_step, info = train_fold(m, args.data, pairs, test, Path(tmp), steps,
                                                   args.seed, overrides, args.n2v_sees_test)
                pred = model.predict(raw, progress=False)
                ev = evaluate(pred, gt)
                row[m], row[f"{m}_ssim"] = ev["psnr"], ev["ssim"]
                row[f"{m}_cpu_s_per_step"] = cpu_step
                row[f"{m}_best_step"] = info.get("best_step")
                row[f"{m}_steps"] = steps
                outs[m] = pred
            outs["target"] = gt
            crops[test] = outs
            rows.append(row)
            if args.json:  # partial results survive an interrupted run
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"rows": rows, "partial": True}, indent=1))
            if args.figure:
                write_figure(crops, args.figure)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
                  flush=True)
    keys = ["raw", "gaussian", "oracle", *methods]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("mean", json.dumps({k: round(v, 2) for k, v in mean.items()}))
    for m in methods:
        print(f"{m} - gaussian (train-chosen): {mean[m] - mean['gaussian']:+.2f} dB")
    result = {"steps": args.steps, "n2v_steps": args.n2v_steps or args.steps, "seed": args.seed,
              "n2v_sees_test": args.n2v_sees_test,
              "overrides": overrides, "rows": rows,
              "mean": mean, "load_before": load_before, "load_after": os.getloadavg(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "torch_threads": 1}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def write_figure(crops: dict, path: Path, size: int = 128) -> None:
    """One row per field: noisy / Gaussian / CARE / N2V / target crops, each fitted affinely to
    the normalised target and shown with one display range [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lucyd.metrics import normalize_pair

    cols = [c for c in ("noisy", "gaussian", "care", "n2v", "target") if c in next(iter(crops.values()))]
    fig, axes = plt.subplots(len(crops), len(cols), figsize=(2.2 * len(cols), 2.2 * len(crops)), dpi=110,
                             squeeze=False)
    for i, (name, outs) in enumerate(crops.items()):
        gt = outs["target"]
        cy, cx = np.unravel_index(np.argmax(gt[size:-size, size:-size]), (gt.shape[0] - 2 * size,) * 2)
        sl = (slice(cy + size // 2, cy + 3 * size // 2), slice(cx + size // 2, cx + 3 * size // 2))
        for j, c in enumerate(cols):
            img = normalize_pair(outs[c], gt)[0] if c != "target" else normalize_pair(gt, gt)[1]
            axes[i, j].imshow(img[sl], cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(c)
        axes[i, 0].set_ylabel(name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
