"""Synthetic ground-truth objects ("phantoms") for training restoration networks.

Four kinds, in 2D ``(y, x)`` and 3D ``(z, y, x)``, all in *phantom units* (arbitrary
fluorophore density; 0 = no dye), float32, deterministic under a seed:

``"mixed"``
    The "mixed structures" recipe of the Richardson-Lucy Network (Li et al., Nature Methods
    2022): solid spheres, ellipsoidal shells, 2-voxel dots, lines along every axis, thin
    planes and boxes with intensities U(50, 850), later objects overwriting earlier ones, a
    constant background of 30 and a 5-tap Gaussian smoothing of sigma 0.7 px.
``"tubules"``
    Microtubule-like filaments: worm-like-chain curves with a given persistence length (px),
    a cross-section below the resolution limit (Gaussian sigma ~0.5 px) and crossings.
``"granules"``
    Vesicle-like points and small blobs, isolated and in clusters, modelled after the synthetic
    granular structures of CARE (Weigert et al., Nature Methods 2018); CARE's exact generator
    parameters are not in our reference, the defaults here are our own choice.
``"nuclei"``
    Nucleus-scale ellipsoids with soft edges, chromatin-like internal texture and dim
    nucleoli.

Any kind accepts a smooth, low-frequency background (``perlin=``; fractal value noise with a
quintic fade, the "Perlin-type" background used to mimic out-of-focus haze).

Every generator is vectorised: objects are drawn only inside their bounding boxes with numpy
slicing, filaments are rasterised with one ``np.bincount``; a 128^3 volume of any kind takes
well under a second on one CPU core (see ``benchmarks/bench_synth.py``).

Lengths are in pixels (voxels). Object counts are given per 128^3 voxels (3D) and are
scaled with the volume (``scale_counts=True``); in 2D they are given per 128^3 as well and
scaled by ``area / 128^2 * 0.15`` (a 2D image then looks like a thick slab of the 3D
phantom rather than a dense carpet); a requested object type appears at least once however small
the image. Set ``scale_counts=False`` to get exact counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from lucyd.errors import InputError
from lucyd.validation import positive

KINDS = ("mixed", "tubules", "granules", "nuclei")

#: reference volume edge for object counts (the RLN recipe's 128^3)
REFERENCE_EDGE = 128
#: 2D images get this fraction of the per-area 3D counts
COUNT_FRACTION_2D = 0.15

Seed = int | np.random.Generator | np.random.SeedSequence | None


# --------------------------------------------------------------------------- helpers

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


# --------------------------------------------------------------------------- kinds

def _mixed(shape, rng, *, n_spheres=100, sphere_radius=(4, 7), n_shells=100, shell_axes=(4, 7),
           shell_band=(0.8, 1.3), n_dots=50, dot_size=2, n_lines=50, line_length=(2, 10),
           line_width=2, n_planes=50, plane_size=(2, 10), plane_thickness=1, n_boxes=50,
           box_size=(2, 6), intensity=(50, 850), smooth_sigma=0.7, smooth_size=5,
           scale_counts=True, **unknown):
    _no_unknown("mixed", unknown)
    ndim = len(shape)
    shp = np.asarray(shape)
    r_lo, r_hi = _range(sphere_radius, "sphere_radius")
    a_lo, a_hi = _range(shell_axes, "shell_axes")
    b_lo, b_hi = _range(shell_band, "shell_band", positive=False)
    l_lo, l_hi = _range(line_length, "line_length", integer=True)
    p_lo, p_hi = _range(plane_size, "plane_size", integer=True)
    x_lo, x_hi = _range(box_size, "box_size", integer=True)
    i_lo, i_hi = _range(intensity, "intensity", positive=False)
    dot = int(_range(dot_size, "dot_size", integer=True)[0])
    lw = int(_range(line_width, "line_width", integer=True)[0])
    pt = int(_range(plane_thickness, "plane_thickness", integer=True)[0])
    sigma = positive(smooth_sigma, "smooth_sigma", allow_zero=True)
    size = int(_range(smooth_size, "smooth_size", integer=True)[0])
    counts = {k: _n(_count(v, k), shape, scale_counts) for k, v in (
        ("n_spheres", n_spheres), ("n_shells", n_shells), ("n_dots", n_dots),
        ("n_lines", n_lines), ("n_planes", n_planes), ("n_boxes", n_boxes))}
    vol = np.zeros(shape, dtype=np.float32)

    def value(n):
        return rng.uniform(i_lo, i_hi, n).astype(np.float32)

    # solid spheres
    n = counts["n_spheres"]
    centres, radii, vals = rng.uniform(0, shp, (n, ndim)), rng.uniform(r_lo, r_hi, n), value(n)
    for c, r, v in zip(centres, radii, vals, strict=True):
        win = _window(c, np.full(ndim, r), shape)
        if win is not None:
            sl, g = win
            vol[sl][sum(x * x for x in g) <= r * r] = v
    # ellipsoidal shells: normalised r^2 within shell_band
    n = counts["n_shells"]
    centres, axes = rng.uniform(0, shp, (n, ndim)), rng.uniform(a_lo, a_hi, (n, ndim))
    vals = value(n)
    for c, a, v in zip(centres, axes, vals, strict=True):
        win = _window(c, a * np.sqrt(b_hi), shape)
        if win is not None:
            sl, g = win
            q = sum((x / np.float32(ai)) ** 2 for x, ai in zip(g, a, strict=True))
            vol[sl][(q >= b_lo) & (q <= b_hi)] = v
    # dots (dot_size^ndim cubes)
    n = counts["n_dots"]
    starts, vals = rng.integers(0, shp, (n, ndim)), value(n)
    for s, v in zip(starts, vals, strict=True):
        sl = _rect(s, np.full(ndim, dot), shape)
        if sl is not None:
            vol[sl] = v
    # lines along each axis: length along the axis, line_width across
    for ax in range(ndim):
        n = counts["n_lines"]
        starts, vals = rng.integers(0, shp, (n, ndim)), value(n)
        lengths = rng.integers(int(l_lo), int(l_hi) + 1, n)
        for s, ln, v in zip(starts, lengths, vals, strict=True):
            sz = np.full(ndim, lw)
            sz[ax] = ln
            sl = _rect(s, sz, shape)
            if sl is not None:
                vol[sl] = v
    # thin planes: plane_thickness along one axis, plane_size along the others
    for ax in range(ndim):
        n = counts["n_planes"]
        starts, vals = rng.integers(0, shp, (n, ndim)), value(n)
        sizes = rng.integers(int(p_lo), int(p_hi) + 1, (n, ndim))
        sizes[:, ax] = pt
        for s, sz, v in zip(starts, sizes, vals, strict=True):
            sl = _rect(s, sz, shape)
            if sl is not None:
                vol[sl] = v
    # boxes
    n = counts["n_boxes"]
    starts, vals = rng.integers(0, shp, (n, ndim)), value(n)
    sizes = rng.integers(int(x_lo), int(x_hi) + 1, (n, ndim))
    for s, sz, v in zip(starts, sizes, vals, strict=True):
        sl = _rect(s, sz, shape)
        if sl is not None:
            vol[sl] = v
    return vol, sigma, size


def wlc_paths(rng: np.random.Generator, n: int, n_steps: int, ndim: int, *,
              persistence: float, step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Random worm-like-chain curves (discrete, unit speed).

    Each step turns the unit tangent by a small random angle so that the tangent
    correlation decays as ``<t(s) . t(0)> = exp(-s / persistence)`` in 2D and 3D (the
    definition of the persistence length).

    Parameters
    ----------
    rng : numpy Generator
    n : int
        Number of curves.
    n_steps : int
        Steps per curve.
    ndim : int
        2 or 3.
    persistence : float
        Persistence length in px.
    step : float
        Arc length per step in px.

    Returns
    -------
    positions : ndarray (n, n_steps + 1, ndim), starting at the origin
    tangents : ndarray (n, n_steps, ndim), unit vectors of each step
    """
    if ndim == 2:
        # angle increments N(0, 2 step / Lp): <cos dtheta> = exp(-step / Lp)
        theta0 = rng.uniform(0, 2 * np.pi, (n, 1))
        dtheta = rng.normal(0.0, np.sqrt(2 * step / persistence), (n, n_steps))
        dtheta[:, 0] = 0.0
        theta = theta0 + np.cumsum(dtheta, axis=1)
        tangents = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    else:
        t = rng.standard_normal((n, 3))
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        kicks = rng.normal(0.0, np.sqrt(step / persistence), (n_steps, n, 3))
        tangents = np.empty((n, n_steps, 3))
        for k in range(n_steps):
            if k:
                kick = kicks[k]
                kick -= np.sum(kick * t, axis=1, keepdims=True) * t
                t = t + kick
                t /= np.linalg.norm(t, axis=1, keepdims=True)
            tangents[:, k] = t
    positions = np.concatenate([np.zeros((n, 1, ndim)), np.cumsum(tangents * step, axis=1)], axis=1)
    return positions, tangents


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


