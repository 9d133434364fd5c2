"""Physics self-check: does a restoration explain the raw data it came from?

A restoration ``o`` of a raw image ``y`` is consistent with the physics when re-blurring it
with the PSF reproduces the data up to the camera's noise: ``y ≈ o ⊛ psf`` with residuals of
variance ``o ⊛ psf + σ²`` (Poisson–Gaussian, in photo-electrons). Two scores follow, both
1 for a restoration that explains the data exactly as well as the truth would:

* ``chi2``: the mean squared normalised residual ``r² / var`` over the image (the reduced
  χ² of the data under the model). Above 1, structure is missing or invented.
* ``flux_chi2``: the same for block sums of the residual (blocks of ``block`` voxels per
  axis), in units of their standard error (the noise's, plus :data:`FLUX_MODEL_ERROR` of
  the block's flux in quadrature). A restoration that dims or erases a dim
  structure, or invents one, leaves a block whose flux is off by many standard errors, even
  when the per-voxel χ² hides it in the noise. This is the sensitive test of "did the
  network erase or invent something".

A restoration that over-fits the noise (late Richardson–Lucy iterations) scores *below* 1;
what marks a restoration as wrong is a score well above 1. :func:`compare_fidelity` says
whether a candidate explains the data worse than a reference beyond the statistical margin.

The borders are left out by ``margin`` voxels per axis (default: the radius holding most of
the PSF's energy), where the re-blur misses light from outside the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lucyd.errors import InputError
from lucyd.forward import convolve

#: block edge (voxels) of the flux check, per axis (z uses half of it in 3D)
FLUX_BLOCK = 16
#: relative flux error of a block tolerated as model error (PSF mismatch, discretisation):
#: added in quadrature to the noise's standard error, so that a block needs a flux error
#: of several per cent, not only many noise standard errors, to count
FLUX_MODEL_ERROR = 0.03


@dataclass
class Fidelity:
    """Scores of one restoration against its raw data (see the module docstring).

    ``flux_map`` has one value per block: the block's flux residual in standard errors
    (signed: positive where the restoration carries less light than the data).
    """

    chi2: float
    flux_chi2: float
    worst_block_z: float
    flux_map: np.ndarray
    block: tuple[int, ...]
    margin: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"chi2": float(self.chi2), "flux_chi2": float(self.flux_chi2),
                "worst_block_z": float(self.worst_block_z), "block": list(self.block),
                "margin": list(self.margin)}


def energy_radius(psf: np.ndarray, fraction: float = 0.9) -> tuple[int, ...]:
    """Half-width per axis of the centred box holding ``fraction`` of the PSF's energy."""
    p = np.asarray(psf, np.float64)
    p = p / p.sum()
    out = []
    for axis in range(p.ndim):
        profile = p.sum(axis=tuple(a for a in range(p.ndim) if a != axis))
        c = len(profile) // 2
        r = 0
        while r < c and profile[c - r : c + r + 1].sum() < fraction:
            r += 1
        out.append(r)
    return tuple(out)


