"""PSF models and measurements.

Theoretical models (:mod:`lucyd.psf.models`): :func:`gaussian`, :func:`born_wolf`,
:func:`gibson_lanni`, :func:`vectorial`, :func:`confocal` and the dispatcher
:func:`make_psf`; measured PSFs from bead images (:func:`from_beads`); and the
per-axis :func:`fwhm`. Lengths are in micrometres, arrays (z, y, x) or (y, x).
"""

from lucyd.psf.beads import BeadReport, from_beads
from lucyd.psf.measure import fwhm
from lucyd.psf.models import (
    MODELS,
    born_wolf,
    confocal,
    gaussian,
    gibson_lanni,
    make_psf,
    vectorial,
)

__all__ = [
    "MODELS",
    "BeadReport",
    "born_wolf",
    "confocal",
    "from_beads",
    "fwhm",
    "gaussian",
    "gibson_lanni",
    "make_psf",
    "vectorial",
]
