"""Training data: loading pairs, percentile normalisation, validation split, patch sampling.

* Pairs come from ``DIR/raw`` + ``DIR/gt`` via :func:`lucyd.synth.load_pairs`.
* Each image is normalised on its own (:class:`lucyd.normalization.Normalizer`),
  ``(v − p_lo) / (p_hi − p_lo)`` with the configured percentiles (RLN, Li et al. 2022: 0.01
  and 99.5); the target is clipped at ≥ 0.
* Validation never overlaps training: whole images are held out when there are ≥ 2, else
  the last ``val_fraction`` of the single image's longest axis.
* :class:`PatchSampler` draws random patches with background rejection and optional
  flips / in-plane 90° rotations, from a seeded :class:`numpy.random.Generator` whose state
  is checkpointed (so a resumed training draws the same patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.normalization import Normalizer
from lucyd.synth.pairs import load_pairs

#: attempts before a rejected patch is accepted anyway (a nearly empty image)
MAX_REDRAWS = 100
def load_training_pairs(data_dir: str | Path):
    """Load ``raw/`` + ``gt/`` pairs (:func:`lucyd.synth.load_pairs`), checked and float32."""
    return load_pairs(data_dir)


@dataclass
class TrainImage:
    """One normalised training pair and the region of it patches may come from."""

    name: str
    raw: np.ndarray
    gt: np.ndarray
    raw_range: tuple[float, float]
    gt_range: tuple[float, float]
    region: tuple[slice, ...]
    voxel_size: tuple[float, ...] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def region_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.region)


def fit_target_to_input(raw: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the least-squares fit ``raw ≈ a · gt + b`` (float64).

    For pairs whose intensities were rescaled independently (e.g. contrast-stretched 8-bit
    files), ``a · gt + b`` is the target in the input's intensity scale: with zero-mean noise
    in ``raw`` that is independent of ``gt``, regressing ``raw`` on the (nearly noise-free)
    ``gt`` is unbiased. A constant target gives ``a = 0``, ``b = mean(raw)``.
    """
    g = np.asarray(gt, dtype=np.float64).ravel()
    r = np.asarray(raw, dtype=np.float64).ravel()
    gc = g - g.mean()
    var = float(gc @ gc)
    a = float(gc @ (r - r.mean())) / var if var > 0 else 0.0
    return a, float(r.mean() - a * g.mean())


def prepare_images(
    pairs, pmin: float, pmax: float, clip_gt: bool = True, target_scale: str = "own",
    target_norm: str = "percentile",
) -> list[TrainImage]:
    """Normalise every pair with its own percentiles (input and target separately).

    ``target_norm="fit_to_input"``: the target is first mapped affinely onto the input's
    intensity scale (:func:`fit_target_to_input`) and then normalised with the *input's*
    percentiles, so that input and target share one normalisation, as at prediction time
    (denoising pairs whose files were contrast-stretched one by one, e.g. W2S); its recorded
    range is the input's, so predictions come back in the input's scale.

    Each image gets its own :class:`lucyd.normalization.Normalizer`; the ratio of the target's to
    the input's scale is kept (``gt_range``, ``raw_range``) so that predictions can be mapped back
    to the input's intensity units with the flux of the target (:func:`target_scale_ratio`).
    """
    images = []
    for p in pairs:
        raw_norm = Normalizer.fit(p.raw, (pmin, pmax))
        gt_norm = Normalizer.fit(p.gt, (pmin, pmax))
        if target_scale == "input":
            gt_norm = Normalizer(gt_norm.lo, gt_norm.lo + raw_norm.scale)
        gt_range = (gt_norm.lo, gt_norm.hi)
        if target_norm == "fit_to_input":
            a, b = fit_target_to_input(p.raw, p.gt)
            a = a if a != 0 else 1.0
            gt_norm = Normalizer((raw_norm.lo - b) / a, (raw_norm.hi - b) / a)
            gt_range = (raw_norm.lo, raw_norm.hi)  # the fitted target is in the input's units
        meta = getattr(p, "metadata", None)
        images.append(
            TrainImage(
                name=p.name,
                raw=raw_norm.apply(p.raw),
                gt=gt_norm.apply(p.gt, clip=clip_gt),
                raw_range=(raw_norm.lo, raw_norm.hi),
                gt_range=gt_range,
                region=tuple(slice(0, n) for n in p.raw.shape),
                voxel_size=getattr(meta, "voxel_size", None),
            )
        )
    return images


