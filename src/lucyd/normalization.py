"""Percentile normalisation, written once: :class:`Normalizer` (fit / apply / invert).

``x = (v − p_lo) / (p_hi − p_lo)`` with ``p_lo, p_hi`` percentiles of an image (CSBDeep,
Weigert et al., Nature Methods 2018; RLN, Li et al., Nature Methods 2022 use 0.01 / 99.5).
Training (:mod:`lucyd.train.data`), prediction (:class:`lucyd.train.RestorationModel`),
isotropic restoration (:mod:`lucyd.isotropic`) and the metrics' ground-truth normalisation
(:mod:`lucyd.metrics.normalize`) all fit and apply it through this module, so the percentiles of
an image are taken the same way everywhere (:func:`percentile_range`, which subsamples very large
or lazy inputs without loading them whole unless asked for exact percentiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lucyd.errors import InputError

#: inputs up to this many voxels are sampled completely for their percentiles
PERCENTILE_SAMPLE = 16_000_000


def check_percentiles(percentiles, name: str = "percentiles") -> tuple[float, float]:
    """``(p_lo, p_hi)`` as floats with ``0 <= p_lo < p_hi <= 100``, or InputError."""
    try:
        p_lo, p_hi = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected two numbers, got {percentiles!r}") from None
    if not 0 <= p_lo < p_hi <= 100:
        raise InputError(f"{name}: expected 0 <= p_lo < p_hi <= 100, got {percentiles!r}")
    return p_lo, p_hi


def percentile_range(array, percentiles: tuple[float, float], *, axis=None,
                     sample: int | None = PERCENTILE_SAMPLE):
    """``(p_lo, p_hi)`` of ``array`` (numpy or any sliceable array-like, e.g. Zarr).

    Arrays above ``sample`` voxels (:data:`PERCENTILE_SAMPLE`) are subsampled with the smallest
    stride ``k`` that brings them below it: every k-th plane along axis 0 when there are at least
    k planes (a lazy input is then read plane by plane, never whole), otherwise every k-th voxel.
    ``sample=None``: exact percentiles of every voxel. ``axis``: percentiles over these axes only
    (exact), returned as float64 arrays that broadcast against ``array``.
    """
    p_lo, p_hi = check_percentiles(percentiles)
    if axis is not None:
        lo, hi = (np.percentile(np.asarray(array, dtype=np.float64), p, axis=axis, keepdims=True)
                  for p in (p_lo, p_hi))
        return lo, hi
    shape = tuple(array.shape)
    n = math.prod(shape)
    if sample is None or n <= sample:
        sample = np.asarray(array[...], dtype=np.float64).ravel()
    else:
        k = math.ceil(n / sample)
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
    lo, hi : float (or arrays)
        Intensities mapped to 0 and 1 (``hi == lo`` is treated as a range of 1). Arrays (one
        range per image, from ``fit(..., axis=)``) broadcast against the data.
    """

    lo: float
    hi: float

    @classmethod
    def fit(cls, array, percentiles: tuple[float, float] = (1.0, 99.8), *, axis=None,
            sample: int | None = PERCENTILE_SAMPLE) -> Normalizer:
        """The normaliser taking ``array``'s ``percentiles`` to 0 and 1 (:func:`percentile_range`;
        ``axis``, ``sample`` as there)."""
        return cls(*percentile_range(array, percentiles, axis=axis, sample=sample))

    @property
    def scale(self):
        """``hi − lo`` (1 where they coincide)."""
        if np.ndim(self.lo) or np.ndim(self.hi):
            return np.where(self.hi > self.lo, np.subtract(self.hi, self.lo), 1.0)
        return self.hi - self.lo if self.hi > self.lo else 1.0

    def apply(self, array, *, clip: bool = False, dtype=np.float32) -> np.ndarray:
        """``(array − lo) / scale`` computed and returned in ``dtype`` (float32; float64 for
        measurements); ``clip`` clips the result at ≥ 0."""
        out = (np.asarray(array, dtype=dtype) - np.asarray(self.lo, dtype)) / np.asarray(self.scale, dtype)
        return np.clip(out, 0.0, None) if clip else out

    def invert(self, array) -> np.ndarray:
        """``array · scale + lo`` (float32): normalised values back in the original units."""
        return np.asarray(array, dtype=np.float32) * np.float32(self.scale) + np.float32(self.lo)

    def rescaled(self, factor: float) -> Normalizer:
        """The normaliser with the same ``lo`` and ``factor`` times the scale."""
        return Normalizer(self.lo, self.lo + self.scale * float(factor))
