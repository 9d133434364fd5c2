"""PSF models and measurements (models filled in by the PSF module)."""

from lucyd.psf.measure import fwhm

__all__ = ["fwhm"]
