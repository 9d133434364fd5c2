"""Building blocks shared by lucyd's networks, for 2D and 3D alike.

Each factory returns the ``torch.nn`` layer of the right dimensionality, so a network
is written once with ``ndim`` as a parameter (2 for (y, x) images, 3 for (z, y, x)
volumes). Defaults follow the Keras / TensorFlow conventions of the reference
implementations the networks port (e.g. Li et al., "Incorporating the image formation
process into deep learning improves network performance", Nature Methods 19, 1427–1437,
2022 — RLN): "same" padding, optional bias, batch normalisation with momentum 0.99
(PyTorch's ``momentum=0.01``) and epsilon 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lucyd.errors import InputError

#: Keras / TF1 ``batch_normalization`` defaults, expressed in PyTorch's convention
KERAS_BN_MOMENTUM = 0.01
KERAS_BN_EPS = 1e-3


def check_ndim(ndim: int) -> int:
    """Return ``ndim`` as int if it is 2 or 3, else raise :class:`InputError`."""
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise InputError(f"ndim: expected 2 or 3, got {ndim!r}")
    return int(ndim)


def conv(
    ndim: int,
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    *,
    bias: bool = False,
    stride: int = 1,
    padding: str | int = "same",
) -> nn.Module:
    """A 2D or 3D convolution with "same" padding by default (odd kernels).

    Parameters
    ----------
    ndim : int
        2 or 3 spatial dimensions.
    in_ch, out_ch : int
        Input and output channels.
    kernel_size : int
        Cubic (square) kernel edge.
    bias : bool
        Whether the convolution has a bias (RLN's convolutions do not).
    stride : int
        Stride; with ``stride > 1`` give an explicit integer ``padding``.
    padding : "same" or int
        Padding, "same" keeps the size for ``stride == 1``.
    """
    cls = {2: nn.Conv2d, 3: nn.Conv3d}[check_ndim(ndim)]
    if stride != 1 and padding == "same":
        padding = kernel_size // 2
    return cls(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias)


def conv_transpose(
    ndim: int, in_ch: int, out_ch: int, kernel_size: int = 2, stride: int = 2, *, bias: bool = False
) -> nn.Module:
    """A 2D or 3D transposed convolution (default: 2-wide kernel, stride 2, exact ×2 upsampling)."""
    cls = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[check_ndim(ndim)]
    return cls(in_ch, out_ch, kernel_size, stride=stride, bias=bias)


def batch_norm(
    ndim: int, channels: int, *, momentum: float = KERAS_BN_MOMENTUM, eps: float = KERAS_BN_EPS
) -> nn.Module:
    """Batch normalisation with affine parameters (Keras defaults: momentum 0.99, eps 1e-3)."""
    cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[check_ndim(ndim)]
    return cls(channels, eps=eps, momentum=momentum)


def avg_pool(ndim: int, factor: int = 2) -> nn.Module:
    """Average pooling by ``factor`` along every spatial axis (no padding)."""
    cls = {2: nn.AvgPool2d, 3: nn.AvgPool3d}[check_ndim(ndim)]
    return cls(factor, stride=factor)


def max_pool(ndim: int, factor: int = 2) -> nn.Module:
    """Max pooling by ``factor`` along every spatial axis (no padding)."""
    cls = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[check_ndim(ndim)]
    return cls(factor, stride=factor)


def upsample(ndim: int, factor: int = 2, mode: str = "nearest") -> nn.Module:
    """Upsampling by ``factor`` (nearest by default, as in CARE's U-Net)."""
    check_ndim(ndim)
    return nn.Upsample(scale_factor=factor, mode=mode)


def global_avg_pool(ndim: int) -> nn.Module:
    """Global average pooling to one voxel per channel (channel attention in RCAN)."""
    cls = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[check_ndim(ndim)]
    return cls(1)


@torch.no_grad()
def truncated_normal_(
    weight: torch.Tensor, std: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``weight`` with N(0, std²) truncated at ±2 std (TensorFlow's ``truncated_normal``)."""
    return nn.init.trunc_normal_(
        weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std, generator=generator
    )


def gaussian_kernel(size: int, sigma: float, ndim: int) -> np.ndarray:
    """A ``size``-wide isotropic Gaussian kernel in ``ndim`` dimensions, peak 1.

    The kernel is normalised to its maximum (not its sum), as in RLN's reference
    initialisation (Li et al. 2022).
    """
    check_ndim(ndim)
    r = np.arange(size, dtype=np.float64) - size // 2
    grids = np.meshgrid(*([r] * ndim), indexing="ij")
    g = np.exp(-sum(c**2 for c in grids) / (2.0 * sigma**2))
    return (g / g.max()).astype(np.float32)


def receptive_field_probe(
    net: nn.Module, ndim: int, size: int = 64, channels_in: int = 1
) -> tuple[int, ...]:
    """Measure a network's receptive-field half-width per axis with a gradient probe.

    Runs ``net`` in eval mode on a random positive input of edge ``size``, back-propagates
    from the central output voxel and returns, per axis, the largest distance from the
    centre at which the gradient with respect to the input is non-zero. Networks with
    global operations (e.g. channel attention) report the whole field.
    """
    check_ndim(ndim)
    was_training = net.training
    net.eval()
    try:
        param = next(net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((1, channels_in) + (size,) * ndim, generator=gen, dtype=dtype).to(device)
        x = (x + 0.1).requires_grad_(True)
        out = net(x)
        centre = (0, 0) + (size // 2,) * ndim
        out[centre].backward()
        grad = x.grad.detach().abs().sum(dim=(0, 1)).cpu().numpy()
    finally:
        net.train(was_training)
    nz = np.argwhere(grad > 0)
    if nz.size == 0:
        return (0,) * ndim
    half = np.maximum(np.abs(nz - size // 2).max(axis=0), 0)
    return tuple(int(h) for h in half)


def fan_in(weight: torch.Tensor) -> int:
    """Number of inputs of one output unit of a conv weight (in_ch × kernel volume)."""
    return int(weight.shape[1] * math.prod(weight.shape[2:]))


@torch.no_grad()
def fold_batch_norm(net: nn.Module) -> int:
    """Fold eval-mode batch norms into the convolutions before them, in place (for inference).

    Every submodule with a ``conv`` (convolution or transposed convolution) followed in its
    forward by a ``bn`` (batch norm with running statistics) — RLN's and DDN's conv–BN blocks —
    gets ``W' = W · γ/√(σ² + ε)`` (per output channel) and ``b' = (b − μ) · γ/√(σ² + ε) + β``,
    and its ``bn`` becomes an identity. In eval mode the output is unchanged up to float
    round-off and one pass over the data is saved per layer. The folded network must not be
    trained further (its batch norms are gone).

    Returns
    -------
    int
        The number of folded batch norms.
    """
    n = 0
    for module in net.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if not (
            isinstance(conv, nn.modules.conv._ConvNd)
            and isinstance(bn, nn.modules.batchnorm._BatchNorm)
            and bn.track_running_stats
            and bn.running_mean is not None
            and conv.groups == 1
        ):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else (
            1.0 / torch.sqrt(bn.running_var + bn.eps)
        )
        shift = bn.bias if bn.affine else torch.zeros_like(scale)
        out_axis = 1 if conv.transposed else 0
        shape = [1] * conv.weight.ndim
        shape[out_axis] = -1
        conv.weight.mul_(scale.reshape(shape))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
        module.bn = nn.Identity()
        n += 1
    return n


def _mkldnn_forward(self, input: torch.Tensor, weight: torch.Tensor, bias):
    """Convolution through oneDNN whenever it can run there (CPU, float32, zero padding).

    PyTorch sends a batch-of-one 3D convolution with few input channels (``N·C·D·H ≤ 20480``,
    e.g. RLN's 1-channel layers on a 64×256×256 volume) to its naive im2col kernel, which on a
    2-core CPU was 2.2× slower than oneDNN on the same layer; the result is the same
    convolution (to float32 round-off).
    """
    if (
        input.device.type == "cpu"
        and input.dtype == torch.float32
        and self.padding_mode == "zeros"
        and (self.padding != "same"
             or all(d * (k - 1) % 2 == 0 for d, k in zip(self.dilation, self.kernel_size, strict=True)))
        and self.padding != "valid"
        and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))
        and torch.backends.mkldnn.is_available()
        and not torch.compiler.is_compiling()  # inductor lowers convolutions itself
    ):
        if self.padding == "same":  # odd kernels: symmetric
            padding = [d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel_size, strict=True)]
        else:
            padding = list(self.padding)
        return torch.ops.aten.mkldnn_convolution(
            input, weight, bias, padding, list(self.stride), list(self.dilation), self.groups
        )
    return type(self).__mro__[1]._conv_forward(self, input, weight, bias)


class _OneDNNConv2d(nn.Conv2d):
    _conv_forward = _mkldnn_forward


class _OneDNNConv3d(nn.Conv3d):
    _conv_forward = _mkldnn_forward


def optimise_for_inference(net: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Make a network faster for inference on the CPU, in place; outputs are unchanged.

    1. Batch norms after convolutions are folded into them (:func:`fold_batch_norm`).
    2. Convolutions run through oneDNN even where PyTorch's heuristic would pick its slow
       im2col kernel (:func:`_mkldnn_forward`: batch-of-one volumes with few channels).
    3. With ``channels_last`` the convolution weights are stored channels-last
       (``torch.channels_last_3d`` / ``channels_last``): oneDNN's fastest layout for the
       few-channel layers of RLN-sized networks; feed inputs in the same layout
       (:func:`channels_last_input`).

    The network is put in eval mode and must not be trained further (its batch norms are
    gone). Gradients still flow (the oneDNN path is skipped when they are needed).

    Returns
    -------
    nn.Module
        ``net`` itself.
    """
    net.eval()
    fold_batch_norm(net)
    for module in net.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = _OneDNNConv3d
        elif type(module) is nn.Conv2d:
            module.__class__ = _OneDNNConv2d
        else:
            continue
        if channels_last:
            fmt = torch.channels_last_3d if module.weight.ndim == 5 else torch.channels_last
            module.weight.data = module.weight.data.contiguous(memory_format=fmt)
    net._lucyd_channels_last = bool(channels_last)
    return net


def channels_last_input(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout :func:`optimise_for_inference` chose for ``net``."""
    if not getattr(net, "_lucyd_channels_last", False) or x.ndim not in (4, 5):
        return x
    fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
    return x.contiguous(memory_format=fmt)
