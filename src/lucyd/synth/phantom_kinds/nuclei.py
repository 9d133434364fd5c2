"""The "nuclei" phantom: soft-edged ellipsoids with chromatin-like texture and nucleoli."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from lucyd.synth._phantom_common import (
    _count,
    _n,
    _no_unknown,
    _random_rotation,
    _range,
    _window,
)
from lucyd.validation import positive


def _nuclei(shape, rng, *, n_nuclei=6, radius=(12, 24), z_scale=1.0, intensity=(50, 850),
            texture=0.35, texture_scale=1.5, roughness=0.05, edge_width=1.5, n_nucleoli=(1, 3),
            nucleolus_radius=(2, 5), nucleolus_level=0.35, scale_counts=True, **unknown):
    _no_unknown("nuclei", unknown, _nuclei)
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
