"""Training pairs of isotropic restoration (step 1 of :mod:`lucyd.isotropic`): lateral planes degraded to
look like axial views (Weigert et al., MICCAI 2017; Nature Methods 15:1090, 2018)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.synth.degrade import subsample_axis0, upsample_axis0
from lucyd.validation import as_image, as_number, as_psf, as_voxel_size


def _check_factor(z_factor) -> float:
    return as_number(z_factor, "z_factor", minimum=1.0,
                     requirement="finite and >= 1 (the axial / lateral sampling ratio)")


def _check_stack(stack) -> np.ndarray:

    arr = as_image(stack, name="stack", ndim=(2, 3), dtype=np.float32)
    if arr.ndim != 3:
        raise InputError(f"stack: isotropic restoration needs a 3D (z, y, x) stack, got a "
                         f"{arr.ndim}D image of shape {arr.shape}")
    if arr.shape[0] < 2:
        raise InputError(f"stack: needs at least 2 planes along z, got shape {arr.shape}")
    return arr


def _check_lazy_stack(stack):
    """A numpy stack checked by :func:`_check_stack`, or a lazy 3D one (zarr, memmap) checked
    for its shape and dtype (its blocks are read as needed)."""
    lazy = not isinstance(stack, np.ndarray) and hasattr(stack, "shape") and hasattr(
        stack, "__getitem__") and not hasattr(stack, "detach")
    if not lazy:
        return _check_stack(stack)
    if len(stack.shape) != 3 or stack.shape[0] < 2:
        raise InputError(f"stack: isotropic restoration needs a 3D (z, y, x) stack of at least 2 "
                         f"planes, got shape {tuple(stack.shape)}")
    if np.dtype(getattr(stack, "dtype", np.float32)).kind not in "iuf":
        raise InputError(f"stack: expected a numeric array, got dtype {stack.dtype}")
    return stack


def axial_kernel(z_factor: float, *, axial_psf=None, axial_sigma: float | None = None,
                 voxel_size=None) -> np.ndarray:
    """The 2D kernel that turns a lateral (xy) slice into an axial-looking one (axis 0 = z).

    Parameters
    ----------
    z_factor : float
        Axial / lateral sampling ratio.
    axial_psf : array_like, optional
        * 1D: the axial profile on the lateral pixel grid (blurs axis 0 only);
        * 2D: a ``(z, x)`` kernel already on the lateral pixel grid;
        * 3D: the acquisition PSF ``(z, y, x)`` sampled like the stack; it is summed over y
          (CSBDeep's choice, a line-spread function in the x-z plane) and resampled along z from
          ``dz`` to ``dx`` spacing (``dz / dx`` from ``voxel_size``, else ``z_factor``), linear
          interpolation, centre kept at index ``k // 2``.
    axial_sigma : float, optional
        Without ``axial_psf``: standard deviation (lateral pixels) of a Gaussian blur along
        axis 0; default ``z_factor / 2`` (the same default as ``lucyd.synth.degrade``'s
        isotropic task).
    voxel_size : tuple of 3 float, optional
        ``(dz, dy, dx)`` µm of the stack, to resample a 3D PSF.

    Returns
    -------
    numpy.ndarray
        float32 ``(kz, kx)`` kernel, sum 1, centre at ``shape // 2``.
    """


    if axial_psf is None:
        sigma = z_factor / 2.0 if axial_sigma is None else float(axial_sigma)
        if not math.isfinite(sigma) or sigma < 0:
            raise InputError(f"axial_sigma: must be finite and >= 0, got {axial_sigma!r}")
        if sigma == 0:
            return np.ones((1, 1), np.float32)
        radius = max(int(math.ceil(4 * sigma)), 1)
        z = np.arange(-radius, radius + 1, dtype=np.float64)
        k = np.exp(-0.5 * (z / sigma) ** 2)
        return (k / k.sum()).reshape(-1, 1).astype(np.float32)
    psf = np.asarray(axial_psf, dtype=np.float64)
    if psf.ndim == 1:
        return as_psf(psf.reshape(-1, 1), image_ndim=2, name="axial_psf")
    if psf.ndim == 2:
        return as_psf(psf, image_ndim=2, name="axial_psf")
    if psf.ndim != 3:
        raise InputError(f"axial_psf: expected a 1D, 2D or 3D array, got {psf.ndim}D")
    psf3 = as_psf(psf, image_ndim=3, name="axial_psf").astype(np.float64)
    zx = psf3.sum(axis=1)
    if voxel_size is not None:
        dz, _, dx = as_voxel_size(voxel_size, 3)
        ratio = dz / dx
    else:
        ratio = z_factor
    nz = zx.shape[0]
    c_old = nz // 2
    half = int(math.floor(c_old * ratio))
    c_new = half
    coords_z = (np.arange(2 * half + 1) - c_new) / ratio + c_old
    coords_x = np.arange(zx.shape[1], dtype=np.float64)
    zz, xx = np.meshgrid(coords_z, coords_x, indexing="ij")
    res = ndimage.map_coordinates(zx, [zz, xx], order=1, mode="constant", cval=0.0)
    return as_psf(np.clip(res, 0, None), image_ndim=2, name="axial_psf (resampled)")


def degrade_lateral(slices: np.ndarray, z_factor: float, kernel: np.ndarray, *,
                    photons: float | None = None, read_noise: float = 0.0, seed=None,
                    device: str = "auto") -> np.ndarray:
    """Make lateral slices look axial along their axis 1 (the CARE isotropic degradation).

    Parameters
    ----------
    slices : numpy.ndarray
        ``(n, a, b)`` stack of 2D images; axis 1 (``a``) is the one degraded.
    z_factor : float
        Sub-sampling factor along axis 1 (non-integer allowed: linear interpolation).
    kernel : numpy.ndarray
        ``(ka, kb)`` blur kernel from :func:`axial_kernel` (reflecting boundary).
    photons : float, optional
        Camera noise on the sub-sampled rows (:func:`lucyd.forward.camera_noise`,
        ``photons`` per intensity unit); None: none (the planes carry their own noise).
    read_noise : float
        Read-noise standard deviation (electrons) when ``photons`` is given.
    seed : int, Generator or None
        Noise seed.
    device : str
        Device of the FFT convolution.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, a, b)``: blurred, sub-sampled every ``z_factor`` rows along axis 1 and
        re-upsampled linearly onto ``a`` rows.
    """

    arr = np.asarray(slices, dtype=np.float32)
    if kernel.size > 1:
        blurred = convolve(arr, kernel[None], boundary="reflect", device=device)
    else:
        blurred = arr.copy()
    n = arr.shape[1]
    rows = np.moveaxis(subsample_axis0(np.moveaxis(blurred, 1, 0), z_factor), 0, 1)
    if photons is not None:
        offset = float(min(0.0, rows.min()))
        rows = camera_noise(rows - offset, photons=photons, read_noise=read_noise, seed=seed)
        rows = rows / np.float32(photons) + np.float32(offset)
    up = upsample_axis0(np.moveaxis(rows, 1, 0).astype(np.float32), z_factor, n)
    return np.ascontiguousarray(np.moveaxis(up, 0, 1), dtype=np.float32)


def training_pairs(stack: np.ndarray, z_factor: float, *, axial_psf=None,
                   axial_sigma: float | None = None, voxel_size=None,
                   photons: float | None = None, both_axes: bool = True,
                   max_slices: int | None = None, seed=None,
                   device: str = "auto") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """2D (raw, target) pairs from the lateral planes of ``stack`` (CARE isotropic recipe).

    Each xy plane is a target; its raw is the plane degraded along axis 0 by
    :func:`degrade_lateral`. With ``both_axes`` the transposed plane (degraded along x) is
    added too, so the network sees both lateral directions.

    ``stack`` may be lazy (zarr, memmap): only the planes used (``max_slices`` of them) are read.

    Returns
    -------
    raws, targets : list of numpy.ndarray
        float32 2D images; axis 0 is the degraded axis.
    """
    arr = _check_lazy_stack(stack)
    f = _check_factor(z_factor)
    kernel = axial_kernel(f, axial_psf=axial_psf, axial_sigma=axial_sigma,
                          voxel_size=voxel_size)
    rng = np.random.default_rng(seed)
    if max_slices is not None and arr.shape[0] > max_slices:
        idx = np.sort(rng.choice(arr.shape[0], int(max_slices), replace=False))
        # a lazy stack (zarr, memmap): only the chosen planes are read
        planes = _check_stack(np.stack([np.asarray(arr[int(i)]) for i in idx]))
    else:
        planes = arr if isinstance(arr, np.ndarray) else _check_stack(np.asarray(arr[...]))
    groups = [planes] + ([np.ascontiguousarray(planes.transpose(0, 2, 1))] if both_axes else [])
    raws, targets = [], []
    for g in groups:
        if g.shape[1] < 2 * f:
            raise InputError(f"stack: a lateral size of {g.shape[1]} px is too small for "
                             f"z_factor {f:g} (need at least {2 * f:g})")
        deg = degrade_lateral(g, f, kernel, photons=photons, seed=rng, device=device)
        raws.extend(list(deg))
        targets.extend(list(g))
    return raws, targets
