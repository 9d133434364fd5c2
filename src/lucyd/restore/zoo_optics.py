"""The optics families of the pretrained zoo: which PSFs each zoo model is trained on.

One member of a family is a dict of optics (:func:`sample_optics`: kind, immersion, NA,
wavelengths, pinhole or sheet, native sampling), and :func:`family_psf` computes its PSF on
the native grid. Widefield members are scalar Born–Wolf PSFs (or Gaussians), confocal ones
:func:`lucyd.psf.models.confocal` (Wilson & Sheppard 1984), light-sheet ones the detection PSF
times the sheet's Gaussian profile along z (Huisken et al., *Science* 305:1007, 2004;
Engelbrecht & Stelzer, *Opt. Lett.* 31:1477, 2006). The families' ranges live on the model's
:class:`lucyd.restore.zoo.ZooSpec`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lucyd.psf.models import born_wolf, confocal
from lucyd.restore.canonical import psf_fwhm_px

if TYPE_CHECKING:  # the spec is only read here; zoo imports this module
    from lucyd.restore.zoo import ZooSpec

#: immersion media: refractive index and the NA range of the objectives used with it
MEDIA = {"air": (1.0, (0.8, 0.95)), "water": (1.333, (0.8, 1.27)), "silicone": (1.406, (0.8, 1.35)),
         "oil": (1.518, (1.0, 1.49))}
#: light-sheet detection objectives: refractive index and NA range per medium (moderate NA:
#: long working distance; "clearing" is a high-index clearing medium such as ethyl cinnamate)
LIGHTSHEET_MEDIA = {"air": (1.0, (0.3, 0.5)), "water": (1.333, (0.3, 1.1)), "clearing": (1.52, (0.3, 1.1))}
#: immersion media of each optics family
OPTICS_MEDIA = {"widefield": MEDIA, "confocal": MEDIA, "lightsheet": LIGHTSHEET_MEDIA}
#: emission wavelengths (µm)
EMISSION_UM = (0.45, 0.67)
#: excitation below emission (µm): the Stokes shift of the usual dyes (488→520, 561→600, 640→670 nm)
STOKES_SHIFT_UM = (0.02, 0.05)

def log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_optics(rng: np.random.Generator, spec: ZooSpec) -> dict:
    """Draw one member of ``spec``'s PSF family: kind, optics and native sampling."""
    lateral = log_uniform(rng, spec.lateral_fwhm_px)
    axial = log_uniform(rng, spec.axial_fwhm_px)
    if rng.random() < spec.gaussian_share:
        return {"family": "gaussian", "lateral_fwhm_px": lateral, "axial_fwhm_px": axial}
    media = OPTICS_MEDIA[spec.optics]
    medium = list(media)[int(rng.integers(len(media)))]
    ni, na_range = media[medium]
    optics = {"family": spec.optics, "medium": medium, "ni": ni, "na": float(rng.uniform(*na_range)),
              "wavelength": float(rng.uniform(*EMISSION_UM)), "paraxial": bool(rng.random() < 0.5),
              "lateral_fwhm_px": lateral, "axial_fwhm_px": axial}
    # the family's own parameters are drawn last: widefield draws stay those of the shipped models
    if spec.optics == "confocal":
        optics["excitation_wavelength"] = optics["wavelength"] - float(rng.uniform(*STOKES_SHIFT_UM))
        optics["pinhole_au"] = float(rng.uniform(*spec.pinhole_au))
    elif spec.optics == "lightsheet":
        optics["sheet_fwhm_um"] = log_uniform(rng, spec.sheet_fwhm_um)
    return optics


