"""FFT building blocks shared by the forward model and the deconvolution engine.

Conventions: a kernel (PSF) of shape ``k`` has its centre at index ``k // 2`` along
each axis. Kernels are moved to the origin of a (padded) job array before their
real FFT is taken, so products in Fourier space are convolutions with no shift.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
import torch


def fast_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Smallest shape >= ``shape`` whose sizes factor into 2, 3, 5 (and 7): fast FFTs."""
    return tuple(int(scipy.fft.next_fast_len(int(n), real=True)) for n in shape)


def linear_job_shape(image_shape: Sequence[int], kernel_shape: Sequence[int], fast: bool = True) -> tuple[int, ...]:
    """Shape of a job that holds a full (non-circulant) linear convolution: image + kernel - 1."""
    shape = tuple(int(n) + int(k) - 1 for n, k in zip(image_shape, kernel_shape, strict=True))
    return fast_shape(shape) if fast else shape


def centre_crop_or_pad(kernel: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Crop or zero-pad ``kernel`` to ``shape`` keeping its centre (index ``k // 2``) at ``n // 2``."""
    kernel = np.asarray(kernel)
    out = np.zeros(tuple(shape), dtype=kernel.dtype)
    src, dst = [], []
    for k, n in zip(kernel.shape, shape, strict=True):
        ck, cn = k // 2, n // 2
        lo = min(ck, cn)  # extent kept on the low side of the centre
        hi = min(k - ck, n - cn)  # extent kept on the high side (centre included)
        src.append(slice(ck - lo, ck + hi))
        dst.append(slice(cn - lo, cn + hi))
    out[tuple(dst)] = kernel[tuple(src)]
    return out


def kernel_to_origin(kernel: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Embed ``kernel`` in a zero array of ``shape`` with its centre at index 0 (circularly).

    ``shape`` must be at least the kernel's size along every axis.
    """
    shape = tuple(int(n) for n in shape)
    if any(k > n for k, n in zip(kernel.shape, shape, strict=True)):
        raise ValueError(f"kernel {tuple(kernel.shape)} larger than job {shape}")
    out = torch.zeros(shape, dtype=kernel.dtype, device=kernel.device)
    out[tuple(slice(0, k) for k in kernel.shape)] = kernel
    return torch.roll(out, shifts=tuple(-(k // 2) for k in kernel.shape), dims=tuple(range(kernel.ndim)))


def kernel_rfft(kernel: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Real FFT (``rfftn``) of ``kernel`` placed at the origin of a job of ``shape``."""
    return torch.fft.rfftn(kernel_to_origin(kernel, shape), s=tuple(shape))


def fft_convolve(x: torch.Tensor, kernel_ft: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """Circular convolution of ``x`` (already of the job shape) with a precomputed ``kernel_rfft``."""
    shape = tuple(x.shape) if shape is None else tuple(shape)
    return torch.fft.irfftn(torch.fft.rfftn(x, s=shape) * kernel_ft, s=shape)


def to_tensor(array, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy array / tensor -> tensor on ``device`` (no copy when already there)."""
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)