def _tubules(shape, rng, *, n_tubules=20, persistence=40.0, length=None, width=0.5,
             intensity=(50, 850), step=0.5, scale_counts=True, **unknown):
    _no_unknown("tubules", unknown)
    ndim = len(shape)
    lp = positive(persistence, "persistence")
    w = positive(width, "width")
    ds = positive(step, "step")
    if ds > 1.0:
        raise InputError(f"step: must be <= 1 px so that filaments are continuous, got {step!r}")
    i_lo, i_hi = _range(intensity, "intensity", positive=False)
    n = _n(_count(n_tubules, "n_tubules"), shape, scale_counts)
    total = 2.0 * max(shape) if length is None else positive(length, "length")
    vol = np.zeros(shape, dtype=np.float32)
    if n == 0:
        return vol
    n_steps = max(int(np.ceil(total / ds)), 1)
    pos, _ = wlc_paths(rng, n, n_steps, ndim, persistence=lp, step=ds)
    # each filament's midpoint lies at a random point inside the image
    starts = rng.uniform(0, np.asarray(shape) - 1, (n, 1, ndim))
    points = pos - pos[:, n_steps // 2: n_steps // 2 + 1] + starts
    peaks = rng.uniform(i_lo, i_hi, n)
    # splat line density; the cross-section (Gaussian sigma_eff, incl. ~1/6 px^2 from the
    # multilinear splat) then has on-axis peak ~ the filament's intensity
    sigma_eff2 = w * w + 1.0 / 6.0
    norm = (2 * np.pi * sigma_eff2) ** ((ndim - 1) / 2)
    weights = np.repeat(peaks * ds * norm, points.shape[1])
    vol = splat(points.reshape(-1, ndim), weights, shape)
    return ndi.gaussian_filter(vol, w, mode="constant", truncate=4.0)


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


def _granules(shape, rng, *, n_clusters=10, per_cluster=15, cluster_spread=6.0, n_isolated=60,
              radius=(0.5, 2.0), intensity=(50, 850), scale_counts=True, **unknown):
    _no_unknown("granules", unknown)
    ndim = len(shape)
    shp = np.asarray(shape, dtype=float)
    r_lo, r_hi = _range(radius, "radius")
    i_lo, i_hi = _range(intensity, "intensity", positive=False)
    spread = positive(cluster_spread, "cluster_spread", allow_zero=True)
    mean_per = _count(per_cluster, "per_cluster")
    nc = _n(_count(n_clusters, "n_clusters"), shape, scale_counts)
    ni = _n(_count(n_isolated, "n_isolated"), shape, scale_counts)
    sizes = rng.poisson(mean_per, nc) if nc else np.zeros(0, dtype=int)
    cluster_centres = rng.uniform(0, shp, (nc, ndim))
    members = np.repeat(cluster_centres, sizes, axis=0)
    members = members + rng.normal(0, spread, members.shape)
    centres = np.concatenate([members, rng.uniform(0, shp, (ni, ndim))], axis=0)
    m = len(centres)
    vol = np.zeros(shape, dtype=np.float32)
    _gauss_blobs(vol, centres, rng.uniform(r_lo, r_hi, m), rng.uniform(i_lo, i_hi, m))
    return vol


def _nuclei(shape, rng, *, n_nuclei=6, radius=(12, 24), z_scale=1.0, intensity=(50, 850),
            texture=0.35, texture_scale=1.5, roughness=0.05, edge_width=1.5, n_nucleoli=(1, 3),
            nucleolus_radius=(2, 5), nucleolus_level=0.35, scale_counts=True, **unknown):
    _no_unknown("nuclei", unknown)
    ndim = len(shape)
    shp = np.asarray(shape, dtype=float)
    r_lo, r_hi = _range(radius, "radius")
    i_lo, i_hi = _range(intensity, "intensity", positive=False)
    amp = positive(texture, "texture", allow_zero=True)
    tscale = positive(texture_scale, "texture_scale")
    rough = positive(roughness, "roughness", allow_zero=True)
    edge = positive(edge_width, "edge_width")
    zs = positive(z_scale, "z_scale")
    nn_lo, nn_hi = _range(n_nucleoli, "n_nucleoli", positive=False, integer=True)
    nr_lo, nr_hi = _range(nucleolus_radius, "nucleolus_radius")
    level = positive(nucleolus_level, "nucleolus_level", allow_zero=True)
    n = _n(_count(n_nuclei, "n_nuclei"), shape, scale_counts)
    vol = np.zeros(shape, dtype=np.float32)
    if n == 0:
        return vol
    # chromatin-like texture: band-limited Gaussian noise, unit standard deviation
    tex = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), tscale, truncate=3.0)
    tex /= max(float(tex.std()), 1e-12)
    for _ in range(n):
        axes = rng.uniform(r_lo, r_hi, ndim)
        if ndim == 3:
            axes[0] *= zs
        rot = _random_rotation(rng, ndim)
        if ndim == 3 and zs != 1.0:
            rot = np.eye(3)  # flattened nuclei lie in the xy plane; rotate about z only
            rot[1:, 1:] = _random_rotation(rng, 2)
        centre = rng.uniform(0, shp)
        level_i = np.float32(rng.uniform(i_lo, i_hi))
        half = np.full(ndim, axes.max() * (1 + 3 * rough) + 2 * edge)
        win = _window(centre, half, shape)
        if win is None:
            continue
        sl, g = win
        # coordinates in the nucleus frame: u_j = sum_i g_i R_ij
        q = 0
        for j in range(ndim):
            u = sum(g[i] * np.float32(rot[i, j]) for i in range(ndim))
            q = q + (u / np.float32(axes[j])) ** 2
        t = tex[sl]
        radial = np.sqrt(q) * (1 + np.float32(rough) * t)
        # soft edge: linear ramp of width edge_width px across the surface
        mask = np.clip((1 - radial) * np.float32(axes.mean() / edge) + 0.5, 0, 1)
        inner = level_i * np.clip(1 + np.float32(amp) * t, 0, None)
        k = int(rng.integers(int(nn_lo), int(nn_hi) + 1))
        for _ in range(k):
            # nucleoli: dim spheres inside the inner half of the nucleus
            off = rng.uniform(-0.5, 0.5, ndim) * axes @ rot.T
            rr = rng.uniform(nr_lo, nr_hi)
            d2 = sum((x - np.float32(o)) ** 2 for x, o in zip(g, off, strict=True))
            inner = np.where(d2 <= rr * rr, inner * np.float32(level), inner)
        vol[sl] = vol[sl] * (1 - mask) + inner * mask
    return vol


