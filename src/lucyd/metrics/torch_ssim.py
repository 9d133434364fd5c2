"""Differentiable SSIM in torch, for training losses.

* :func:`ssim_torch` — the Gaussian-window SSIM of Wang et al. (IEEE TIP 13:600, 2004) on
  ``(B, C, y, x)`` or ``(B, C, z, y, x)`` tensors; numerically the same quantity as
  :func:`lucyd.metrics.ssim` (window sigma 1.5 truncated to 11 taps, population covariance,
  K1 0.01, K2 0.03, border of 5 pixels excluded from the mean), evaluated with separable
  depth-wise convolutions without padding ("valid": exactly the cropped region numpy averages).
* :func:`global_ssim_torch` — SSIM with the statistics taken over the whole patch (one window
  covering everything), as in the loss of the Richardson–Lucy Network (Li et al., Nature
  Methods 19:1427, 2022): ``-log((1 + SSIM) / 2)`` with ``C1 = 1e-4``, ``C2 = 9e-4``.

Shapes and dimensionality are checked; finiteness is not (that would force a device-to-host
synchronisation every step; a NaN input gives a NaN loss, which the trainer detects).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lucyd.errors import InputError
from lucyd.metrics.quality import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_TRUNCATE

_CONV = {2: F.conv2d, 3: F.conv3d}


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, fname: str) -> int:
    if not (isinstance(pred, torch.Tensor) and isinstance(gt, torch.Tensor)):
        raise InputError(f"{fname}: pred and gt must be torch tensors")
    if tuple(pred.shape) != tuple(gt.shape):
        raise InputError(
            f"{fname}: pred and gt have different shapes: {tuple(pred.shape)} vs {tuple(gt.shape)}"
        )
    if pred.ndim not in (4, 5):
        raise InputError(
            f"{fname}: expected (B, C, y, x) or (B, C, z, y, x) tensors, "
            f"got shape {tuple(pred.shape)}"
        )
    if not (pred.is_floating_point() and gt.is_floating_point()):
        raise InputError(
            f"{fname}: expected floating-point tensors, got {pred.dtype} and {gt.dtype}"
        )
    return pred.ndim - 2


def gaussian_kernel_1d(
    sigma: float = SSIM_SIGMA,
    truncate: float = SSIM_TRUNCATE,
    dtype=torch.float32,
    device=None,
) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy.ndimage's rule)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _blur_valid(x: torch.Tensor, kernel: torch.Tensor, nsp: int) -> torch.Tensor:
    """Separable Gaussian filter without padding (output shrinks by 2 * radius per axis)."""
    channels = x.shape[1]
    conv = _CONV[nsp]
    k = kernel.numel()
    for axis in range(nsp):
        shape = [1, 1] + [1] * nsp
        shape[2 + axis] = k
        weight = kernel.reshape(shape).expand(channels, *shape[1:])
        x = conv(x, weight, groups=channels)
    return x


def ssim_torch(
    pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0, *, reduction: str = "mean"
) -> torch.Tensor:
    """Differentiable Gaussian-window SSIM (Wang et al., 2004) for 2D and 3D batches.

    Parameters
    ----------
    pred, gt : torch.Tensor
        ``(B, C, y, x)`` or ``(B, C, z, y, x)`` floating-point tensors of the same shape; every
        spatial axis at least 11 pixels long (the window).
    data_range : float
        Dynamic range ``R`` (``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``); 1 for normalised data.
    reduction : {"mean", "none"}
        ``"mean"``: one scalar (mean over batch and channels); ``"none"``: a ``(B, C)`` tensor.

    Returns
    -------
    torch.Tensor
        Mean SSIM; use ``1 - ssim_torch(...)`` as a loss. Gradients flow to both inputs.
    """
    nsp = _check_pair(pred, gt, "ssim_torch")
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    if not (isinstance(data_range, int | float) and math.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range: expected a positive number, got {data_range!r}")
    kernel = gaussian_kernel_1d(dtype=pred.dtype, device=pred.device)
    if min(pred.shape[2:]) < kernel.numel():
        raise InputError(
            f"ssim_torch: every spatial axis must be >= {kernel.numel()} pixels (the SSIM window), "
            f"got shape {tuple(pred.shape)}"
        )
    gt = gt.to(pred.dtype)
    stack = torch.cat([pred, gt, pred * pred, gt * gt, pred * gt], dim=1)
    f = _blur_valid(stack, kernel, nsp)
    ux, uy, uxx, uyy, uxy = torch.chunk(f, 5, dim=1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    smap = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    per_image = smap.flatten(2).mean(dim=2)
    return per_image.mean() if reduction == "mean" else per_image


def global_ssim_torch(
    pred: torch.Tensor,
    gt: torch.Tensor,
    c1: float = 1e-4,
    c2: float = 9e-4,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """SSIM with means, variances and covariance taken over the whole patch (RLN's loss term).

    For each batch element (all channels and voxels together)::

        SSIM = (2 mu_x mu_y + c1)(2 cov_xy + c2) / ((mu_x^2 + mu_y^2 + c1)(var_x + var_y + c2))

    with population (biased) variances. Li et al. (Nature Methods 19:1427, 2022) use
    ``-log((1 + SSIM) / 2)`` with ``c1 = 1e-4``, ``c2 = 9e-4`` (i.e. K1 0.01, K2 0.03 at R = 1).

    Parameters
    ----------
    pred, gt : torch.Tensor
        ``(B, C, y, x)`` or ``(B, C, z, y, x)``, same shape.
    c1, c2 : float
        Stabilising constants.
    reduction : {"mean", "none"}
        Scalar mean over the batch, or a ``(B,)`` tensor.

    Returns
    -------
    torch.Tensor
        Global SSIM in [-1, 1]; differentiable.
    """
    _check_pair(pred, gt, "global_ssim_torch")
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    x = pred.flatten(1)
    y = gt.to(pred.dtype).flatten(1)
    mx, my = x.mean(dim=1), y.mean(dim=1)
    dx, dy = x - mx[:, None], y - my[:, None]
    vx = (dx * dx).mean(dim=1)
    vy = (dy * dy).mean(dim=1)
    vxy = (dx * dy).mean(dim=1)
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean() if reduction == "mean" else s
