"""m-rBCR: multi-stage residual BCR network (Li, Kudryashev & Yakimovich, ECCV 2024), extended.

Background
----------
Beylkin, Coifman & Rokhlin (1991) showed that many operators (Calderon-Zygmund and
pseudo-differential operators, hence blur and its regularised inverses) are compressed in
the *non-standard form*: on each wavelet scale ``l`` the operator acts through a few
*local* operators ``A_l, B_l, C_l`` on that scale's detail coefficients ``d_l`` and
average (approximation) coefficients ``s_l``, and the results are recombined with the
inverse transform. BCR-Net (Fan & Ying 2019) made these local operators learnable
(small convolutions) on every scale. m-rBCR (Li et al. 2024) stacks such blocks into a
multi-stage residual network for microscopy deconvolution; its released code is 2D only,
takes a fixed 128x128 input, uses three scales (full, /2, /4) and has ~237 k weights.

This implementation
-------------------
* 2D and 3D; any size (sizes that are not multiples of ``size_multiple = 2**levels`` are
  edge-padded internally and cropped back);
* an exactly invertible orthogonal separable N-D wavelet transform
  (:mod:`lucyd.nets.wavelets`: Haar or Daubechies-4, periodic);
* each stage (:class:`BCRStage`) decomposes its ``C``-channel feature map over ``levels``
  scales; on every scale ``l >= 1`` one learnable local operator (:class:`LocalOperator`:
  1x1 convolution mixing the ``2**n`` sub-bands x ``C`` channels, ``k``-wide convolution,
  1x1 convolution back, ReLUs) maps the stacked ``(s_l, d_l)`` to ``(s_hat_l, d_hat_l)``
  -- the non-standard form's ``A_l d_l + B_l s_l`` and ``C_l d_l`` in one operator; a
  local operator also acts at full resolution (scale 0). The outputs are recombined from
  the coarsest scale up (``r_{l-1} = W^-1 (r_l + s_hat_l, d_hat_l)``) and summed with the
  full-resolution term, and the stage is residual (``u + ...``);
* head convolution (input -> ``C`` channels), ``stages`` stages, tail convolution
  (``C`` -> output) and a global residual (the output adds the input image);
* optional PSF conditioning (``psf_shape``): a *learnable Wiener pre-deconvolution* with
  the given PSF is the first stage. The raw input is Wiener-deconvolved,
  ``F^-1[conj(H) X / (|H|^2 + lambda)]`` (edge-padded by half the PSF size, ``H`` the OTF of
  the PSF at the padded size, ``lambda = exp(log_lambda)`` learned, initial
  ``wiener_lambda``), and the result is concatenated to the input as extra channels for
  the head convolution. The PSF is a buffer (saved with the weights) set with
  :meth:`MRBCR.set_psf`, or passed per call as ``forward(x, psf=...)``.

With the defaults (16 channels, hidden width 32, 2 levels, 4 stages, Haar, kernel 3) the
network has 149,105 parameters in 2D (+145 with the PSF path) and 404,145 in 3D (+433 with
the PSF path).

Loss (:func:`rbcr_loss`): MSE + 0.5 * L1 of the difference of FFT magnitudes, summed over
three scales (full, /2, /4 by average pooling of prediction and target), as m-rBCR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lucyd.errors import InputError
from lucyd.forward.fft import centre_crop_or_pad
from lucyd.nets.layers import check_ndim
from lucyd.nets.registry import NetworkSpec, register_spec
from lucyd.nets.wavelets import crop_to, dwt, idwt, pad_to_multiple, wavelet_filters
from lucyd.validation import as_psf

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def fft_magnitude_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the FFT magnitudes (over the spatial axes) of two tensors."""
    dims = tuple(range(2, pred.ndim))
    return (
        (torch.fft.rfftn(pred, dim=dims).abs() - torch.fft.rfftn(target, dim=dims).abs())
        .abs()
        .mean()
    )


