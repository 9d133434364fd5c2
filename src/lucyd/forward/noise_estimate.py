"""Camera noise from the image itself: offset, gain and read noise (Poisson–Gaussian model).

A camera pixel records ``v = g · P(λ) + N(o, σ_r²)`` (``P`` Poisson, ``g`` counts per
photo-electron, ``o`` the offset, ``σ_r`` the read noise in counts), so that the variance is
a straight line in the mean, ``var(v) = g · (E[v] − o) + σ_r²`` (the photon-transfer curve).
:func:`estimate_noise` fits that line on one image, as Foi et al. (IEEE TIP 17, 1737–1754,
2008, "Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data")
do: the noise of each small block is measured on a high-pass part of the image that holds
no signal, blocks are binned by their mean, and a robust line (Theil–Sen over the bins'
medians) gives the slope ``g`` and the intercept. With a PSF the high-pass part is every
spatial frequency where the optical transfer function is below 1 % of its peak: the optics
pass no signal there, so it is noise alone (the image is mirrored first, so that the borders
add no edges). Without a PSF it is the finest diagonal Haar detail (blind to planar trends,
but not to sharp structure: less accurate on bright, finely sampled images).

Offset and read noise cannot be separated from one image (only ``σ_r² − g·o`` is
identified), and they need not be: lucyd takes the image's dark level ``d`` (a low
percentile of the smoothed image) as the zero of the signal and expresses everything in
photo-electrons above it, ``e = (v − d) / g``, with ``var(e) = E[e] + σ_e²`` where
``σ_e² = (g·d + intercept) / g²``. Synthetic data made with ``photons = 1`` per
photo-electron and ``read_noise = σ_e`` then has the image's noise at every intensity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage, stats

from lucyd.errors import InputError
from lucyd.forward.fft import centre_crop_or_pad
from lucyd.validation import as_image

#: blocks (per 2D plane) on which the local mean and noise variance are measured
BLOCK = 8
#: percentile of the 3-px smoothed image taken as the dark level (zero signal)
DARK_PERCENTILE = 0.5
#: OTF magnitude (relative to its peak) below which a frequency is taken to carry no signal
OTF_THRESHOLD = 1e-2
#: smallest share of frequencies beyond the OTF for the PSF-based estimate (else Haar)
MIN_NOISE_BAND = 0.05
#: most photo-electrons a peak may carry; caps the gain for data without shot noise
MAX_PEAK_ELECTRONS = 1e5


@dataclass(frozen=True)
class NoiseModel:
    """A Poisson–Gaussian noise model in the image's own units.

    Attributes
    ----------
    dark_level : float
        Counts of zero signal (camera offset plus nothing; a low percentile of the image).
    gain : float
        Counts per photo-electron (slope of variance against mean).
    read_noise_e : float
        Gaussian noise standard deviation in photo-electrons at the dark level.
    background_e : float
        Smooth background above the dark level, photo-electrons per pixel (a low percentile
        of the smoothed signal; 0 when the dark level is the background).
    peak_e : float
        Signal at the bright end (99.9th percentile of the smoothed image), photo-electrons
        above the dark level.
    slope_r2 : float
        Fraction of the variance across bins that the line explains (fit quality, 0–1).
    shot_noise_limited : bool
        False when no significant Poisson slope was found (the gain was capped so that the
        peak carries :data:`MAX_PEAK_ELECTRONS`; the noise is then essentially Gaussian).
    """

    dark_level: float
    gain: float
    read_noise_e: float
    background_e: float
    peak_e: float
    slope_r2: float
    shot_noise_limited: bool

    def to_electrons(self, image: np.ndarray) -> np.ndarray:
        """``(image − dark_level) / gain`` as float32."""
        return ((np.asarray(image, np.float32) - np.float32(self.dark_level)) / np.float32(self.gain)).astype(
            np.float32, copy=False
        )

    def to_counts(self, electrons: np.ndarray, *, with_dark_level: bool = False) -> np.ndarray:
        """Inverse of :meth:`to_electrons` (``with_dark_level`` adds the dark level back)."""
        out = np.asarray(electrons, np.float32) * np.float32(self.gain)
        return out + np.float32(self.dark_level) if with_dark_level else out

    def as_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in asdict(self).items()}


def _planes(image: np.ndarray) -> np.ndarray:
    return image[None] if image.ndim == 2 else image


def block_statistics(image: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Per-block mean and noise variance of every ``block × block`` tile of each plane.

    The noise is measured on the diagonal Haar detail ``(a − b − c + d) / 2`` of each 2×2
    cell, whose variance equals the per-pixel noise variance for independent noise and which
    is blind to planar intensity trends. The block's variance is the mean square of its
    ``(block/2)²`` details, divided by the median of a χ² with that many degrees of freedom
    over its mean (Wilson–Hilferty), since the fit takes medians over blocks.
    """
    planes = _planes(image)
    ny, nx = (planes.shape[1] // block) * block, (planes.shape[2] // block) * block
    if ny < block or nx < block:
        raise InputError(f"image: planes of {planes.shape[1:]} px are too small to estimate noise (need {block})")
    p = planes[:, :ny, :nx].astype(np.float64)
    detail = (p[:, 0::2, 0::2] - p[:, 0::2, 1::2] - p[:, 1::2, 0::2] + p[:, 1::2, 1::2]) / 2.0
    means = _block_reduce(p, block)
    dof = (block // 2) ** 2
    median_bias = (1 - 2 / (9 * dof)) ** 3
    return means, _block_reduce(detail**2, block // 2) / median_bias


def _block_reduce(a: np.ndarray, block: int) -> np.ndarray:
    """Mean over ``block × block`` tiles of each plane of a (z, y, x) array, flattened."""
    nz, ny, nx = a.shape[0], (a.shape[1] // block) * block, (a.shape[2] // block) * block
    if ny < block or nx < block:
        raise InputError(f"image: planes of {a.shape[1:]} px are too small to estimate noise (need {block})")
    return a[:, :ny, :nx].reshape(nz, ny // block, block, nx // block, block).mean(axis=(2, 4)).reshape(-1)


def otf_noise_statistics(image: np.ndarray, psf: np.ndarray, block: int = BLOCK
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-block mean and noise variance from the frequencies the optics do not pass.

    The image is mirrored to twice its size (no border edges), filtered to the frequencies
    where ``|OTF| < OTF_THRESHOLD · max|OTF|``, and the filtered power of each block is
    divided by the share of frequencies kept (white noise spreads evenly over them). A margin
    of a quarter block (and one plane in 3D) is left out. Returns None when less than
    :data:`MIN_NOISE_BAND` of the frequencies lie beyond the OTF (under-sampled optics).
    """

    img = np.asarray(image, np.float32)
    pads = [(n // 2, n // 2) for n in img.shape]
    mirrored = np.pad(img - np.float32(img.mean()), pads, mode="symmetric")
    p = np.asarray(psf, np.float64)
    kernel = centre_crop_or_pad(p / p.sum(), mirrored.shape)
    otf = np.abs(np.fft.rfftn(np.fft.ifftshift(kernel)))
    band = otf < OTF_THRESHOLD * otf.max()
    share = float(band.mean())
    if share < MIN_NOISE_BAND:
        return None
    axes = tuple(range(img.ndim))
    high = np.fft.irfftn(np.fft.rfftn(mirrored) * band, s=mirrored.shape, axes=axes)
    high = high[tuple(slice(a, a + n) for (a, _), n in zip(pads, img.shape, strict=True))].astype(np.float32)
    m = max(1, block // 4)
    inner = (slice(m, -m), slice(m, -m))
    if img.ndim == 3:
        inner = (slice(1, -1) if img.shape[0] > 2 else slice(None),) + inner
    a, h = _planes(img[inner]), _planes(high[inner])
    return _block_reduce(a, block), _block_reduce(h.astype(np.float64) ** 2, block) / share


def estimate_noise(image, psf=None, *, block: int = BLOCK, n_bins: int = 24) -> NoiseModel:
    """Estimate the Poisson–Gaussian noise of a raw camera image from the image alone.

    Parameters
    ----------
    image : array_like
        2D (y, x) or 3D (z, y, x) raw image in camera counts (not background-subtracted,
        not rescaled); must be finite.
    psf : array_like, optional
        The image's PSF (same dimensionality, any size): the noise is then measured where
        the optics pass no signal (accurate at every brightness). Without it, on the Haar
        detail.
    block : int
        Side (px) of the square blocks in which mean and noise variance are measured.
    n_bins : int
        Number of mean-intensity bins (equal block counts) for the line fit.

    Returns
    -------
    NoiseModel
        Dark level, gain, read noise and the signal's background and peak in photo-electrons.

    Raises
    ------
    InputError
        Non-finite or constant image, planes smaller than ``block``.

    Notes
    -----
    Blocks that straddle edges inflate their variance; the bin medians and the Theil–Sen
    line are robust to a minority of them. The estimate assumes pixel-independent noise
    (not true after interpolation, deconvolution or denoising in the camera software).

    References
    ----------
    Foi, A., Trimeche, M., Katkovnik, V. & Egiazarian, K. IEEE Trans. Image Process. 17,
    1737–1754 (2008).
    """
    img = as_image(image, name="image")
    if float(img.max()) <= float(img.min()):
        raise InputError("image: is constant; there is no signal or noise to measure")
    measured = otf_noise_statistics(img, psf, block) if psf is not None else None
    means, variances = measured if measured is not None else block_statistics(img, block)
    order = np.argsort(means)
    bins = np.array_split(order, min(n_bins, max(2, means.size // 8)))
    bm = np.array([np.median(means[b]) for b in bins if b.size])
    # the median block of a bin is mostly flat; edges sit in the upper tail
    bv = np.array([np.median(variances[b]) for b in bins if b.size])
    slope, intercept, _, _ = stats.theilslopes(bv, bm)
    fitted = intercept + slope * bm
    total = float(np.sum((bv - bv.mean()) ** 2))
    r2 = 1.0 - float(np.sum((bv - fitted) ** 2)) / total if total > 0 else 0.0

    smooth = ndimage.uniform_filter(img.astype(np.float32), 3)
    dark = float(np.percentile(smooth, DARK_PERCENTILE))
    peak_counts = float(np.percentile(smooth, 99.9)) - dark
    noise_floor = max(float(np.median(variances[order[: max(1, order.size // 10)]])), 1e-12)
    min_gain = max(peak_counts, math.sqrt(noise_floor)) / MAX_PEAK_ELECTRONS
    shot = bool(slope > min_gain and slope > 0)
    gain = float(slope) if shot else min_gain
    var_dark = float(intercept + slope * dark) if shot else noise_floor
    read_e = math.sqrt(max(var_dark, 0.0)) / gain
    background = max(float(np.percentile(smooth, 5)) - dark, 0.0) / gain
    return NoiseModel(
        dark_level=dark,
        gain=gain,
        read_noise_e=read_e,
        background_e=background,
        peak_e=max(peak_counts / gain, 1e-6),
        slope_r2=max(0.0, min(1.0, r2)),
        shot_noise_limited=shot,
    )
