"""Percentile normalisation, written once: :class:`Normalizer` (fit / apply / invert).

``x = (v − p_lo) / (p_hi − p_lo)`` with ``p_lo, p_hi`` percentiles of an image (CSBDeep,
Weigert et al., Nature Methods 2018; RLN, Li et al., Nature Methods 2022 use 0.01 / 99.5).
Training (:mod:`lucyd.train.data`), prediction (:class:`lucyd.train.RestorationModel`) and
isotropic restoration (:mod:`lucyd.isotropic`) all fit and apply it through this module, so the
percentiles of an image are taken the same way everywhere (:func:`percentile_range`, which
subsamples very large or lazy inputs without loading them whole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lucyd.errors import InputError

#: inputs up to this many voxels are sampled completely for their percentiles
PERCENTILE_SAMPLE = 16_000_000


def percentile_range(array, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``(p_lo, p_hi)`` of ``array`` (numpy or any sliceable array-like, e.g. Zarr).

    Arrays above :data:`PERCENTILE_SAMPLE` voxels are subsampled with the smallest stride ``k``
    that brings them below it: every k-th plane along axis 0 when there are at least k planes
    (a lazy input is then read plane by plane, never whole), otherwise every k-th voxel.
    """
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0 <= p_lo < p_hi <= 100:
        raise InputError(f"percentiles: expected 0 <= p_lo < p_hi <= 100, got {percentiles!r}")
    shape = tuple(array.shape)
    n = math.prod(shape)
    if n <= PERCENTILE_SAMPLE:
        sample = np.asarray(array[...], dtype=np.float64).ravel()
    else:
        k = math.ceil(n / PERCENTILE_SAMPLE)
        if len(shape) >= 3 and shape[0] >= k:
            sample = np.asarray(array[::k], dtype=np.float64).ravel()
        else:
            sample = np.asarray(array[...]).ravel()[::k].astype(np.float64)
    lo, hi = np.percentile(sample, [p_lo, p_hi])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Normalizer:
    """The affine map ``v ↦ (v − lo) / (hi − lo)`` and its inverse.

    Attributes
    ----------
    lo, hi : float
        Intensities mapped to 0 and 1 (``hi == lo`` is treated as a range of 1).
    """

    lo: float
    hi: float

    @classmethod
    def fit(cls, array, percentiles: tuple[float, float] = (1.0, 99.8)) -> Normalizer:
        """The normaliser taking ``array``'s ``percentiles`` to 0 and 1 (:func:`percentile_range`)."""
        return cls(*percentile_range(array, percentiles))

    @property
    def scale(self) -> float:
        """``hi − lo`` (1 when they coincide)."""
        return self.hi - self.lo if self.hi > self.lo else 1.0

    def apply(self, array, *, clip: bool = False) -> np.ndarray:
        """``(array − lo) / scale`` as float32; ``clip`` clips the result at ≥ 0."""
        out = (np.asarray(array, dtype=np.float32) - np.float32(self.lo)) / np.float32(self.scale)
        return np.clip(out, 0.0, None) if clip else out

    def invert(self, array) -> np.ndarray:
        """``array · scale + lo`` (float32): normalised values back in the original units."""
        return np.asarray(array, dtype=np.float32) * np.float32(self.scale) + np.float32(self.lo)

    def rescaled(self, factor: float) -> Normalizer:
        """The normaliser with the same ``lo`` and ``factor`` times the scale."""
        return Normalizer(self.lo, self.lo + self.scale * float(factor))
