"""The vectorial widefield PSF model (Richards & Wolf 1959; Aguet 2009); see
:mod:`lucyd.psf.models`."""

from __future__ import annotations

import math

import numpy as np

from lucyd.errors import InputError
from lucyd.psf._common import (
    check_optics,
    check_oversampling,
    check_shape,
    check_voxel,
    radial_model,
)
from lucyd.psf._pupil import (
    _bessel_sum,
    _composite_nodes,
    _csqrt,
    _gl_opd,
    _layers,
    _order_for,
    _segments,
)
from lucyd.psf.scalar_models import DEFAULT_NI


def vectorial(
    shape,
    voxel_size,
    *,
    na: float,
    wavelength: float,
    ni: float = DEFAULT_NI,
    ns: float | None = None,
    ng: float | None = None,
    ni0: float | None = None,
    ng0: float | None = None,
    tg: float = 170.0,
    tg0: float | None = None,
    ti0: float = 150.0,
    particle_depth: float = 0.0,
    oversampling: int = 5,
    z_oversampling: int = 1,
) -> np.ndarray:
    """Vectorial (Richards–Wolf) widefield PSF of an unpolarised emitter.

    Intensity averaged over emitter orientations / polarisation (Richards & Wolf,
    Proc. R. Soc. A 253:358, 1959; Aguet, PhD thesis EPFL 2009, eq. 2.31)::

        I(r, z) = |I0|² + 2|I1|² + |I2|²
        I0 = ∫₀^α B0 (t_s + t_p cosθ_s) sinθ √cosθ dθ
        I1 = ∫₀^α B1 t_p (ni/ns) sinθ · sinθ √cosθ dθ
        I2 = ∫₀^α B2 (t_s − t_p cosθ_s) sinθ √cosθ dθ
        Bm = Jm(k r ni sinθ) · exp(i k OPD(θ, z))

    with sin α = NA/ni, OPD the Gibson–Lanni path difference (see
    :func:`gibson_lanni`), and t_s, t_p the products of the Fresnel transmission
    coefficients immersion→coverslip→sample (Aguet's reciprocal form). With matched
    layers (the defaults: ``ns = ng = ni0 = ng0 = ni``) t_s = t_p = 1 and the integrands
    reduce to Richards & Wolf's (1 ± cosθ) and sinθ factors.

    Parameters
    ----------
    shape, voxel_size, na, wavelength, ni, oversampling, z_oversampling
        As :func:`born_wolf` (µm).
    ns, ng, ni0, ng0, tg, tg0, ti0, particle_depth
        As :func:`gibson_lanni`; the indices default to ``ni`` (matched layers).

    Returns
    -------
    ndarray of float32, sum 1, peak at ``shape // 2`` for matched layers.
    """
    shape = check_shape(shape)
    voxel = check_voxel(voxel_size, len(shape))
    na, wavelength, ni = check_optics(na, wavelength, ni)
    oversampling = check_oversampling(oversampling)
    z_oversampling = check_oversampling(z_oversampling, "z_oversampling")
    ng = ni if ng is None else ng
    layers = _layers(
        ni, ni if ns is None else ns, ng, ng if ng0 is None else ng0, ni if ni0 is None else ni0,
        tg, tg if tg0 is None else tg0, ti0, particle_depth,
    )
    for key in ("ni0", "ng", "ng0"):
        if na >= layers[key]:
            raise InputError(f"na: must be smaller than {key}={layers[key]}, got na={na}")
    ns_, ng_ = layers["ns"], layers["ng"]
    k = 2.0 * math.pi / wavelength
    alpha = math.asin(na / ni)

    def phase_of(theta, z):
        return k * _gl_opd(ni * np.sin(theta), z, ni=ni, **layers)

    def field(z: np.ndarray, radii: np.ndarray) -> np.ndarray:
        probe = np.linspace(0.0, alpha, 513)
        zprobe = np.array([0.0, float(np.abs(z).max())])
        order = _order_for(phase_of(probe, zprobe), k * na * float(radii[-1]))
        breaks = [math.asin(ns_ / ni)] if ns_ < na else []
        theta, w = _composite_nodes(_segments(breaks, 0.0, alpha), order)
        sin_t, cos_t = np.sin(theta), np.cos(theta)
        s2 = (ni * sin_t) ** 2
        cos_s = _csqrt(1.0 - s2 / ns_**2)
        cos_g = _csqrt(1.0 - s2 / ng_**2)
        cos_i = cos_t
        # Fresnel amplitude transmission immersion → coverslip → sample (Aguet 2009
        # computes the field in the sample and uses reciprocity for the emission path)
        ts1 = 2 * ni * cos_i / (ni * cos_i + ng_ * cos_g)
        tp1 = 2 * ni * cos_i / (ng_ * cos_i + ni * cos_g)
        ts2 = 2 * ng_ * cos_g / (ng_ * cos_g + ns_ * cos_s)
        tp2 = 2 * ng_ * cos_g / (ns_ * cos_g + ng_ * cos_s)
        t_s, t_p = ts1 * ts2, tp1 * tp2
        base = sin_t * np.sqrt(cos_t) * w
        amps = (
            (0, (t_s + t_p * cos_s) * base, 1.0),
            (1, t_p * (ni / ns_) * sin_t * base, 2.0),
            (2, (t_s - t_p * cos_s) * base, 1.0),
        )
        phase = np.exp(1j * phase_of(theta, z))
        scale = k * ni * sin_t
        total = np.zeros((z.size, radii.size))
        for order_m, amp, mult in amps:
            e = _bessel_sum(phase * amp[None, :], scale, radii, order_m)
            total += mult * (e.real**2 + e.imag**2)
        return total

    return radial_model(
        shape, voxel, field, wavelength=wavelength, na=na, oversampling=oversampling,
        z_oversampling=z_oversampling, name="vectorial",
    )
