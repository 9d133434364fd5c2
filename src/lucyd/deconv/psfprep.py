"""The one preparation of a PSF for deconvolution: :func:`prepare_psf`.

Every path that deconvolves (:func:`lucyd.deconv.deconvolve` whole-image and blocked,
:func:`lucyd.deconv.deconvolve_file`, the restorer registry's RL methods, ``lucyd restore``)
brings its PSF onto the image grid here, in one pass and in this order:

1. validate (:func:`lucyd.validation.as_psf`: numeric, finite, non-negative, not all zero,
   the image's dimensionality);
2. resample from the PSF's voxel size to the image's (:func:`resample_psf`);
3. zero-pad even axes to odd length, keeping the centre voxel ``k // 2`` (:func:`make_odd`);
4. move the main lobe onto the array centre (:func:`centre_psf`);
5. crop to what a padded job can use, ``2·n − 1`` per axis (:func:`crop_psf_for_job`);
6. normalise to sum 1 — once, at the end.

:class:`PreparedPSF` records what was done (shapes, voxel sizes, the offset removed, the
given sum), so that a job's record can say it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.validation import as_psf, as_voxel_size


def make_odd(psf: np.ndarray) -> np.ndarray:
    """Zero-pad an even-sized kernel by one voxel at the end of each even axis.

    The centre (index ``k // 2``) stays where it is, and the kernel becomes exactly
    centred, so that flipping it gives the adjoint of the convolution.
    """
    pad = [(0, 1 - (k % 2)) for k in psf.shape]
    if any(p[1] for p in pad):
        return np.pad(psf, pad)
    return psf


def resample_psf(psf: np.ndarray, psf_voxel_size, voxel_size) -> np.ndarray:
    """Resample a PSF sampled at ``psf_voxel_size`` onto a grid of ``voxel_size`` (µm).

    The output has odd size along every axis with the PSF's centre voxel (``k // 2``)
    mapped onto the output's centre, uses linear interpolation
    (:func:`scipy.ndimage.map_coordinates`), is clipped at 0 and renormalised to sum 1.
    When the sizes are equal (to 1e-6 relative) the PSF is returned unchanged.
    """
    psf = np.asarray(psf, dtype=np.float64)
    src = as_voxel_size(psf_voxel_size, psf.ndim, name="psf_voxel_size")
    dst = as_voxel_size(voxel_size, psf.ndim, name="voxel_size")
    if _same_voxel_size(src, dst):
        return psf.astype(np.float32)
    out = _resampled(psf, src, dst)
    return (out / out.sum()).astype(np.float32)


def _same_voxel_size(src, dst) -> bool:
    return bool(np.allclose(src, dst, rtol=1e-6, atol=0))


def _resampled(psf: np.ndarray, src, dst) -> np.ndarray:
    """:func:`resample_psf` without the final normalisation (float64, clipped at 0)."""
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
    if out.sum() <= 0:
        raise InputError("psf: resampling to the image's voxel size gave an empty PSF")
    return out


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


def job_psf_shape(psf_shape: Sequence[int], image_shape: Sequence[int],
                  boundary: str = "non-circulant") -> tuple[int, ...]:
    """Shape of a PSF of ``psf_shape`` after :func:`prepare_psf` for an image of ``image_shape``.

    Odd along every axis and, for the padded jobs (``boundary`` other than ``"circulant"``), at
    most ``2·n − 1``; the centring pad of an off-centre PSF, which depends on its values, is not
    included. The memory estimate (:func:`lucyd.deconv.api.estimate_deconvolution`) uses it.
    """
    shape = tuple(int(k) + 1 - int(k) % 2 for k in psf_shape)
    if boundary == "circulant":
        return shape
    return tuple(min(k, 2 * int(n) - 1) for k, n in zip(shape, image_shape, strict=True))


def _crop_slices(psf_shape, image_shape) -> tuple[slice, ...]:
    slices = []
    for k, n in zip(psf_shape, image_shape, strict=True):
        limit = 2 * int(n) - 1
        if k > limit:
            c = k // 2
            slices.append(slice(c - (limit // 2), c - (limit // 2) + limit))
        else:
            slices.append(slice(None))
    return tuple(slices)


def crop_psf_for_job(psf: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Crop a PSF to at most ``2·n − 1`` per axis (larger parts cannot couple observed voxels).

    The crop is symmetric about the centre (index ``k // 2``) and the result is renormalised
    to sum 1, as deconwolf does before a non-circulant job.
    """
    out = psf[_crop_slices(psf.shape, image_shape)]
    if out.shape != psf.shape:
        out = out / out.sum()
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class PreparedPSF:
    """A PSF on the image grid, ready for a deconvolution job, and what was done to it.

    Attributes
    ----------
    psf : numpy.ndarray
        float32, odd along every axis, centre at ``k // 2``, sum 1.
    given_shape : tuple of int
        Shape as given.
    given_sum : float
        Sum as given (the PSF is normalised to 1).
    resampled : ((float, ...), (float, ...)) or None
        ``(psf_voxel_size, voxel_size)`` in µm when the PSF was resampled between them.
    padded_to_odd : bool
        Even axes were zero-padded by one voxel.
    offset : tuple of int
        Whole-voxel offset of the main lobe from the array centre (:func:`psf_offset`), found
        after resampling; removed when ``centred``.
    centred : bool
        The main lobe was moved onto the array centre (a non-zero ``offset`` and ``centre=True``).
    cropped_from : tuple of int or None
        Shape before the crop to ``2·n − 1`` for a padded job (None: not cropped).
    image_shape : tuple of int or None
        The image the PSF was cropped for (None: prepared for a dimensionality only).
    boundary : str
        The job's boundary (the crop applies to padded jobs only).
    trimmed_from : tuple of int or None
        Shape before :func:`trim_psf` (None: not trimmed).
    energy_kept : float or None
        Fraction of the PSF's total kept by the trim (None: not trimmed).
    """

    psf: np.ndarray
    given_shape: tuple[int, ...]
    given_sum: float
    resampled: tuple[tuple[float, ...], tuple[float, ...]] | None
    padded_to_odd: bool
    offset: tuple[int, ...]
    centred: bool
    cropped_from: tuple[int, ...] | None
    image_shape: tuple[int, ...] | None
    boundary: str
    trimmed_from: tuple[int, ...] | None = None
    energy_kept: float | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.psf.shape)

    @property
    def ndim(self) -> int:
        return self.psf.ndim

    def steps(self) -> list[str]:
        """What was done, in words, in order."""
        out = []
        if self.resampled is not None:
            out.append(f"resampled from {self.resampled[0]} to {self.resampled[1]} µm")
        if self.padded_to_odd:
            out.append("zero-padded to odd size")
        if self.centred:
            out.append(f"main lobe moved by {tuple(-s for s in self.offset)} voxels onto the centre")
        if self.trimmed_from is not None:
            out.append(f"trimmed from {self.trimmed_from} to the box that holds "
                       f"{self.energy_kept:.6f} of its energy")
        if self.cropped_from is not None:
            out.append(f"cropped from {self.cropped_from} to {self.shape} for the job")
        out.append(f"normalised to sum 1 (given sum {self.given_sum:.6g})")
        return out


