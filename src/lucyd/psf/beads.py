"""Measured PSFs: isolate, align and average sub-resolution beads.

The procedure follows the usual practice of bead-based PSF extraction (e.g. the PSF
Distiller of Huygens, or the "average bead" of Cole et al., Nature Protocols 6:1929,
2011): subtract the background, find bright isolated beads, register them with
sub-pixel accuracy, average them, centre the result on the middle voxel, clip
negatives and normalise to sum 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.psf._common import check_shape
from lucyd.psf.measure import fwhm
from lucyd.validation import as_image, as_number, as_voxel_size

__all__ = ["BeadReport", "from_beads"]

#: MAD → standard deviation of a normal distribution
_MAD_TO_SIGMA = 1.4826


@dataclass
class BeadReport:
    """What :func:`from_beads` found and used (positions in pixels, (z, y, x) order)."""

    background: float
    noise: float
    threshold: float
    shape: tuple[int, ...]
    candidates: int
    used: list[tuple[float, ...]] = field(default_factory=list)
    rejected_neighbour: int = 0
    rejected_border: int = 0


def _as_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _robust_noise(values: np.ndarray) -> float:
    med = np.median(values)
    return float(_MAD_TO_SIGMA * np.median(np.abs(values - med)))


def _subpixel_offset(sm: np.ndarray, pos: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """Sub-pixel peak offset per axis by a 3-point Gaussian (log-parabola) fit.

    Falls back to a plain parabola where a neighbour is not positive. Returns the
    offsets (each in [-0.5, 0.5]) and the fitted peak height.
    """
    offsets = np.zeros(sm.ndim)
    b = float(sm[pos])
    height_log = []
    for axis in range(sm.ndim):
        lo = list(pos)
        hi = list(pos)
        lo[axis] -= 1
        hi[axis] += 1
        if lo[axis] < 0 or hi[axis] >= sm.shape[axis]:
            continue
        a, c = float(sm[tuple(lo)]), float(sm[tuple(hi)])
        if a > 0 and b > 0 and c > 0:
            la, lb, lc = math.log(a), math.log(b), math.log(c)
            denom = la - 2 * lb + lc
            if denom < 0:
                d = 0.5 * (la - lc) / denom
                offsets[axis] = d
                height_log.append(lb - 0.25 * (la - lc) * d)
                continue
        denom = a - 2 * b + c
        if denom < 0:
            offsets[axis] = 0.5 * (a - c) / denom
    offsets = np.clip(offsets, -0.5, 0.5)
    height = math.exp(max(height_log)) if height_log else b
    return offsets, height


def _shift(arr: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Shift with the Fourier shift theorem, zero-padded so that nothing wraps around."""
    pad = int(math.ceil(float(np.abs(shift).max()))) + 3
    padded = np.pad(arr, pad)
    spec = ndimage.fourier_shift(np.fft.fftn(padded), shift)
    out = np.fft.ifftn(spec).real
    return out[tuple(slice(pad, pad + n) for n in arr.shape)]


def _crop(arr: np.ndarray, centre: tuple[int, ...], half: tuple[int, ...]):
    """Crop ``2·half+1`` around ``centre``, zero-filled outside, with its coverage mask."""
    out = np.zeros(tuple(2 * h + 1 for h in half))
    mask = np.zeros(out.shape, dtype=bool)
    src, dst = [], []
    for c, h, n in zip(centre, half, arr.shape, strict=True):
        lo, hi = c - h, c + h + 1
        s0, s1 = max(lo, 0), min(hi, n)
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo, s1 - lo))
    out[tuple(dst)] = arr[tuple(src)]
    mask[tuple(dst)] = True
    return out, mask


def _default_shape(sm: np.ndarray) -> tuple[int, ...]:
    """Odd crop ≈ 8 FWHM of the brightest bead per axis, at most the image size."""
    widths = fwhm(np.clip(sm, 0, None))
    sizes = []
    for w, n in zip(widths, sm.shape, strict=True):
        largest_odd = n if n % 2 else n - 1
        want = int(math.ceil(8 * max(w, 1.0)))
        want += 1 - want % 2
        sizes.append(max(3, min(largest_odd, want)))
    return tuple(sizes)


