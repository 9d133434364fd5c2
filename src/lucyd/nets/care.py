"""CARE: the content-aware image restoration U-Net (Weigert et al., Nature Methods 2018).

Re-implementation of the CSBDeep ``custom_unet`` / ``unet_block`` layout (the network the
CARE paper trains), with CSBDeep's defaults, in 2D and 3D:

* ``depth`` (2) resolution levels below the input; level ``n`` has ``first_filters * 2**n``
  filters (32, 64), ``convs_per_level`` (2) "same" convolutions + ReLU per level, kernel
  5 in 2D and 3 in 3D, 2x max-pooling down, nearest-neighbour 2x upsampling and
  concatenation with the skip connection on the way up;
* exactly as in CSBDeep, the bottleneck has ``convs_per_level - 1`` convolutions with
  ``first_filters * 2**depth`` (128) filters followed by one with ``first_filters *
  2**(depth-1)`` (64) filters, and on the way up each level ends with a convolution
  halving the channels (except the last level, which keeps ``first_filters``);
* a final linear 1x1 convolution to ``out_channels``, plus the input (residual learning)
  when ``in_channels == out_channels``;
* optionally (``probabilistic=True``) a second 1x1 head giving a per-voxel Laplace scale
  ``sigma = softplus(.) + 1e-3``; the network then outputs ``2 * out_channels`` channels
  (means first, then scales) and is trained with :func:`laplace_nll`.

With the defaults this gives 996,769 parameters in 3D and 922,977 in 2D (Weigert et al.
2018 quote ~1.0 M / 0.92 M). Glorot-uniform weights and zero biases, as in Keras.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lucyd.errors import InputError
from lucyd.nets.layers import check_ndim
from lucyd.nets.registry import NetworkSpec, register_spec
from lucyd.nets.wavelets import crop_to, pad_to_multiple

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _conv(ndim: int, cin: int, cout: int, k: int) -> nn.Module:
    conv = _CONV[ndim](cin, cout, k, padding=k // 2)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class CARE(nn.Module):
    """CARE U-Net (Weigert et al. 2018; CSBDeep defaults).

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    in_channels : int
        Input channels (1).
    out_channels : int or None
        Output (mean) channels; ``None`` = ``in_channels``.
    depth : int
        Number of 2x down-samplings (2).
    first_filters : int
        Filters of the first level, doubled per level (32).
    convs_per_level : int
        Convolutions per level (2).
    kernel_size : int or None
        Convolution size; ``None`` = 5 in 2D, 3 in 3D (CSBDeep defaults).
    residual : bool
        Add the input to the output (only possible when ``in_channels == out_channels``).
    probabilistic : bool
        Add the Laplace-scale head; output then has ``2 * out_channels`` channels.

    Notes
    -----
    ``forward`` accepts any spatial size; sizes that are not multiples of ``size_multiple``
    (``2**depth``) are edge-padded internally and cropped back, but tiled prediction should
    pad itself. Training recipe: :data:`SPEC` (MAE; Laplace NLL when probabilistic).
    """

    def __init__(
        self,
        ndim: int = 3,
        in_channels: int = 1,
        out_channels: int | None = None,
        depth: int = 2,
        first_filters: int = 32,
        convs_per_level: int = 2,
        kernel_size: int | None = None,
        residual: bool = True,
        probabilistic: bool = False,
    ):
        super().__init__()
        ndim = check_ndim(ndim)
        out_channels = int(in_channels if out_channels is None else out_channels)
        k = (5 if ndim == 2 else 3) if kernel_size is None else int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise InputError(f"kernel_size: must be a positive odd integer, got {kernel_size!r}")
        if (
            depth < 1
            or first_filters < 1
            or convs_per_level < 1
            or in_channels < 1
            or out_channels < 1
        ):
            raise InputError(
                "care: depth, first_filters, convs_per_level and channels must be >= 1"
            )
        self.ndim, self.in_channels, self.out_channels = ndim, int(in_channels), out_channels
        self.depth, self.first_filters, self.convs_per_level = (
            int(depth),
            int(first_filters),
            int(convs_per_level),
        )
        self.kernel_size = k
        self.residual = bool(residual) and in_channels == out_channels
        self.probabilistic = bool(probabilistic)
        self.size_multiple = 2**self.depth

        f = self.first_filters
        cin = self.in_channels
        self.down = nn.ModuleList()
        for n in range(self.depth):
            layers = []
            for _ in range(self.convs_per_level):
                layers += [_conv(ndim, cin, f * 2**n, k), nn.ReLU()]
                cin = f * 2**n
            self.down.append(nn.Sequential(*layers))
        self.pool = _POOL[ndim](2)
        middle = []
        for _ in range(self.convs_per_level - 1):
            middle += [_conv(ndim, cin, f * 2**self.depth, k), nn.ReLU()]
            cin = f * 2**self.depth
        middle += [_conv(ndim, cin, f * 2 ** max(0, self.depth - 1), k), nn.ReLU()]
        cin = f * 2 ** max(0, self.depth - 1)
        self.middle = nn.Sequential(*middle)
        self.up = nn.ModuleList()
        for n in reversed(range(self.depth)):
            cin = cin + f * 2**n  # concatenation with the skip connection
            layers = []
            for _ in range(self.convs_per_level - 1):
                layers += [_conv(ndim, cin, f * 2**n, k), nn.ReLU()]
                cin = f * 2**n
            layers += [_conv(ndim, cin, f * 2 ** max(0, n - 1), k), nn.ReLU()]
            cin = f * 2 ** max(0, n - 1)
            self.up.append(nn.Sequential(*layers))
        self.head = _conv(ndim, cin, out_channels, 1)
        self.scale_head = _conv(ndim, cin, out_channels, 1) if self.probabilistic else None

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Full receptive-field extent (voxels per axis) of one output voxel.

        ``1 + sum (k - 1) * jump`` over the deepest path (convolutions and pooling; nearest
        upsampling adds nothing). For the 2D defaults this is 84 (CSBDeep's measured
        one-sided 43); tiles should overlap by at least half of it on each side.
        """
        k, c = self.kernel_size, self.convs_per_level
        extent = 1
        for n in range(self.depth):
            extent += c * (k - 1) * 2**n + 2**n  # convs at level n, then 2x max-pool
        extent += c * (k - 1) * 2**self.depth  # bottleneck
        for n in range(self.depth):
            extent += c * (k - 1) * 2**n  # convs on the way up
        return (extent,) * self.ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` ``(B, in_channels, *S)`` -> ``(B, out_channels[*2], *S)``."""
        x, shape = pad_to_multiple(x, self.size_multiple)
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.middle(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat((h, skip), dim=1))
        mean = self.head(h)
        if self.residual:
            mean = mean + x
        if self.scale_head is not None:
            sigma = F.softplus(self.scale_head(h)) + 1e-3
            mean = torch.cat((mean, sigma), dim=1)
        return crop_to(mean, shape)


SPEC = register_spec(
    NetworkSpec(
        name="care",
        network=CARE,
        # CSBDeep: MAE, Adam 4e-4, batch 16, reduce-on-plateau ×0.5 after 10 epochs (here
        # validations) without improvement; the probabilistic variant trains with laplace_nll
        recipe={
            "loss": "mae",
            "lr": 4e-4,
            "schedule": "plateau",
            "lr_decay": 0.5,
            "lr_decay_steps": 10,
            "batch": 16,
            "patch_rejection": "care",
            "rejection_threshold": 0.4,
            "norm_percentiles": (2.0, 99.8),
            "augment": True,
        },
        size_multiple=4,  # 2**depth with the default depth 2
        reference="Weigert et al., Nature Methods 15:1090 (2018)",
        doi="10.1038/s41592-018-0216-7",
    )
)
