"""DenseDeconNet's loss on a small 2D synthetic deconvolution problem: published vs bounded term.

Trains DDN (Guo et al., Nat. Biotechnol. 2020) with the generic trainer on ``lucyd.synth``
"mixed" 96×96 phantoms (Born–Wolf PSF NA 1.4, 5 photons per unit, background 30; 5 training
images, one held out for validation; 2 test images) for a small step budget, with the loss
variants below, and prints the mean test PSNR (``lucyd.metrics.evaluate``) against the raw input:

* ``published``: ``mse − log((1+SSIM)/2) − 1.3·min(out)`` (unbounded: rewards a lifted floor);
* ``bounded``: ``… + 1.3·max(0, −min(out))`` (lucyd's ``ddn`` loss: penalises negative outputs);
* ``no-min``: ``mse − log((1+SSIM)/2)``;
* ``published-lr0.004``: the published loss at a tenth of the published learning rate.

Usage::

    python benchmarks/bench_ddn_loss.py [--steps 800] [--out /tmp/bench_ddn]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _loss(variant: str):
    from lucyd.train.losses import _global_ssim, _single_channel

    def loss(net, x, y):
        out = _single_channel(net(x), "ddn")
        base = torch.mean((out - y) ** 2) - torch.log((1.0 + _global_ssim(out, y)) / 2.0)
        if variant.startswith("published"):
            return base - 1.3 * out.min(), out
        if variant == "no-min":
            return base, out
        return base + 1.3 * torch.relu(-out.min()), out

    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--out", default="/tmp/bench_ddn")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from lucyd.metrics import evaluate
    from lucyd.synth import SynthConfig, load_pairs, make_dataset
    from lucyd.train import TrainConfig, load_model, train
    from lucyd.train.losses import LOSSES

    root = Path(args.out)
    common = dict(kind="mixed", task="deconvolution", shape=(96, 96), photons=5.0, read_noise=0.5,
                  background=30.0, psf_model="born-wolf", na=1.4, wavelength=0.52, ni=1.518,
                  psf_shape=(31, 31), voxel_size=(0.1, 0.1))
    if not (root / "test").exists():
        make_dataset(SynthConfig(n=5, seed=1, **common), root / "train", workers=1, progress=False,
                     device="cpu")
        make_dataset(SynthConfig(n=2, seed=2, **common), root / "test", workers=1, progress=False,
                     device="cpu")
    tests = load_pairs(root / "test")
    print(json.dumps({"method": "raw input",
                      "psnr": float(np.mean([evaluate(t.raw, t.gt)["psnr"] for t in tests]))}))
    for variant in ("published", "bounded", "no-min", "published-lr0.004"):
        LOSSES["ddn_" + variant] = _loss(variant)
        cfg = TrainConfig(model="ddn", loss="ddn_" + variant, patch=(48, 48), batch=4,
                          steps=args.steps, val_interval=args.steps, val_patches=2, device="cpu",
                          seed=0, lr=0.004 if variant.endswith("lr0.004") else None)
        t0 = time.perf_counter()
        model = load_model(train(cfg, root / "train", root / f"model_{variant}", overwrite=True))
        psnr = float(np.mean([evaluate(model.predict(t.raw, progress=False), t.gt)["psnr"]
                              for t in tests]))
        print(json.dumps({"method": f"ddn, {variant}", "psnr": round(psnr, 2),
                          "train_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
