"""Back projectors for Richardson–Lucy deconvolution, matched and unmatched.

Richardson–Lucy (Richardson 1972; Lucy 1974) updates an estimate ``e`` as
``e <- e * BP(y / FP(e))`` where FP is the convolution with the PSF and BP the
convolution with a *back projector*. The classic (matched) choice is the flipped PSF,
the adjoint of FP. Guo et al. (Nature Biotechnology 38, 1337–1346, 2020, "Rapid
image deconvolution and multiview fusion for optical microscopy") showed that an
*unmatched* back projector that boosts high spatial frequencies — a Gaussian, a
Butterworth low-pass, or a Wiener filter tapered by a Butterworth filter
("Wiener–Butterworth") — reaches in 1–2 iterations what classic RL reaches in 10–20.

All kernels returned here follow lucyd's PSF centre convention (centre at index
``k // 2``) and sum to 1, so that a flat image is a fixed point of the update.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lucyd.deconv.psfprep import PreparedPSF, make_odd
from lucyd.errors import InputError
from lucyd.forward.fft import centre_crop_or_pad
from lucyd.psf.measure import fwhm
from lucyd.validation import as_psf

__all__ = ["BACK_PROJECTORS", "back_projector", "back_projector_for", "make_odd"]

#: names accepted by :func:`back_projector`
BACK_PROJECTORS = ("flipped", "gaussian", "butterworth", "wiener-butterworth")

#: reference defaults of Guo et al. (2020)
DEFAULT_ALPHA = 0.05
DEFAULT_BETA = 1.0  # 1 means "automatic": the flipped-PSF OTF gain at the cutoff
DEFAULT_ORDER = 10


def _fourier_index(shape: Sequence[int]) -> list[np.ndarray]:
    """Signed frequency indices (Fourier pixels) per axis, broadcastable, unshifted order."""
    grids = []
    for d, n in enumerate(shape):
        f = np.fft.fftfreq(n) * n
        view = [1] * len(shape)
        view[d] = n
        grids.append(f.reshape(view))
    return grids


def _otf(kernel: np.ndarray) -> np.ndarray:
    """Full complex OTF of a kernel centred at ``k // 2`` (moved to the origin first)."""
    shifted = np.roll(kernel, [-(k // 2) for k in kernel.shape], axis=tuple(range(kernel.ndim)))
    return np.fft.fftn(shifted)


def _kernel_from_otf(otf: np.ndarray) -> np.ndarray:
    """Spatial kernel (centre at ``k // 2``), real part, normalised to sum 1."""
    spatial = np.real(np.fft.ifftn(otf))
    spatial = np.roll(spatial, [k // 2 for k in spatial.shape], axis=tuple(range(spatial.ndim)))
    total = spatial.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        raise InputError("back_projector: the back projector sums to zero; check alpha/beta/order")
    return spatial / total


def _cutoff_gain(abs_otf: np.ndarray, cutoff: Sequence[float]) -> float:
    """Mean over axes of ``|OTF|`` at the cutoff frequency (Guo et al.'s β measurement).

    For each axis the profile is the maximum of ``|OTF|`` over all other axes; its
    value is read at ``±cutoff`` (rounded, clipped to the array) and the two averaged.
    """
    shifted = np.fft.fftshift(abs_otf)
    gains = []
    for d, n in enumerate(shifted.shape):
        others = tuple(a for a in range(shifted.ndim) if a != d)
        line = shifted.max(axis=others) if others else shifted
        c = n // 2
        lo = int(np.clip(round(c - cutoff[d]), 0, n - 1))
        hi = int(np.clip(round(c + cutoff[d]), 0, n - 1))
        gains.append(0.5 * (float(line[lo]) + float(line[hi])))
    return float(np.mean(gains))


def _resolution(psf: np.ndarray, resolution) -> tuple[float, ...]:
    if resolution is None:
        res = fwhm(psf)
    else:
        res = tuple(np.broadcast_to(np.asarray(resolution, dtype=float), (psf.ndim,)))
    res = tuple(float(r) for r in res)
    if not all(np.isfinite(r) and r > 0 for r in res):
        raise InputError(f"back_projector: resolution must be positive (pixels), got {res}")
    return res


def back_projector(
    psf,
    kind: str | np.ndarray = "flipped",
    *,
    shape: Sequence[int] | None = None,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    order: int = DEFAULT_ORDER,
    resolution: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Build a Richardson–Lucy back projector (spatial kernel, centre at ``k // 2``, sum 1).

    Parameters
    ----------
    psf : array_like
        The forward PSF (2D or 3D, non-negative); it is normalised to sum 1 and, if an
        axis has even length, zero-padded to odd length keeping its centre ``k // 2``.
    kind : {"flipped", "gaussian", "butterworth", "wiener-butterworth"} or ndarray
        ``"flipped"``: the PSF mirrored through its centre (classic RL; Richardson 1972,
        Lucy 1974). ``"gaussian"``: a Gaussian with the PSF's per-axis FWHM.
        ``"butterworth"``: the Butterworth low-pass ``B`` below. ``"wiener-butterworth"``:
        ``B · W`` (Guo et al. 2020). An array is validated, normalised and returned.
    shape : sequence of int, optional
        Grid on which the filter is designed (and the returned kernel's shape); default
        the PSF's (odd) shape, as in the reference code. The PSF is centre-cropped or
        padded to it first.
    alpha : float
        Wiener parameter α (default 0.05): ``W = Ĥ / (|Ĥ|² + α)`` with ``Ĥ = H / max|H|``,
        ``H`` the OTF of the flipped PSF.
    beta : float
        Gain of the back projector at the cutoff frequency. ``1.0`` (default) means
        automatic: the gain of the flipped-PSF OTF ``|Ĥ|`` at the cutoff, averaged over
        axes (the reference default).
    order : int
        Butterworth order ``n`` (default 10).
    resolution : float or sequence of float, optional
        Resolution per axis in pixels defining the cutoff ``t_d = S_d / res_d`` in Fourier
        pixels (``S_d`` the grid size); default the PSF's FWHM per axis.

    Returns
    -------
    numpy.ndarray
        float32 kernel summing to 1.

    Notes
    -----
    Butterworth filter: ``B(k) = 1 / sqrt(1 + ε w^n)``, ``w = Σ_d ((k_d − c_d) / t_d)²``.
    For the Butterworth-only back projector ``ε = 1/β² − 1`` so ``|B| = β`` at the cutoff.
    For Wiener–Butterworth lucyd uses ``ε = β_W² / β² − 1`` where ``β_W`` is the Wiener
    filter's gain at the cutoff: then the combined ``|B · W|`` equals exactly β at the
    cutoff, which is the design intent stated in the reference code's comment (the
    reference code itself computes ``β_W / β² − 1``, which gives a cutoff gain of
    ``β·sqrt(β_W)``). ε is clamped at ≥ 0 (a pure Wiener filter) when β_W < β.

    References
    ----------
    Guo, M. et al. Rapid image deconvolution and multiview fusion for optical
    microscopy. Nat. Biotechnol. 38, 1337–1346 (2020).
    """
    if isinstance(kind, np.ndarray) or (not isinstance(kind, str) and hasattr(kind, "shape")):
        arr = as_psf(kind, name="back_projector")
        return make_odd(arr).astype(np.float32)
    if not isinstance(kind, str) or kind.lower() not in BACK_PROJECTORS:
        raise InputError(
            f"back_projector: unknown kind {kind!r}; "
            f"use one of {', '.join(BACK_PROJECTORS)} or an array"
        )
    kind = kind.lower()
    if kind != "flipped" and not (np.isfinite(alpha) and alpha > 0):
        raise InputError(f"back_projector: alpha must be positive, got {alpha}")
    if kind != "flipped" and not (np.isfinite(beta) and beta > 0):
        raise InputError(f"back_projector: beta must be positive, got {beta}")
    if kind != "flipped" and int(order) < 1:
        raise InputError(f"back_projector: order must be >= 1, got {order}")
    p = make_odd(as_psf(psf, name="psf").astype(np.float64))
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != p.ndim:
            raise InputError(
                f"back_projector: shape {shape} does not match the PSF's {p.ndim} dimensions"
            )
        p = centre_crop_or_pad(p, shape)
        p = p / p.sum()
    return _design(p, kind, alpha, beta, order, resolution)


def back_projector_for(prepared: PreparedPSF, kind: str, *, alpha: float = DEFAULT_ALPHA,
                       beta: float = DEFAULT_BETA, order: int = DEFAULT_ORDER,
                       resolution=None) -> np.ndarray:
    """:func:`back_projector` for a PSF from :func:`lucyd.deconv.psfprep.prepare_psf` and options
    that :class:`~lucyd.deconv.config.DeconvConfig` validated (neither is checked again)."""
    return _design(prepared.psf.astype(np.float64), kind, alpha, beta, order, resolution)


def _design(p: np.ndarray, kind: str, alpha, beta, order, resolution) -> np.ndarray:
    """The back projector of kind ``kind`` for the odd, normalised float64 PSF ``p``."""
    if kind == "flipped":
        return np.ascontiguousarray(np.flip(p)).astype(np.float32)
    res = _resolution(p, resolution)
    if kind == "gaussian":
        sig = [r / (2.0 * np.sqrt(2.0 * np.log(2.0))) for r in res]
        grids = np.meshgrid(*[np.arange(n) - n // 2 for n in p.shape], indexing="ij")
        g = np.exp(-0.5 * sum((x / s) ** 2 for x, s in zip(grids, sig, strict=True)))
        return (g / g.sum()).astype(np.float32)

    cutoff = [n / r for n, r in zip(p.shape, res, strict=True)]
    otf = _otf(np.flip(p))
    otf_norm = otf / np.abs(otf).max()
    beta_fp = _cutoff_gain(np.abs(otf_norm), cutoff)
    if beta == 1.0:
        beta = beta_fp
    if not (np.isfinite(beta) and beta > 0):  # e.g. a flat PSF: its OTF is zero at the cutoff
        raise InputError(
            "back_projector: the PSF passes nothing at the cutoff frequency (automatic beta is 0); "
            "give wb_beta or wb_resolution"
        )
    w = sum((k / t) ** 2 for k, t in zip(_fourier_index(p.shape), cutoff, strict=True))
    if kind == "butterworth":
        eps = max(1.0 / beta**2 - 1.0, 0.0)
        bp_otf = 1.0 / np.sqrt(1.0 + eps * w ** int(order))
    else:  # wiener-butterworth
        wiener = otf_norm / (np.abs(otf_norm) ** 2 + alpha)
        beta_w = _cutoff_gain(np.abs(wiener), cutoff)
        eps = max(beta_w**2 / beta**2 - 1.0, 0.0)
        bp_otf = wiener / np.sqrt(1.0 + eps * w ** int(order))
    return _kernel_from_otf(bp_otf).astype(np.float32)
