"""RLN network (Li et al., Nature Methods 2022): architecture, parameter count, custom
gradients, initialisation, receptive field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lucyd.errors import InputError
from lucyd.nets import build_network, count_parameters
from lucyd.nets.layers import gaussian_kernel, receptive_field_probe
from lucyd.nets.rln import FP_SIGMA_FACTORS, RLN, RLDivide, RLMultiply, rl_divide, rl_multiply


def test_parameter_count_matches_released_checkpoint():
    net = build_network("rln", ndim=3)
    assert isinstance(net, RLN)
    n = count_parameters(net)
    # 15,968 from the released checkpoint: conv weights + BN gamma/beta (Keras trainable)
    assert abs(n - 15_968) <= 0.01 * 15_968
    assert n == 15_968
    conv = sum(
        p.numel()
        for name, p in net.named_parameters()
        if "conv" in name or "merge_" in name and p.ndim > 1
    )
    assert conv == 15_808
    # BN moving statistics are buffers, not parameters
    buffers = sum(b.numel() for name, b in net.named_buffers() if "running" in name)
    assert buffers == 160
    assert count_parameters(build_network("rln", ndim=2)) == 5_472
    assert RLN.size_multiple == 2


@pytest.mark.parametrize("ndim,shape", [(3, (6, 10, 8)), (2, (12, 18))])
def test_forward_shapes_and_intermediate(ndim, shape):
    torch.manual_seed(0)
    net = RLN(ndim=ndim)
    x = torch.rand((2, 1) + shape) + 0.1
    out, t2 = net(x, return_intermediate=True)
    assert out.shape == x.shape and t2.shape == x.shape
    assert torch.isfinite(out).all()
    # out is the mean of softplus channels: strictly positive
    assert (out > 0).all()
    assert net(x).shape == x.shape


def test_forward_rejects_bad_input():
    net = RLN(ndim=3)
    with pytest.raises(InputError, match="multiple of 2"):
        net(torch.rand(1, 1, 5, 8, 8))
    with pytest.raises(InputError, match="expects"):
        net(torch.rand(1, 2, 4, 8, 8))
    with pytest.raises(InputError, match="expects"):
        net(torch.rand(1, 1, 8, 8))
    with pytest.raises(InputError, match="ndim"):
        RLN(ndim=4)


def test_custom_division_gradient():
    a = torch.rand(5, dtype=torch.float64, requires_grad=True)
    x = (torch.rand(5, dtype=torch.float64) + 0.5).requires_grad_(True)
    dy = torch.randn(5, dtype=torch.float64)
    q = rl_divide(a, x)
    assert torch.allclose(q, a / (x + 1e-3))
    q.backward(dy)
    qd = (a / (x + 1e-3)).detach()
    assert torch.allclose(a.grad, dy)  # not dy / x
    assert torch.allclose(x.grad, -(qd**2) * dy)
    # the true gradient w.r.t. x would be -q dy / (x + eps): different
    assert not torch.allclose(x.grad, -qd * dy / (x.detach() + 1e-3))
    # division by (-eps) gives inf -> 0 (div_no_nan semantics)
    z = RLDivide.apply(torch.ones(1), torch.full((1,), -1e-3))
    assert z.item() == 0.0


def test_custom_multiplication_gradient():
    a = torch.rand(4, dtype=torch.float64, requires_grad=True)
    x = torch.rand(4, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(4, dtype=torch.float64)
    m = rl_multiply(a, x)
    assert torch.allclose(m, a * x)
    m.backward(dy)
    assert torch.allclose(a.grad, dy)  # not dy * x
    assert torch.allclose(x.grad, dy * a.detach())
    assert RLMultiply.apply(torch.ones(1), torch.full((1,), 3.0)).item() == 3.0


def test_gaussian_initialisation_of_forward_projections():
    torch.manual_seed(3)
    net = RLN(ndim=3)
    w = net.fp1_1.conv.weight.detach().numpy()  # (4, 1, 3, 3, 3)
    assert w.shape == (4, 1, 3, 3, 3)
    for k, f in enumerate(FP_SIGMA_FACTORS):
        g = gaussian_kernel(3, 2.0 * f, 3)
        ratio = w[k, 0] / g
        # one scale per input channel, drawn from U(0.7, 1)
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-5)
        assert 0.7 <= ratio.flat[0] <= 1.0
    # σ = 0.5 s = 1 is the narrowest kernel: smallest corner/centre ratio
    corner = w[:, 0, 0, 0, 0] / w[:, 0, 1, 1, 1]
    assert np.argmin(corner) == 1 and np.argmax(corner) == 0
    # the second FP conv has 4 input channels each with its own scale
    w2 = net.fp1_2.conv.weight.detach().numpy()
    assert np.allclose(w2[0, 0] / w2[0, 0, 1, 1, 1], gaussian_kernel(3, 4.0, 3), rtol=1e-5)
    # non-Gaussian convs: truncated normal with std 1 (|w| <= 2)
    other = net.bp1_2.conv.weight.detach()
    assert other.abs().max() <= 2.0 and 0.6 < other.std() < 1.1


def test_receptive_field_within_declared_radius():
    torch.manual_seed(0)
    net = RLN(ndim=2)
    r = receptive_field_probe(net, 2, size=64)
    assert max(r) <= RLN.receptive_radius
    assert min(r) >= RLN.receptive_radius - 2  # the declared radius is tight
    x = torch.rand(1, 1, 64, 64)
    net.eval()
    with torch.no_grad():
        y0 = net(x)
        x2 = x.clone()
        x2[0, 0, 32 + RLN.receptive_radius + 1 :, :] = 5.0  # change far from row 32
        y1 = net(x2)
    assert torch.equal(y0[0, 0, 32], y1[0, 0, 32])


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(1)
    net = RLN(ndim=2)
    x = torch.rand(2, 1, 16, 16) + 0.1
    out, t2 = net(x, return_intermediate=True)
    (out.mean() + t2.mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
