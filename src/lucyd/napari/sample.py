"""napari sample data: a small synthetic widefield specimen, its PSF and its ground truth."""

from __future__ import annotations

from lucyd.io import ImageMetadata
from lucyd.napari.io import layer_data
from lucyd.restore.sample import make_sample

__all__ = ["SAMPLE_SHAPE", "sample_specimen"]

#: (z, y, x) of the sample: small enough to deconvolve in a second or two on a laptop
SAMPLE_SHAPE = (24, 96, 96)
#: its phantom: nuclei, tubules and granules together
SAMPLE_KIND = "mixed"


def sample_specimen(seed: int = 0) -> list[tuple]:
    """The acquisition of ``lucyd restore --sample`` (:func:`lucyd.restore.sample.make_sample`), small.

    Nuclei, tubules and granules imaged through a Born–Wolf widefield PSF (NA 1.4, 520 nm, voxel 0.2 × 0.1 × 0.1 µm)
    with Poisson and camera noise. Returns three image layers: the raw specimen (camera
    counts), its PSF (same voxel size) and the ground truth (hidden; counts above the offset),
    each with the voxel size as its scale.
    """
    sample = make_sample(SAMPLE_SHAPE, seed=seed, kind=SAMPLE_KIND)
    voxel = sample["voxel_size"]
    layers = []
    for key, name, extra in (("raw", "specimen", {"colormap": "gray"}),
                             ("psf", "PSF", {"colormap": "magma", "visible": False}),
                             ("gt", "ground truth", {"colormap": "gray", "visible": False})):
        ((data, kwargs, kind),) = layer_data(sample[key], ImageMetadata("ZYX", voxel), name)
        layers.append((data, {**kwargs, **extra}, kind))
    return layers
