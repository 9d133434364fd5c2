"""Validation that predicts test quality: whole held-out images through the prediction path.

Validating on small random patches with the training loss says little about the restored
images a user gets (on density-range training sets validation PSNR on patches stayed at
9–18 dB while the training loss fell from 0.63 to 0.05). Here validation is done like the test:
large central crops of the held-out images (a voxel budget of ``val_patches`` training patches,
split over up to ``val_patches`` images) are restored by :meth:`RestorationModel.predict` (the
same normalisation, size-multiple padding and output mapping as a user's prediction) and scored
with :func:`lucyd.metrics.evaluate` (percentile-normalised ground truth, affine fit of the
prediction; Weigert et al., Nature Methods 2018). ``best.pt`` is the checkpoint with the highest
mean validation PSNR.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from lucyd.errors import LucydError
from lucyd.metrics import evaluate
from lucyd.train.card import ModelCard
from lucyd.train.data import TrainImage
from lucyd.train.model import RestorationModel, default_tile_shape


def central_crop_shape(
    region: tuple[int, ...], patch: tuple[int, ...], voxels: float, multiple: int
) -> tuple[int, ...]:
    """The patch shape scaled up to about ``voxels`` voxels, clipped to ``region``, on ``multiple``."""
    factor = max(1.0, (voxels / math.prod(patch)) ** (1.0 / len(patch)))
    shape = []
    for p, n in zip(patch, region, strict=True):
        size = min(n, int(p * factor))
        shape.append(max(min(p, n), (size // multiple) * multiple))
    return tuple(shape)


def validation_crops(
    images: list[TrainImage], patch: tuple[int, ...], count: int, multiple: int = 1
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, raw, gt)`` central crops of up to ``count`` held-out images (evenly spread).

    Together they hold about ``count · prod(patch)`` voxels (the cost of ``count`` validation
    patches), each crop centred in its image's validation region.
    """
    if not images:
        return []
    # evenly spread over the held-out images (e.g. the planes of a held-out volume)
    picks = np.unique(np.round(np.linspace(0, len(images) - 1, min(len(images), max(1, count)))))
    chosen = [images[int(i)] for i in picks]
    budget = count * math.prod(patch) / len(chosen)
    crops = []
    for im in chosen:
        region = im.region_shape
        shape = central_crop_shape(region, patch, budget, multiple)
        sl = tuple(
            slice(r.start + (n - s) // 2, r.start + (n - s) // 2 + s)
            for r, n, s in zip(im.region, region, shape, strict=True)
        )
        crops.append((im.name, np.ascontiguousarray(im.raw[sl]), np.ascontiguousarray(im.gt[sl])))
    return crops


class Validator:
    """Scores a network on fixed validation crops the way a test image is scored.

    Parameters
    ----------
    crops : list of (name, raw, gt)
        From :func:`validation_crops`.
    card : ModelCard
        The model's card (percentiles, network); the prediction path is that of a
        :class:`~lucyd.train.model.RestorationModel` built from it.
    device : torch.device
        Where the network runs.
    """

    def __init__(self, crops, card: ModelCard, device):
        self.crops = crops
        self.card = card
        self.device = device

    def __call__(self, net: nn.Module) -> dict:
        """``{"val_psnr", "val_ssim", "val_nrmse"}``: means over the crops (None: none scorable).

        ``net``'s train/eval mode is restored afterwards.
        """

        was_training = net.training
        model = RestorationModel(net, self.card)
        model._warned = True  # the card of a running training is incomplete by definition
        psnrs, ssims, nrmses = [], [], []
        try:
            for _, raw, gt in self.crops:
                pred = model.predict(
                    raw,
                    tile_shape=default_tile_shape(raw.shape, model.size_multiple),
                    device=str(self.device),
                    progress=False,
                )
                try:
                    scores = evaluate(pred, gt)
                except LucydError:  # a constant ground truth cannot be scored
                    continue
                psnrs.append(scores["psnr"])
                if scores.get("ssim") is not None:
                    ssims.append(scores["ssim"])
                if scores.get("nrmse") is not None:
                    nrmses.append(scores["nrmse"])
        finally:
            net.train(was_training)
        return {
            "val_psnr": float(np.mean(psnrs)) if psnrs else None,
            "val_ssim": float(np.mean(ssims)) if ssims else None,
            "val_nrmse": float(np.mean(nrmses)) if nrmses else None,
        }
