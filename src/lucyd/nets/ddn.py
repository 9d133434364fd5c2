"""DenseDeconNet (DDN; Guo et al., Nature Biotechnology 2020), 2D and 3D.

A tiny densely connected encoder-decoder trained to reproduce (many-iteration) Richardson-
Lucy deconvolutions. Every convolution is bias-free and followed by batch normalisation
(affine) and ReLU (leaky ReLU, slope 0.2, after the output layer):

* full resolution: ``c1`` in->4, ``c2`` 4->8, ``c3`` [c1,c2] 12->4, ``c4`` [c1,c2,c3] 16->4;
* ``d`` 2x2(x2) stride-2 convolution 4->8 (down-sampling);
* half-resolution dense block 1: ``e1`` 8->4, ``e2`` [d,e1] 12->4, ``e3`` [d,e1,e2] 16->8;
* half-resolution dense block 2: ``f0`` 8->4, ``f1`` 4->8, ``f2`` [f0,f1] 12->4,
  ``f3`` [f0,f1,f2] 16->8;
* 2x2(x2) stride-2 transposed convolution 8->4 + BN, plus the skip from ``c1``, ReLU;
* ``out`` 4->1, BN, leaky ReLU.

Parameter count and layout
--------------------------
Guo et al. quote 16,860 parameters (3D). The TensorFlow code released with the paper
(single-view variant) has the same layout but a 1x1x1 ``f0`` and no input normalisation:
15,880 convolution weights + 146 BN affine parameters = 16,026. We searched the family of
layouts consistent with the description (kernel sizes 1/3 of ``f0`` and of the output
layer, 2 or 3 of the down/up convolutions, conv biases on/off, BN counted with 1, 2 or 4
parameters per channel, BN after the output layer, a BN on the input, 1 or 2 input
channels): exactly two give 16,860 -- (a) one input channel, a 3x3x3 ``f0`` (+832), a BN
(affine, 2 parameters) on the input and BN after every convolution; (b) two input views,
3x3x3 ``f0``, a 1x1x1 output layer without BN. (b) contradicts the single-input ``conv 1->4``
and ``conv 4->1`` of the description, so we implement (a): 16,712 weights + 74 BN channels x
2 = 16,860. The 2D variant (3x3 kernels, 2x2 down/up) has 5,804 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from lucyd.errors import InputError
from lucyd.nets.layers import check_ndim
from lucyd.nets.registry import NetworkSpec, register_spec
from lucyd.nets.wavelets import crop_to, pad_to_multiple

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class _ConvBN(nn.Module):
    """Bias-free convolution, BN (affine), activation."""

    def __init__(self, ndim: int, cin: int, cout: int, k: int, stride: int = 1, act: str = "relu"):
        super().__init__()
        self.conv = _CONV[ndim](
            cin, cout, k, stride=stride, padding=(k // 2 if stride == 1 else 0), bias=False
        )
        nn.init.trunc_normal_(self.conv.weight, std=0.1, a=-0.2, b=0.2)
        self.bn = _BN[ndim](cout)
        self.act = nn.LeakyReLU(0.2) if act == "leaky" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DenseDeconNet(nn.Module):
    """DenseDeconNet (Guo et al. 2020), 2D or 3D; 16,860 parameters in 3D.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    in_channels : int
        Input channels (1; 2 would be the dual-view diSPIM variant).
    out_channels : int
        Output channels (1).

    Notes
    -----
    Batch normalisation makes the output depend on the batch statistics in training mode;
    predict in ``eval()`` mode (running statistics). One 2x down-sampling:
    ``size_multiple = 2``. Training recipe: :data:`SPEC` (loss ``ddn`` of
    :mod:`lucyd.train.losses`).
    """

    def __init__(self, ndim: int = 3, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        ndim = check_ndim(ndim)
        if in_channels < 1 or out_channels < 1:
            raise InputError("ddn: in_channels and out_channels must be >= 1")
        self.ndim, self.in_channels, self.out_channels = ndim, int(in_channels), int(out_channels)
        self.input_bn = _BN[ndim](self.in_channels)
        self.c1 = _ConvBN(ndim, self.in_channels, 4, 3)
        self.c2 = _ConvBN(ndim, 4, 8, 3)
        self.c3 = _ConvBN(ndim, 12, 4, 3)
        self.c4 = _ConvBN(ndim, 16, 4, 3)
        self.down = _ConvBN(ndim, 4, 8, 2, stride=2)
        self.e1 = _ConvBN(ndim, 8, 4, 3)
        self.e2 = _ConvBN(ndim, 12, 4, 3)
        self.e3 = _ConvBN(ndim, 16, 8, 3)
        self.f0 = _ConvBN(ndim, 8, 4, 3)
        self.f1 = _ConvBN(ndim, 4, 8, 3)
        self.f2 = _ConvBN(ndim, 12, 4, 3)
        self.f3 = _ConvBN(ndim, 16, 8, 3)
        self.up = _TCONV[ndim](8, 4, 2, stride=2, bias=False)
        nn.init.trunc_normal_(self.up.weight, std=0.1, a=-0.2, b=0.2)
        self.up_bn = _BN[ndim](4)
        self.out = _ConvBN(ndim, 4, self.out_channels, 3, act="leaky")

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Extent (voxels per axis) of one output voxel's receptive field: 40.

        Five 3-wide convolutions at full resolution (2 each), the 2-wide down-sampling (1),
        seven 3-wide convolutions at half resolution (4 each); the stride-2 transposed
        convolution adds nothing (each output voxel sees one half-resolution voxel).
        """
        return (1 + 5 * 2 + 1 + 7 * 4,) * self.ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        x, shape = pad_to_multiple(x, self.size_multiple)
        x = self.input_bn(x)
        a1 = self.c1(x)
        a2 = self.c2(a1)
        a3 = self.c3(torch.cat((a1, a2), 1))
        a4 = self.c4(torch.cat((a1, a2, a3), 1))
        d = self.down(a4)
        e1 = self.e1(d)
        e2 = self.e2(torch.cat((d, e1), 1))
        e3 = self.e3(torch.cat((d, e1, e2), 1))
        f0 = self.f0(e3)
        f1 = self.f1(f0)
        f2 = self.f2(torch.cat((f0, f1), 1))
        f3 = self.f3(torch.cat((f0, f1, f2), 1))
        u = torch.relu(self.up_bn(self.up(f3)) + a1)
        return crop_to(self.out(u), shape)


SPEC = register_spec(
    NetworkSpec(
        name="ddn",
        network=DenseDeconNet,
        # Guo et al. 2020: Adam 0.04 · 0.98^(step/150), batch 1, 12,000 iterations
        recipe={
            "loss": "ddn",
            "lr": 0.04,
            "schedule": "exp",
            "lr_decay": 0.98,
            "lr_decay_steps": 150,
            "batch": 1,
            "patch_rejection": "mean",
            "rejection_threshold": 0.8,
            "norm_percentiles": (0.01, 99.5),
            "augment": False,
        },
        size_multiple=2,  # one 2× down-sampling
        reference="Guo et al., Nature Biotechnology 38:1337 (2020)",
        doi="10.1038/s41587-020-0560-x",
    )
)