def _nominal_fwhm_um(optics: dict) -> tuple[float, float]:
    """(axial, lateral) FWHM in µm of a physical family member, from the textbook widths.

    Widefield: 0.51·λ/NA laterally, 0.88·λ/(n − √(n² − NA²)) axially. Confocal: both about
    1/√2 of that (exact for a point pinhole and λ_ex = λ_em; wider for larger pinholes).
    Light sheet: the detection axial width combined with the sheet's as Gaussians,
    1/√(1/w_det² + 1/w_sheet²). Estimates only: :func:`family_psf` measures and corrects.
    """
    na, lam, ni = optics["na"], optics["wavelength"], optics["ni"]
    lateral = 0.51 * lam / na
    axial = 0.88 * lam / (ni - math.sqrt(ni * ni - na * na))
    if optics["family"] == "confocal":
        return axial / math.sqrt(2), lateral / math.sqrt(2)
    if optics["family"] == "lightsheet":
        return 1.0 / math.sqrt(axial**-2 + optics["sheet_fwhm_um"] ** -2), lateral
    return axial, lateral


def _physical_psf(optics: dict, shape: tuple[int, ...], voxel: tuple[float, ...]) -> np.ndarray:
    """The PSF of a widefield, confocal or light-sheet family member on ``shape`` × ``voxel`` (µm)."""
    na, lam, ni, paraxial = optics["na"], optics["wavelength"], optics["ni"], optics["paraxial"]
    if optics["family"] == "confocal":
        return confocal("born-wolf", shape, voxel, na=na, excitation_wavelength=optics["excitation_wavelength"],
                        emission_wavelength=lam, ni=ni, pinhole_au=optics["pinhole_au"], paraxial=paraxial)
    psf = born_wolf(shape, voxel, na=na, wavelength=lam, ni=ni, paraxial=paraxial)
    if optics["family"] == "lightsheet" and len(shape) == 3:
        # the sheet's Gaussian intensity profile along the detection axis (2D: the in-focus plane, where it is 1)
        z = (np.arange(shape[0]) - shape[0] // 2) * voxel[0]
        sheet = np.exp(-4 * math.log(2) * (z / optics["sheet_fwhm_um"]) ** 2)
        psf = psf * sheet[:, None, None].astype(np.float32)
        psf = (psf / psf.sum()).astype(np.float32)
    return psf


def family_psf(optics: dict, ndim: int, voxel: tuple[float, ...] | None = None) -> np.ndarray:
    """The native-grid PSF of one family member (:func:`sample_optics`), sum 1, odd size, peak centred.

    The voxel size is chosen so that the PSF has the member's native FWHM in pixels
    (``lateral_fwhm_px``, ``axial_fwhm_px``): from the textbook widths for widefield PSFs, and for
    confocal and light-sheet PSFs corrected by one measurement of the PSF's FWHM (their widths
    depend on pinhole and sheet). With ``voxel`` (µm) given, the PSF is computed on that voxel
    size instead (to compare families at the same optics).
    """
    lat, ax = optics["lateral_fwhm_px"], optics["axial_fwhm_px"]
    if optics["family"] == "gaussian":
        half = ([int(math.ceil(3 * ax))] if ndim == 3 else []) + [int(math.ceil(3 * lat))] * 2
        shape = tuple(2 * h + 1 for h in half)
        fw = [ax, lat, lat][3 - ndim:]
        grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
        r2 = sum((g / (f / (2 * math.sqrt(2 * math.log(2))))) ** 2 for g, f in zip(grids, fw, strict=True))
        p = np.exp(-0.5 * r2).astype(np.float32)
        return p / p.sum()
    axial_um, lateral_um = _nominal_fwhm_um(optics)
    if voxel is not None:
        voxel = tuple(float(v) for v in voxel)
        ax, lat = (axial_um / voxel[0] if ndim == 3 else ax), lateral_um / voxel[-1]
    half = ([int(math.ceil(3 * ax))] if ndim == 3 else []) + [int(math.ceil(3 * lat))] * 2
    shape = tuple(2 * h + 1 for h in half)
    if voxel is not None:
        return _physical_psf(optics, shape, voxel)
    target = ((ax,) if ndim == 3 else ()) + (lat, lat)
    voxel = ((axial_um / ax,) if ndim == 3 else ()) + (lateral_um / lat,) * 2
    if optics["family"] != "widefield":  # nominal widths are estimates here: correct the sampling once
        measured = psf_fwhm_px(_physical_psf(optics, shape, voxel))
        voxel = tuple(v * m / t for v, m, t in zip(voxel, measured, target, strict=True))
    return _physical_psf(optics, shape, voxel)
