"""Richardson–Lucy Network (RLN), a PyTorch port of Li et al., Nature Methods 19, 1427–1437 (2022).

Li, Y., Su, Y., Guo, M. et al. "Incorporating the image formation process into deep
learning improves network performance." RLN unrolls Richardson–Lucy deconvolution
(``e ← e · BP(x / FP(e))``) into a small convolutional network: learned forward
projections (FP) and back projections (BP) replace the PSF and its flip, and the
division and multiplication of the RL update are kept as explicit operations with
custom gradients. Three parts:

* **H1, down-scale estimate** — on the 2× average-pooled input ``x_d``:
  ``FP1 = mean_c(sp(BN(conv([c1, c2]))) + sp(x_d))``, ``DV1 = BN(x_d / FP1)``,
  ``BP1`` = three convs, a 2× transposed conv back to full size and a conv;
  ``t2 = x · BP1`` and ``E1 = sp(BN(t2))``.
* **H2, original-scale update** — ``FP2`` acts on ``x`` (not on ``E1``):
  ``DV2 = BN(x / FP2)``, ``BP2 = mean_c(sp(BN(conv(v1)))) + 1``, ``E2 = sp(BN(E1 · BP2))``.
* **H3, merge** — ``a = sp(conv(E2))``, ``b = sp(conv([a, E2, E1]))``,
  ``out = mean_c(sp(BN(conv([a, b]))))``.

``sp`` is softplus, ``BN`` batch normalisation, ``mean_c`` the mean over channels; every
convolution is 3×3×3 (3×3 in the 2D variant), "same" padded, without bias.

Parameter count
---------------
In 3D the network has **15,968 trainable parameters**, the figure counted from the
released checkpoint: 15,808 convolution weights plus 160 batch-norm affine parameters
(γ and β of 80 normalised channels in 17 BN layers) — exactly what Keras lists as
trainable weights. The BN moving mean and variance (another 160 numbers) are buffers,
not parameters, and are *not* in the figure (counting them would give 16,128).
:func:`lucyd.nets.count_parameters` counts the same way. The 2D variant has 5,472.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lucyd.errors import InputError
from lucyd.nets import layers as L
from lucyd.nets.registry import NetworkSpec, register_spec

#: ε added to the denominator of the RL division (reference: ``a / (x + 1e-3)``)
DIV_EPS = 1e-3

#: σ of the Gaussian initial kernels of the forward projections, in units of s = 2,
#: for output channels 0..3 (reference order: 2s, 0.5s, s, 1.5s)
FP_SIGMA_FACTORS = (2.0, 0.5, 1.0, 1.5)


def _quotient(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a / (x + 1e-3)`` with non-finite quotients set to zero (the forward of :class:`RLDivide`)."""
    return torch.nan_to_num(a / (x + DIV_EPS), nan=0.0, posinf=0.0, neginf=0.0)


def _custom_gradient(a: torch.Tensor, x: torch.Tensor) -> bool:
    """True when autograd will differentiate through ``a`` or ``x`` (training).

    At inference the plain forward runs instead of the autograd Function, so the network can be
    traced to TorchScript (a bioimage.io package's weights; Functions cannot be exported).
    """
    return torch.is_grad_enabled() and (a.requires_grad or x.requires_grad)


class RLDivide(torch.autograd.Function):
    """``q = a / (x + 1e-3)`` with RLN's gradients: ``dy`` for ``a``, ``−q²·dy`` for ``x``.

    The true derivatives would be ``dy / (x + ε)`` and ``−q·dy / (x + ε)``; RLN (Li et al.
    2022) uses these simplified ones, which keep the gradient bounded where the forward
    projection is small. Non-finite quotients are set to zero (TF's ``div_no_nan``).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = _quotient(a, x)
        ctx.save_for_backward(q)
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (q,) = ctx.saved_tensors
        ga = grad if ctx.needs_input_grad[0] else None
        gx = -q.square() * grad if ctx.needs_input_grad[1] else None
        return ga, gx


class RLMultiply(torch.autograd.Function):
    """``m = a · x`` with RLN's gradients: ``dy`` for ``a`` and ``dy · a`` for ``x`` (Li et al. 2022)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return a * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (a,) = ctx.saved_tensors
        ga = grad if ctx.needs_input_grad[0] else None
        gx = grad * a if ctx.needs_input_grad[1] else None
        return ga, gx


