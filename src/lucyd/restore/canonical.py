"""Canonical optical units: resample an image so that its PSF's FWHM covers a fixed number of pixels.

A network that refines a deconvolution learns structure *relative to the PSF*. Expressed on a
grid where the PSF's full width at half maximum spans :data:`CANONICAL_FWHM_PX` pixels on
every axis, widefield PSFs of very different optics (NA 0.8–1.49, emission 0.45–0.67 µm, any
immersion) and pixel sizes become nearly one shape per modality, so a few pretrained models
cover many microscopes (:mod:`lucyd.restore.zoo`).

Why 3 pixels per FWHM on every axis: a widefield PSF's lateral FWHM is ≈ 0.51 λ/NA and the
optical cut-off period λ/(2 NA) ≈ 0.98 FWHM, so 3 px per FWHM samples the blurred image 1.5×
finer than Nyquist (2 px per cut-off period): no image content is lost, and it is what
well-matched cameras deliver (e.g. 65 nm pixels at NA 1.4, 520 nm: FWHM ≈ 190 nm ≈ 2.9 px).
Axially, z-steps of a third of the axial FWHM are the usual Nyquist-sampled stack. Finer
canonical grids would cost compute for every oversampled image without new information.

Interpolation widens a narrow PSF by up to about half a canonical pixel (a measured FWHM of
3–3.5 px); training and restoration resample alike, so this does not bias the models.

Intensities are counts per pixel: :func:`resample` scales the interpolated values by the ratio
of pixel volumes, so an image's flux (its sum) is preserved on the new grid.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.psf.measure import fwhm

#: PSF full width at half maximum, in pixels, on the canonical grid (every axis)
CANONICAL_FWHM_PX = 3.0


def psf_fwhm_px(psf: np.ndarray) -> tuple[float, ...]:
    """FWHM of ``psf`` per axis, in its own pixels (through the brightest voxel)."""
    return fwhm(psf)


def canonical_zoom(psf: np.ndarray, target_fwhm_px: float = CANONICAL_FWHM_PX) -> tuple[float, ...]:
    """Zoom factor per axis (canonical pixels per native pixel) that makes the PSF's FWHM ``target_fwhm_px``.

    Raises
    ------
    InputError
        A PSF narrower than half a pixel on some axis (no width to normalise).
    """
    widths = psf_fwhm_px(psf)
    if min(widths) < 0.5:
        raise InputError(f"psf: FWHM {tuple(round(w, 2) for w in widths)} px is narrower than half a pixel; "
                         "it cannot be put in canonical units")
    return tuple(float(target_fwhm_px / w) for w in widths)


def resample(image: np.ndarray, zoom: tuple[float, ...] | None = None, *, shape: tuple[int, ...] | None = None,
             order: int = 1) -> np.ndarray:
    """Resample ``image`` to a grid ``zoom`` times finer (or to ``shape``), preserving its flux.

    Pixel-area aligned interpolation (``scipy.ndimage.zoom`` with ``grid_mode=True``: the
    image's outer pixel edges map onto the new grid's). Downsampled axes are low-pass filtered
    first (Gaussian σ = (1/zoom − 1)/2 px, the anti-aliasing rule of scikit-image's
    ``rescale``), so that noise is averaged rather than aliased. The values are multiplied by
    the ratio of pixel volumes (native / new), so the sum is preserved up to interpolation at
    the borders (≪ 1 % for images whose flux is not at the edge).

    Parameters
    ----------
    image : ndarray
        2D or 3D image, counts per pixel.
    zoom : tuple of float, optional
        New pixels per old pixel, per axis; the output shape is ``round(shape · zoom)`` (≥ 1).
    shape : tuple of int, optional
        The output shape instead (e.g. back to the original grid after a round trip).
    order : int
        Spline order (1: linear, which keeps non-negative images non-negative).

    Returns
    -------
    ndarray of float32
    """
    arr = np.asarray(image, np.float32)
    if (zoom is None) == (shape is None):
        raise InputError("resample: give either zoom or shape")
    if shape is None:
        if len(zoom) != arr.ndim:
            raise InputError(f"resample: zoom has {len(zoom)} axes, the image {arr.ndim}")
        shape = tuple(max(1, int(round(n * z))) for n, z in zip(arr.shape, zoom, strict=True))
    shape = tuple(int(s) for s in shape)
    factors = tuple(s / n for s, n in zip(shape, arr.shape, strict=True))
    sigma = tuple(max(0.0, (1.0 / f - 1.0) / 2.0) for f in factors)
    if any(s > 0 for s in sigma):
        arr = ndimage.gaussian_filter(arr, sigma, mode="nearest")
    if shape == arr.shape:
        out = arr.copy()
    else:
        out = ndimage.zoom(arr, factors, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)
    volume_ratio = 1.0 / math.prod(factors)
    return (out * np.float32(volume_ratio)).astype(np.float32)


def canonical_psf(psf: np.ndarray, size: int = 15, target_fwhm_px: float = CANONICAL_FWHM_PX) -> np.ndarray:
    """The PSF on the canonical grid, ``size`` pixels per axis centred on its peak, sum 1.

    The PSF is low-pass filtered like :func:`resample` and sampled (linear interpolation) on a
    grid whose centre pixel sits on the PSF's sub-pixel centre (intensity centroid of the
    3-pixel neighbourhood of its peak), so the result does not depend on where the native
    pixels happened to fall. Two PSFs with the same canonical shape need the same network,
    whatever their optics and pixel sizes (:func:`psf_distance` compares them).
    """
    p = np.clip(np.asarray(psf, np.float32), 0, None)
    zoom = canonical_zoom(p, target_fwhm_px)
    sigma = tuple(max(0.0, (1.0 / z - 1.0) / 2.0) for z in zoom)
    if any(s > 0 for s in sigma):
        p = ndimage.gaussian_filter(p, sigma, mode="constant")
    peak = np.unravel_index(int(np.argmax(p)), p.shape)
    box = tuple(slice(max(0, k - 1), k + 2) for k in peak)
    local = p[box]
    centre = [float(np.sum(local * g) / max(float(local.sum()), 1e-30)) + b.start
              for g, b in zip(np.indices(local.shape), box, strict=True)]
    offsets = np.arange(size) - size // 2
    axes = [c + offsets / z for c, z in zip(centre, zoom, strict=True)]
    out = ndimage.map_coordinates(p, np.meshgrid(*axes, indexing="ij"), order=1, mode="constant", cval=0.0)
    out = np.clip(out, 0, None).astype(np.float32)
    return out / np.float32(max(float(out.sum()), 1e-30))


def psf_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance ‖a − b‖ / ‖b‖ of two canonical PSFs (:func:`canonical_psf`)."""
    return float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), 1e-30))
