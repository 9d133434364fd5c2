"""Scalar widefield PSF models: ``gaussian`` (Zhang, Zerubia & Olivo-Marin 2007), ``born_wolf``
(Born & Wolf, §8.8) and ``gibson_lanni`` (Gibson & Lanni 1991); see :mod:`lucyd.psf.models`."""

from __future__ import annotations

import math

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
    radial_model,
)
from lucyd.psf._pupil import (
    _gl_opd,
    _layers,
    _scalar_field,
)

#: default immersion refractive index of every model (standard immersion oil, n_e at 546 nm);
#: the same default as ``lucyd psf --ni`` and ``lucyd synth --ni``
DEFAULT_NI = 1.515


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
