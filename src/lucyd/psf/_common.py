"""Shared machinery of the PSF models: argument checks, pupil quadrature, pixel rendering.

All lengths are in micrometres (µm). Arrays are (z, y, x) or (y, x); the PSF centre
(the nominal focus on the optical axis) is at index ``n // 2`` of every axis, which is
the convention of :mod:`lucyd.forward.fft`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse, special

from lucyd.errors import InputError
from lucyd.validation import as_voxel_size, positive


def check_shape(shape: Sequence[int] | int, name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of 2 or 3 odd positive ints, or raise InputError."""
    if isinstance(shape, int | np.integer):
        raise InputError(
            f"{name}: expected 2 or 3 sizes, (y, x) or (z, y, x), got the single int {shape}"
        )
    try:
        values = tuple(shape)
    except TypeError:
        raise InputError(f"{name}: expected a sequence of 2 or 3 ints, got {shape!r}") from None
    if len(values) not in (2, 3):
        raise InputError(
            f"{name}: expected 2 or 3 sizes, (y, x) or (z, y, x), got {len(values)}: {values}"
        )
    out = []
    for v in values:
        if isinstance(v, bool) or not float(v).is_integer():
            raise InputError(f"{name}: sizes must be integers, got {values}")
        out.append(int(v))
    if any(v <= 0 for v in out):
        raise InputError(f"{name}: sizes must be positive, got {tuple(out)}")
    if any(v % 2 == 0 for v in out):
        raise InputError(
            f"{name}: every size must be odd so that the PSF has a centre voxel, got {tuple(out)}"
        )
    return tuple(out)


def check_voxel(voxel_size, ndim: int) -> tuple[float, ...]:
    """Voxel size as ``ndim`` positive floats in µm (a 3-tuple is accepted for a 2D shape)."""
    if voxel_size is None:
        raise InputError("voxel_size: required (µm per voxel, same order as shape)")
    return as_voxel_size(voxel_size, ndim)


def check_optics(na, wavelength, ni) -> tuple[float, float, float]:
    """Validate NA, wavelength (µm) and immersion index; NA must be below ni."""
    na = positive(na, "na")
    wavelength = positive(wavelength, "wavelength")
    ni = positive(ni, "ni")
    if ni < 1.0:
        raise InputError(f"ni: refractive index must be >= 1, got {ni}")
    if na >= ni:
        raise InputError(f"na: must be smaller than the immersion index ni={ni}, got na={na}")
    if wavelength > 20.0:
        raise InputError(
            f"wavelength: {wavelength} µm is not a light wavelength; give it in micrometres "
            "(e.g. 0.52 for 520 nm)"
        )
    return na, wavelength, ni