def target_scale_ratio(ranges) -> float:
    """Geometric mean over training pairs of ``(gt p_hi − p_lo) / (raw p_hi − p_lo)``.

    The network learns the target's normalisation; multiplying its output by the input's
    ``p_hi − p_lo`` and this ratio puts it in the input's intensity units with the target's
    flux (a deconvolved target that keeps the raw's flux has brighter peaks: a ratio above 1).

    Parameters
    ----------
    ranges : iterable of ((raw_lo, raw_hi), (gt_lo, gt_hi))
        Percentile ranges of the training pairs.
    """
    logs = []
    for (rlo, rhi), (glo, ghi) in ranges:
        if rhi > rlo and ghi > glo:
            logs.append(math.log((ghi - glo) / (rhi - rlo)))
    return float(math.exp(np.mean(logs))) if logs else 1.0


def as_planes(images: list[TrainImage]) -> list[TrainImage]:
    """Every z plane of 3D training images as a 2D image (training a 2D model on volumes).

    Planes keep their volume's normalisation and the (y, x) part of its allowed region; only
    planes inside the region's z range are returned (a validation region stays held out).
    """
    planes = []
    for im in images:
        if im.raw.ndim != 3:
            planes.append(im)
            continue
        vs = tuple(im.voxel_size[1:]) if im.voxel_size else None
        for z in range(im.region[0].start, im.region[0].stop):
            planes.append(
                TrainImage(
                    f"{im.name}[z={z}]", im.raw[z], im.gt[z], im.raw_range, im.gt_range,
                    im.region[1:], vs,
                )
            )
    return planes


def check_patch(images: list[TrainImage], patch: tuple[int, ...], size_multiple: int) -> None:
    """Raise when the patch does not fit the data or the network's size multiple."""
    if any(int(p) % size_multiple for p in patch):
        raise InputError(
            f"patch: sizes {tuple(patch)} must be multiples of {size_multiple} for this network"
        )
    for im in images:
        if len(patch) != im.raw.ndim:
            raise InputError(
                f"patch: has {len(patch)} sizes but image {im.name!r} is {im.raw.ndim}D"
            )
        if any(p > s for p, s in zip(patch, im.region_shape, strict=True)):
            raise InputError(
                f"patch: {tuple(patch)} is larger than the data region "
                f"{im.region_shape} of image {im.name!r}; use a smaller --patch"
            )


def split_validation(
    images: list[TrainImage], val_fraction: float, patch: tuple[int, ...], seed: int
) -> tuple[list[TrainImage], list[TrainImage], dict]:
    """Split into non-overlapping training and validation sets.

    With ≥ 2 images, ``max(1, round(val_fraction · n))`` whole images (at most n − 1, chosen
    with ``seed``) are held out. With one image, the last ``val_fraction`` (at least one
    patch) of its longest axis is held out and the training region ends before it.

    Returns
    -------
    train, val : list of TrainImage
        Views on the same arrays, with their allowed regions.
    info : dict
        Description for the model's provenance (``mode``, names or region).
    """
    if val_fraction <= 0:
        return images, [], {"mode": "none"}
    if len(images) >= 2:
        n_val = min(len(images) - 1, max(1, round(val_fraction * len(images))))
        order = np.random.default_rng([seed, 1]).permutation(len(images))
        val_idx = set(int(i) for i in order[:n_val])
        train = [im for i, im in enumerate(images) if i not in val_idx]
        val = [im for i, im in enumerate(images) if i in val_idx]
        return train, val, {"mode": "images", "validation": [im.name for im in val]}
    im = images[0]
    shape = im.raw.shape
    axis = int(np.argmax(shape))
    n = shape[axis]
    n_val = max(int(patch[axis]), int(math.ceil(val_fraction * n)))
    if n - n_val < patch[axis]:
        raise InputError(
            f"the single training image {im.name!r} ({shape}) is too small to hold out a "
            f"validation region of {n_val} px along axis {axis} and still fit a patch of "
            f"{tuple(patch)}; give ≥ 2 images, a smaller patch, or val_fraction 0"
        )
    cut = n - n_val

    def sub(lo: int, hi: int) -> TrainImage:
        region = tuple(slice(lo, hi) if a == axis else slice(0, s) for a, s in enumerate(shape))
        return TrainImage(im.name, im.raw, im.gt, im.raw_range, im.gt_range, region, im.voxel_size)

    info = {"mode": "region", "image": im.name, "axis": axis, "validation_start": cut}
    return [sub(0, cut)], [sub(cut, n)], info


