"""Theoretical point-spread-function models of widefield and confocal microscopes.

Every model returns an odd-sized, float32 array that sums to 1, (y, x) or (z, y, x),
with the nominal focus on the optical axis at index ``n // 2`` of every axis. All
lengths (voxel size, wavelength, thicknesses, depths) are in micrometres (µm); the
wavelength is the vacuum wavelength.

Models
------
``gaussian``
    Separable 3D Gaussian with the widths of Zhang, Zerubia & Olivo-Marin (2007),
    integrated exactly over each voxel.
``born_wolf``
    Scalar diffraction integral of an aberration-free lens (Born & Wolf, *Principles of
    Optics*, §8.8), with the paraxial defocus phase (as in deconwolf's ``dw_bw``) or the
    exact one.
``gibson_lanni``
    Scalar integral with the optical-path difference of Gibson & Lanni (1991) for
    immersion/coverslip/sample refractive-index and thickness mismatch and a particle
    below the coverslip.
``vectorial``
    Richards & Wolf (1959) vectorial integrals for an unpolarised (isotropic) emitter,
    with the Gibson–Lanni phase and Fresnel transmission through the stratified
    medium as in Aguet's thesis (EPFL 2009) and Aguet, Van De Ville & Unser (2009).
``confocal``
    Excitation PSF times the emission PSF convolved laterally with the pinhole.

The pupil integrals are evaluated by Gauss–Legendre quadrature (split at the critical
angles of the layers), as a matrix product over a fine radial grid; the radial profile
is then averaged over each pixel area (``oversampling`` sub-pixels per axis). Li, Xue &
Blu (2017, JOSA A 34:1029) approximate the same Gibson–Lanni integral by a Bessel
series for speed; the direct quadrature here is already fast enough (< 1 s for
33×65×65) and has no truncation error to tune, so it is used instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
from scipy import special

from lucyd.errors import InputError
from lucyd.psf._common import (
    axis_coords,
    check_optics,
    check_oversampling,
    check_shape,
    check_voxel,
    finish,
    gauss_legendre,
    positive,
    quadrature_order,
    radial_model,
)
from lucyd.validation import check_memory

__all__ = [
    "MODELS",
    "born_wolf",
    "confocal",
    "gaussian",
    "gibson_lanni",
    "make_psf",
    "vectorial",
]

#: radial chunk size of the Bessel matrices (bounds memory to ~64 MB per matrix)
#: default immersion refractive index of every model (standard immersion oil, n_e at 546 nm);
#: the same default as ``lucyd psf --ni`` and ``lucyd synth --ni``
DEFAULT_NI = 1.515

_R_CHUNK = 2048


# ----------------------------------------------------------------------------- helpers


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


# ----------------------------------------------------------------------------- models


def gaussian(
    shape,
    voxel_size,
    *,
    na: float,
    wavelength: float,
    ni: float = DEFAULT_NI,
    paraxial: bool = False,
) -> np.ndarray:
    """Gaussian approximation of the widefield PSF (Zhang, Zerubia & Olivo-Marin 2007).

    The standard deviations are the non-paraxial widefield ones of Zhang et al.
    (Applied Optics 46:1819, 2007, Table 1), with α = arcsin(NA/ni) and k = 2π/λ::

        σ_r = 1/(ni k) · [(4 − 7c^{3/2} + 3c^{7/2}) / (7(1 − c^{3/2}))]^{-1/2}
        σ_z = 5√7 (1 − c^{3/2}) / (√6 ni k [4c⁵ − 25c^{7/2} + 42c^{5/2} − 25c^{3/2} + 4]^{1/2})

    with c = cos α, or the paraxial ones σ_r = √2/(k NA), σ_z = 2√6 ni/(k NA²). The
    Gaussian is integrated exactly over every voxel (differences of error functions).

    Parameters
    ----------
    shape : tuple of int
        (z, y, x) or (y, x), odd sizes; 2D gives the in-focus plane.
    voxel_size : float or tuple of float
        Voxel size in µm, same order as ``shape``.
    na : float
        Numerical aperture.
    wavelength : float
        Emission wavelength in µm (vacuum).
    ni : float
        Immersion refractive index (default :data:`DEFAULT_NI`, 1.515: oil).
    paraxial : bool
        Use the paraxial widths instead of the non-paraxial ones.

    Returns
    -------
    ndarray of float32, sum 1, peak at ``shape // 2``.
    """
    shape = check_shape(shape)
    voxel = check_voxel(voxel_size, len(shape))
    na, wavelength, ni = check_optics(na, wavelength, ni)
    sigma_r, sigma_z = gaussian_sigmas(na=na, wavelength=wavelength, ni=ni, paraxial=paraxial)
    sigmas = (sigma_z, sigma_r, sigma_r)[-len(shape) :]
    profiles = []
    for n, d, s in zip(shape, voxel, sigmas, strict=True):
        x = axis_coords(n, d)
        cdf = special.ndtr(np.concatenate([x - d / 2, x[-1:] + d / 2]) / s)
        profiles.append(np.diff(cdf))
    psf = profiles[0]
    for p in profiles[1:]:
        psf = np.multiply.outer(psf, p)
    return finish(psf, "gaussian")


def gaussian_sigmas(*, na: float, wavelength: float, ni: float, paraxial: bool = False):
    """Lateral and axial standard deviations (µm) of Zhang et al. (2007), widefield."""
    na, wavelength, ni = check_optics(na, wavelength, ni)
    k = 2.0 * math.pi / wavelength
    if paraxial:
        return math.sqrt(2.0) / (k * na), 2.0 * math.sqrt(6.0) * ni / (k * na * na)
    c = math.cos(math.asin(na / ni))
    c15, c25, c35, c5 = c**1.5, c**2.5, c**3.5, c**5
    sigma_r = 1.0 / (ni * k) / math.sqrt((4 - 7 * c15 + 3 * c35) / (7 * (1 - c15)))
    sigma_z = (5 * math.sqrt(7) * (1 - c15)) / (
        math.sqrt(6) * ni * k * math.sqrt(4 * c5 - 25 * c35 + 42 * c25 - 25 * c15 + 4)
    )
    return sigma_r, sigma_z


def born_wolf(
    shape,
    voxel_size,
    *,
    na: float,
    wavelength: float,
    ni: float = DEFAULT_NI,
    paraxial: bool = True,
    oversampling: int = 5,
    z_oversampling: int = 1,
) -> np.ndarray:
    """Scalar Born–Wolf PSF of an aberration-free widefield microscope.

    I(r, z) = |∫₀¹ J0(k·NA·r·ρ) · exp(i·W(ρ, z)) · ρ dρ|², k = 2π/λ

    (Born & Wolf, *Principles of Optics*, 7th ed., §8.8.1) with the paraxial defocus
    phase W = k·z·NA²·ρ²/(2·ni) — the form used by deconwolf's ``dw_bw`` (Wernersson et
    al. 2024), which made ``PSF_dapi.tif`` — or, with ``paraxial=False``, the exact
    W = k·z·√(ni² − NA²ρ²) (then identical to :func:`gibson_lanni` with matched layers).

    Parameters
    ----------
    shape : tuple of int
        (z, y, x) or (y, x), odd sizes; 2D gives the in-focus plane.
    voxel_size : float or tuple of float
        Voxel size in µm, same order as ``shape``.
    na : float
        Numerical aperture (< ni).
    wavelength : float
        Emission wavelength in µm (vacuum).
    ni : float
        Immersion refractive index (default :data:`DEFAULT_NI`, 1.515: oil).
    paraxial : bool
        Paraxial (default, matches deconwolf) or exact defocus phase.
    oversampling : int
        Sub-pixels per lateral axis over which the intensity is averaged (pixel
        integration); ≥ 3 matters for pixels ≳ λ/(4 NA).
    z_oversampling : int
        Samples per voxel depth (1 = sample the plane at the voxel centre).

    Returns
    -------
    ndarray of float32, sum 1, peak at ``shape // 2``.
    """
    shape = check_shape(shape)
    voxel = check_voxel(voxel_size, len(shape))
    na, wavelength, ni = check_optics(na, wavelength, ni)
    oversampling = check_oversampling(oversampling)
    z_oversampling = check_oversampling(z_oversampling, "z_oversampling")
    k = 2.0 * math.pi / wavelength

    if paraxial:
        def phase_of(rho, z):
            return k * np.asarray(z, float)[:, None] * (na * na / (2.0 * ni)) * (rho * rho)[None, :]
    else:
        def phase_of(rho, z):
            s = na * rho
            root = np.sqrt(ni * ni - s * s)
            return k * np.asarray(z, float)[:, None] * (root - ni)[None, :]

    field = _scalar_field(na, wavelength, phase_of, [], 0.0)
    return radial_model(
        shape, voxel, field, wavelength=wavelength, na=na, oversampling=oversampling,
        z_oversampling=z_oversampling, name="born_wolf",
    )


def gibson_lanni(
    shape,
    voxel_size,
    *,
    na: float,
    wavelength: float,
    ni: float = DEFAULT_NI,
    ns: float = 1.33,
    ng: float = 1.515,
    ni0: float | None = None,
    ng0: float | None = None,
    tg: float = 170.0,
    tg0: float | None = None,
    ti0: float = 150.0,
    particle_depth: float = 0.0,
    oversampling: int = 5,
    z_oversampling: int = 1,
) -> np.ndarray:
    """Scalar Gibson–Lanni PSF with refractive-index mismatch and particle depth.

    I(r, z) = |∫₀¹ J0(k·NA·r·ρ) · exp(i·k·OPD(ρ, z)) · ρ dρ|²

    with the optical path difference of Gibson & Lanni (JOSA A 8:1601, 1991) between the
    actual and the design conditions of the immersion (ni vs ni0, thickness ti0 + z),
    coverslip (ng, tg vs ng0, tg0) and sample (ns, emitter ``particle_depth`` below the
    coverslip); see Li, Xue & Blu (JOSA A 34:1029, 2017), eq. 3. The z axis is the focus
    position relative to the design focal plane (z = 0 at index ``nz // 2``); with a
    mismatch and ``particle_depth > 0`` the intensity peak moves away from it (focal
    shift), which is physical and kept. The integral is evaluated by Gauss–Legendre
    quadrature split at the critical radii ρ = n/NA of layers with n < NA (their
    supercritical part is evanescent and decays with depth); the Bessel-series
    acceleration of Li et al. is not needed at these sizes.

    Parameters
    ----------
    shape, voxel_size, na, wavelength, ni, oversampling, z_oversampling
        As :func:`born_wolf` (µm).
    ns : float
        Sample refractive index (default 1.33, water).
    ng, ng0 : float
        Coverslip index, actual and design (``ng0`` defaults to ``ng``).
    ni0 : float
        Design immersion index (defaults to ``ni``: no immersion mismatch).
    tg, tg0 : float
        Coverslip thickness, actual and design, µm (``tg0`` defaults to ``tg``).
    ti0 : float
        Design working distance (immersion thickness), µm.
    particle_depth : float
        Depth of the emitter below the coverslip, µm (0 = on the coverslip, where the
        sample index has no effect).

    Returns
    -------
    ndarray of float32, sum 1; (y, x) is the plane z = 0.
    """
    shape = check_shape(shape)
    voxel = check_voxel(voxel_size, len(shape))
    na, wavelength, ni = check_optics(na, wavelength, ni)
    oversampling = check_oversampling(oversampling)
    z_oversampling = check_oversampling(z_oversampling, "z_oversampling")
    layers = _layers(
        ni, ns, ng, ng if ng0 is None else ng0, ni if ni0 is None else ni0, tg,
        tg if tg0 is None else tg0, ti0, particle_depth,
    )
    for key in ("ni0", "ng", "ng0"):
        if na >= layers[key]:
            raise InputError(f"na: must be smaller than {key}={layers[key]}, got na={na}")
    k = 2.0 * math.pi / wavelength

    def phase_of(rho, z):
        return k * _gl_opd(na * rho, z, ni=ni, **layers)

    breaks = [n / na for n in (layers["ns"],) if n < na]
    field = _scalar_field(na, wavelength, phase_of, breaks, 0.0)
    return radial_model(
        shape, voxel, field, wavelength=wavelength, na=na, oversampling=oversampling,
        z_oversampling=z_oversampling, name="gibson_lanni",
    )


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


# ----------------------------------------------------------------------------- dispatch

#: model name → function (names also accepted with underscores)
MODELS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian": gaussian,
    "born-wolf": born_wolf,
    "gibson-lanni": gibson_lanni,
    "vectorial": vectorial,
}


def _model_function(model: str) -> tuple[str, Callable[..., np.ndarray]]:
    if not isinstance(model, str):
        raise InputError(f"model: expected a name, got {model!r}")
    key = model.strip().lower().replace("_", "-")
    if key not in MODELS:
        raise InputError(f"model: unknown PSF model {model!r}; choose one of {', '.join(MODELS)}")
    return key, MODELS[key]


def make_psf(model: str, shape, voxel_size, **optics) -> np.ndarray:
    """Compute a widefield PSF by model name.

    Parameters
    ----------
    model : {"gaussian", "born-wolf", "gibson-lanni", "vectorial"}
        Model name (underscores accepted: ``"born_wolf"``).
    shape, voxel_size
        Odd (z, y, x) or (y, x) shape and voxel size in µm.
    **optics
        Keyword arguments of the model (``na``, ``wavelength`` in µm, ``ni``, ...).

    Examples
    --------
    >>> psf = make_psf("born-wolf", (33, 65, 65), (0.3, 0.13, 0.13),
    ...                na=1.45, wavelength=0.461, ni=1.512)
    """
    key, func = _model_function(model)
    _check_keywords(key, func, optics)
    _check_fits(check_shape(shape))
    return func(shape, voxel_size, **optics)


#: peak bytes per output voxel of a widefield model (float64 grids and profiles; measured
#: 28–45 B for 33×129×129 with every model) and of a confocal PSF (two PSFs, the emission one
#: padded, and its FFT convolution with the pinhole)
PSF_BYTES_PER_VOXEL = 48
CONFOCAL_BYTES_PER_VOXEL = 160


def estimate_psf_memory(shape, *, confocal: bool = False) -> int:
    """Peak bytes that :func:`make_psf` (or :func:`confocal`) needs for ``shape`` (model)."""
    per_voxel = CONFOCAL_BYTES_PER_VOXEL if confocal else PSF_BYTES_PER_VOXEL
    return int(per_voxel * math.prod(int(n) for n in shape))


def _check_fits(shape, confocal: bool = False) -> None:
    check_memory(estimate_psf_memory(shape, confocal=confocal), f"psf of shape {tuple(shape)}",
                 "a PSF needs only a few times its FWHM per axis (e.g. 33,65,65)")


def _check_keywords(key: str, func: Callable[..., np.ndarray], optics: dict) -> None:
    """Unknown or missing keyword arguments of a model → InputError naming them."""
    params = inspect.signature(func).parameters
    accepted = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(optics) - set(accepted))
    if unknown:
        raise InputError(
            f"{key}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    missing = [
        n for n in accepted
        if params[n].default is inspect.Parameter.empty and n not in optics
    ]
    if missing:
        raise InputError(f"{key}: missing required parameter(s) {', '.join(missing)}")


def _disk_kernel(radius: float, voxel_yx: tuple[float, float], sub: int = 11) -> np.ndarray:
    """Pinhole disk of ``radius`` µm integrated over pixels (area fraction), sum 1."""
    hy = int(math.ceil(radius / voxel_yx[0] - 0.5)) + 1
    hx = int(math.ceil(radius / voxel_yx[1] - 0.5)) + 1
    off = (np.arange(sub) + 0.5) / sub - 0.5
    y = ((np.arange(-hy, hy + 1)[:, None] + off[None, :]) * voxel_yx[0]).reshape(-1)
    x = ((np.arange(-hx, hx + 1)[:, None] + off[None, :]) * voxel_yx[1]).reshape(-1)
    inside = (y[:, None] ** 2 + x[None, :] ** 2) <= radius * radius
    kern = inside.reshape(2 * hy + 1, sub, 2 * hx + 1, sub).mean(axis=(1, 3))
    if kern.sum() == 0:  # pinhole far below a pixel: a point detector
        kern[hy, hx] = 1.0
    return kern / kern.sum()


def confocal(
    model: str,
    shape,
    voxel_size,
    *,
    na: float,
    excitation_wavelength: float,
    emission_wavelength: float,
    ni: float = DEFAULT_NI,
    pinhole_au: float = 1.0,
    **optics,
) -> np.ndarray:
    """Confocal PSF: excitation PSF × (emission PSF ⊛ pinhole), normalised to sum 1.

    h_conf(x, y, z) = h_ex(x, y, z) · [h_em(·, ·, z) ⊛ P](x, y), with P the pinhole
    disk back-projected to the sample of radius ``pinhole_au`` × 0.61·λ_em/NA (one Airy
    unit is the diameter 1.22·λ_em/NA of the emission Airy disk), pixel-integrated
    (Wilson & Sheppard, *Theory and Practice of Scanning Optical Microscopy*, 1984;
    Zhang et al. 2007, eq. 6). For a pinhole ≪ 1 AU and λ_ex ≈ λ_em the lateral FWHM
    is ≈ 1/√2 of the widefield one.

    Parameters
    ----------
    model : str
        Any model of :func:`make_psf`, used for both excitation and emission.
    shape, voxel_size
        Odd shape and voxel size (µm).
    na, ni : float
        Numerical aperture and immersion index.
    excitation_wavelength, emission_wavelength : float
        Vacuum wavelengths in µm.
    pinhole_au : float
        Pinhole diameter in Airy units (> 0; use a small value such as 0.05 for an
        ideal point detector).
    **optics
        Further keyword arguments of the model (refractive indices, oversampling, ...).

    Returns
    -------
    ndarray of float32, sum 1, peak at ``shape // 2``.
    """
    key, func = _model_function(model)
    shape = check_shape(shape)
    _check_fits(shape, confocal=True)
    voxel = check_voxel(voxel_size, len(shape))
    lam_ex = positive(excitation_wavelength, "excitation_wavelength")
    lam_em = positive(emission_wavelength, "emission_wavelength")
    pinhole_au = positive(pinhole_au, "pinhole_au")
    if pinhole_au > 50:
        raise InputError(f"pinhole_au: {pinhole_au} Airy units is not a confocal pinhole (max 50)")
    check_optics(na, lam_em, ni)
    check_optics(na, lam_ex, ni)
    radius = pinhole_au * 0.61 * lam_em / na
    voxel_yx = voxel[-2:]
    kern = _disk_kernel(radius, voxel_yx)
    py, px = kern.shape[0] // 2, kern.shape[1] // 2
    em_shape = (*shape[:-2], shape[-2] + 2 * py, shape[-1] + 2 * px)
    kw = dict(optics, ni=ni)
    _check_keywords(key, func, dict(kw, na=na, wavelength=lam_em))
    excitation = func(shape, voxel, na=na, wavelength=lam_ex, **kw).astype(np.float64)
    emission = func(em_shape, voxel, na=na, wavelength=lam_em, **kw).astype(np.float64)
    from scipy.signal import fftconvolve  # here: scipy.signal costs ~0.5 s to import

    if emission.ndim == 3:
        detected = fftconvolve(emission, kern[None], mode="valid", axes=(1, 2))
    else:
        detected = fftconvolve(emission, kern, mode="valid")
    return finish(excitation * np.clip(detected, 0.0, None), f"confocal {key}")
