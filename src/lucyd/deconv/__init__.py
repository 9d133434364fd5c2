"""Classical deconvolution: Richardson–Lucy with boundary handling and unmatched back projectors.

:func:`deconvolve` (arrays, optionally blocked / out-of-core), :func:`deconvolve_file`
(files), :func:`back_projector` (flipped PSF, Gaussian, Butterworth, Wiener–Butterworth),
:class:`DeconvConfig` (the one validation of a job's options, saved beside its output),
:func:`prepare_psf` (the one preparation of its PSF) and :func:`estimate_memory`.
"""

from lucyd.deconv.api import deconvolve, deconvolve_file, estimate_background, parse_memory
from lucyd.deconv.backprojectors import BACK_PROJECTORS, back_projector
from lucyd.deconv.config import DeconvConfig
from lucyd.deconv.engine import BOUNDARIES, estimate_memory
from lucyd.deconv.psfprep import PreparedPSF, prepare_psf, resample_psf

__all__ = [
    "BACK_PROJECTORS",
    "BOUNDARIES",
    "DeconvConfig",
    "PreparedPSF",
    "back_projector",
    "deconvolve",
    "deconvolve_file",
    "estimate_background",
    "estimate_memory",
    "parse_memory",
    "prepare_psf",
    "resample_psf",
]
