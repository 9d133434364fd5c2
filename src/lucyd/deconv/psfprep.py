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
