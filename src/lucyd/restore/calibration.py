"""Calibration of synthetic training data to one specimen: noise, brightness and density.

The image tells its own camera noise (:func:`lucyd.forward.noise_estimate.estimate_noise`),
how many photo-electrons its bright structures carry, and how much of the field its
structures fill. :func:`calibrate` measures the three, and :func:`calibrated_pairs` makes
synthetic (raw, ground truth) pairs through the same PSF that match them: same photon scale
and read noise, same brightness, same density of structure (Li et al., Nature Methods 2022,
train RLN on synthetic "mixed structures"; here their count is set from the specimen
instead of a fixed recipe).

Everything is expressed in photo-electrons above the image's dark level: the raw image
``e = (v − dark) / gain`` and the ground truth ``o`` with ``E[e] = o ⊛ psf``, so a network
trained on the pairs returns an object in the image's own units whose blur carries the
image's flux.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.forward.noise_estimate import NoiseModel, estimate_noise
from lucyd.synth import phantom

#: the structure's share of the field is the fraction of voxels whose smoothed signal
#: exceeds this fraction of the bright level (99.9th percentile)
FOREGROUND_LEVEL = 0.2
#: density factors (``phantom(..., density=)``) between which the specimen's is searched
DENSITY_RANGE = (0.03, 8.0)
#: kinds of phantom in a calibrated training set, with their share
TRAINING_KINDS = (("mixed", 0.4), ("nuclei", 0.2), ("granules", 0.2), ("tubules", 0.2))


@dataclass(frozen=True)
class Calibration:
    """What the specimen's image says about itself (all in photo-electrons above dark).

    Attributes
    ----------
    noise : NoiseModel
        Dark level, gain, read noise, background and bright level.
    foreground_fraction : float
        Share of the voxels whose 3-voxel smoothed signal exceeds
        :data:`FOREGROUND_LEVEL` × the bright level.
    """

    noise: NoiseModel
    foreground_fraction: float

    def as_dict(self) -> dict:
        return {"noise": self.noise.as_dict(), "foreground_fraction": float(self.foreground_fraction)}

    def key(self) -> tuple:
        """Rounded values that identify matching synthetic data (for model caching)."""
        n = self.noise

        def r(v: float) -> float:  # two significant digits on a log scale
            return float(f"{v:.2g}")

        return (r(n.peak_e), r(n.read_noise_e), r(n.background_e), r(self.foreground_fraction))


def foreground_fraction(signal_e: np.ndarray, bright_e: float) -> float:
    """Share of voxels whose 3-voxel box-smoothed value exceeds ``FOREGROUND_LEVEL · bright_e``."""
    smooth = ndimage.uniform_filter(np.asarray(signal_e, np.float32), 3)
    return float(np.mean(smooth > FOREGROUND_LEVEL * bright_e))


def calibrate(image, psf) -> Calibration:
    """Measure noise, brightness and structure density of a raw image.

    Parameters
    ----------
    image : ndarray
        Raw 2D or 3D image in camera counts.
    psf : ndarray
        Its PSF (used to find the noise where the optics pass no signal).
    """
    noise = estimate_noise(image, psf)
    e = noise.to_electrons(image)
    return Calibration(noise=noise, foreground_fraction=foreground_fraction(e, noise.peak_e))


def _blurred(kind: str, shape, psf, seed: int, density: float, perlin: dict | None = None):
    gt = phantom(kind, shape, seed=seed, density=density, background=0.0, perlin=perlin)
    return gt, convolve(gt, psf, boundary="linear")


def match_density(kind: str, shape, psf, target_fraction: float, *, seed: int = 0) -> float:
    """Density factor of phantom ``kind`` whose blurred image fills ``target_fraction``.

    Bisection in log-density over :data:`DENSITY_RANGE` (the fraction grows with density);
    clipped to the range's ends when the target lies outside what the kind can reach.
    """
    lo, hi = (math.log(v) for v in DENSITY_RANGE)

    def fraction(log_density: float) -> float:
        _, blur = _blurred(kind, shape, psf, seed, math.exp(log_density))
        bright = float(np.percentile(ndimage.uniform_filter(blur, 3), 99.9))
        return foreground_fraction(blur, bright)

    if fraction(lo) >= target_fraction:
        return DENSITY_RANGE[0]
    if fraction(hi) <= target_fraction:
        return DENSITY_RANGE[1]
    for _ in range(7):
        mid = 0.5 * (lo + hi)
        if fraction(mid) < target_fraction:
            lo = mid
        else:
            hi = mid
    return float(math.exp(0.5 * (lo + hi)))


@dataclass(frozen=True)
class SyntheticPlan:
    """How a calibrated training set is made (saved in the restore record)."""

    shape: tuple[int, ...]
    n: int
    seed: int
    densities: dict
    kinds: tuple

    def as_dict(self) -> dict:
        return asdict(self)


def plan_training_set(calibration: Calibration, psf, image_shape, *, n: int, seed: int,
                      max_shape: tuple[int, ...]) -> SyntheticPlan:
    """Choose shape, kinds and matched densities of a calibrated training set."""
    ndim = len(image_shape)
    if ndim not in (2, 3):
        raise InputError(f"image: expected 2D or 3D, got {ndim}D")
    shape = tuple(int(min(s, m)) for s, m in zip(image_shape, max_shape[-ndim:], strict=True))
    probe = tuple(min(s, 64) if i == 0 and ndim == 3 else min(s, 128) for i, s in enumerate(shape))
    densities = {kind: match_density(kind, probe, psf, calibration.foreground_fraction, seed=seed)
                 for kind, _ in TRAINING_KINDS}
    return SyntheticPlan(shape=shape, n=int(n), seed=int(seed), densities=densities,
                         kinds=tuple(k for k, _ in TRAINING_KINDS))


def calibrated_pairs(plan: SyntheticPlan, calibration: Calibration, psf):
    """Yield ``(name, raw_e, gt_e)`` synthetic pairs matching the specimen.

    Pair ``i`` uses phantom kind ``i``'s share of :data:`TRAINING_KINDS`, its matched density
    times a factor drawn log-uniformly in [0.5, 2] (so the set spans the specimen's density),
    a brightness such that the blurred phantom's bright level (99.9th percentile of the
    smoothed image) equals the specimen's, the specimen's background, and Poisson noise plus
    Gaussian noise of the specimen's read noise; the raw is then shifted by its own dark level
    (as the specimen was).
    """
    rng = np.random.default_rng(plan.seed)
    shares = np.cumsum([s for _, s in TRAINING_KINDS])
    for i in range(plan.n):
        kind = TRAINING_KINDS[int(np.searchsorted(shares, (i + 0.5) / plan.n))][0]
        density = plan.densities[kind] * float(np.exp(rng.uniform(math.log(0.5), math.log(2.0))))
        seed = int(rng.integers(2**31))
        raw, gt_e = image_phantom(kind, plan.shape, psf, calibration.noise, density=density, seed=seed)
        yield f"{i:04d}_{kind}", raw, gt_e


def image_phantom(kind: str, shape, psf, noise: NoiseModel, *, density: float, seed: int,
                  perlin: dict | None = None):
    """One phantom imaged like the specimen: ``(raw_e, gt_e)`` in photo-electrons above dark.

    The phantom's brightness is set so that the blurred image's bright level (99.9th
    percentile of the smoothed image) is ``noise.peak_e``; Poisson noise plus Gaussian read
    noise ``noise.read_noise_e`` on ``noise.background_e``; the raw is shifted by its own dark
    level (as the specimen was), and the object carries the background so that
    ``blur(gt_e) = E[raw_e]``. ``perlin`` adds a smooth diffuse component to the object
    (:func:`lucyd.synth.phantom`'s ``perlin``: cytoplasm-like signal of dense specimens).
    """
    gt, blur = _blurred(kind, shape, psf, seed, density, perlin)
    bright = float(np.percentile(ndimage.uniform_filter(blur, 3), 99.9))
    photons = noise.peak_e / max(bright, 1e-12)
    raw = camera_noise(blur, photons=photons, background=noise.background_e,
                       read_noise=noise.read_noise_e, seed=seed + 1)
    dark = float(np.percentile(ndimage.uniform_filter(raw, 3), 0.5))
    gt_e = (gt * np.float32(photons) + np.float32(noise.background_e - dark)).astype(np.float32)
    return (raw - np.float32(dark)).astype(np.float32), gt_e


def specimen_pairs(estimate_e: np.ndarray, psf, calibration: Calibration, *, n: int, seed: int,
                   shape: tuple[int, ...]):
    """Yield ``(name, raw_e, gt_e)`` pairs whose objects come from the specimen itself.

    Phantoms never look quite like the specimen, and a network trained on them alone learns
    the phantoms' sharpness (it sharpens smooth cells). Here the object is a crop of the
    specimen's own physics-only estimate ``estimate_e`` (Richardson–Lucy stopped by the
    discrepancy principle: the specimen's structure, blurrier and noisier than the truth),
    randomly flipped and rotated in (y, x), re-imaged through the PSF with the specimen's
    noise. The network then learns to undo what imaging + RL do to *this kind* of structure,
    which it applies to the estimate of the real image (re-degradation self-supervision, in
    the spirit of zero-shot deconvolution networks, Qiao et al., Nat. Biotechnol. 2024).
    """
    noise = calibration.noise
    rng = np.random.default_rng(seed + 7919)
    est = np.clip(np.asarray(estimate_e, np.float32), 0, None)
    crop = tuple(min(c, s) for c, s in zip(shape, est.shape, strict=True))
    for i in range(n):
        start = [int(rng.integers(0, s - c + 1)) for s, c in zip(est.shape, crop, strict=True)]
        obj = est[tuple(slice(a, a + c) for a, c in zip(start, crop, strict=True))]
        for axis in range(obj.ndim - 2, obj.ndim):
            if rng.random() < 0.5:
                obj = np.flip(obj, axis)
        if crop[-1] == crop[-2]:
            obj = np.rot90(obj, int(rng.integers(4)), axes=(obj.ndim - 2, obj.ndim - 1))
        obj = np.ascontiguousarray(obj)
        pair_seed = int(rng.integers(2**31))
        raw = camera_noise(convolve(obj, psf, boundary="linear"), photons=1.0, read_noise=noise.read_noise_e,
                           seed=pair_seed)
        dark = float(np.percentile(ndimage.uniform_filter(raw, 3), 0.5))
        yield f"s{i:03d}_specimen", (raw - np.float32(dark)).astype(np.float32), (obj - np.float32(dark)).astype(
            np.float32)