def prepare_psf(
    psf,
    *,
    ndim: int | None = None,
    image_shape: Sequence[int] | None = None,
    voxel_size=None,
    psf_voxel_size=None,
    centre: bool = True,
    boundary: str = "non-circulant",
    energy: float | None = None,
) -> PreparedPSF:
    """Bring ``psf`` onto the image grid for deconvolution, in one step (see the module notes).

    Parameters
    ----------
    psf : array_like or PreparedPSF
        The PSF (same dimensionality as the image, non-negative, any size and sum). A
        :class:`PreparedPSF` is already on the image grid: only the crop for ``image_shape``
        is applied, if that image needs it (voxel sizes and centring are not applied again).
    ndim : int, optional
        The image's dimensionality (default ``len(image_shape)``; one of the two is needed).
    image_shape : sequence of int, optional
        The image's shape: the PSF is cropped to ``2·n − 1`` per axis for a padded job (larger
        parts cannot couple observed voxels; deconwolf does the same). None: no crop.
    voxel_size, psf_voxel_size : float or sequence of float, optional
        Voxel sizes (µm) of the image and of the PSF; when both are given and differ, the PSF is
        resampled onto the image grid (:func:`resample_psf`).
    centre : bool
        Move the main lobe onto the array centre (:func:`centre_psf`): the centre voxel is the
        convolution's origin, so an off-centre measured PSF would otherwise shift the result.
    boundary : str
        The job's boundary (deconvolution spelling); ``"circulant"`` jobs are not cropped here
        (the engine fits the PSF to the image grid).
    energy : float, optional
        Trim the (centred) PSF to the smallest box that holds this fraction of its total
        (:func:`trim_psf`; e.g. 0.999): a PSF computed on a box much larger than where its light
        falls otherwise widens the padded job. None: no trim.

    Returns
    -------
    PreparedPSF
        The PSF (float32, odd, centred, sum 1) and the record of what was done.

    Raises
    ------
    InputError
        Bad PSF (non-finite, negative, all zero, wrong dimensionality), bad voxel sizes.
    """
    if image_shape is not None:
        image_shape = tuple(int(n) for n in image_shape)
        ndim = len(image_shape) if ndim is None else ndim
    if isinstance(psf, PreparedPSF):
        if ndim is not None and psf.ndim != ndim:
            raise InputError(f"psf: has {psf.ndim} dimensions but the image has {ndim}; "
                             "give a PSF with the same dimensionality as the image")
        return _cropped(psf, image_shape, boundary)
    if ndim is None:
        raise InputError("prepare_psf: give the image's ndim or image_shape")
    p = as_psf(psf, image_ndim=ndim, normalize=False)
    given_shape, given_sum = tuple(p.shape), float(p.sum(dtype=np.float64))
    resampled = None
    if psf_voxel_size is not None and voxel_size is not None:
        src = as_voxel_size(psf_voxel_size, ndim, "psf_voxel_size")
        dst = as_voxel_size(voxel_size, ndim, "voxel_size")
        if not _same_voxel_size(src, dst):
            p = _resampled(p.astype(np.float64), src, dst).astype(np.float32)
            resampled = (src, dst)
    odd = make_odd(p)
    offset = psf_offset(odd)
    centred = bool(centre) and any(offset)
    if centred:
        odd, _ = centre_psf(odd)
    padded_to_odd = odd.shape != p.shape
    trimmed_from = energy_kept = None
    if energy is not None:
        trimmed, energy_kept = trim_psf(odd, energy)
        if trimmed.shape != odd.shape:
            trimmed_from, odd = tuple(odd.shape), trimmed
    prepared = PreparedPSF(
        psf=odd, given_shape=given_shape, given_sum=given_sum, resampled=resampled,
        padded_to_odd=padded_to_odd, offset=offset, centred=centred,
        cropped_from=None, image_shape=None, boundary=boundary,
        trimmed_from=trimmed_from, energy_kept=energy_kept,
    )
    return _cropped(prepared, image_shape, boundary, normalise=True)


def _cropped(prepared: PreparedPSF, image_shape, boundary: str, *,
             normalise: bool = False) -> PreparedPSF:
    """``prepared`` cropped for ``image_shape`` (if a padded job needs it), normalised if it was
    cropped or ``normalise`` (the single normalisation of :func:`prepare_psf`)."""
    p = prepared.psf
    cropped_from = prepared.cropped_from
    if image_shape is not None and boundary != "circulant":
        out = p[_crop_slices(p.shape, image_shape)]
        if out.shape != p.shape:
            cropped_from = cropped_from or tuple(p.shape)
            p, normalise = out, True
    if normalise:
        p = np.ascontiguousarray(p / p.sum(dtype=np.float64), dtype=np.float32)
    elif p is prepared.psf and image_shape == prepared.image_shape:
        return prepared
    return replace(prepared, psf=p, cropped_from=cropped_from,
                   image_shape=image_shape if image_shape is not None else prepared.image_shape,
                   boundary=boundary)


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
