"""Synthetic training data: phantoms, degradations and dataset folders.

* :func:`phantom` - ground-truth objects ("mixed" = the RLN recipe of Li et al. 2022,
  "tubules", "granules" (CARE-style, Weigert et al. 2018), "nuclei"), 2D and 3D.
* :func:`degrade` - (raw, target) pairs for deconvolution, denoising and isotropic restoration.
* :class:`SynthConfig`, :func:`make_dataset` - a folder ``raw/`` + ``gt/`` + ``psf.tif`` +
  ``dataset.json``, generated in parallel, resumable.
* :func:`load_pairs` - load and validate such a folder (synthetic or real pairs).
"""

from lucyd.synth.dataset import (
    ImagePair,
    SynthConfig,
    file_seeds,
    load_pairs,
    make_dataset,
    make_pair,
    resolve_psf,
)
from lucyd.synth.degrade import TASKS, degrade
from lucyd.synth.phantoms import KINDS, phantom, phantom_parameters, smooth_noise

__all__ = [
    "KINDS",
    "TASKS",
    "ImagePair",
    "SynthConfig",
    "degrade",
    "file_seeds",
    "load_pairs",
    "make_dataset",
    "make_pair",
    "phantom",
    "phantom_parameters",
    "resolve_psf",
    "smooth_noise",
]
