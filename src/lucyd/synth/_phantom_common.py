"""Shared parts of the phantom generators: seeds, argument checks, object counts scaled with the
volume, bounding-box windows, random rotations, smooth background noise, point splatting."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from lucyd.errors import InputError
from lucyd.validation import positive

#: reference volume edge for object counts (the RLN recipe's 128^3)
REFERENCE_EDGE = 128
#: 2D images get this fraction of the per-area 3D counts
COUNT_FRACTION_2D = 0.15

Seed = int | np.random.Generator | np.random.SeedSequence | None


def keyword_defaults(func: Callable) -> dict:
    """A generator's keyword-only parameters with their defaults (its parameter schema)."""
    return {k: p.default for k, p in inspect.signature(func).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _no_unknown(kind: str, unknown: dict, generator: Callable) -> None:
    if unknown:
        valid = sorted(k for k in keyword_defaults(generator) if k != "scale_counts") + ["scale_counts"]
        raise InputError(
            f"phantom {kind!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(valid)}"
        )


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, np.random.SeedSequence):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(
                f"seed: expected a non-negative integer, a Generator or None, got {seed!r}"
            )
    return np.random.default_rng(seed)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape: expected 2 or 3 positive integers, got {shape!r}") from None
    if len(shp) not in (2, 3) or any(s < 1 for s in shp) or any(
        float(s) != float(o) for s, o in zip(shp, shape, strict=True)
    ):
        raise InputError(f"shape: expected 2 or 3 positive integers, got {shape!r}")
    return shp


def _range(value, name: str, *, positive: bool = True,
           integer: bool = False) -> tuple[float, float]:
    """Validate a (low, high) range (a scalar means low == high)."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or arr[0] > arr[1]:
        raise InputError(f"{name}: expected a (low, high) pair with low <= high, got {value!r}")
    if positive and arr[0] <= 0:
        raise InputError(f"{name}: values must be positive, got {value!r}")
    if not positive and arr[0] < 0:
        raise InputError(f"{name}: values must be non-negative, got {value!r}")
    if integer and not np.all(arr == np.round(arr)):
        raise InputError(f"{name}: expected integers, got {value!r}")
    return float(arr[0]), float(arr[1])


def _count(value, name: str) -> float:
    if isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise InputError(f"{name}: expected a non-negative number, got {value!r}")
    return float(value)


def count_scale(shape: tuple[int, ...]) -> float:
    """Factor applied to per-128^3 object counts for an image of ``shape``."""
    if len(shape) == 3:
        return float(np.prod(shape)) / REFERENCE_EDGE**3
    return float(np.prod(shape)) / REFERENCE_EDGE**2 * COUNT_FRACTION_2D


def _n(count: float, shape, scale_counts: bool) -> int:
    """Object count for ``shape``: scaled and rounded, but at least 1 when ``count > 0``
    (a small image still shows every requested kind of object)."""
    if not scale_counts:
        return int(round(count))
    return max(int(round(count * count_scale(shape))), 1) if count > 0 else 0


def _window(centre: np.ndarray, half: np.ndarray, shape: tuple[int, ...]):
    """Slices of the bounding box ``centre +- half`` (clipped) and open offset grids.

    Returns ``None`` when the box lies entirely outside the image.
    """
    lo = np.maximum(np.floor(centre - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    ndim = len(shape)
    slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grids = []
    for ax in range(ndim):
        g = np.arange(lo[ax], hi[ax], dtype=np.float32) - np.float32(centre[ax])
        grids.append(g.reshape([-1 if i == ax else 1 for i in range(ndim)]))
    return slices, grids


def _rect(start: np.ndarray, size: np.ndarray, shape) -> tuple[slice, ...] | None:
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """A uniformly distributed rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def smooth_noise(shape, rng: np.random.Generator, *, scale: float = 32.0, octaves: int = 3,
                 persistence: float = 0.5) -> np.ndarray:
    """Fractal value noise in [0, 1] (a "Perlin-type" smooth random field).

    Random values on a lattice of spacing ``scale`` px are interpolated with Perlin's
    quintic fade ``6t^5 - 15t^4 + 10t^3`` (separably, so the cost is a few passes over the
    output); ``octaves`` lattices of spacing ``scale / 2^k`` are summed with weights
    ``persistence^k`` and the sum is divided by the total weight.

    Parameters
    ----------
    shape : tuple of int
        Output shape.
    rng : numpy Generator
    scale : float
        Lattice spacing of the coarsest octave, in px (the size of the blotches).
    octaves : int
        Number of octaves (>= 1).
    persistence : float
        Amplitude ratio between successive octaves (0 < persistence <= 1).

    Returns
    -------
    ndarray, float32, values in [0, 1].
    """
    shape = tuple(int(s) for s in shape)
    scale = positive(scale, "perlin.scale")
    if isinstance(octaves, bool) or int(octaves) != octaves or octaves < 1 or octaves > 12:
        raise InputError(f"perlin.octaves: expected an integer in 1..12, got {octaves!r}")
    persistence = positive(persistence, "perlin.persistence")
    out = np.zeros(shape, dtype=np.float32)
    total = 0.0
    for k in range(int(octaves)):
        spacing = max(scale / 2**k, 1.0)
        lattice_shape = tuple(int(np.ceil(n / spacing)) + 2 for n in shape)
        field = rng.random(lattice_shape, dtype=np.float32)
        shift = rng.random(len(shape))
        for ax, n in enumerate(shape):
            x = np.arange(n) / spacing + shift[ax]
            i0 = np.floor(x).astype(int)
            t = (x - i0).astype(np.float32)
            w = t * t * t * (t * (t * 6 - 15) + 10)
            bshape = [-1 if i == ax else 1 for i in range(len(shape))]
            w = w.reshape(bshape)
            field = np.take(field, i0, axis=ax) * (1 - w) + np.take(field, i0 + 1, axis=ax) * w
        weight = persistence**k
        out += weight * field
        total += weight
    out /= total
    return out


def splat(points: np.ndarray, weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Add ``weights`` at sub-pixel ``points`` (P, ndim) by multilinear interpolation."""
    ndim = len(shape)
    base = np.floor(points).astype(np.int64)
    frac = points - base
    size = int(np.prod(shape))
    acc = np.zeros(size, dtype=np.float64)
    strides = np.array([int(np.prod(shape[i + 1:])) for i in range(ndim)], dtype=np.int64)
    for corner in range(2**ndim):
        offs = np.array([(corner >> (ndim - 1 - i)) & 1 for i in range(ndim)])
        idx = base + offs
        w = weights * np.prod(np.where(offs == 1, frac, 1.0 - frac), axis=1)
        inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
        acc += np.bincount(idx[inside] @ strides, weights=w[inside], minlength=size)
    return acc.reshape(shape).astype(np.float32)


def _gauss_blobs(vol, centres, sigmas, peaks):
    """Add isotropic Gaussian blobs (peak value ``peaks``) drawn in their bounding boxes."""
    shape = vol.shape
    for c, s, p in zip(centres, sigmas, peaks, strict=True):
        win = _window(c, np.full(len(shape), 3.0 * s + 1.0), shape)
        if win is None:
            continue
        sl, g = win
        inv = np.float32(-0.5 / (s * s))
        blob = np.float32(p)
        for x in g:
            blob = blob * np.exp(inv * x * x)
        vol[sl] += blob