def rbcr_loss(
    pred: torch.Tensor, target: torch.Tensor, x: torch.Tensor | None = None, scales: int = 3
) -> torch.Tensor:
    """m-rBCR loss: ``sum_s MSE(P_s pred, P_s y) + 0.5 * L1(|F P_s pred| - |F P_s y|)``.

    ``P_s`` is ``2**s`` average pooling, ``s = 0 .. scales - 1`` (full, /2, /4; Li et al.
    2024 compute the terms on their multi-scale outputs, we on the pooled full-size output).
    Scales at which an axis would shrink below 2 voxels are skipped.
    """
    pred = pred[:, : target.shape[1]]
    ndim = pred.ndim - 2
    pool = F.avg_pool2d if ndim == 2 else F.avg_pool3d
    total = pred.new_zeros(())
    for s in range(int(scales)):
        if s > 0:
            if min(pred.shape[2:]) < 4:
                break
            pred, target = pool(pred, 2), pool(target, 2)
        total = total + ((pred - target) ** 2).mean() + 0.5 * fft_magnitude_l1(pred, target)
    return total


def rbcr_train_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """:func:`rbcr_loss` in the trainer's form ``(net, x, y) -> (loss, prediction)``."""
    out = net(x)
    return rbcr_loss(out, y, x), out[:, :1]