class PatchSampler:
    """Random (raw, gt) patches with background rejection and augmentation.

    Parameters
    ----------
    images : list of TrainImage
        Normalised images with their allowed regions.
    patch : tuple of int
        Patch shape.
    rejection : {"none", "mean", "care", "fraction"}
        ``mean``: redraw while the input patch mean < ``threshold`` × the region mean (RLN,
        Li et al. 2022, 0.8). ``care``: draw centres where the target max-filtered over half a
        patch exceeds ``threshold`` × that filtered image's 99.9th percentile (CSBDeep, 0.4).
        ``fraction``: redraw while fewer than half of the target voxels exceed ``threshold``
        (3D-RCAN, 0.25).
    threshold : float or None
        See above (None: the method's default).
    augment : bool
        Random flips along every axis and random 90° rotations in the (y, x) plane
        (180° only when the patch is not square in y, x).
    same_image : bool
        Draw a whole batch from one image (RLN's reference), otherwise each patch from an
        image chosen with probability proportional to its region's size.
    seed : int or numpy.random.Generator
        Random source; its state is :attr:`state` (saved in checkpoints).
    """

    _DEFAULT_THRESHOLD = {"none": None, "mean": 0.8, "care": 0.4, "fraction": 0.25}

    def __init__(
        self,
        images: list[TrainImage],
        patch: tuple[int, ...],
        *,
        rejection: str = "none",
        threshold: float | None = None,
        augment: bool = False,
        same_image: bool = False,
        seed: int | np.random.Generator = 0,
    ):
        if not images:
            raise InputError("no training images")
        if rejection not in self._DEFAULT_THRESHOLD:
            raise InputError(
                f"patch_rejection: unknown {rejection!r}; use none, mean, care or fraction"
            )
        self.images = images
        self.patch = tuple(int(p) for p in patch)
        self.rejection = rejection
        self.threshold = (
            self._DEFAULT_THRESHOLD[rejection] if threshold is None else float(threshold)
        )
        self.augment = bool(augment)
        self.same_image = bool(same_image)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        sizes = np.array([math.prod(im.region_shape) for im in images], dtype=np.float64)
        self._weights = sizes / sizes.sum()
        self._region_means = [float(im.raw[im.region].mean()) for im in images]
        self._care_origins: list[np.ndarray | None] = [None] * len(images)

    # -- state for checkpoints
    @property
    def state(self) -> dict:
        """The generator's state (JSON/pickle-safe plain Python)."""
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value

    def _origins_care(self, k: int) -> np.ndarray:
        if self._care_origins[k] is None:
            im = self.images[k]
            gt = im.gt[im.region]
            size = tuple(max(1, p // 2) for p in self.patch)
            filt = ndimage.maximum_filter(gt, size=size, mode="constant")
            mask = filt > self.threshold * np.percentile(filt, 99.9)
            # a patch of shape P starting at o has its centre at o + P // 2
            valid = tuple(
                slice(p // 2, s - p + p // 2 + 1) for p, s in zip(self.patch, gt.shape, strict=True)
            )
            origins = np.argwhere(mask[valid])
            if origins.size == 0:  # all background: any origin
                origins = np.argwhere(
                    np.ones([s - p + 1 for p, s in zip(self.patch, gt.shape, strict=True)], bool)
                )
            self._care_origins[k] = origins
        return self._care_origins[k]

    def _draw_one(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        im = self.images[k]
        start = [s.start for s in im.region]
        span = [n - p + 1 for n, p in zip(im.region_shape, self.patch, strict=True)]
        if self.rejection == "care":
            origins = self._origins_care(k)
            o = origins[self.rng.integers(len(origins))]
            sl = tuple(
                slice(a + int(b), a + int(b) + p)
                for a, b, p in zip(start, o, self.patch, strict=True)
            )
            return im.raw[sl], im.gt[sl]
        for _ in range(MAX_REDRAWS):
            o = [int(self.rng.integers(n)) for n in span]
            sl = tuple(
                slice(a + b, a + b + p) for a, b, p in zip(start, o, self.patch, strict=True)
            )
            raw, gt = im.raw[sl], im.gt[sl]
            if self.rejection == "mean" and raw.mean() < self.threshold * self._region_means[k]:
                continue
            if self.rejection == "fraction" and np.mean(gt > self.threshold) < 0.5:
                continue
            return raw, gt
        return raw, gt

    def _augment(self, raw: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for axis in range(raw.ndim):
            if self.rng.random() < 0.5:
                raw, gt = np.flip(raw, axis), np.flip(gt, axis)
        square = self.patch[-1] == self.patch[-2]
        k = int(self.rng.integers(4)) if square else 2 * int(self.rng.integers(2))
        if k:
            raw, gt = np.rot90(raw, k, axes=(-2, -1)), np.rot90(gt, k, axes=(-2, -1))
        return raw, gt

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch ``(raw, gt)``, each ``(batch, 1, *patch)`` float32."""
        raws, gts = [], []
        k_all = int(self.rng.choice(len(self.images), p=self._weights)) if self.same_image else None
        for _ in range(batch):
            k = (
                k_all
                if k_all is not None
                else int(self.rng.choice(len(self.images), p=self._weights))
            )
            raw, gt = self._draw_one(k)
            if self.augment:
                raw, gt = self._augment(raw, gt)
            raws.append(np.ascontiguousarray(raw))
            gts.append(np.ascontiguousarray(gt))
        return np.stack(raws)[:, None], np.stack(gts)[:, None]
