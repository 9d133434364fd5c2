"""The "tubules" phantom: worm-like-chain filaments below the resolution limit."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from lucyd.errors import InputError
from lucyd.synth._phantom_common import (
    _count,
    _n,
    _no_unknown,
    _range,
    splat,
)
from lucyd.validation import positive


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


def _tubules(shape, rng, *, n_tubules=20, persistence=40.0, length=None, width=0.5,
             intensity=(50, 850), step=0.5, scale_counts=True, **unknown):
    _no_unknown("tubules", unknown, _tubules)
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