def _conv(ndim: int, cin: int, cout: int, k: int) -> nn.Module:
    return _CONV[ndim](cin, cout, k, padding=k // 2)


class LocalOperator(nn.Module):
    """Learnable local operator on one scale: 1x1 conv -> ReLU -> k conv -> ReLU -> 1x1 conv."""

    def __init__(self, ndim: int, channels: int, hidden: int, k: int):
        super().__init__()
        self.net = nn.Sequential(
            _conv(ndim, channels, hidden, 1),
            nn.ReLU(),
            _conv(ndim, hidden, hidden, k),
            nn.ReLU(),
            _conv(ndim, hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BCRStage(nn.Module):
    """One residual BCR stage: local operators on the wavelet scales of a feature map.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    channels : int
        Feature channels ``C``.
    hidden : int
        Width inside each local operator.
    levels : int
        Wavelet scales below full resolution.
    kernel_size : int
        Width of the spatial convolution of each local operator.
    wavelet : {"haar", "db2"}
        Orthogonal wavelet.
    """

    def __init__(
        self, ndim: int, channels: int, hidden: int, levels: int, kernel_size: int, wavelet: str
    ):
        super().__init__()
        self.channels, self.levels, self.wavelet = channels, levels, wavelet
        nb = 2**ndim
        self.local = nn.ModuleList(
            [LocalOperator(ndim, channels, hidden, kernel_size)]
            + [LocalOperator(ndim, nb * channels, hidden, kernel_size) for _ in range(levels)]
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        c = self.channels
        out = self.local[0](u)
        s = u
        mapped = []
        for level in range(1, self.levels + 1):
            coeffs = dwt(s, self.wavelet)  # (s_l, d_l) stacked on channels
            mapped.append(self.local[level](coeffs))
            s = coeffs[:, :c]
        r = None
        for level in range(self.levels, 0, -1):
            m = mapped[level - 1]
            if r is not None:
                m = torch.cat((m[:, :c] + r, m[:, c:]), dim=1)
            r = idwt(m, self.wavelet)
        if r is not None:
            out = out + r
        return u + out


def _otf(psf: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """rfft of a batch of centred PSFs ``(B, *P)`` embedded (centre at the origin) in ``shape``."""
    ndim = len(shape)
    crop = []
    for p, n in zip(psf.shape[1:], shape, strict=True):
        if p > n:  # centre crop (centre index p // 2 -> n // 2)
            start = p // 2 - n // 2
            crop.append(slice(start, start + n))
        else:
            crop.append(slice(None))
    psf = psf[(slice(None), *crop)]
    psf = psf / psf.sum(dim=tuple(range(1, ndim + 1)), keepdim=True)
    pad: list[int] = []
    for p, n in zip(reversed(psf.shape[1:]), reversed(tuple(shape)), strict=True):
        pad += [0, n - p]
    full = F.pad(psf, pad)
    full = torch.roll(
        full, shifts=tuple(-(p // 2) for p in psf.shape[1:]), dims=tuple(range(1, ndim + 1))
    )
    return torch.fft.rfftn(full, dim=tuple(range(1, ndim + 1)))


def wiener_deconvolve(x: torch.Tensor, psf: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Wiener deconvolution ``F^-1[conj(H) X / (|H|^2 + lam)]`` of ``(B, C, *S)``.

    ``psf`` is ``(*P)`` or ``(B, *P)`` (normalised to sum 1 here). The image is edge-padded
    by ``P // 2`` on every side before the FFT to limit wrap-around artefacts, and cropped back.
    """
    ndim = x.ndim - 2
    if psf.ndim == ndim:
        psf = psf.unsqueeze(0)
    if psf.ndim != ndim + 1:
        raise InputError(
            f"psf: expected {ndim} or {ndim + 1} dimensions, got shape {tuple(psf.shape)}"
        )
    psf = psf.to(dtype=x.dtype, device=x.device)
    margins = [int(p) // 2 for p in psf.shape[1:]]
    pad: list[int] = []
    for m in reversed(margins):
        pad += [m, m]
    xp = F.pad(x, pad, mode="replicate") if any(margins) else x
    shape = tuple(xp.shape[2:])
    dims = tuple(range(2, ndim + 2))
    otf = _otf(psf, shape).unsqueeze(1)  # (B or 1, 1, *F)
    filt = otf.conj() / (otf.abs() ** 2 + lam)
    y = torch.fft.irfftn(torch.fft.rfftn(xp, dim=dims) * filt, s=shape, dim=dims)
    return y[
        (
            slice(None),
            slice(None),
            *(slice(m, m + s) for m, s in zip(margins, x.shape[2:], strict=True)),
        )
    ]


class MRBCR(nn.Module):
    """m-rBCR (Li, Kudryashev & Yakimovich 2024) in 2D / 3D, any size, optional PSF input.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    in_channels : int
        Input channels (1).
    out_channels : int or None
        Output channels; ``None`` = ``in_channels``.
    channels : int
        Feature channels of every stage (16).
    hidden : int
        Width inside the local operators (32).
    levels : int
        Wavelet scales below full resolution (2: full, /2, /4 as m-rBCR).
    stages : int
        Residual BCR stages (4).
    kernel_size : int
        Spatial width of the local operators and of the head / tail convolutions (3).
    wavelet : {"haar", "db2"}
        Orthogonal wavelet of the decomposition.
    psf_shape : sequence of int or None
        Enable the learnable Wiener pre-deconvolution with a PSF of this shape (stored as
        the buffer ``psf``; a centred delta until :meth:`set_psf` is called).
    wiener_lambda : float
        Initial Wiener regularisation (learned, relative to ``|H(0)|^2 = 1``).

    Notes
    -----
    ``size_multiple = 2**levels``. Training recipe: :data:`SPEC` (Adam 1e-3,
    batch 64, loss :func:`rbcr_loss`).
    """

    def __init__(
        self,
        ndim: int = 3,
        in_channels: int = 1,
        out_channels: int | None = None,
        channels: int = 16,
        hidden: int = 32,
        levels: int = 2,
        stages: int = 4,
        kernel_size: int = 3,
        wavelet: str = "haar",
        psf_shape: Sequence[int] | None = None,
        wiener_lambda: float = 1e-2,
    ):
        super().__init__()
        ndim = check_ndim(ndim)
        out_channels = int(in_channels if out_channels is None else out_channels)
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise InputError(f"kernel_size: must be a positive odd integer, got {kernel_size!r}")
        if min(in_channels, out_channels, channels, hidden, stages) < 1 or levels < 0:
            raise InputError("rbcr: channels, hidden, stages must be >= 1 and levels >= 0")
        wavelet_filters(wavelet)  # validates the name
        self.ndim, self.in_channels, self.out_channels = ndim, int(in_channels), out_channels
        self.channels, self.hidden, self.levels, self.stages = (
            int(channels),
            int(hidden),
            int(levels),
            int(stages),
        )
        self.kernel_size, self.wavelet = k, str(wavelet).lower()
        self.size_multiple = 2**self.levels
        self.residual = self.in_channels == self.out_channels
        if psf_shape is not None:
            psf_shape = tuple(int(p) for p in psf_shape)
            if len(psf_shape) != ndim or min(psf_shape) < 1:
                raise InputError(f"psf_shape: expected {ndim} positive sizes, got {psf_shape}")
            if not wiener_lambda > 0:
                raise InputError(f"wiener_lambda: must be > 0, got {wiener_lambda!r}")
            delta = torch.zeros(psf_shape)
            delta[tuple(p // 2 for p in psf_shape)] = 1.0
            self.register_buffer("psf", delta)
            self.log_lambda = nn.Parameter(torch.tensor(math.log(float(wiener_lambda))))
        else:
            self.psf = None
            self.log_lambda = None
        self.psf_shape = psf_shape
        head_in = self.in_channels * (2 if psf_shape is not None else 1)
        self.head = _conv(ndim, head_in, self.channels, k)
        self.body = nn.Sequential(
            *[
                BCRStage(ndim, self.channels, self.hidden, self.levels, k, self.wavelet)
                for _ in range(self.stages)
            ]
        )
        self.tail = _conv(ndim, self.channels, out_channels, k)

    def set_psf(self, psf) -> None:
        """Store the PSF used by the Wiener pre-deconvolution (validated, normalised to sum 1).

        The PSF is centre-cropped or zero-padded to ``psf_shape`` (centre index ``k // 2``).
        """
        if self.psf_shape is None:
            raise InputError(
                "psf: this rbcr network was built without psf_shape; rebuild with psf_shape="
            )
        arr = psf.detach().cpu().numpy() if isinstance(psf, torch.Tensor) else psf
        arr = as_psf(arr, image_ndim=self.ndim)
        arr = centre_crop_or_pad(arr, self.psf_shape)
        arr = arr / arr.sum()
        with torch.no_grad():
            self.psf.copy_(torch.as_tensor(np.ascontiguousarray(arr), dtype=self.psf.dtype))

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Conservative extent (voxels per axis) of an output voxel's receptive field.

        One-sided reach per stage: the largest over scales ``l`` of
        ``(L - 1)(2**l - 1) + (k // 2) 2**l`` -- a level-``l`` coefficient spans
        ``(L - 1)(2**l - 1) + 1`` voxels for filters of length ``L`` (Haar: its ``2**l`` block),
        and the local ``k``-wide convolution reaches ``k // 2`` coefficients at jump ``2**l``
        -- summed over stages plus the head and tail convolutions. The PSF half-size is added
        when the Wiener path is on (the Wiener inverse filter is in principle global; its
        effective support is of the order of the PSF's).
        """
        taps = len(wavelet_filters(self.wavelet)[0])
        half = self.kernel_size // 2
        stage = max(
            (taps - 1) * (2**lv - 1) + half * 2**lv
            for lv in range(self.levels + 1)
            for lv in range(self.levels + 1)
        )
        radius = 2 * half + self.stages * stage
        extents = []
        for i in range(self.ndim):
            extra = (self.psf_shape[i] // 2) if self.psf_shape is not None else 0
            extents.append(2 * (radius + extra) + 1)
        return tuple(extents)

    def forward(self, x: torch.Tensor, psf: torch.Tensor | None = None) -> torch.Tensor:
        """Restore ``x`` ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.

        ``psf`` (``(*P)`` or ``(B, *P)``) overrides the stored PSF for this call.
        """
        x, shape = pad_to_multiple(x, self.size_multiple)
        inp = x
        if self.psf_shape is not None:
            kernel = self.psf if psf is None else psf
            inp = torch.cat((x, wiener_deconvolve(x, kernel, self.log_lambda.exp())), dim=1)
        elif psf is not None:
            raise InputError(
                "psf: this rbcr network was built without psf_shape; rebuild with psf_shape="
            )
        y = self.tail(self.body(self.head(inp)))
        if self.residual:
            y = y + x
        return crop_to(y, shape)


SPEC = register_spec(
    NetworkSpec(
        name="rbcr",
        network=MRBCR,
        # Li et al. 2024: Adam 1e-3, batch 64 (2D), constant rate; percentile normalisation
        # instead of per-image min-max
        recipe={
            "loss": "rbcr",
            "lr": 1e-3,
            "schedule": "constant",
            "batch": 64,
            "norm_percentiles": (1.0, 99.8),
            "augment": True,
        },
        losses={"rbcr": rbcr_train_loss},
        size_multiple=4,  # 2**levels with the default 2 levels
        reference="Li, Kudryashev & Yakimovich, ECCV (2024)",
        doi="10.48550/arXiv.2407.03239",
    )
)
