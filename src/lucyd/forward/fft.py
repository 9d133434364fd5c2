"""FFT building blocks shared by the forward model and the deconvolution engine.

Conventions: a kernel (PSF) of shape ``k`` has its centre at index ``k // 2`` along
each axis. Kernels are moved to the origin of a (padded) job array before their
real FFT is taken, so products in Fourier space are convolutions with no shift.
"""

from __future__ import annotations

import math
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


# ----------------------------------------------------------------------------- in-place workspace


def _pocketfft():
    """scipy's pocketfft binding, whose transforms take an ``out`` array (None if unavailable).

    Its r2c / c2r transforms work one line at a time through a private line buffer, so the
    output may alias the input when both lie in the same rows: this is what lets the real job
    and its half spectrum share one allocation (FFTW's padded in-place layout).
    """
    try:
        from scipy.fft._pocketfft import pypocketfft  # private: probed, with a fallback
    except ImportError:  # pragma: no cover - older or newer scipy layouts
        return None
    return pypocketfft if hasattr(pypocketfft, "r2c") and hasattr(pypocketfft, "c2r") else None


class FFTWorkspace:
    """A real job array and its half spectrum, transformed into each other in place.

    On the CPU both are views of **one** complex64 allocation of shape
    ``(..., n_last // 2 + 1)``: the real array is its float32 view with the last axis cut to
    ``n_last`` (rows padded by one or two floats, the layout of FFTW's in-place real
    transforms), transformed by scipy's pocketfft with ``out=`` the same memory and
    ``torch.get_num_threads()`` workers. One real-sized array is thus saved per job, and no
    array is allocated per transform (fresh allocations of a large job are mapped and
    page-faulted by the kernel every time: system CPU time). Elsewhere (CUDA) the two are
    separate torch tensors and ``torch.fft`` does the transforms.

    Attributes
    ----------
    shape : tuple of int
        The real job's shape.
    real : torch.Tensor
        float32 view of ``shape`` (strided on the CPU).
    spec : torch.Tensor
        complex64 half spectrum, ``shape[:-1] + (shape[-1] // 2 + 1,)``.
    """

    def __init__(self, shape: Sequence[int], device: torch.device | str = "cpu"):
        self.shape = tuple(int(n) for n in shape)
        self.device = torch.device(device)
        half = self.shape[:-1] + (self.shape[-1] // 2 + 1,)
        self._pf = _pocketfft() if self.device.type == "cpu" else None
        if self._pf is not None:
            self._spec_np = np.empty(half, np.complex64)
            self._real_np = self._spec_np.view(np.float32)[..., : self.shape[-1]]
            self.spec = torch.from_numpy(self._spec_np)
            self.real = torch.from_numpy(self._real_np)
        else:
            self.spec = torch.empty(half, dtype=torch.complex64, device=self.device)
            self.real = torch.empty(self.shape, dtype=torch.float32, device=self.device)

    @staticmethod
    def nbytes(shape: Sequence[int], device: torch.device | str = "cpu") -> int:
        """Bytes a workspace of ``shape`` holds (what :func:`estimate_memory` counts)."""
        shape = tuple(int(n) for n in shape)
        half = 8 * math.prod(shape[:-1]) * (shape[-1] // 2 + 1)
        shared = torch.device(device).type == "cpu" and _pocketfft() is not None
        return half if shared else half + 4 * math.prod(shape)

    def forward(self, src: torch.Tensor | None = None) -> torch.Tensor:
        """``spec ← rfftn(src)`` (unnormalised); ``src`` defaults to :attr:`real` (in place)."""
        src = self.real if src is None else src
        if self._pf is None:
            return torch.fft.rfftn(src, s=self.shape, out=self.spec)
        array = self._real_np if src is self.real else src.detach().numpy()
        axes = tuple(range(len(self.shape)))
        self._pf.r2c(array, axes, True, 0, self._spec_np, torch.get_num_threads())
        return self.spec

    def inverse(self) -> torch.Tensor:
        """``real ← irfftn(spec)`` (normalised by 1/N); :attr:`spec` is overwritten."""
        if self._pf is None:
            return torch.fft.irfftn(self.spec, s=self.shape, out=self.real)
        ndim, threads = len(self.shape), torch.get_num_threads()
        if ndim > 1:  # complex transforms of the leading axes, in place, 1/N of those axes
            self._pf.c2c(self._spec_np, tuple(range(ndim - 1)), False, 2, self._spec_np, threads)
        self._pf.c2r(self._spec_np, (ndim - 1,), self.shape[-1], False, 2, self._real_np, threads)
        return self.real

    def place_kernel(self, kernel: np.ndarray) -> torch.Tensor:
        """Write ``kernel`` (centre ``k // 2``) at the origin of :attr:`real`, zero elsewhere."""
        if any(k > n for k, n in zip(kernel.shape, self.shape, strict=True)):
            raise ValueError(f"kernel {kernel.shape} larger than job {self.shape}")
        self.real.zero_()
        index = np.ix_(*[(np.arange(k) - k // 2) % n for k, n in zip(kernel.shape, self.shape, strict=True)])
        index = tuple(torch.as_tensor(i, device=self.device) for i in index)
        self.real.index_put_(index, to_tensor(kernel, self.device))
        return self.real

    def release(self) -> None:
        """Drop the buffers (their memory is returned once no view of them is left)."""
        self.spec = self.real = self._spec_np = self._real_np = None


#: a kernel whose mirror image differs by at most this fraction of its peak counts as symmetric
SYMMETRY_TOLERANCE = 1e-6


def is_point_symmetric(kernel: np.ndarray, tol: float = SYMMETRY_TOLERANCE) -> bool:
    """Whether ``kernel`` (odd-sized, centre ``k // 2``) equals its mirror image through the centre.

    Such a kernel has a real OTF. Born–Wolf and Gibson–Lanni PSFs without aberrations are
    symmetric; measured ones are not.
    """
    kernel = np.asarray(kernel)
    if any(k % 2 == 0 for k in kernel.shape):
        return False
    peak = float(np.abs(kernel).max())
    return bool(np.abs(kernel - np.flip(kernel)).max() <= tol * peak)


def kernel_spectrum(kernel: np.ndarray, workspace: FFTWorkspace) -> torch.Tensor:
    """Half-spectrum OTF of ``kernel`` on ``workspace``'s job, computed in the workspace.

    A point-symmetric kernel (:func:`is_point_symmetric`) is symmetrised exactly and its OTF,
    being real, is returned as float32 (half the memory of a complex one); otherwise a
    complex64 tensor. Apply either with :func:`multiply_spectrum`.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    symmetric = is_point_symmetric(kernel)
    if symmetric:
        kernel = 0.5 * (kernel + np.flip(kernel))
    workspace.place_kernel(kernel)
    spec = workspace.forward()
    return spec.real.contiguous() if symmetric else spec.clone()


def multiply_spectrum(spec: torch.Tensor, otf: torch.Tensor, conjugate: bool = False) -> torch.Tensor:
    """``spec ← spec · otf`` (or ``· conj(otf)``) in place, for a real or complex ``otf``.

    The conjugate product, the adjoint of a convolution, is taken as ``conj(conj(spec) · otf)``
    with the signs of the imaginary parts flipped in place: no conjugated copy of the OTF
    (a lazily conjugated view made the product 2.5× slower).
    """
    if not otf.is_complex():  # real (symmetric kernel): its own conjugate
        torch.view_as_real(spec).mul_(otf.unsqueeze(-1))
        return spec
    if not conjugate:
        return spec.mul_(otf)
    imag = torch.view_as_real(spec)[..., 1]
    imag.neg_()
    spec.mul_(otf)
    imag.neg_()
    return spec