def _no_unknown(kind: str, unknown: dict) -> None:
    if unknown:
        valid = sorted(k for k in _PARAMS[kind] if k != "scale_counts") + ["scale_counts"]
        raise InputError(
            f"phantom {kind!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(valid)}"
        )


_GENERATORS: dict[str, Callable] = {
    "mixed": _mixed, "tubules": _tubules, "granules": _granules, "nuclei": _nuclei,
}


def _defaults(func) -> dict:
    import inspect

    return {k: p.default for k, p in inspect.signature(func).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


_PARAMS = {k: _defaults(f) for k, f in _GENERATORS.items()}

#: the object-count parameters of each kind, scaled together by ``phantom(..., density=)``
COUNT_PARAMS = {
    "mixed": ("n_spheres", "n_shells", "n_dots", "n_lines", "n_planes", "n_boxes"),
    "tubules": ("n_tubules",),
    "granules": ("n_clusters", "n_isolated"),
    "nuclei": ("n_nuclei",),
}


def phantom_parameters(kind: str) -> dict:
    """The parameters of phantom ``kind`` with their default values."""
    if kind not in _GENERATORS:
        raise InputError(f"kind: unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    return dict(_PARAMS[kind])


def phantom(kind: str, shape, *, seed: Seed = None, background: float = 30.0,
            perlin: dict | bool | None = None, density: float = 1.0, **params) -> np.ndarray:
    """Generate a synthetic ground-truth image.

    Parameters
    ----------
    kind : {"mixed", "tubules", "granules", "nuclei"}
        Kind of structure (see the module docstring and ``phantom_parameters(kind)``).
    shape : tuple of 2 or 3 int
        ``(y, x)`` or ``(z, y, x)`` in pixels.
    seed : int, numpy Generator, SeedSequence or None
        Random seed; the same seed gives the same image.
    background : float
        Constant added everywhere, in phantom units (the RLN recipe's 30). For ``"mixed"``
        it is added before the smoothing, as in the recipe.
    perlin : dict, True or None
        Smooth low-frequency background added at the end: ``True`` or a dict with keys
        ``amplitude`` (phantom units, default 50: the field spans [0, amplitude]),
        ``scale`` (px, default 32), ``octaves`` (default 3) and ``persistence`` (default 0.5);
        see :func:`smooth_noise`.
    density : float
        Factor (> 0) on every object count of the kind (:data:`COUNT_PARAMS`), given or
        default: 0.05 makes a sparse scene, 2 a crowded one. With ``scale_counts`` (the
        default) each object type keeps at least one instance.
    **params
        Kind-specific parameters (lengths in px, counts per 128^3 unless
        ``scale_counts=False``, intensities in phantom units):

        * ``mixed`` (Li et al. 2022, RLN): ``n_spheres=100, sphere_radius=(4, 7),
          n_shells=100, shell_axes=(4, 7), shell_band=(0.8, 1.3)`` (shell where the
          normalised r^2 is in the band), ``n_dots=50, dot_size=2, n_lines=50`` (per axis),
          ``line_length=(2, 10), line_width=2, n_planes=50`` (per orientation),
          ``plane_size=(2, 10), plane_thickness=1, n_boxes=50, box_size=(2, 6),
          intensity=(50, 850), smooth_sigma=0.7, smooth_size=5`` (taps of the Gaussian).
          Objects are drawn in that order, later ones overwriting earlier ones.
        * ``tubules``: ``n_tubules=20, persistence=40`` (px; 4 um at 0.1 um pixels),
          ``length=None`` (px per filament, default twice the largest side), ``width=0.5``
          (Gaussian sigma of the cross-section, px), ``intensity=(50, 850)`` (on-axis
          peak; crossings add), ``step=0.5`` (px between rasterised curve points).
        * ``granules`` (CARE-style synthetic vesicles, Weigert et al. 2018):
          ``n_clusters=10, per_cluster=15`` (Poisson mean), ``cluster_spread=6`` (px, Gaussian
          sigma of member positions), ``n_isolated=60, radius=(0.5, 2)`` (Gaussian sigma of a
          granule, px), ``intensity=(50, 850)`` (peak; overlapping granules add).
        * ``nuclei``: ``n_nuclei=6, radius=(12, 24)`` (semi-axes, px), ``z_scale=1``
          (flattening along z), ``intensity=(50, 850)`` (mean level), ``texture=0.35``
          (relative std of the chromatin texture), ``texture_scale=1.5`` (px),
          ``roughness=0.05, edge_width=1.5`` (px), ``n_nucleoli=(1, 3),
          nucleolus_radius=(2, 5), nucleolus_level=0.35``.

    Returns
    -------
    ndarray, float32, shape ``shape``, in phantom units (>= ``background``).

    Raises
    ------
    InputError
        Unknown kind or parameter, bad shape or parameter value.
    """
    if kind not in _GENERATORS:
        raise InputError(f"kind: unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    shp = _check_shape(shape)
    bg = positive(background, "background", allow_zero=True)
    density = positive(density, "density")
    if density != 1.0:
        params = dict(params)
        for key in COUNT_PARAMS[kind]:
            params[key] = _count(params.get(key, _PARAMS[kind][key]), key) * density
    rng = _rng(seed)
    if kind == "mixed":
        vol, sigma, size = _mixed(shp, rng, **params)
        vol += np.float32(bg)
        if sigma > 0:
            # the recipe's 5^3 Gaussian: sigma 0.7 px truncated to a (size)-tap kernel
            radius = size // 2
            vol = ndi.gaussian_filter(vol, sigma, mode="nearest", radius=radius)
    else:
        vol = _GENERATORS[kind](shp, rng, **params)
        vol += np.float32(bg)
    if perlin is not None and perlin is not False:
        opts = {} if perlin is True else dict(perlin)
        amplitude = positive(opts.pop("amplitude", 50.0), "perlin.amplitude", allow_zero=True)
        unknown = set(opts) - {"scale", "octaves", "persistence"}
        if unknown:
            raise InputError(
                f"perlin: unknown key(s) {', '.join(sorted(unknown))}; "
                "valid: amplitude, scale, octaves, persistence"
            )
        vol += np.float32(amplitude) * smooth_noise(shp, rng, **opts)
    return np.ascontiguousarray(vol, dtype=np.float32)
