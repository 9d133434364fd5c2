"""Bring a PSF onto the image grid: resample, make odd, crop to what the job can use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lucyd.errors import InputError
from lucyd.validation import as_voxel_size


def resample_psf(psf: np.ndarray, psf_voxel_size, voxel_size) -> np.ndarray:
    """Resample a PSF sampled at ``psf_voxel_size`` onto a grid of ``voxel_size`` (µm).

    The output has odd size along every axis with the PSF's centre voxel (``k // 2``)
    mapped onto the output's centre, uses linear interpolation
    (:func:`scipy.ndimage.map_coordinates`), is clipped at 0 and renormalised to sum 1.
    When the sizes are equal (to 1e-6 relative) the PSF is returned unchanged.
    """
    from scipy import ndimage

    psf = np.asarray(psf, dtype=np.float64)
    src = as_voxel_size(psf_voxel_size, psf.ndim, name="psf_voxel_size")
    dst = as_voxel_size(voxel_size, psf.ndim, name="voxel_size")
    if np.allclose(src, dst, rtol=1e-6, atol=0):
        return psf.astype(np.float32)
    coords = []
    shape = []
    for k, s, d in zip(psf.shape, src, dst, strict=True):
        half_extent = (k // 2) * s  # µm from the centre to the last sample on the short side
        half = int(np.floor(half_extent / d + 1e-9))
        n = 2 * half + 1
        shape.append(n)
        coords.append((k // 2) + (np.arange(n) - half) * d / s)
    grids = np.meshgrid(*coords, indexing="ij")
    # integrate rather than point-sample when shrinking: pre-smooth with the down-sampling width
    sigma = [max(0.0, 0.5 * (d / s - 1.0)) for s, d in zip(src, dst, strict=True)]
    source = ndimage.gaussian_filter(psf, sigma) if any(sigma) else psf
    out = ndimage.map_coordinates(source, grids, order=1, mode="constant", cval=0.0)
    out = np.clip(out, 0.0, None)
    total = out.sum()
    if total <= 0:
        raise InputError("psf: resampling to the image's voxel size gave an empty PSF")
    return (out / total).astype(np.float32)


#: fraction of the peak above which voxels count as the PSF's main lobe (for its centre)
LOBE_FRACTION = 0.5


def psf_offset(psf: np.ndarray) -> tuple[int, ...]:
    """Whole-voxel offset of a PSF's centre from the array centre (index ``k // 2`` per axis).

    The centre is the intensity-weighted centroid of the main lobe (voxels at or above
    :data:`LOBE_FRACTION` of the peak), rounded to whole voxels: robust to the noise of a
    measured PSF, and exactly zero for a PSF that is symmetric about the array centre.
    """
    psf = np.asarray(psf, dtype=np.float64)
    lobe = np.where(psf >= LOBE_FRACTION * psf.max(), psf, 0.0)
    total = lobe.sum()
    offsets = []
    for axis, k in enumerate(psf.shape):
        profile = lobe.sum(axis=tuple(a for a in range(psf.ndim) if a != axis))
        centroid = float((profile * np.arange(k)).sum() / total)
        offsets.append(int(np.round(centroid - k // 2)))
    return tuple(offsets)


def centre_psf(psf: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Move a PSF's centre (see :func:`psf_offset`) onto the array centre, losing nothing.

    Deconvolution takes the voxel ``k // 2`` as the PSF's origin: a measured PSF whose bead sat
    ``s`` voxels off that centre would shift the whole result by ``s`` voxels. The PSF is
    zero-padded by ``2|s|`` on the side opposite to the offset (parity, and so oddness, kept).

    Returns
    -------
    centred : numpy.ndarray
        float32 PSF, same sum.
    offset : tuple of int
        The offset found (all zeros: the PSF is returned unchanged).
    """
    offset = psf_offset(psf)
    if not any(offset):
        return np.asarray(psf, dtype=np.float32), offset
    pads = [(0, 2 * s) if s > 0 else (-2 * s, 0) for s in offset]
    return np.pad(np.asarray(psf, dtype=np.float32), pads), offset


