"""Classical deconvolution: Richardson–Lucy with boundary handling and unmatched back projectors.

:func:`deconvolve` (arrays, optionally blocked / out-of-core), :func:`deconvolve_file`
(files), :func:`back_projector` (flipped PSF, Gaussian, Butterworth, Wiener–Butterworth),
:class:`DeconvConfig` (saved job parameters) and :func:`estimate_memory`.
"""

from lucyd.deconv.api import deconvolve, deconvolve_file, estimate_background, parse_memory
from lucyd.deconv.backprojectors import BACK_PROJECTORS, back_projector
from lucyd.deconv.config import DeconvConfig
from lucyd.deconv.engine import BOUNDARIES, estimate_memory
from lucyd.deconv.psfprep import resample_psf

__all__ = [
    "BACK_PROJECTORS",
    "BOUNDARIES",
    "DeconvConfig",
    "back_projector",
    "deconvolve",
    "deconvolve_file",
    "estimate_background",
    "estimate_memory",
    "parse_memory",
    "resample_psf",
]
