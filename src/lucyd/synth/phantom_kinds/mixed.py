"""The "mixed" phantom: the Richardson–Lucy Network's mixed structures (Li et al., Nature
Methods 2022)."""

from __future__ import annotations

import numpy as np

from lucyd.synth._phantom_common import (
    _count,
    _n,
    _no_unknown,
    _range,
    _rect,
    _window,
)
from lucyd.validation import positive


def _mixed(shape, rng, *, n_spheres=100, sphere_radius=(4, 7), n_shells=100, shell_axes=(4, 7),
           shell_band=(0.8, 1.3), n_dots=50, dot_size=2, n_lines=50, line_length=(2, 10),
           line_width=2, n_planes=50, plane_size=(2, 10), plane_thickness=1, n_boxes=50,
           box_size=(2, 6), intensity=(50, 850), smooth_sigma=0.7, smooth_size=5,
           scale_counts=True, **unknown):
    _no_unknown("mixed", unknown, _mixed)
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
