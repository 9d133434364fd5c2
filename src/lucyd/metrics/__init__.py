"""Image-quality metrics: PSNR, SSIM, NRMSE, the field's normalisation, resolution estimates.

Full-reference metrics (:func:`psnr`, :func:`ssim`, :func:`nrmse`) work on raw arrays;
:func:`evaluate` applies the field's convention first (percentile-normalised ground truth,
affinely fitted prediction; Weigert et al., 2018). :func:`resolution` and :func:`frc` estimate
resolution without a ground truth (Fourier ring correlation, Nieuwenhuizen et al. 2013;
Koho et al. 2019; decorrelation analysis, Descloux et al. 2019). :func:`ssim_torch` and
:func:`global_ssim_torch` are differentiable versions for training losses.
"""

from lucyd.metrics.fourier_resolution import FRC_THRESHOLD, frc, resolution
from lucyd.metrics.normalize import evaluate, fit_affine, normalize_pair, normalize_percentile
from lucyd.metrics.quality import nrmse, psnr, ssim
from lucyd.metrics.torch_ssim import global_ssim_torch, ssim_torch

__all__ = [
    "psnr",
    "ssim",
    "nrmse",
    "normalize_percentile",
    "fit_affine",
    "normalize_pair",
    "evaluate",
    "resolution",
    "frc",
    "FRC_THRESHOLD",
    "ssim_torch",
    "global_ssim_torch",
]
