"""Pupil integrals shared by the scalar and vectorial PSF models: composite Gauss–Legendre
quadrature split at the layers' critical angles, Bessel sums chunked over the radius, and the
Gibson–Lanni optical path difference (Gibson & Lanni 1991; Li, Xue & Blu 2017)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

from lucyd.errors import InputError
from lucyd.psf._common import (
    gauss_legendre,
    positive,
    quadrature_order,
)

#: radial chunk size of the Bessel matrices (bounds memory to ~64 MB per matrix)
_R_CHUNK = 2048


def _segments(breaks: list[float], lo: float, hi: float) -> list[tuple[float, float]]:
    """Split ``[lo, hi]`` at the break points strictly inside it."""
    points = sorted({lo, hi, *[b for b in breaks if lo < b < hi]})
    return list(zip(points[:-1], points[1:], strict=False))


def _composite_nodes(segments, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes/weights on each segment, ``order`` nodes per unit length share."""
    total = sum(b - a for a, b in segments)
    xs, ws = [], []
    for a, b in segments:
        n = max(32, int(math.ceil(order * (b - a) / total)) + 16)
        x, w = gauss_legendre(n, a, b)
        xs.append(x)
        ws.append(w)
    return np.concatenate(xs), np.concatenate(ws)


def _bessel_sum(
    coeff: np.ndarray, scale: np.ndarray, radii: np.ndarray, order: int
) -> np.ndarray:
    """``sum_q coeff[z, q] * J_order(scale[q] * r)`` for every radius, chunked over r."""
    out = np.empty((coeff.shape[0], radii.size), dtype=np.complex128)
    for start in range(0, radii.size, _R_CHUNK):
        r = radii[start : start + _R_CHUNK]
        arg = scale[:, None] * r[None, :]
        if order == 0:
            basis = special.j0(arg)
        elif order == 1:
            basis = special.j1(arg)
        else:
            basis = special.jv(order, arg)
        out[:, start : start + _R_CHUNK] = coeff @ basis
    return out


def _csqrt(x: np.ndarray) -> np.ndarray:
    """Square root with the branch that makes evanescent waves decay (Im >= 0)."""
    return np.sqrt(np.asarray(x, dtype=np.complex128))


def _gl_opd(
    s: np.ndarray,
    z: np.ndarray,
    *,
    ni: float,
    ns: float,
    ng: float,
    ng0: float,
    ni0: float,
    tg: float,
    tg0: float,
    ti0: float,
    particle_depth: float,
) -> np.ndarray:
    """Gibson–Lanni optical path difference (µm) for pupil coordinate ``s = NA·ρ = ni·sinθ``.

    OPD(s, z) = zp·√(ns²−s²) + tg·√(ng²−s²) − tg0·√(ng0²−s²)
                + ti(z)·√(ni²−s²) − ti0·√(ni0²−s²)

    (Gibson & Lanni 1991, eq. 9; Li, Xue & Blu 2017, eq. 3) with the immersion
    thickness ti(z) = ni·(ti0/ni0 + tg0/ng0 − tg/ng − zp/ns) − z, which puts the paraxial
    focus on the emitter at z = 0 (Aguet 2009's convention: z is the focus position
    relative to the emitter, positive deeper into the sample, in µm of stage travel).
    ``zp = particle_depth`` is the emitter's depth below the coverslip. With matched
    layers this is the exact (non-paraxial) defocus −z·√(ni²−s²) for any depth.
    """
    s2 = (s * s)[None, :]
    zz = np.asarray(z, dtype=np.float64)[:, None]
    ti = ni * (ti0 / ni0 + tg0 / ng0 - tg / ng - particle_depth / ns) - zz
    opd = (
        particle_depth * _csqrt(ns * ns - s2)
        + tg * _csqrt(ng * ng - s2)
        - tg0 * _csqrt(ng0 * ng0 - s2)
        + ti * _csqrt(ni * ni - s2)
        - ti0 * _csqrt(ni0 * ni0 - s2)
    )
    # remove the piston term (constant over the pupil for each z): it does not change
    # the intensity but keeps the phases small for the quadrature-order estimate
    return opd - opd[:, :1]


def _order_for(phase: np.ndarray, bessel_max: float) -> int:
    """Quadrature order from the total variation of the phase plus the Bessel argument."""
    tv = float(np.abs(np.diff(phase.real, axis=-1)).sum(axis=-1).max()) if phase.size else 0.0
    return quadrature_order(tv + bessel_max)


def _layers(ni, ns, ng, ng0, ni0, tg, tg0, ti0, particle_depth) -> dict:
    layers = {
        "ns": positive(ns, "ns"),
        "ng": positive(ng, "ng"),
        "ng0": positive(ng0, "ng0"),
        "ni0": positive(ni0, "ni0"),
        "tg": positive(tg, "tg", allow_zero=True),
        "tg0": positive(tg0, "tg0", allow_zero=True),
        "ti0": positive(ti0, "ti0", allow_zero=True),
        "particle_depth": positive(particle_depth, "particle_depth", allow_zero=True),
    }
    for key in ("ns", "ng", "ng0", "ni0"):
        if layers[key] < 1.0:
            raise InputError(f"{key}: refractive index must be >= 1, got {layers[key]}")
    return layers


def _scalar_field(
    na: float, wavelength: float, phase_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
    breaks: list[float], z_probe: float,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """I(z, r) = |∫₀¹ J0(k·NA·r·ρ) exp(i·φ(ρ, z)) ρ dρ|² by Gauss–Legendre quadrature."""
    k = 2.0 * math.pi / wavelength

    def field(z: np.ndarray, radii: np.ndarray) -> np.ndarray:
        probe_rho = np.linspace(0.0, 1.0, 513)
        zmax = np.array([0.0, -z_probe, z_probe, float(np.abs(z).max())])
        order = _order_for(phase_of(probe_rho, zmax), k * na * float(radii[-1]))
        rho, w = _composite_nodes(_segments(breaks, 0.0, 1.0), order)
        coeff = np.exp(1j * phase_of(rho, z)) * (rho * w)[None, :]
        amp = _bessel_sum(coeff, k * na * rho, radii, 0)
        return amp.real**2 + amp.imag**2

    return field
