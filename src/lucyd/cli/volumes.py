"""The PSF options that `deconvolve` and `restore` share for time series and channels."""

from __future__ import annotations

from pathlib import Path

from lucyd.errors import InputError


def volume_options(input: Path, psfs: list[Path] | None, *, wavelength: str | None, na: float | None,
                   ni: float, psf_model: str, same_psf: bool) -> dict | None:
    """Keyword arguments (``psfs``, ``wavelengths``, ``optics``, ``same_psf``) for the
    volume-by-volume functions, or None for one volume with one PSF file (the command's
    single-volume path).

    Raises
    ------
    InputError
        PSF files and a model PSF both or neither given; --wavelength without --na.
    """
    from lucyd.io import image_info
    from lucyd.psf.channels import parse_wavelengths

    psfs = list(psfs or [])
    wavelengths = parse_wavelengths(wavelength)
    if psfs and (na is not None or wavelengths):
        raise InputError("--psf: give PSF files or a model PSF (--na, --wavelength), not both")
    if not psfs and na is None:
        raise InputError("--psf: give a PSF file (one per channel), or model PSFs with --na and "
                         "--wavelength")
    if len(psfs) == 1 and image_info(input, hyperstack=True).metadata.is_volume:
        return None
    return {
        "psfs": psfs or None,
        "wavelengths": wavelengths,
        "optics": None if psfs else {"na": na, "ni": ni, "model": psf_model},
        "same_psf": same_psf,
    }


def is_hyperstack(input: Path) -> bool:
    """True when ``input`` holds time points or several channels."""
    from lucyd.io import image_info

    return not image_info(input, hyperstack=True).metadata.is_volume
