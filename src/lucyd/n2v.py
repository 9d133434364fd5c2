"""Blind-spot masking for self-supervised denoising (Noise2Void and N2V2).

Noise2Void (Krull, Buchholz & Jug, "Noise2Void – learning denoising from single noisy images",
CVPR 2019) trains a denoiser on the noisy images alone: in every training patch a few pixels
(~0.2 %) are *masked* — their value is replaced — and the network is asked to predict the
original noisy value there. Because the noise of a pixel is independent of its neighbours, the
best the network can do from the surroundings is the clean signal, so the expected loss is
minimised by the denoised image. The loss is computed only at the masked pixels.

Two replacement rules:

``"n2v"``
    a uniformly chosen *other* pixel of the (2·r+1)-wide neighbourhood (Krull et al. 2019,
    the "uniform pixel selection" without the centre);
``"n2v2"``
    the median of the neighbourhood *excluding* the centre (Höck et al., "N2V2 – fixing
    Noise2Void checkerboard artifacts with modified sampling strategies and a tweaked network
    architecture", ECCV Workshops 2022), which avoids copying a neighbour's noise exactly.

The training loss ``"n2v"`` (:func:`lucyd.train.losses.n2v_loss`) applies
:func:`blind_spot_mask` to the input batch inside the loss, so the generic trainer trains a
blind-spot network on any folder whose ``gt/`` holds the same noisy images as ``raw/``
(see :func:`lucyd.denoise.train_n2v`).
"""

from __future__ import annotations

from typing import Literal

import torch

from lucyd.errors import InputError

#: default fraction of the pixels of a patch that are masked (Krull et al. 2019: ~0.2 %)
MASK_FRACTION = 0.002
#: default neighbourhood radius (px per axis) of the replacement values (5x5 in 2D)
NEIGHBOURHOOD_RADIUS = 2

Replacement = Literal["n2v", "n2v2"]


def _neighbour_offsets(ndim: int, radius: int, device) -> torch.Tensor:
    """All offsets of the (2r+1)^ndim neighbourhood except the centre, ``(K, ndim)``."""
    axes = [torch.arange(-radius, radius + 1, device=device)] * ndim
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, ndim)
    return grid[(grid != 0).any(1)]


