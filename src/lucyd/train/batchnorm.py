"""Batch-norm statistics for evaluation: exact re-estimation ("precise BN") after training steps."""

from __future__ import annotations

import numpy as np
import torch


def batch_norm_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The batch-norm layers of ``net`` that keep running statistics."""
    return [
        m
        for m in net.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recalibrate_batch_norm(net: torch.nn.Module, batches, device=None) -> int:
    """Re-estimate the running statistics of every batch-norm layer of ``net`` ("precise BN").

    The running mean and variance are reset and replaced by the exact average of the batch
    statistics of ``batches`` (inputs shaped like training batches), forwarded in train mode
    without gradients (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021). The moving
    averages kept during training (momentum 0.01 in Keras' convention for RLN) lag behind
    weights that change quickly and are dominated by a handful of small, noisy batches, so
    that eval-mode predictions of a short training can be far worse than train-mode ones.
    Weights, gradients and random states are untouched; the layers' momenta and the
    network's train/eval mode are restored.

    Parameters
    ----------
    net : nn.Module
        Any network; without batch-norm layers nothing happens.
    batches : iterable of array or Tensor
        Input batches (B, C, *spatial).
    device : torch device, optional
        Where to send the batches (default: the network's).

    Returns
    -------
    int
        The number of batches forwarded (0 when ``net`` has no batch norm).
    """
    layers = batch_norm_layers(net)
    if not layers:
        return 0
    if device is None:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    momenta = [m.momentum for m in layers]
    was_training = net.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    n = 0
    try:
        for xb in batches:
            x = torch.as_tensor(np.ascontiguousarray(xb) if isinstance(xb, np.ndarray) else xb)
            net(x.to(device))
            n += 1
    finally:
        for m, mom in zip(layers, momenta, strict=True):
            m.momentum = mom
        net.train(was_training)
    return n