def crop_psf_for_job(psf: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Crop a PSF to at most ``2·n − 1`` per axis (larger parts cannot couple observed voxels).

    The crop is symmetric about the centre (index ``k // 2``) and the result is renormalised
    to sum 1, as deconwolf does before a non-circulant job.
    """
    slices = []
    for k, n in zip(psf.shape, image_shape, strict=True):
        limit = 2 * int(n) - 1
        if k > limit:
            c = k // 2
            slices.append(slice(c - (limit // 2), c - (limit // 2) + limit))
        else:
            slices.append(slice(None))
    out = psf[tuple(slices)]
    if out.shape != psf.shape:
        out = out / out.sum()
    return np.ascontiguousarray(out, dtype=np.float32)


def trim_psf(psf: np.ndarray, energy: float = 0.999) -> tuple[np.ndarray, float]:
    """Crop a PSF about its centre to the smallest box that holds ``energy`` of its total.

    A computed PSF is often generated on a box much larger than where its light falls; every
    voxel of it widens the padded deconvolution job (image + PSF − 1) and so its time and
    memory. Starting from the whole array, one voxel is peeled off both ends of the axis whose
    two faces carry the least light, as long as the box still holds at least ``energy`` of the
    total (greedy; box sums from a summed-area table). The crop stays symmetric about the
    centre voxel ``k // 2`` (so an odd PSF stays odd and centred), and the result is
    renormalised to sum 1. deconwolf trims its PSFs likewise before deconvolving (Wernersson
    et al., Nat. Methods 2024).

    Parameters
    ----------
    psf : array_like
        Non-negative PSF (2D or 3D), centre at index ``k // 2``.
    energy : float
        Fraction of the total to keep, in (0, 1]; 1 removes only faces carrying less than
        1e-12 of the total (round-off).

    Returns
    -------
    trimmed : numpy.ndarray
        float32, sum 1.
    kept : float
        Fraction of the input's total inside the kept box (≥ ``energy``).
    """
    if not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise InputError(f"psf_energy: must be a fraction in (0, 1], got {energy!r}")
    p = np.asarray(psf, dtype=np.float64)
    total = float(p.sum())
    if not (np.isfinite(total) and total > 0):
        raise InputError("psf: must have a positive, finite sum to be trimmed")
    table = p
    for axis in range(p.ndim):
        table = np.cumsum(table, axis=axis)
    table = np.pad(table, [(1, 0)] * p.ndim)  # table[i] = sum of p[:i] per axis
    lo = [k // 2 for k in p.shape]  # voxels kept below the centre
    hi = [k - 1 - k // 2 for k in p.shape]  # and above it

    def box_sum(lo_, hi_) -> float:
        start = [c - a for c, a in zip((k // 2 for k in p.shape), lo_, strict=True)]
        stop = [c + b + 1 for c, b in zip((k // 2 for k in p.shape), hi_, strict=True)]
        value = 0.0
        for corner in range(1 << p.ndim):
            index, sign = [], 1
            for d in range(p.ndim):
                if corner >> d & 1:
                    index.append(start[d])
                    sign = -sign
                else:
                    index.append(stop[d])
            value += sign * float(table[tuple(index)])
        return value

    need = energy * total * (1 - 1e-12)
    kept = total
    while True:
        best, best_axis = -1.0, None
        for d in range(p.ndim):
            if lo[d] == 0 or hi[d] == 0:
                continue
            lo[d] -= 1
            hi[d] -= 1
            value = box_sum(lo, hi)
            lo[d] += 1
            hi[d] += 1
            if value > best:
                best, best_axis = value, d
        if best_axis is None or best < need:
            break
        lo[best_axis] -= 1
        hi[best_axis] -= 1
        kept = best
    crop = tuple(slice(k // 2 - a, k // 2 + b + 1) for k, a, b in zip(p.shape, lo, hi, strict=True))
    out = p[crop]
    return (out / out.sum()).astype(np.float32), kept / total
