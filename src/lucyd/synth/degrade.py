"""Degradations that turn a ground truth into a (raw, target) training pair.

Three tasks, all built on the shared forward model (:func:`lucyd.forward.convolve` and
:func:`lucyd.forward.camera_noise`):

``"deconvolution"`` (RLN recipe, Li et al., Nature Methods 2022)
    ``raw = Poisson(photons * (gt (*) psf) + background) + Normal(0, read_noise)`` with a
    linear (zero-outside) convolution; ``target = gt``.
``"denoising"`` (CARE, Weigert et al., Nature Methods 2018)
    The same blur for input and target, a low photon count for the input and a high one
    (or none: the noiseless expectation) for the target.
``"isotropic"`` (CARE's isotropic-restoration recipe)
    Axial (axis 0) blur, sub-sampling of axis 0 by ``z_factor``, camera noise on the acquired
    planes, linear re-upsampling to the original grid; the target has lateral-quality
    resolution along every axis.

Units: ``raw`` is in camera counts (photo-electrons, gain 1, offset 0); the deconvolution
and isotropic targets are in phantom units; the denoising target is in the raw's counts.
The two therefore differ in scale by about ``photons`` - trainers normalise raw and target
separately by percentiles (RLN: p0.01 / p99.5; CARE: p2 / p99.8), so the scale does not matter.
"""

from __future__ import annotations

import numpy as np

from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.synth.phantoms import Seed, _rng
from lucyd.validation import as_image, as_number

TASKS = ("deconvolution", "denoising", "isotropic")


def gaussian_axial_psf(sigma: float, ndim: int) -> np.ndarray:
    """A PSF that blurs only axis 0 with a Gaussian of ``sigma`` px (shape (2r+1, 1[, 1]))."""
    radius = max(int(np.ceil(4 * sigma)), 1)
    z = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (z / sigma) ** 2)
    return (k / k.sum()).reshape((-1,) + (1,) * (ndim - 1)).astype(np.float32)