def blind_spot_mask(
    x: torch.Tensor,
    *,
    fraction: float = MASK_FRACTION,
    radius: int = NEIGHBOURHOOD_RADIUS,
    replacement: Replacement = "n2v2",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask random pixels of a batch for blind-spot training (Krull et al. 2019; Höck et al. 2022).

    In every sample, ``max(1, round(fraction · N))`` distinct pixels (``N`` the number of
    spatial pixels of the sample) are chosen uniformly; each is replaced by a uniformly chosen
    neighbour within ``radius`` (``"n2v"``) or by the median of its neighbourhood without the
    centre (``"n2v2"``). A neighbour outside the patch is replaced by its mirror image through the centre
    along the offending axes. The centre's own value is never used.

    Parameters
    ----------
    x : torch.Tensor
        Noisy batch ``(B, C, *spatial)`` with 2 or 3 spatial axes; every channel of a masked
        pixel is replaced (using the same neighbour for ``"n2v"``).
    fraction : float
        Fraction of the pixels to mask, in (0, 1).
    radius : int
        Half-width of the neighbourhood, ≥ 1.
    replacement : {"n2v", "n2v2"}
        Random neighbour, or median of the neighbours.
    generator : torch.Generator, optional
        Random source (default: torch's global generator, seeded by the trainer).

    Returns
    -------
    masked : torch.Tensor
        Copy of ``x`` with the chosen pixels replaced.
    mask : torch.Tensor
        Boolean ``(B, 1, *spatial)``, true at the masked pixels.

    Raises
    ------
    InputError
        Bad ``fraction``, ``radius`` or ``replacement``, or a tensor that is not
        ``(B, C, *spatial)`` with 2 or 3 spatial axes, or a patch side ≤ ``2 · radius``.
    """
    if x.ndim not in (4, 5):
        raise InputError(f"blind_spot_mask: expected a (B, C, y, x) or (B, C, z, y, x) tensor, got {tuple(x.shape)}")
    if not 0 < float(fraction) < 1:
        raise InputError(f"blind_spot_mask: fraction must be in (0, 1), got {fraction!r}")
    if int(radius) < 1 or int(radius) != radius:
        raise InputError(f"blind_spot_mask: radius must be an integer >= 1, got {radius!r}")
    if replacement not in ("n2v", "n2v2"):
        raise InputError(f"blind_spot_mask: replacement must be 'n2v' or 'n2v2', got {replacement!r}")
    radius = int(radius)
    spatial = tuple(x.shape[2:])
    if min(spatial) <= 2 * radius:
        raise InputError(f"blind_spot_mask: patch {spatial} too small for radius {radius} (needs > {2 * radius} px)")
    ndim, batch, dev = len(spatial), x.shape[0], x.device
    n_pix = 1
    for s in spatial:
        n_pix *= s
    n_mask = max(1, round(float(fraction) * n_pix))
    # distinct pixels per sample: the first n_mask of a random permutation (via random keys)
    keys = torch.rand((batch, n_pix), generator=generator, device=dev)
    flat = keys.argsort(dim=1)[:, :n_mask]  # (B, M)
    coords = torch.stack(torch.unravel_index(flat, spatial), -1)  # (B, M, ndim)
    size = torch.tensor(spatial, device=dev)
    offsets = _neighbour_offsets(ndim, radius, dev)  # (K, ndim), no zero offset

    def inside(offset: torch.Tensor) -> torch.Tensor:
        # a neighbour beyond the patch edge is taken on the other side of the centre (the
        # offset's component along that axis flips sign): never the centre itself, since a
        # flipped component is non-zero, and inside because every side exceeds 2 * radius
        c = coords + offset
        return torch.where((c < 0) | (c >= size), coords - offset, c)

    xf = x.reshape(batch, x.shape[1], n_pix)

    def values_at(c: torch.Tensor) -> torch.Tensor:
        """``x`` at spatial coordinates ``c`` ``(B, M, ndim)`` → ``(B, C, M)``."""
        lin = torch.zeros(c.shape[:-1], dtype=torch.long, device=dev)
        for a in range(ndim):
            lin = lin * spatial[a] + c[..., a]
        return xf.gather(2, lin[:, None, :].expand(batch, x.shape[1], n_mask))

    if replacement == "n2v":
        pick = torch.randint(len(offsets), (batch, n_mask), generator=generator, device=dev)
        new = values_at(inside(offsets[pick]))
    else:
        neigh = torch.stack([values_at(inside(o)) for o in offsets], -1)  # (B, C, M, K)
        new = neigh.median(dim=-1).values
    masked = x.clone().reshape(batch, x.shape[1], n_pix)
    idx = flat[:, None, :].expand(batch, x.shape[1], n_mask)
    masked.scatter_(2, idx, new.to(x.dtype))
    mask = torch.zeros((batch, 1, n_pix), dtype=torch.bool, device=dev)
    mask.scatter_(2, flat[:, None, :], True)
    return masked.reshape(x.shape), mask.reshape((batch, 1) + spatial)


def masked_loss(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean of ``(pred − x)²`` (``"mse"``) or ``|pred − x|`` (``"mae"``) over the masked pixels only.

    ``pred`` and ``x`` are ``(B, C, *spatial)``; ``mask`` is ``(B, 1, *spatial)`` boolean.
    """
    diff = pred - x
    err = diff * diff if kind == "mse" else diff.abs()
    m = mask.expand_as(err)
    return err[m].mean()


__all__ = ["MASK_FRACTION", "NEIGHBOURHOOD_RADIUS", "blind_spot_mask", "masked_loss"]
