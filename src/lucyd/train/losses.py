"""Training losses by name, in one registry other networks can extend.

A loss is a function ``loss(net, x, y) -> (scalar loss, prediction)`` that runs the network
itself, so that losses needing more than the output (RLN's intermediate ``t2``) fit the same
interface; ``prediction`` is the ``(B, 1, ...)`` restored image used for validation metrics.
Register a new one with ``@register_loss("name")``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lucyd.errors import InputError
from lucyd.metrics import global_ssim_torch
from lucyd.metrics.torch_ssim import ssim_torch
from lucyd.n2v import blind_spot_mask, masked_loss
from lucyd.nets import all_specs
from lucyd.nets.registry import LossFn

#: registered losses by name
LOSSES: dict[str, LossFn] = {}

#: smallest patch side (px, every axis) a loss can work on: local-SSIM windows need 11
MIN_PATCH_SIDE: dict[str, int] = {"rln_local": 11}


def check_loss_patch(name: str, patch: tuple[int, ...]) -> None:
    """:class:`InputError` when ``patch`` is too small for loss ``name`` (see :data:`MIN_PATCH_SIDE`)."""
    side = MIN_PATCH_SIDE.get(str(name).lower(), 1)
    if min(patch) < side:
        raise InputError(f"patch: loss {name!r} needs at least {side} px along every axis, got {tuple(patch)}")


def register_loss(name: str):
    """Decorator adding ``fn(net, x, y) -> (loss, prediction)`` to :data:`LOSSES`."""

    def decorator(fn: LossFn) -> LossFn:
        LOSSES[name.lower()] = fn
        return fn

    return decorator


def get_loss(name: str) -> LossFn:
    """The loss registered as ``name``; :class:`InputError` listing the choices otherwise.

    Besides :data:`LOSSES`, a network's :class:`~lucyd.nets.NetworkSpec` may carry losses of its
    own (``losses={"rbcr": ...}``), found here by name.
    """

    key = str(name).lower()
    if key in LOSSES:
        return LOSSES[key]
    for spec in all_specs():
        if key in spec.losses:
            return spec.losses[key]
    names = sorted(set(LOSSES).union(*(spec.losses for spec in all_specs())))
    raise InputError(f"loss: unknown loss {name!r}; available: {', '.join(names)}")


def _global_ssim(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return global_ssim_torch(pred, gt, 1e-4, 9e-4)


def _single_channel(out: torch.Tensor, name: str) -> torch.Tensor:
    if out.shape[1] != 1:
        raise InputError(
            f"loss {name!r}: the network has {out.shape[1]} output channels, expected 1"
            " (use laplace_nll for mean + scale outputs)"
        )
    return out


def _rln_terms(net: nn.Module, x: torch.Tensor, y: torch.Tensor, ssim_fn) -> tuple[torch.Tensor, torch.Tensor]:
    out, t2 = net(x, return_intermediate=True)
    mse = torch.mean((out - y) ** 2)
    mse2 = torch.mean((t2 - (0.8 * y + 0.2 * x)) ** 2)
    ssim = ssim_fn(out, y)
    return mse + 0.1 * mse2 - torch.log((1.0 + ssim) / 2.0), out


@register_loss("rln")
def rln_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """RLN's loss (Li et al., Nature Methods 2022).

    ``mse(out, y) + 0.1 · mse(t2, 0.8·y + 0.2·x) − log((1 + SSIM(out, y)) / 2)`` with SSIM
    computed globally over each patch (C1 = 1e-4, C2 = 9e-4) and ``t2 = x · BP1`` the
    network's intermediate estimate before its batch norm.
    """
    return _rln_terms(net, x, y, _global_ssim)


@register_loss("rln_local")
def rln_local_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """RLN's loss with the SSIM term over local Gaussian windows (σ 1.5 px, 11 taps).

    As :func:`rln_loss`, but SSIM is the mean of the local SSIM map (Wang et al., 2004) instead
    of one SSIM over the whole patch. The global term barely penalises faint texture in empty
    background; the local one does, which is what the usual (windowed) SSIM metric measures.
    Patches need at least 11 px along every axis.
    """

    return _rln_terms(net, x, y, ssim_torch)


@register_loss("mse")
def mse_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Mean squared error."""
    out = _single_channel(net(x), "mse")
    return torch.mean((out - y) ** 2), out


@register_loss("mae")
def mae_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Mean absolute error (CARE, Weigert et al. 2018; 3D-RCAN, Chen et al. 2021)."""
    out = _single_channel(net(x), "mae")
    return torch.mean(torch.abs(out - y)), out


#: smallest Laplace scale accepted by :func:`laplace_nll_loss` (CSBDeep uses softplus + 1e-3)
LAPLACE_MIN_SCALE = 1e-3


@register_loss("laplace_nll")
def laplace_nll_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Laplace negative log-likelihood of a probabilistic 2-channel output (Weigert et al. 2018).

    Channel 0 is the mean μ, channel 1 the (positive) scale σ:
    ``|μ − y| / σ + log σ + log 2``, averaged; σ is clamped at 1e-3.
    """
    out = net(x)
    if out.shape[1] != 2:
        raise InputError(
            f"loss 'laplace_nll': needs a 2-channel (mean, scale) output, "
            f"the network gives {out.shape[1]}"
        )
    mu, sigma = out[:, :1], out[:, 1:2].clamp_min(LAPLACE_MIN_SCALE)
    nll = torch.abs(mu - y) / sigma + torch.log(sigma) + math.log(2.0)
    return nll.mean(), mu


@register_loss("ddn")
def ddn_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """DenseDeconNet's loss (Guo et al., Nat. Biotechnol. 2020) with a bounded positivity term.

    ``mse − log((1+SSIM)/2) + 1.3·max(0, −min(out))``. The published term ``−1.3·min(out)``
    rewards raising the darkest output voxel without limit: all its gradient goes to one voxel
    per batch, and training trades structure for a lifted floor (on a 2D synthetic
    deconvolution, 800 steps: 28.9 dB, stuck, against 32.1 dB with the bounded term; raw 27.7
    dB; benchmarks/results/ddn.md). Penalising only negative minima keeps its purpose,
    non-negative outputs.
    """
    out = _single_channel(net(x), "ddn")
    mse = torch.mean((out - y) ** 2)
    ssim = _global_ssim(out, y)
    return mse - torch.log((1.0 + ssim) / 2.0) + 1.3 * torch.relu(-out.min()), out


@register_loss("n2v")
def n2v_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Noise2Void blind-spot loss (Krull et al., CVPR 2019; N2V2 replacement, Höck et al. 2022).

    ~0.2 % of the pixels of each input patch are replaced by the median of their 5×5
    neighbourhood without the centre (:func:`lucyd.n2v.blind_spot_mask`), and the squared error
    of the network's output against the *original noisy input* is averaged over those pixels
    only. ``y`` is not used for the loss (train on noisy images alone: ``gt/`` = ``raw/``); the
    returned prediction is the network's output on the masked input.
    """

    masked, mask = blind_spot_mask(x)
    out = _single_channel(net(masked), "n2v")
    return masked_loss(out, x, mask), out
