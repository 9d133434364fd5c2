"""The field's normalisation for full-reference comparisons, and ``evaluate``.

Convention (CSBDeep; Weigert et al., Nature Methods 15:1090, 2018)::

    gt_n   = (gt - P_pmin(gt)) / (P_pmax(gt) - P_pmin(gt))      # percentiles of gt, no clipping
    a, b   = argmin_{a,b} || a * pred + b - gt_n ||_2^2          # normalize_minmse
           = ( cov(pred, gt_n) / var(pred),  mean(gt_n) - a * mean(pred) )
    pred_n = a * pred + b
    PSNR   = psnr(pred_n, gt_n, data_range=1)
    SSIM   = ssim(pred_n, gt_n, data_range=1)
    NRMSE  = ||pred_n - gt_n||_2 / ||gt_n||_2

Fitting the prediction onto the reference removes any global scale/offset difference (a
network trained on normalised data, a deconvolution that changes the flux, images that were
contrast-stretched independently), so the scores measure structure and noise, not calibration.
"""

from __future__ import annotations

import numpy as np

from lucyd.errors import InputError
from lucyd.metrics._common import as_float64, as_float64_pair
from lucyd.metrics.quality import nrmse, psnr, ssim
from lucyd.normalization import Normalizer, check_percentiles


def _ground_truth_normalizer(x: np.ndarray, pmin, pmax, *, axis=None) -> Normalizer:
    """The one percentile normaliser (:class:`lucyd.normalization.Normalizer`) fitted exactly
    (no subsampling: a measurement) to ``x``'s ``pmin`` and ``pmax`` percentiles."""
    percentiles = check_percentiles((pmin, pmax), name="pmin/pmax")
    return Normalizer.fit(x, percentiles, axis=axis, sample=None)


def normalize_percentile(
    x, pmin: float = 0.1, pmax: float = 99.9, clip: bool = False, eps: float = 1e-20, *, axis=None
) -> np.ndarray:
    """Percentile normalisation ``(x - P_pmin) / (P_pmax - P_pmin + eps)`` (CSBDeep ``normalize``).

    Weigert et al. (2018). The ``pmin``-th percentile maps to 0 and the ``pmax``-th to 1; values
    outside stay outside unless ``clip``.

    Parameters
    ----------
    x : array_like or torch.Tensor
        Image (any dimensionality 1-5), finite.
    pmin, pmax : float
        Percentiles in [0, 100], ``pmin < pmax``.
    clip : bool
        Clip the result to [0, 1].
    eps : float
        Added to the denominator (avoids division by zero for constant images).
    axis : int or tuple of int, optional
        Axes over which the percentiles are taken (default: all, one pair per image).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    arr = as_float64(x, "x")
    norm = _ground_truth_normalizer(arr, pmin, pmax, axis=axis)
    norm = Normalizer(norm.lo, norm.hi + eps)  # eps: CSBDeep's guard of the denominator
    out = norm.apply(arr, dtype=np.float64)
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def fit_affine(pred, target) -> tuple[float, float]:
    """Least-squares scale and offset mapping ``pred`` onto ``target``.

    Minimises ``|| scale * pred + offset - target ||_2^2`` over all pixels, which gives
    ``scale = cov(pred, target) / var(pred)`` and ``offset = mean(target) - scale * mean(pred)``;
    this is CSBDeep's ``normalize_minmse`` (Weigert et al., 2018), without its 1e-10 guard.

    Parameters
    ----------
    pred, target : array_like or torch.Tensor
        Same shape, finite.

    Returns
    -------
    (float, float)
        ``(scale, offset)``. For a constant ``pred`` (zero variance) any scale fits equally well;
        ``(0.0, mean(target))`` is returned.
    """
    x, t = as_float64_pair(pred, target, names=("pred", "target"))
    mx, mt = float(x.mean()), float(t.mean())
    dx = x - mx
    var = float(np.mean(dx * dx))
    if var == 0.0:
        return 0.0, mt
    scale = float(np.mean(dx * (t - mt))) / var
    return scale, mt - scale * mx


def normalize_pair(
    pred, gt, *, pmin: float = 0.1, pmax: float = 99.9, ndim=(2, 3)
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Apply the evaluation convention; return ``(pred_n, gt_n, scale, offset)`` in float64.

    ``gt_n`` is the percentile-normalised ground truth (not clipped); ``pred_n = scale * pred +
    offset`` is the least-squares affine fit of the prediction onto ``gt_n`` (see module docs).

    Raises
    ------
    lucyd.errors.InputError
        Mismatched shapes, non-finite values, wrong dimensionality, or a ground truth whose
        ``pmin`` and ``pmax`` percentiles coincide (nothing to normalise).
    """
    x, y = as_float64_pair(pred, gt, ndim=ndim, names=("prediction", "ground truth"))
    norm = _ground_truth_normalizer(y, pmin, pmax)
    if not norm.hi > norm.lo:
        raise InputError(
            f"ground truth: its {float(pmin)} and {float(pmax)} percentiles are equal "
            f"({norm.lo:.6g}); a constant image cannot be normalised"
        )
    gt_n = norm.apply(y, dtype=np.float64)
    scale, offset = fit_affine(x, gt_n)
    return scale * x + offset, gt_n, scale, offset


def evaluate(pred, gt, *, pmin: float = 0.1, pmax: float = 99.9) -> dict[str, float]:
    """PSNR, SSIM and NRMSE of a restoration against its ground truth, the field's way.

    The ground truth is percentile-normalised (``pmin`` -> 0, ``pmax`` -> 1, no clipping), the
    prediction is affinely least-squares fitted to it (CSBDeep's ``normalize_minmse``; Weigert
    et al., 2018), then ``psnr`` and ``ssim`` are computed with ``data_range=1`` and ``nrmse``
    as ``||pred_n - gt_n|| / ||gt_n||``. See :func:`normalize_pair` for the normalised arrays and
    the fitted scale/offset.

    Parameters
    ----------
    pred, gt : array_like or torch.Tensor
        Prediction and ground truth, (y, x) or (z, y, x), same shape, finite.
    pmin, pmax : float
        Percentiles of the ground-truth normalisation.

    Returns
    -------
    dict
        ``{"psnr": dB, "ssim": mean SSIM, "nrmse": dimensionless}``, plain floats.
    """
    pred_n, gt_n, _, _ = normalize_pair(pred, gt, pmin=pmin, pmax=pmax)
    return {
        "psnr": psnr(pred_n, gt_n, data_range=1.0),
        "ssim": ssim(pred_n, gt_n, data_range=1.0),
        "nrmse": nrmse(pred_n, gt_n),
    }
