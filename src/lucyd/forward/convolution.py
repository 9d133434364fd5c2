"""Image formation: convolution of an object with a PSF, with a choice of boundary.

``boundary`` says what the object is assumed to be outside the field of view:

* ``"circulant"`` - periodic (the FFT's natural assumption; wraps light across edges),
* ``"reflect"`` - mirrored about the edge (scipy.ndimage's ``mode="reflect"``: d c b a | a b c d),
* ``"linear"`` - zero; a full linear convolution on a zero-padded job, cropped to the
  input size (same as ``scipy.signal.fftconvolve(image, psf, mode="same")`` for odd PSFs).
"""

from __future__ import annotations

import numpy as np
import torch

from lucyd.boundaries import FORWARD_BOUNDARIES, forward_boundary
from lucyd.device import resolve_device
from lucyd.forward.fft import (
    centre_crop_or_pad,
    fast_shape,
    kernel_rfft,
    linear_job_shape,
    to_tensor,
)
from lucyd.validation import as_image, as_psf

#: lucyd.forward's boundary names (defined once, in lucyd.boundaries)
BOUNDARIES = FORWARD_BOUNDARIES


def _reflect_indices(n: int, before: int, after: int) -> np.ndarray:
    """Indices that pad an axis of length n by half-sample-symmetric reflection."""
    idx = np.arange(-before, n + after)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - 1 - idx, idx)


def convolve(
    image,
    psf,
    *,
    boundary: str = "linear",
    normalize_psf: bool = True,
    device: str | torch.device | None = "auto",
):
    """Convolve ``image`` with ``psf`` by FFT (torch, CPU or CUDA); same-size output.

    Parameters
    ----------
    image : ndarray or Tensor, (y, x) or (z, y, x)
        Object (or any image) to blur.
    psf : ndarray or Tensor
        Kernel with the same dimensionality, centred at ``shape // 2``; any size
        (larger than the image is allowed for ``"linear"``).
    boundary : {"linear", "reflect", "circulant"}
        Assumption about the object outside the field of view (see module docstring;
        ``"zero"``, deconvolution's name of ``"linear"``, is accepted: :mod:`lucyd.boundaries`).
    normalize_psf : bool
        Scale the PSF to sum 1 (the physical convention: blur conserves flux).
    device : str or torch.device
        ``"auto"`` uses CUDA when present.

    Returns
    -------
    ndarray (float32) when ``image`` is a numpy array, else a Tensor on ``device``.
    """
    boundary = forward_boundary(boundary)  # also accepts the deconv spelling "zero"
    return_numpy = not isinstance(image, torch.Tensor)
    img = as_image(image, name="image", dtype=np.float32)
    kernel = as_psf(psf, image_ndim=img.ndim, normalize=normalize_psf)
    dev = resolve_device(device)
    shape = img.shape

    if boundary == "circulant":
        kernel = centre_crop_or_pad(kernel, shape)
        job = to_tensor(img, dev)
        job_shape = shape
        crop = tuple(slice(0, n) for n in shape)
    elif boundary == "reflect":
        pads = [(k // 2, k - 1 - k // 2) for k in kernel.shape]
        padded = img
        for axis, (lo, hi) in enumerate(pads):
            padded = np.take(padded, _reflect_indices(padded.shape[axis], lo, hi), axis=axis)
        job_shape = fast_shape(padded.shape)
        job = torch.zeros(job_shape, dtype=torch.float32, device=dev)
        job[tuple(slice(0, n) for n in padded.shape)] = to_tensor(padded, dev)
        crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, shape, strict=True))
    else:  # linear: zeros outside; the job holds the full convolution without wrap-around
        job_shape = linear_job_shape(shape, kernel.shape)
        job = torch.zeros(job_shape, dtype=torch.float32, device=dev)
        job[tuple(slice(0, n) for n in shape)] = to_tensor(img, dev)
        crop = tuple(slice(0, n) for n in shape)

    otf = kernel_rfft(to_tensor(kernel, dev), job_shape)
    out = torch.fft.irfftn(torch.fft.rfftn(job, s=job_shape) * otf, s=job_shape)[crop]
    return out.cpu().numpy().astype(np.float32, copy=False) if return_numpy else out
