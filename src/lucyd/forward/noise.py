"""Camera noise model: Poisson shot noise + Gaussian read noise + background.

A noiseless image ``s`` (arbitrary units, e.g. a blurred phantom) becomes, in camera
counts (photo-electrons times ``gain``, plus ``offset``)::

    counts = gain * (Poisson(photons * s + background) + Normal(0, read_noise)) + offset

``photons`` is the photon scale (expected photons per unit of ``s``), ``background``
the expected background photons per pixel and ``read_noise`` the read-noise standard
deviation in electrons. For ``gain = 1, offset = 0`` the variance of the result equals
its mean plus ``read_noise**2`` - the property the tests check.
"""

from __future__ import annotations

import numpy as np

from lucyd.errors import InputError
from lucyd.validation import as_image


def camera_noise(
    signal,
    *,
    photons: float = 1.0,
    background: float = 0.0,
    read_noise: float = 0.0,
    gain: float = 1.0,
    offset: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Simulate a camera recording of the noiseless image ``signal``.

    Parameters
    ----------
    signal : array_like
        Noiseless, non-negative image (negative values are clipped to 0).
    photons : float
        Photon scale: expected photons per unit intensity of ``signal`` (> 0).
    background : float
        Expected background photons per pixel (>= 0), e.g. autofluorescence.
    read_noise : float
        Standard deviation of Gaussian read noise, in electrons (>= 0).
    gain : float
        Counts per electron (> 0).
    offset : float
        Camera baseline added to every pixel, in counts.
    seed : int, Generator or None
        Seed for reproducible noise.

    Returns
    -------
    ndarray, float32, same shape as ``signal``.
    """
    s = as_image(signal, name="signal", ndim=(1, 2, 3, 4), dtype=np.float64)
    for value, label, strict in ((photons, "photons", True), (gain, "gain", True),
                                 (background, "background", False), (read_noise, "read_noise", False)):
        if not np.isfinite(value) or value < 0 or (strict and value == 0):
            raise InputError(f"{label}: must be {'positive' if strict else 'non-negative'} and finite, got {value}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    expected = photons * np.clip(s, 0.0, None) + background
    electrons = rng.poisson(expected).astype(np.float64)
    if read_noise > 0:
        electrons += rng.normal(0.0, read_noise, size=electrons.shape)
    return (gain * electrons + offset).astype(np.float32)