def _blocks(a: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    shape = tuple((n // b) * b for n, b in zip(a.shape, block, strict=True))
    a = a[tuple(slice(0, n) for n in shape)]
    split = []
    for n, b in zip(shape, block, strict=True):
        split += [n // b, b]
    return a.reshape(split).sum(axis=tuple(range(1, 2 * a.ndim, 2)))


def data_fidelity(restoration, raw_e, psf, *, read_noise_e: float,
                  margin: tuple[int, ...] | None = None, block: int = FLUX_BLOCK) -> Fidelity:
    """Score how well ``restoration ⊛ psf`` explains ``raw_e`` under Poisson–Gaussian noise.

    Parameters
    ----------
    restoration : ndarray
        Object estimate in photo-electrons (above the dark level), the raw image's shape.
    raw_e : ndarray
        Raw image in photo-electrons above the dark level.
    psf : ndarray
        PSF (normalised to sum 1 here).
    read_noise_e : float
        Gaussian noise (photo-electrons) at zero signal.
    margin : tuple of int, optional
        Voxels left out at each border (default: the PSF's 90 %-energy radius, at most a
        quarter of the image).
    block : int
        Block edge for the flux check (halved along z in 3D).

    Returns
    -------
    Fidelity
    """
    r = np.asarray(restoration, np.float32)
    y = np.asarray(raw_e, np.float32)
    if r.shape != y.shape:
        raise InputError(f"restoration: shape {r.shape} differs from the raw image's {y.shape}")
    if not np.all(np.isfinite(r)):
        raise InputError("restoration: contains NaN or Inf")
    model = convolve(r, psf, boundary="linear")
    if margin is None:
        margin = tuple(min(m, n // 4) for m, n in zip(energy_radius(psf), y.shape, strict=True))
    inner = tuple(slice(m, n - m) for m, n in zip(margin, y.shape, strict=True))
    var = np.maximum(model[inner], 0) + np.float32(read_noise_e**2)
    var = np.maximum(var, np.float32(1e-6))
    resid = y[inner] - model[inner]
    chi2 = float(np.mean(resid.astype(np.float64) ** 2 / var))
    blk = tuple(max(1, min(block // (2 if (y.ndim == 3 and a == 0) else 1), n))
                for a, n in enumerate(resid.shape))
    flux = _blocks(resid.astype(np.float64), blk)
    block_flux = _blocks(np.abs(model[inner]).astype(np.float64), blk)
    se = np.sqrt(_blocks(var.astype(np.float64), blk) + (FLUX_MODEL_ERROR * block_flux) ** 2)
    z = flux / se
    return Fidelity(chi2=chi2, flux_chi2=float(np.mean(z**2)), worst_block_z=float(np.max(np.abs(z))),
                    flux_map=z.astype(np.float32), block=blk, margin=tuple(int(m) for m in margin))


def calibrate_flux(restoration, raw_e, psf, *, margin: tuple[int, ...] | None = None) -> tuple[float, float]:
    """Scale ``a`` and background ``b`` with ``raw_e ≈ a · (restoration ⊛ psf) + b`` (least squares).

    The forward model fixes a restoration's intensity scale: ``a · restoration + b`` is the
    object whose blur best explains the data (the PSF sums to 1, so ``b`` passes unchanged).
    A network's output can be off by a few per cent in scale; this puts it back on the data's
    flux without any percentile or min–max rescaling.
    """
    r = np.asarray(restoration, np.float32)
    y = np.asarray(raw_e, np.float32)
    model = convolve(r, psf, boundary="linear")
    if margin is None:
        margin = tuple(min(m, n // 4) for m, n in zip(energy_radius(psf), y.shape, strict=True))
    inner = tuple(slice(m, n - m) for m, n in zip(margin, y.shape, strict=True))
    m = model[inner].astype(np.float64).ravel()
    d = y[inner].astype(np.float64).ravel()
    var_m = float(np.var(m))
    if var_m <= 0:
        return 1.0, 0.0
    a = float(np.mean((m - m.mean()) * (d - d.mean())) / var_m)
    return a, float(d.mean() - a * m.mean())


def compare_fidelity(candidate: Fidelity, reference: Fidelity, *, tolerance: float = 0.25) -> tuple[bool, str]:
    """Whether ``candidate`` explains the data worse than ``reference``, and why.

    Worse means a flux χ² above ``max(1, reference) · (1 + tolerance)`` plus three standard
    errors of a χ² over that many blocks (``3·sqrt(2 / n_blocks)``), or a per-voxel χ² above
    ``max(1, reference)`` by more than ``tolerance``. Scores below 1 (over-fitting) never
    count against a restoration.
    """
    n_blocks = max(1, candidate.flux_map.size)
    flux_limit = max(1.0, reference.flux_chi2) * (1 + tolerance) + 3 * math.sqrt(2.0 / n_blocks)
    chi_limit = max(1.0, reference.chi2) * (1 + tolerance)
    if candidate.flux_chi2 > flux_limit:
        return True, (f"its block fluxes deviate from the data by χ² {candidate.flux_chi2:.2f} "
                      f"(reference {reference.flux_chi2:.2f}, limit {flux_limit:.2f}): it dims, erases or "
                      "invents structure")
    if candidate.chi2 > chi_limit:
        return True, (f"its re-blur misses the data by χ² {candidate.chi2:.2f} per voxel "
                      f"(reference {reference.chi2:.2f}, limit {chi_limit:.2f})")
    return False, (f"it explains the data as well as the reference (flux χ² {candidate.flux_chi2:.2f} vs "
                   f"{reference.flux_chi2:.2f}, voxel χ² {candidate.chi2:.2f} vs {reference.chi2:.2f})")
