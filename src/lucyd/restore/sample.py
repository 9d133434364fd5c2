"""The built-in sample of ``lucyd restore --sample``: a synthetic widefield specimen with its truth.

Nuclei (one of the four phantom kinds restore trains on, another seed) imaged through a Born–Wolf widefield
PSF (NA 1.4 oil, 520 nm, voxel 0.2 × 0.1 × 0.1 µm) with Poisson noise at about 2 photons per
phantom unit, 1.5 e⁻ read noise, gain 2 counts/e⁻ and a 100-count camera offset: a dim,
dense specimen as a camera records it.
"""

from __future__ import annotations

import numpy as np

from lucyd.forward import camera_noise, convolve
from lucyd.psf import born_wolf
from lucyd.synth import phantom

SAMPLE_VOXEL = (0.2, 0.1, 0.1)
SAMPLE_OPTICS = {"na": 1.4, "wavelength": 0.52, "ni": 1.518}
SAMPLE_CAMERA = {"photons": 2.0, "read_noise": 1.5, "gain": 2.0, "offset": 100.0}


def make_sample(shape=(32, 128, 128), seed: int = 0, kind: str = "nuclei") -> dict:
    """``{"raw", "psf", "gt", "voxel_size"}``: raw in camera counts, gt in counts above the offset.

    ``kind`` is the phantom (:data:`lucyd.synth.phantoms.KINDS`); the napari sample uses "mixed".

    ``gt`` is the object whose blur is the raw image's expectation (photons × gain × phantom),
    so a restoration in the raw's counts above the offset can be compared with it directly.
    """
    psf = born_wolf((33, 65, 65), SAMPLE_VOXEL, **SAMPLE_OPTICS)
    obj = phantom(kind, shape, seed=seed, background=5.0)
    blurred = convolve(obj, psf, boundary="linear")
    raw = camera_noise(blurred, seed=seed + 1, **SAMPLE_CAMERA)
    gt = obj * np.float32(SAMPLE_CAMERA["photons"] * SAMPLE_CAMERA["gain"])
    return {"raw": raw.astype(np.float32), "psf": psf.astype(np.float32), "gt": gt.astype(np.float32),
            "voxel_size": SAMPLE_VOXEL}
