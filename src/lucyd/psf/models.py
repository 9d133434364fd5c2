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

The models live in :mod:`lucyd.psf.scalar_models` (gaussian, Born–Wolf, Gibson–Lanni) and
:mod:`lucyd.psf.vectorial_model`, their shared pupil quadrature in :mod:`lucyd.psf._pupil`; this
module is the dispatcher (:data:`MODELS`, :func:`make_psf`), the confocal combination and the
memory model. A new model: a function ``f(shape, voxel_size, *, na, wavelength, ...)`` in one of
those modules (or a new one), added to :data:`MODELS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np

from lucyd.errors import InputError
from lucyd.psf._common import check_optics, check_shape, check_voxel, finish, positive
from lucyd.psf.scalar_models import DEFAULT_NI, born_wolf, gaussian, gaussian_sigmas, gibson_lanni
from lucyd.psf.vectorial_model import vectorial
from lucyd.validation import check_memory

__all__ = [
    "DEFAULT_NI",
    "MODELS",
    "born_wolf",
    "confocal",
    "gaussian",
    "gaussian_sigmas",
    "gibson_lanni",
    "make_psf",
    "vectorial",
]


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
    from scipy.signal import fftconvolve  # here: scipy.signal costs ~0.5 s to import (start-up)

    if emission.ndim == 3:
        detected = fftconvolve(emission, kern[None], mode="valid", axes=(1, 2))
    else:
        detected = fftconvolve(emission, kern, mode="valid")
    return finish(excitation * np.clip(detected, 0.0, None), f"confocal {key}")