def from_beads(
    image,
    voxel_size=None,
    *,
    shape=None,
    min_distance: int = 3,
    threshold: float = 0.2,
    background: float | str | None = "median",
    border: int | None = None,
    smooth: float = 1.0,
    max_beads: int | None = None,
    return_report: bool = False,
):
    """Measure a PSF from an image of sub-resolution fluorescent beads.

    Steps: (1) background = median of the image (or ``"edge"``: median of the outer
    faces, or a number) is subtracted; (2) beads are local maxima of the image smoothed
    by a Gaussian of ``smooth`` pixels, at least ``min_distance`` pixels apart, brighter
    than ``threshold`` × the brightest bead and than 5 noise standard deviations (MAD);
    (3) a bead is rejected when another detected bead lies inside its crop box (it would
    contaminate the average) or when its centre is closer than ``border`` pixels to the
    image edge; (4) each bead's sub-pixel centre is found by a 3-point Gaussian
    (log-parabola) fit per axis and the crop is shifted onto the grid with the Fourier
    shift theorem (:func:`scipy.ndimage.fourier_shift`); (5) crops are normalised by
    their fitted peak height and averaged (parts of a crop outside the image are left
    out of the average rather than counted as zeros); (6) the average is re-centred on
    the middle voxel, negatives are clipped and it is normalised to sum 1.

    A single bead (e.g. a pre-cropped bead stack whose peak is not centred) works too:
    the output is that bead re-centred; where the requested box extends beyond the
    image, no data exist and the PSF is set to 0 there.

    Parameters
    ----------
    image : array_like, (y, x) or (z, y, x)
        Bead image (any numeric dtype), not background-subtracted.
    voxel_size : float or tuple of float, optional
        Voxel size in µm; only validated and reported (the PSF is on the image grid).
    shape : tuple of int, optional
        Odd output shape, same dimensionality as the image. Default: about 8 FWHM of
        the brightest bead per axis, at most the image size.
    min_distance : int
        Minimum separation of two detected maxima, pixels.
    threshold : float
        Minimum bead brightness as a fraction (0–1) of the brightest bead, above
        background.
    background : "median", "edge", float or None
        Background estimate to subtract (None: 0).
    border : int, optional
        Beads whose centre is closer than this to an edge are rejected (default
        ``min_distance``), unless that would leave no bead.
    smooth : float
        Gaussian sigma (pixels) of the detection image; 0 disables smoothing.
    max_beads : int, optional
        Use at most this many (the brightest) beads.
    return_report : bool
        Also return a :class:`BeadReport`.

    Returns
    -------
    psf : ndarray of float32
        Odd-sized, peak at ``shape // 2``, non-negative, sum 1.
    report : BeadReport
        Only with ``return_report=True``.
    """
    arr = as_image(image, name="image", ndim=(2, 3), dtype=np.float64)
    if voxel_size is not None:
        as_voxel_size(voxel_size, arr.ndim)
    min_distance = _as_int(min_distance, "min_distance", 1)
    threshold = as_number(threshold, "threshold")
    if not 0.0 <= threshold < 1.0:
        raise InputError(f"threshold: expected a fraction in [0, 1), got {threshold!r}")
    smooth = as_number(smooth, "smooth")
    if smooth < 0:
        raise InputError(f"smooth: expected a non-negative sigma in pixels, got {smooth!r}")
    if max_beads is not None:
        max_beads = _as_int(max_beads, "max_beads", 1)
    if border is not None:
        border = _as_int(border, "border", 0)
    if min(arr.shape) < 3:
        raise InputError(f"image: every axis needs at least 3 pixels, got shape {arr.shape}")

    # (1) background and noise
    if background is None:
        bg = 0.0
    elif isinstance(background, str):
        if background == "median":
            bg = float(np.median(arr))
        elif background == "edge":
            faces = [np.moveaxis(arr, ax, 0)[[0, -1]].ravel() for ax in range(arr.ndim)]
            bg = float(np.median(np.concatenate(faces)))
        else:
            raise InputError(
                f"background: expected 'median', 'edge', a number or None, got {background!r}"
            )
    else:
        bg = float(background)
        if not math.isfinite(bg):
            raise InputError(f"background: must be finite, got {background!r}")
    sub = arr - bg
    sm = ndimage.gaussian_filter(sub, smooth, mode="nearest") if smooth > 0 else sub
    noise = _robust_noise(sm)
    peak_value = float(sm.max())
    if peak_value <= 0:
        raise InputError("image: no signal above the background; is this a bead image?")

    # (2) candidate beads: local maxima above threshold
    level = max(threshold * peak_value, 5.0 * noise)
    maxima = (sm == ndimage.maximum_filter(sm, size=2 * min_distance + 1, mode="nearest"))
    maxima &= sm > level
    labels, count = ndimage.label(maxima)
    if count == 0:
        raise InputError(
            f"image: no bead brighter than {level:.4g} above background {bg:.4g}; "
            "lower threshold"
        )
    centres = ndimage.center_of_mass(maxima, labels, range(1, count + 1))
    cands = []
    for c in centres:
        p = tuple(int(round(v)) for v in c)
        # move onto the local maximum of the smoothed image
        win = tuple(slice(max(v - 1, 0), v + 2) for v in p)
        local = np.unravel_index(int(np.argmax(sm[win])), sm[win].shape)
        p = tuple(w.start + int(o) for w, o in zip(win, local, strict=True))
        cands.append(p)
    cands = sorted(set(cands), key=lambda p: -sm[p])
    positions = np.array(cands, dtype=float)

    # crop shape
    if shape is None:
        shape = _default_shape(sm)
    else:
        shape = check_shape(shape)
        if len(shape) != arr.ndim:
            raise InputError(
                f"shape: has {len(shape)} sizes but the image is {arr.ndim}D {arr.shape}"
            )
    half = tuple(n // 2 for n in shape)

    # (3) isolation and border
    isolated = np.ones(len(cands), dtype=bool)
    if len(cands) > 1:
        diff = np.abs(positions[:, None, :] - positions[None, :, :])
        inside = np.all(diff <= np.array(half)[None, None, :], axis=-1)
        np.fill_diagonal(inside, False)
        isolated = ~inside.any(axis=1)
    border = min_distance if border is None else border
    dims = np.array(arr.shape)
    away = np.all((positions >= border) & (positions <= dims - 1 - border), axis=1)
    keep = isolated & away
    rejected_border = int((isolated & ~away).sum())
    if not keep.any() and isolated.any():
        keep = isolated.copy()  # every isolated bead touches the border: use them anyway
        keep[np.argmax(isolated) + 1 :] = False
        rejected_border = int(isolated.sum() - 1)
    if not keep.any():
        raise InputError(
            f"image: none of the {len(cands)} bead(s) is isolated: each has another bead "
            f"inside its {shape} crop; give a smaller shape or a higher threshold"
        )
    chosen = [cands[i] for i in np.flatnonzero(keep)]
    if max_beads is not None:
        chosen = chosen[: int(max_beads)]

    # (4)-(5) align and average
    total = np.zeros(shape)
    weight = np.zeros(shape)
    used = []
    for p in chosen:
        offset, height = _subpixel_offset(sm, p)
        if height <= 0:
            continue
        crop, mask = _crop(sub, p, half)
        crop = _shift(crop * mask, -offset)
        total += crop * mask / height
        weight += mask
        used.append(tuple(float(v) for v in np.asarray(p) + offset))
    if not used:
        raise InputError("image: no bead with a positive peak after background subtraction")
    psf = np.where(weight > 0, total / np.maximum(weight, 1), 0.0)

    # (6) re-centre, clip, normalise
    psf = np.clip(psf, 0.0, None)
    centre = tuple(half)
    smp = ndimage.gaussian_filter(psf, smooth, mode="constant") if smooth > 0 else psf
    peak = np.unravel_index(int(np.argmax(smp)), smp.shape)
    offset, _ = _subpixel_offset(smp, tuple(int(v) for v in peak))
    residual = np.asarray(peak, dtype=float) + offset - np.asarray(centre, dtype=float)
    if np.any(np.abs(residual) > 0.05):
        psf = np.clip(_shift(psf, -residual), 0.0, None)
    s = psf.sum()
    if s <= 0:
        raise InputError("image: the averaged bead is empty after background subtraction")
    psf = (psf / s).astype(np.float32)
    if not return_report:
        return psf
    report = BeadReport(
        background=bg,
        noise=noise,
        threshold=level,
        shape=tuple(shape),
        candidates=len(cands),
        used=used,
        rejected_neighbour=int((~isolated).sum()),
        rejected_border=rejected_border,
    )
    return psf, report
