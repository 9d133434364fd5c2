"""Full-reference image quality: PSNR, SSIM and NRMSE.

All functions accept numpy arrays or torch tensors, validate their inputs (same shape,
finite values, supported dimensionality; :class:`lucyd.errors.InputError` otherwise) and
compute in float64. They do not normalise anything: use :func:`lucyd.metrics.evaluate` for
the field's convention (percentile-normalised ground truth, affinely fitted prediction).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from lucyd.errors import InputError
from lucyd.metrics._common import as_float64_pair, resolve_data_range

#: SSIM constants of Wang et al. (2004)
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: standard deviation (pixels) of the Gaussian SSIM window, Wang et al. (2004)
SSIM_SIGMA = 1.5
#: the window is truncated at 3.5 sigma (11 taps for sigma 1.5), as scikit-image does
SSIM_TRUNCATE = 3.5


def psnr(pred, gt, data_range=None) -> float:
    """Peak signal-to-noise ratio in decibels.

    ``PSNR = 10 log10(R^2 / MSE)`` with ``MSE = mean((pred - gt)^2)``.

    Parameters
    ----------
    pred, gt : array_like or torch.Tensor
        Prediction and reference of the same shape (any dimensionality 1-5).
    data_range : float, optional
        Dynamic range ``R`` of the reference. Default ``gt.max() - gt.min()``; always pass it
        explicitly when comparing methods (``evaluate`` uses ``R = 1`` after normalisation).

    Returns
    -------
    float
        PSNR in dB; ``inf`` when ``pred == gt`` exactly.

    Raises
    ------
    lucyd.errors.InputError
        Mismatched shapes, non-finite values, empty or non-numeric input, non-positive range.
    """
    x, y = as_float64_pair(pred, gt)
    r = resolve_data_range(data_range, y)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(r * r / mse))


def nrmse(pred, gt) -> float:
    """Normalised root-mean-square error ``||pred - gt||_2 / ||gt||_2``.

    This is scikit-image's ``normalized_root_mse(gt, pred, normalization="euclidean")``.
    It depends on the offset of ``gt``: after :func:`lucyd.metrics.evaluate`'s normalisation the
    reference's low percentile sits at 0, so the norm is that of the background-subtracted signal.

    Parameters
    ----------
    pred, gt : array_like or torch.Tensor
        Prediction and reference of the same shape.

    Returns
    -------
    float
        Dimensionless error (0 for a perfect prediction).
    """
    x, y = as_float64_pair(pred, gt)
    denom = float(np.sqrt(np.sum(y * y)))
    if denom == 0.0:
        raise InputError("gt: is all zeros, so the NRMSE (divided by ||gt||) is undefined")
    return float(np.sqrt(np.sum((x - y) ** 2)) / denom)


def ssim(pred, gt, data_range=None, *, full: bool = False):
    """Structural similarity index (Wang et al., IEEE TIP 13:600, 2004), 2D or 3D.

    Local means, variances and covariance are Gaussian-weighted (sigma 1.5 px, truncated at
    3.5 sigma: an 11-tap window; ``scipy.ndimage.gaussian_filter`` with ``mode="reflect"``),
    with population (not sample) covariance and ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``::

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

    The mean SSIM averages the map after cropping a border of ``(11 - 1) // 2 = 5`` pixels on
    every axis, exactly as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=R)`` does (agreement to 1e-4 is tested,
    in 2D and 3D). Axes shorter than 11 pixels (thin z-stacks), which scikit-image refuses, are
    not cropped.

    Parameters
    ----------
    pred, gt : array_like or torch.Tensor
        Prediction and reference, (y, x) or (z, y, x), same shape.
    data_range : float, optional
        Dynamic range ``R``; default ``gt.max() - gt.min()``.
    full : bool
        Also return the SSIM map (same shape as the inputs, not cropped).

    Returns
    -------
    float or (float, numpy.ndarray)
        Mean SSIM in [-1, 1] (1 for identical images), and the map when ``full``.
    """
    x, y = as_float64_pair(pred, gt, ndim=(2, 3))
    r = resolve_data_range(data_range, y)
    smap = _ssim_map(x, y, r)
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # = (win_size - 1) // 2 = 5
    crop = tuple(slice(pad, n - pad) if n > 2 * pad else slice(None) for n in smap.shape)
    value = float(smap[crop].mean(dtype=np.float64))
    return (value, smap) if full else value


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    def filt(a):
        return gaussian_filter(a, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den