def subsample_axis0(image: np.ndarray, factor: float) -> np.ndarray:
    """Planes of ``image`` at positions ``0, f, 2f, ...`` along axis 0 (linear interpolation)."""
    n = image.shape[0]
    positions = np.arange(0.0, n - 1 + 1e-9, factor)
    if float(factor).is_integer():
        return image[:: int(factor)].copy()
    i0 = np.minimum(np.floor(positions).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (positions - i0).astype(np.float32).reshape((-1,) + (1,) * (image.ndim - 1))
    return image[i0] * (1 - w) + image[i1] * w


def axis0_interpolation(k: int, factor: float, positions) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """Neighbours ``i0, i1`` and float32 weights ``w`` of output planes ``positions`` (plane ``j``
    at input position ``j / factor``) among ``k`` input planes: ``(1 − w)·in[i0] + w·in[i1]``.
    Planes beyond the last input plane repeat it. Shared by :func:`upsample_axis0` and the lazy
    upsampling of :class:`lucyd.isotropic.UpsampledZ` (the same values, plane by plane)."""
    x = np.asarray(positions) / factor
    i0 = np.minimum(np.floor(x).astype(int), k - 1)
    i1 = np.minimum(i0 + 1, k - 1)
    return i0, i1, np.clip(x - i0, 0, 1).astype(np.float32)


def upsample_axis0(planes: np.ndarray, factor: float, n: int) -> np.ndarray:
    """Linear re-interpolation of planes taken every ``factor`` px back onto ``n`` planes.

    Planes beyond the last acquired one repeat it (no extrapolation).
    """
    i0, i1, w = axis0_interpolation(planes.shape[0], factor, np.arange(n))
    w = w.reshape((-1,) + (1,) * (planes.ndim - 1))
    return (planes[i0] * (1 - w) + planes[i1] * w).astype(np.float32)


def degrade(
    gt,
    task: str,
    *,
    psf=None,
    photons: float | None = 5.0,
    read_noise: float = 0.5,
    background: float = 0.0,
    seed: Seed = None,
    low_photons: float | None = None,
    high_photons: float | None = None,
    z_factor: float = 4.0,
    axial_psf=None,
    axial_sigma: float | None = None,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate an acquisition of ``gt`` and return a ``(raw, target)`` training pair.

    Parameters
    ----------
    gt : array_like, (y, x) or (z, y, x)
        Ground truth in phantom units (non-negative), e.g. from :func:`lucyd.synth.phantom`.
    task : {"deconvolution", "denoising", "isotropic"}
        * ``"deconvolution"`` (Li et al. 2022, RLN recipe): ``raw = camera_noise(convolve(gt,
          psf, boundary="linear"), photons, read_noise, background)``, ``target = gt``.
        * ``"denoising"`` (Weigert et al. 2018, CARE): ``s = gt (*) psf`` (or ``gt`` when
          ``psf`` is None); ``raw = camera_noise(s, photons=low_photons)``; the target is
          in the same counts: ``low_photons * s + background`` (noiseless expectation) when
          ``high_photons`` is None, else a recording at ``high_photons`` (background scaled
          the same way) multiplied by ``low_photons / high_photons``. Raw and target thus
          have the same expected value and differ only in noise.
        * ``"isotropic"`` (Weigert et al. 2018, isotropic restoration): axis 0 is the axial
          axis (z in 3D; in 2D the image is an xz/yz-like slice). ``target = gt (*) psf``
          (``psf`` = a lateral-quality, isotropic PSF; ``gt`` itself when None, reflecting
          boundary). The raw is ``gt (*) axial_psf`` when given, else ``target`` blurred
          along axis 0 by a Gaussian of ``axial_sigma`` px (default ``z_factor / 2``); its
          axis 0 is sub-sampled every ``z_factor`` px, camera noise is applied to the
          acquired planes (skipped when ``photons`` is None) and the planes are linearly
          re-upsampled onto the original grid.
    psf : array_like, optional
        PSF with the same dimensionality as ``gt`` (centre at ``shape // 2``); required for
        ``"deconvolution"``. Normalised to sum 1.
    photons : float or None
        Expected photons per phantom unit (the RLN recipe's 5). ``None`` gives a noiseless
        ``raw`` in phantom units (deconvolution / isotropic only).
    read_noise : float
        Gaussian read-noise standard deviation, electrons (RLN recipe: 0.5).
    background : float
        Expected extra background photons per pixel added by the camera (the phantom has its
        own background in phantom units).
    seed : int, numpy Generator or None
        Noise seed.
    low_photons, high_photons : float, optional
        Denoising only: input photon scale (default ``photons``) and target photon scale
        (default None = noiseless target).
    z_factor : float
        Isotropic only: axial sub-sampling factor (>= 1; need not be an integer).
    axial_psf : array_like, optional
        Isotropic only: the anisotropic PSF of the acquisition (applied to ``gt``).
    axial_sigma : float, optional
        Isotropic only: sigma (px) of the Gaussian axial blur used when ``axial_psf`` is None.
    device : str
        Device for the FFT convolutions (``"auto"``, ``"cpu"``, ``"cuda"``).

    Returns
    -------
    raw, target : ndarray, float32, same shape as ``gt``
        ``raw`` in camera counts; ``target`` in phantom units (deconvolution, isotropic) or
        in the raw's counts (denoising).

    Raises
    ------
    InputError
        Unknown task, missing PSF, invalid parameters.
    """
    if task not in TASKS:
        raise InputError(f"task: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    img = as_image(gt, name="gt", dtype=np.float32)
    rng = _rng(seed)
    read_noise = as_number(read_noise, "read_noise", minimum=0.0)
    background = as_number(background, "background", minimum=0.0)
    if photons is not None:
        photons = as_number(photons, "photons", minimum=0.0, strict=True)

    if task == "deconvolution":
        if psf is None:
            raise InputError("psf: required for task 'deconvolution' (give a PSF array)")
        blurred = convolve(img, psf, boundary="linear", device=device)
        if photons is None:
            return blurred, img.copy()
        raw = camera_noise(blurred, photons=photons, background=background,
                           read_noise=read_noise, seed=rng)
        return raw, img.copy()

    if task == "denoising":
        low = photons if low_photons is None else as_number(low_photons, "low_photons", minimum=0.0, strict=True)
        if low is None:
            raise InputError("low_photons: the denoising task needs a photon count (photons or "
                             "low_photons)")
        blurred = img if psf is None else convolve(img, psf, boundary="linear", device=device)
        raw = camera_noise(blurred, photons=low, background=background,
                           read_noise=read_noise, seed=rng)
        if high_photons is None:
            target = (low * np.clip(blurred, 0, None) + background).astype(np.float32)
        else:
            high = as_number(high_photons, "high_photons", minimum=0.0, strict=True)
            if high <= low:
                raise InputError(f"high_photons: must exceed the input's photon count {low:g}, "
                                 f"got {high:g}")
            rec = camera_noise(blurred, photons=high, background=background * high / low,
                               read_noise=read_noise, seed=rng)
            target = (rec * np.float32(low / high)).astype(np.float32)
        return raw, target

    # isotropic
    factor = as_number(z_factor, "z_factor", minimum=1.0)
    n = img.shape[0]
    if n < 2 * factor:
        raise InputError(f"z_factor: {factor:g} leaves fewer than 2 planes along axis 0 "
                         f"(size {n}); use a smaller factor or a larger image")
    target = img.copy() if psf is None else convolve(img, psf, boundary="reflect", device=device)
    if axial_psf is not None:
        aniso = convolve(img, axial_psf, boundary="reflect", device=device)
    else:
        sigma = factor / 2 if axial_sigma is None else as_number(axial_sigma, "axial_sigma", minimum=0.0, strict=True)
        aniso = convolve(target, gaussian_axial_psf(sigma, img.ndim), boundary="reflect",
                         device=device)
    planes = subsample_axis0(aniso, factor)
    if photons is not None:
        planes = camera_noise(planes, photons=photons, background=background,
                              read_noise=read_noise, seed=rng)
    raw = upsample_axis0(planes, factor, n)
    return raw, target.astype(np.float32, copy=False)