def check_oversampling(value, name: str = "oversampling") -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def axis_coords(n: int, step: float) -> np.ndarray:
    """Coordinates (µm) of ``n`` samples ``step`` apart with 0 at index ``n // 2``."""
    return (np.arange(n) - n // 2) * step


@functools.lru_cache(maxsize=64)
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = special.roots_legendre(n)  # O(n) asymptotic/Newton for large n
    return np.asarray(x), np.asarray(w)


def gauss_legendre(n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on ``[a, b]`` (weights sum to ``b − a``)."""
    x, w = _leggauss(int(n))
    half = 0.5 * (b - a)
    return a + half * (x + 1.0), half * w


def quadrature_order(max_phase: float, minimum: int = 64, maximum: int = 4000) -> int:
    """Number of Gauss–Legendre nodes for an integrand oscillating by ``max_phase`` radians.

    Gauss–Legendre converges exponentially once it has more than about one node per
    radian/2 of total phase; the margin below keeps the error ≲ 1e-8 (checked in tests
    against a doubled order).
    """
    return int(min(maximum, max(minimum, math.ceil(0.75 * max_phase) + 48)))


def radial_samples(
    shape_yx: tuple[int, int], voxel_yx: tuple[float, float], step: float
) -> np.ndarray:
    """Radii (µm) from 0 to the farthest pixel corner of the grid, ``step`` apart."""
    ry = (shape_yx[0] // 2 + 0.5) * voxel_yx[0]
    rx = (shape_yx[1] // 2 + 0.5) * voxel_yx[1]
    r_max = math.hypot(ry, rx)
    n = int(math.ceil(r_max / step)) + 2
    return np.arange(n) * step


def render_radial(
    profile: np.ndarray,
    radii: np.ndarray,
    shape_yx: tuple[int, int],
    voxel_yx: tuple[float, float],
    oversampling: int,
) -> np.ndarray:
    """Average a radial profile ``profile[z, r]`` over the area of each pixel.

    The pixel-area integral is a tensor Gauss–Legendre rule with ``oversampling``
    nodes per axis (exact for polynomials of degree ``2·oversampling − 1`` across the
    pixel); the profile is interpolated linearly on the fine radial grid ``radii``.
    Interpolation and quadrature together are one sparse linear map from the radial
    profile to the pixels, applied to all planes at once. Only one quadrant is
    evaluated; the rest follows from the circular symmetry about the centre pixel.

    Returns
    -------
    ndarray, shape (nz, ny, nx), float64
    """
    ny, nx = shape_yx
    hy, hx = ny // 2, nx // 2
    s = oversampling
    if s == 1:
        sub, wsub = np.zeros(1), np.ones(1)
    else:
        sub, wsub = gauss_legendre(s, -0.5, 0.5)
    yq = ((np.arange(hy + 1)[:, None] + sub[None, :]) * voxel_yx[0]).reshape(-1)
    xq = ((np.arange(hx + 1)[:, None] + sub[None, :]) * voxel_yx[1]).reshape(-1)
    r = np.hypot(yq[:, None], xq[None, :]).reshape(-1)
    weight = np.multiply.outer(
        np.tile(wsub, hy + 1), np.tile(wsub, hx + 1)
    ).reshape(-1)
    row = np.repeat(np.arange(hy + 1), s)[:, None] * (hx + 1)
    pixel = (row + np.repeat(np.arange(hx + 1), s)[None, :]).reshape(-1)
    step = radii[1] - radii[0]
    pos = np.clip(r / step, 0.0, radii.size - 1.000001)
    idx = pos.astype(np.intp)
    frac = pos - idx
    npix = (hy + 1) * (hx + 1)
    rows = np.concatenate([pixel, pixel])
    cols = np.concatenate([idx, idx + 1])
    vals = np.concatenate([weight * (1.0 - frac), weight * frac])
    mapping = sparse.csr_matrix((vals, (rows, cols)), shape=(npix, radii.size))
    quadrant = np.asarray(mapping @ np.ascontiguousarray(profile.T)).T
    return mirror_quadrant(quadrant.reshape(profile.shape[0], hy + 1, hx + 1))


def mirror_quadrant(quadrant: np.ndarray) -> np.ndarray:
    """Build the full (…, 2h+1, 2w+1) array from its quadrant ``[..., 0:h+1, 0:w+1]``."""
    q = quadrant
    top = np.concatenate([q[..., :, :0:-1], q], axis=-1)
    return np.concatenate([top[..., :0:-1, :], top], axis=-2)


def axial_positions(nz: int, dz: float, z_oversampling: int) -> tuple[np.ndarray, int]:
    """Axial sample positions (µm), ``z_oversampling`` per voxel, centred on each voxel."""
    s = z_oversampling
    sub = ((np.arange(s) + 0.5) / s - 0.5) * dz
    z = (axis_coords(nz, dz)[:, None] + sub[None, :]).reshape(-1)
    return z, s


def finish(psf: np.ndarray, name: str) -> np.ndarray:
    """Clip round-off negatives, normalise to sum 1 and return float32."""
    psf = np.clip(np.asarray(psf, dtype=np.float64), 0.0, None)
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise InputError(
            f"{name}: the PSF evaluated to zero on this grid; check the voxel size (µm) "
            "and wavelength (µm)"
        )
    return (psf / total).astype(np.float32)


def radial_model(
    shape: tuple[int, ...],
    voxel: tuple[float, ...],
    field: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    wavelength: float,
    na: float,
    oversampling: int,
    z_oversampling: int,
    name: str,
) -> np.ndarray:
    """Evaluate a circularly symmetric intensity model ``field(z, r) -> I[z, r]`` on a grid.

    The radial profile is computed on a fine radial grid (step ≤ λ/(40 NA) and ≤ a
    sub-pixel), averaged over each pixel's area (lateral ``oversampling``) and, if
    ``z_oversampling > 1``, over each voxel's depth.
    """
    if len(shape) == 2:
        nz, dz = 1, 1.0
        shape_yx, voxel_yx = shape, voxel
        z_over = 1
    else:
        nz, dz = shape[0], voxel[0]
        shape_yx, voxel_yx = shape[1:], voxel[1:]
        z_over = z_oversampling
    step = min(wavelength / (40.0 * na), min(voxel_yx) / (2.0 * oversampling))
    radii = radial_samples(shape_yx, voxel_yx, step)
    if len(shape) == 2:
        z = np.zeros(1)
    else:
        z, _ = axial_positions(nz, dz, z_over)
    profile = field(z, radii)
    if z_over > 1:
        profile = profile.reshape(nz, z_over, -1).mean(axis=1)
    psf = render_radial(profile, radii, shape_yx, voxel_yx, oversampling)
    if len(shape) == 2:
        psf = psf[0]
    return finish(psf, name)
