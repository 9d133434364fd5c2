"""3D-RCAN: residual channel-attention network (Chen et al., Nature Methods 2021).

Layout of the released 3D-RCAN (itself after RCAN, Zhang et al. ECCV 2018), in 2D and 3D:

1. inside :meth:`RCAN.forward` the input is mapped to ``2 x - 1`` (3D-RCAN's
   ``_standardize``; inputs are expected percentile-normalised to about [0, 1]) and the
   output mapped back with ``(y + 1) / 2``, so the network keeps the input's scale;
2. head convolution to ``channels`` (32);
3. ``groups`` (5) residual groups, each of ``blocks`` (3) residual channel-attention blocks
   (conv - ReLU - conv, then channel attention: global average pool, 1x1 conv to
   ``channels // reduction`` + ReLU, 1x1 conv back to ``channels`` + sigmoid, multiply;
   residual add), then a convolution and the group's residual add;
4. a convolution and the long skip from the head's output;
5. output convolution to ``out_channels``.

All convolutions are 3 voxels wide with biases. Defaults give 1,002,621 parameters in 3D
(the paper: ~1.0 M) and 337,917 in 2D.
"""

from __future__ import annotations

import torch
from torch import nn

from lucyd.errors import InputError
from lucyd.nets.layers import check_ndim
from lucyd.nets.registry import NetworkSpec, register_spec

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}

def _conv(ndim: int, cin: int, cout: int, k: int) -> nn.Module:
    conv = _CONV[ndim](cin, cout, k, padding=k // 2)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al. 2018) as used by RCAN.

    ``x * sigmoid(W2 relu(W1 mean(x)))`` with the mean over all spatial voxels. The pooled
    statistic is global: every output voxel depends weakly on the whole input, which the
    local :attr:`RCAN.receptive_field` does not count (as in 3D-RCAN's tiled inference).
    """

    def __init__(self, ndim: int, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = _POOL[ndim](1)
        self.squeeze = _CONV[ndim](channels, hidden, 1)
        self.excite = _CONV[ndim](hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.excite(torch.relu(self.squeeze(self.pool(x)))))
        return x * w


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + CA(conv(relu(conv(x))))``."""

    def __init__(self, ndim: int, channels: int, reduction: int, k: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(ndim, channels, channels, k),
            nn.ReLU(),
            _conv(ndim, channels, channels, k),
            ChannelAttention(ndim, channels, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``blocks`` RCABs and a convolution, with a residual connection around them."""

    def __init__(self, ndim: int, channels: int, blocks: int, reduction: int, k: int):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(ndim, channels, reduction, k) for _ in range(blocks)],
            _conv(ndim, channels, channels, k),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    """3D-RCAN (Chen et al. 2021), 2D or 3D.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions.
    in_channels : int
        Input channels (1).
    out_channels : int or None
        Output channels; ``None`` = ``in_channels``.
    channels : int
        Feature channels (32).
    groups : int
        Residual groups (5).
    blocks : int
        Residual channel-attention blocks per group (3).
    reduction : int
        Channel-attention reduction factor (8).
    kernel_size : int
        Convolution size (3).
    standardize : bool
        Map the input to ``2x - 1`` and the output back with ``(y + 1) / 2`` (3D-RCAN).

    Notes
    -----
    Fully convolutional with no down-sampling: ``size_multiple = 1``. Training recipe
    (:data:`SPEC`): Adam lr 1e-4 halved every quarter of the training, MAE loss,
    batch 1, patches (16, 256, 256), flips / rot90 augmentation.
    """

    def __init__(
        self,
        ndim: int = 3,
        in_channels: int = 1,
        out_channels: int | None = None,
        channels: int = 32,
        groups: int = 5,
        blocks: int = 3,
        reduction: int = 8,
        kernel_size: int = 3,
        standardize: bool = True,
    ):
        super().__init__()
        ndim = check_ndim(ndim)
        out_channels = int(in_channels if out_channels is None else out_channels)
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise InputError(f"kernel_size: must be a positive odd integer, got {kernel_size!r}")
        if min(in_channels, out_channels, channels, groups, blocks, reduction) < 1:
            raise InputError("rcan: channels, groups, blocks and reduction must be >= 1")
        self.ndim, self.in_channels, self.out_channels = ndim, int(in_channels), out_channels
        self.channels, self.groups, self.blocks = int(channels), int(groups), int(blocks)
        self.reduction, self.kernel_size, self.standardize = int(reduction), k, bool(standardize)
        self.head = _conv(ndim, self.in_channels, self.channels, k)
        self.body = nn.Sequential(
            *[
                ResidualGroup(ndim, self.channels, self.blocks, self.reduction, k)
                for _ in range(self.groups)
            ]
        )
        self.body_conv = _conv(ndim, self.channels, self.channels, k)
        self.tail = _conv(ndim, self.channels, out_channels, k)

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Extent (voxels per axis) of the local receptive field, ignoring the global pooling.

        ``1 + (k - 1) * (3 + groups * (2 * blocks + 1))`` (head, body and output convs);
        77 with the defaults.
        """
        n_convs = 3 + self.groups * (2 * self.blocks + 1)
        return (1 + (self.kernel_size - 1) * n_convs,) * self.ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        if self.standardize:
            x = 2.0 * x - 1.0
        h = self.head(x)
        h = h + self.body_conv(self.body(h))
        y = self.tail(h)
        if self.standardize:
            y = 0.5 * (y + 1.0)
        return y


SPEC = register_spec(
    NetworkSpec(
        name="rcan",
        network=RCAN,
        # Chen et al. 2021: MAE, Adam 1e-4 halved every quarter, batch 1, flips/rot90
        recipe={
            "loss": "mae",
            "lr": 1e-4,
            "schedule": "quarter",
            "lr_decay": 0.5,
            "batch": 1,
            "patch_rejection": "fraction",
            "rejection_threshold": 0.25,
            "norm_percentiles": (2.0, 99.9),
            "augment": True,
        },
        size_multiple=1,  # no down-sampling
        reference="Chen et al., Nature Methods 18:678 (2021)",
        doi="10.1038/s41592-021-01155-x",
    )
)