def rl_divide(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """RL division ``a / (x + 1e-3)`` with RLN's custom gradient (see :class:`RLDivide`)."""
    return RLDivide.apply(a, x) if _custom_gradient(a, x) else _quotient(a, x)


def rl_multiply(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """RL multiplication ``a · x`` with RLN's custom gradient (see :class:`RLMultiply`)."""
    return RLMultiply.apply(a, x) if _custom_gradient(a, x) else a * x


class _ConvBN(nn.Module):
    """conv (no bias) → BN → optional softplus."""

    def __init__(
        self,
        ndim: int,
        cin: int,
        cout: int,
        *,
        act: bool = True,
        transpose: bool = False,
        bn_momentum: float = L.KERAS_BN_MOMENTUM,
    ):
        super().__init__()
        self.conv = L.conv_transpose(ndim, cin, cout) if transpose else L.conv(ndim, cin, cout, 3)
        self.bn = L.batch_norm(ndim, cout, momentum=bn_momentum)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.softplus(y) if self.act else y


class RLN(nn.Module):
    """Richardson–Lucy Network (Li et al., Nature Methods 2022), 3D or 2D.

    Parameters
    ----------
    ndim : int
        3 (default) for (z, y, x) volumes with 3×3×3 convolutions, 2 for (y, x) images
        with 3×3 convolutions.
    init_std : float
        Standard deviation of the truncated-normal initialisation of the convolutions
        that are not Gaussian-initialised (reference: 1.0, truncated at ±2σ).
    gaussian_sigma : float
        ``s`` of the Gaussian initial kernels of the forward projections; output channel
        ``k`` starts as a peak-1 Gaussian of σ = (2, 0.5, 1, 1.5)[k] · s, scaled per input
        channel by U(0.7, 1) (reference: s = 2).
    bn_momentum : float
        PyTorch batch-norm momentum (0.01 equals Keras' 0.99).

    Notes
    -----
    Input and output are (B, 1, *spatial) tensors of percentile-normalised intensities;
    every spatial size must be a multiple of :attr:`size_multiple` (= 2, the average
    pool of H1). ``forward(x, return_intermediate=True)`` also returns ``t2 = x · BP1``
    before its batch norm, which RLN's loss pulls towards ``0.8 · gt + 0.2 · x``.

    All convolutions of the two forward projections (FP1: 3, FP2: 2) are
    Gaussian-initialised, as in the reference code; the others truncated-normal.
    """

    def __init__(
        self,
        ndim: int = 3,
        *,
        init_std: float = 1.0,
        gaussian_sigma: float = 2.0,
        bn_momentum: float = L.KERAS_BN_MOMENTUM,
    ):
        super().__init__()
        self.ndim = L.check_ndim(ndim)
        d, m = self.ndim, bn_momentum
        self.init_std = float(init_std)
        self.gaussian_sigma = float(gaussian_sigma)

        def cb(cin, cout, act=True, transpose=False):
            return _ConvBN(d, cin, cout, act=act, transpose=transpose, bn_momentum=m)

        self.pool = L.avg_pool(d, 2)
        # H1: forward projection FP1 (down-scale)
        self.fp1_1 = cb(1, 4)
        self.fp1_2 = cb(4, 4)
        self.fp1_3 = cb(8, 4)
        self.dv1_bn = L.batch_norm(d, 1, momentum=m)
        # H1: back projection BP1
        self.bp1_1 = cb(1, 8)
        self.bp1_2 = cb(8, 8)
        self.bp1_3 = cb(16, 8)
        self.bp1_up = cb(8, 4, transpose=True)
        self.bp1_4 = cb(4, 4)
        self.e1_bn = L.batch_norm(d, 1, momentum=m)
        # H2: forward projection FP2 on x
        self.fp2_1 = cb(1, 4)
        self.fp2_2 = cb(4, 4)
        self.dv2_bn = L.batch_norm(d, 1, momentum=m)
        # H2: back projection BP2
        self.bp2_1 = cb(1, 8)
        self.bp2_2 = cb(8, 8)
        self.e2_bn = L.batch_norm(d, 1, momentum=m)
        # H3: merge
        self.merge_a = L.conv(d, 1, 8, 3)
        self.merge_b = L.conv(d, 10, 8, 3)
        self.merge_out = cb(16, 8)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as the reference: Gaussian FP kernels, truncated normal elsewhere."""
        gaussian = {self.fp1_1, self.fp1_2, self.fp1_3, self.fp2_1, self.fp2_2}
        for module in self.modules():
            if isinstance(module, _ConvBN) and module in gaussian:
                self._gaussian_init(module.conv.weight)
            elif isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                if not any(module is g.conv for g in gaussian):
                    L.truncated_normal_(module.weight, std=self.init_std)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()

    def _gaussian_init(self, weight: torch.Tensor) -> None:
        cout, cin = weight.shape[:2]
        kernels = [
            torch.from_numpy(
                L.gaussian_kernel(weight.shape[-1], f * self.gaussian_sigma, self.ndim)
            )
            for f in FP_SIGMA_FACTORS
        ]
        scale = 0.7 + 0.3 * torch.rand(cin)
        for o in range(cout):
            for i in range(cin):
                weight[o, i] = kernels[o % len(kernels)] * scale[i]

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, return_intermediate: bool = False):
        """Restore ``x`` (B, 1, *spatial); optionally also return ``t2 = x · BP1`` (pre-BN).

        Raises
        ------
        InputError
            If ``x`` is not (B, 1, *spatial) with ``ndim`` spatial axes, each a multiple of 2.
        """
        if x.ndim != self.ndim + 2 or x.shape[1] != 1:
            raise InputError(
                f"RLN ({self.ndim}D) expects a (batch, 1, {'z, ' if self.ndim == 3 else ''}y, x) "
                f"tensor, got shape {tuple(x.shape)}"
            )
        if any(s % self.size_multiple for s in x.shape[2:]):
            raise InputError(
                f"RLN: spatial size {tuple(x.shape[2:])} must be a multiple of {self.size_multiple} "
                "along every axis (pad the input; RestorationModel.predict does this)"
            )
        # ---- H1: down-scale estimate (intermediates dropped after their last use: at inference
        # nothing else holds them, which halves the peak memory of a whole volume)
        xd = self.pool(x)
        c1 = self.fp1_1(xd)
        c2 = self.fp1_2(c1)
        c3 = self.fp1_3(torch.cat([c1, c2], dim=1)) + F.softplus(xd)  # sp(x_d) tiled ×4
        del c1, c2
        fp1 = c3.mean(dim=1, keepdim=True)
        del c3
        dv1 = self.dv1_bn(rl_divide(xd, fp1))
        del xd, fp1
        d1 = self.bp1_1(dv1)
        d2 = self.bp1_2(d1)
        d3 = self.bp1_3(torch.cat([d2, d1], dim=1))
        del d1, d2, dv1
        up = self.bp1_up(d3)
        del d3
        bp1 = self.bp1_4(up).mean(dim=1, keepdim=True)
        del up
        t2 = rl_multiply(x, bp1)
        del bp1
        e1 = F.softplus(self.e1_bn(t2))
        if not return_intermediate:
            del t2
        # ---- H2: original-scale update
        u1 = self.fp2_1(x)
        fp2 = (self.fp2_2(u1) + F.softplus(x)).mean(dim=1, keepdim=True)
        del u1
        dv2 = self.dv2_bn(rl_divide(x, fp2))
        del fp2
        v1 = self.bp2_1(dv2)
        del dv2
        bp2 = (self.bp2_2(v1) + 1.0).mean(dim=1, keepdim=True)
        del v1
        e2 = F.softplus(self.e2_bn(rl_multiply(e1, bp2)))
        del bp2
        # ---- H3: merge
        a = F.softplus(self.merge_a(e2))
        merged = torch.cat([a, e2, e1], dim=1)
        del e1, e2
        b = F.softplus(self.merge_b(merged))
        del merged
        ab = torch.cat([a, b], dim=1)
        del a, b
        out = self.merge_out(ab).mean(dim=1, keepdim=True)
        if return_intermediate:
            return out, t2
        return out

    def extra_repr(self) -> str:
        return f"ndim={self.ndim}"


SPEC = register_spec(
    NetworkSpec(
        name="rln",
        network=RLN,
        # Li et al. 2022: Adam 0.015 · 0.95^(step/600), batch 4 crops of one volume, no flips
        recipe={
            "loss": "rln",
            "lr": 0.015,
            "schedule": "exp",
            "lr_decay": 0.95,
            "lr_decay_steps": 600,
            "batch": 4,
            "patch_rejection": "mean",
            "rejection_threshold": 0.8,
            "norm_percentiles": (0.01, 99.5),
            "augment": False,
            "same_image_batch": True,
        },
        # the 2× average pool in H1
        size_multiple=2,
        # verified by a gradient probe in the tests: 6 convs at half scale (×2 = 12) + pooling
        # and the transposed conv (+2) + BP1's last conv (+1) + the merge part (+3)
        receptive_radius=18,
        reference="Li et al., Nature Methods 19:1427 (2022)",
        doi="10.1038/s41592-022-01652-7",
    )
)
