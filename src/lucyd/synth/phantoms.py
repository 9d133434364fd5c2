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

Each kind's generator lives in its own module, :mod:`lucyd.synth.phantom_kinds` (``mixed``,
``tubules``, ``granules``, ``nuclei``), on the shared parts of :mod:`lucyd.synth._phantom_common`;
this module is the registry (:data:`KINDS`, ``_GENERATORS``, :data:`COUNT_PARAMS`) and
:func:`phantom`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from lucyd.errors import InputError
from lucyd.synth._phantom_common import (  # noqa: F401 (public names kept importable here)
    COUNT_FRACTION_2D,
    REFERENCE_EDGE,
    Seed,
    _check_shape,
    _count,
    _rng,
    count_scale,
    keyword_defaults,
    smooth_noise,
    splat,
)
from lucyd.synth.phantom_kinds.granules import _granules
from lucyd.synth.phantom_kinds.mixed import _mixed
from lucyd.synth.phantom_kinds.nuclei import _nuclei
from lucyd.synth.phantom_kinds.tubules import _tubules, wlc_paths  # noqa: F401
from lucyd.validation import positive

KINDS = ("mixed", "tubules", "granules", "nuclei")

_GENERATORS: dict[str, Callable] = {
    "mixed": _mixed, "tubules": _tubules, "granules": _granules, "nuclei": _nuclei,
}


_PARAMS = {k: keyword_defaults(f) for k, f in _GENERATORS.items()}

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
