"""Orthogonal N-D wavelet transforms in torch, and size helpers shared by the networks.

The transform is the separable, periodic discrete wavelet transform with an orthogonal
two-channel filter bank (Haar or Daubechies-4, Daubechies 1988). One level maps a tensor
``(B, C, *S)`` with even sizes to ``(B, 2**n * C, *S / 2)``: ``2**n`` sub-bands stacked on
the channel axis, sub-band ``b`` having bit ``i`` of ``b`` set when axis ``i`` was
high-pass filtered. Sub-band 0 (the first ``C`` channels) is the approximation ("average"),
the others are the details. Because the filter bank is orthogonal and the boundary
periodic, the transform is an orthogonal linear map: ``idwt(dwt(x)) == x`` up to round-off
and the energy (sum of squares) is preserved. These are the average / detail coefficients
of the non-standard form of Beylkin, Coifman & Rokhlin (1991) used by BCR-Net (Fan & Ying
2019) and m-rBCR (Li, Kudryashev & Yakimovich, ECCV 2024), see :mod:`lucyd.nets.rbcr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lucyd.errors import InputError

_SQ3 = math.sqrt(3.0)
#: Low-pass analysis filters of the supported orthogonal wavelets.
WAVELET_FILTERS: dict[str, tuple[float, ...]] = {
    "haar": (1 / math.sqrt(2.0), 1 / math.sqrt(2.0)),
    "db2": tuple(c / (4 * math.sqrt(2.0)) for c in (1 + _SQ3, 3 + _SQ3, 3 - _SQ3, 1 - _SQ3)),
}


def wavelet_filters(wavelet: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Low- and high-pass analysis filters ``(h, g)`` of an orthogonal wavelet.

    ``g[k] = (-1)**k * h[L - 1 - k]`` (quadrature mirror filter), so ``(h, g)`` is an
    orthogonal filter bank.

    Parameters
    ----------
    wavelet : {"haar", "db2"}
        Haar, or Daubechies' 4-tap wavelet with two vanishing moments.
    """
    key = str(wavelet).lower()
    if key not in WAVELET_FILTERS:
        raise InputError(
            f"wavelet: unknown wavelet {wavelet!r}; use one of {sorted(WAVELET_FILTERS)}"
        )
    h = WAVELET_FILTERS[key]
    n = len(h)
    g = tuple(((-1) ** k) * h[n - 1 - k] for k in range(n))
    return h, g


def _analysis_axis(x: torch.Tensor, axis: int, h, g) -> tuple[torch.Tensor, torch.Tensor]:
    """One periodic analysis step along ``axis``: ``lo[n] = sum_k h[k] x[2n + k]`` (and ``hi``)."""
    n = x.shape[axis]
    if n % 2:
        raise InputError(f"wavelet transform: size {n} along an axis is odd; pad to an even size")
    lo = hi = None
    for k, (hk, gk) in enumerate(zip(h, g, strict=True)):
        shifted = x if k == 0 else torch.roll(x, shifts=-k, dims=axis)
        even = shifted.unflatten(axis, (n // 2, 2)).select(axis + 1, 0)
        lo = hk * even if lo is None else lo + hk * even
        hi = gk * even if hi is None else hi + gk * even
    return lo, hi


def _synthesis_axis(lo: torch.Tensor, hi: torch.Tensor, axis: int, h, g) -> torch.Tensor:
    """Adjoint (= inverse, for an orthogonal bank) of :func:`_analysis_axis`."""

    def upsample(c: torch.Tensor) -> torch.Tensor:
        return torch.stack((c, torch.zeros_like(c)), dim=axis + 1).flatten(axis, axis + 1)

    ulo, uhi = upsample(lo), upsample(hi)
    out = None
    for k, (hk, gk) in enumerate(zip(h, g, strict=True)):
        term = hk * ulo + gk * uhi
        term = term if k == 0 else torch.roll(term, shifts=k, dims=axis)
        out = term if out is None else out + term
    return out


def dwt(x: torch.Tensor, wavelet: str = "haar") -> torch.Tensor:
    """One level of the separable periodic orthogonal wavelet transform over all spatial axes.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, *S)`` with every spatial size even (1, 2 or 3 spatial axes).
    wavelet : {"haar", "db2"}
        Orthogonal wavelet.

    Returns
    -------
    torch.Tensor
        ``(B, 2**n * C, *[s // 2 for s in S])``; channels ``[b*C:(b+1)*C]`` hold sub-band
        ``b`` (bit ``i`` of ``b`` set = high-pass along spatial axis ``i``); sub-band 0 is the
        approximation.
    """
    h, g = wavelet_filters(wavelet)
    ndim = x.ndim - 2
    bands = [x]
    for i in range(ndim):
        axis = 2 + i
        new: list[torch.Tensor] = [torch.empty(0)] * (2 * len(bands))
        for b, t in enumerate(bands):
            lo, hi = _analysis_axis(t, axis, h, g)
            new[b] = lo
            new[b + len(bands)] = hi  # bit i of the sub-band index = high-pass along axis i
        bands = new
    return torch.cat(bands, dim=1)


def idwt(c: torch.Tensor, wavelet: str = "haar") -> torch.Tensor:
    """Inverse of :func:`dwt`: ``(B, 2**n * C, *S) -> (B, C, *2S)``."""
    h, g = wavelet_filters(wavelet)
    ndim = c.ndim - 2
    nb = 2**ndim
    if c.shape[1] % nb:
        raise InputError(f"idwt: {c.shape[1]} channels is not a multiple of {nb} sub-bands")
    bands = list(torch.chunk(c, nb, dim=1))
    for i in reversed(range(ndim)):
        axis = 2 + i
        half = len(bands) // 2
        bands = [_synthesis_axis(bands[b], bands[b + half], axis, h, g) for b in range(half)]
    return bands[0]


def wavedec(x: torch.Tensor, levels: int, wavelet: str = "haar") -> list[torch.Tensor]:
    """Multi-level decomposition ``[approx_L, details_L, ..., details_1]`` (Mallat pyramid).

    ``details_l`` has ``(2**n - 1) * C`` channels at size ``S / 2**l``.
    """
    channels = x.shape[1]
    details = []
    s = x
    for _ in range(int(levels)):
        c = dwt(s, wavelet)
        s, d = c[:, :channels], c[:, channels:]
        details.append(d)
    return [s, *reversed(details)]


def waverec(coeffs: Sequence[torch.Tensor], wavelet: str = "haar") -> torch.Tensor:
    """Inverse of :func:`wavedec`."""
    s = coeffs[0]
    for d in coeffs[1:]:
        s = idwt(torch.cat((s, d), dim=1), wavelet)
    return s


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Edge-pad the spatial axes of ``(B, C, *S)`` at their ends to multiples of ``multiple``.

    Returns the padded tensor and the original spatial shape (for :func:`crop_to`). A tensor
    already of a suitable size is returned unchanged.
    """
    shape = tuple(int(s) for s in x.shape[2:])
    multiple = int(multiple)
    if multiple <= 1 or all(s % multiple == 0 for s in shape):
        return x, shape
    pad: list[int] = []
    for s in reversed(shape):  # F.pad lists the last axis first
        pad += [0, (-s) % multiple]
    return F.pad(x, pad, mode="replicate"), shape


def crop_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the spatial axes of ``x`` back to ``shape`` (the start of each axis is kept)."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    return x[(slice(None), slice(None), *(slice(0, int(s)) for s in shape))]


def receptive_extent(radius: int) -> int:
    """Full receptive-field extent (voxels) of a symmetric one-sided reach ``radius``."""
    return 2 * int(radius) + 1
