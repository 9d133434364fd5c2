"""Measurements on PSFs."""

from __future__ import annotations

import numpy as np

from lucyd.validation import as_image, as_voxel_size


def _half_max_width(profile: np.ndarray, peak: int) -> float:
    """Width of ``profile`` at half its value at ``peak``, by linear interpolation."""
    half = profile[peak] / 2.0
    left = peak
    while left > 0 and profile[left - 1] > half:
        left -= 1
    right = peak
    while right < profile.size - 1 and profile[right + 1] > half:
        right += 1
    # interpolate the crossing just outside [left, right]; fall back to the array edge
    if left > 0:
        a, b = profile[left - 1], profile[left]
        x_left = left - 1 + (half - a) / (b - a)
    else:
        x_left = -0.5
    if right < profile.size - 1:
        a, b = profile[right], profile[right + 1]
        x_right = right + (a - half) / (a - b)
    else:
        x_right = profile.size - 0.5
    return float(x_right - x_left)


def fwhm(psf, voxel_size=None) -> tuple[float, ...]:
    """Full width at half maximum of a PSF along each axis, through its brightest voxel.

    Parameters
    ----------
    psf : array_like, 1D/2D/3D
        Background-free PSF.
    voxel_size : float or sequence of float, optional
        Voxel size per axis in micrometres; without it the result is in pixels.

    Returns
    -------
    tuple of float
        FWHM per axis, (z, y, x) order for 3D, in µm when ``voxel_size`` is given.
    """
    arr = as_image(psf, name="psf", ndim=(1, 2, 3), dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    widths = []
    for axis in range(arr.ndim):
        index = list(peak)
        index[axis] = slice(None)
        widths.append(_half_max_width(arr[tuple(index)], peak[axis]))
    scale = as_voxel_size(voxel_size, arr.ndim) if voxel_size is not None else (1.0,) * arr.ndim
    return tuple(w * s for w, s in zip(widths, scale, strict=True))
