"""Tests of the restoration networks CARE, 3D-RCAN, m-rBCR, DenseDeconNet and the wavelets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from lucyd.errors import InputError
from lucyd.nets import (
    build_network,
    care,
    count_parameters,
    ddn,
    get_network,
    get_spec,
    rbcr,
    rcan,
)
from lucyd.nets.wavelets import crop_to, dwt, idwt, pad_to_multiple, wavedec, waverec
from lucyd.train.losses import laplace_nll_loss

CLASSES = {"care": care.CARE, "rcan": rcan.RCAN, "rbcr": rbcr.MRBCR, "ddn": ddn.DenseDeconNet}
# Tiny configurations for the tests that are not about parameter counts.
TINY = {
    "care": {"first_filters": 4, "kernel_size": 3},
    "rcan": {"channels": 8, "groups": 2, "blocks": 1, "reduction": 2},
    "rbcr": {"channels": 4, "hidden": 8, "stages": 2},
    "ddn": {},
}
NAMES = list(TINY)
SHAPES = {2: (36, 44), 3: (12, 20, 28)}  # multiples of 4 but not powers of two


class _Fixed(torch.nn.Module):
    """A "network" with a fixed output (to evaluate a training loss on it)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out


def tiny(name: str, ndim: int, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(name, ndim=ndim, **{**TINY[name], **kw})


# ----------------------------------------------------------------------------- registry / API


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_by_name_with_contract_attributes(name):
    cls = get_network(name.upper())
    assert cls is CLASSES[name]
    for ndim in (2, 3):
        net = build_network(name, ndim=ndim, **TINY[name])
        assert isinstance(net, cls)
        assert isinstance(net.size_multiple, int) and net.size_multiple >= 1
        rf = net.receptive_field
        assert len(rf) == ndim and all(isinstance(r, int) and r >= 1 for r in rf)


@pytest.mark.parametrize("name", NAMES + ["rln"])
def test_spec_is_the_one_home_of_a_network(name):
    """Recipe, loss, size multiple and class all come from the network's NetworkSpec."""
    from lucyd.train import TrainConfig
    from lucyd.train.losses import get_loss

    spec = get_spec(name)
    assert spec.network is get_network(name) and spec.network.registry_name == name
    assert spec.network.size_multiple == spec.size_multiple
    assert build_network(name, ndim=2).size_multiple == spec.size_multiple  # default parameters
    assert callable(get_loss(spec.loss))
    resolved = TrainConfig(model=name).resolved(2, (64, 64))
    for key, value in spec.recipe.items():
        assert getattr(resolved, key) == value, key


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_raise_input_error(name):
    with pytest.raises(InputError):
        build_network(name, ndim=4)
    with pytest.raises(InputError):
        build_network(name, ndim=2, not_a_parameter=1)


def test_size_multiples_follow_depth_and_levels():
    assert build_network("care", ndim=2, depth=3, first_filters=2).size_multiple == 8
    assert build_network("rbcr", ndim=2, levels=3, channels=2, hidden=2).size_multiple == 8
    assert build_network("rcan", ndim=2, channels=8).size_multiple == 1
    assert build_network("ddn", ndim=2).size_multiple == 2


# ----------------------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_finite(name, ndim):
    net = tiny(name, ndim)
    x = torch.rand(2, 1, *SHAPES[ndim])
    y = net(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["care", "rbcr", "ddn"])
def test_forward_pads_sizes_that_are_not_multiples(name):
    net = tiny(name, 2).eval()
    x = torch.rand(1, 1, 13, 18)
    assert net(x).shape == x.shape
    x3 = torch.rand(1, 1, 7, 10, 9)
    assert tiny(name, 3).eval()(x3).shape == x3.shape


# ----------------------------------------------------------------------------- parameter counts


def test_care_parameter_counts_match_csbdeep():
    n3 = count_parameters(build_network("care", ndim=3))
    n2 = count_parameters(build_network("care", ndim=2))
    assert abs(n3 - 996_769) <= 0.01 * 996_769
    assert n3 == 996_769  # the exact CSBDeep layout
    assert abs(n2 - 920_000) <= 0.01 * 920_000
    assert n2 == 922_977
    # the probabilistic head is one more 1x1 convolution (32 weights + 1 bias)
    assert count_parameters(build_network("care", ndim=3, probabilistic=True)) == n3 + 33


def test_care_parameter_count_independent_formula():
    # CSBDeep unet_block, depth 2, 32 filters, kernel 3 in 3D: conv layers (in, out)
    layers = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 64)]
    layers += [(128, 64), (64, 32), (64, 32), (32, 32)]
    expected = sum(27 * i * o + o for i, o in layers) + 32 + 1
    assert expected == 996_769
    assert count_parameters(build_network("care", ndim=3)) == expected


def test_rcan_parameter_count():
    n3 = count_parameters(build_network("rcan", ndim=3))
    assert n3 == 1_002_621
    assert abs(n3 - 1_000_000) <= 0.01 * 1_000_000
    # independent count: head, 5 groups x (3 RCABs + conv), conv, output conv
    conv = 27 * 32 * 32 + 32
    rcab = 2 * conv + (32 * 4 + 4) + (4 * 32 + 32)
    assert n3 == (27 * 32 + 32) + 5 * (3 * rcab + conv) + conv + (27 * 32 + 1)
    assert count_parameters(build_network("rcan", ndim=2)) == 337_917
    assert count_parameters(build_network("rcan", ndim=3, groups=2, blocks=1, channels=8)) < n3


def test_ddn_parameter_count_is_16860():
    net = build_network("ddn", ndim=3)
    assert count_parameters(net) == 16_860
    # no biases anywhere; BN affine parameters on 74 channels (input + every conv)
    bn = sum(
        m.weight.numel() + m.bias.numel()
        for m in net.modules()
        if isinstance(m, torch.nn.BatchNorm3d)
    )
    assert bn == 2 * 74
    assert count_parameters(build_network("ddn", ndim=2)) == 5_804


def test_rbcr_is_lightweight():
    n2 = count_parameters(build_network("rbcr", ndim=2))
    assert n2 == 149_105 and n2 <= 250_000
    assert count_parameters(build_network("rbcr", ndim=2, psf_shape=(9, 9))) == n2 + 9 * 16 + 1
    assert count_parameters(build_network("rbcr", ndim=3)) == 404_145


# ----------------------------------------------------------------------------- gradients, seeds


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    kw = {"psf_shape": (5, 5)} if name == "rbcr" else {}
    if name == "care":
        kw = {"probabilistic": True}
    net = tiny(name, 2, **kw)
    torch.manual_seed(1)
    x = torch.rand(2, 1, 16, 20)
    target = torch.rand(2, 1, 16, 20)
    from lucyd.train.losses import get_loss

    loss, _ = get_loss("laplace_nll" if name == "care" else get_spec(name).loss)(net, x, target)
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_initialisation(name):
    a, b, c = tiny(name, 3, seed=7), tiny(name, 3, seed=7), tiny(name, 3, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


# ----------------------------------------------------------------------------- CARE specifics


@pytest.mark.parametrize("ndim", [2, 3])
def test_care_residual_identity_with_zero_weights(ndim):
    net = tiny("care", ndim)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    x = torch.rand(1, 1, *SHAPES[ndim])
    assert torch.equal(net(x), x)
    assert not build_network("care", ndim=2, out_channels=2, first_filters=2).residual


def test_care_probabilistic_scale_positive_and_floored():
    net = tiny("care", 2, probabilistic=True)
    x = torch.rand(2, 1, 16, 16)
    y = net(x)
    assert y.shape == (2, 2, 16, 16)
    assert (y[:, 1] > 0).all()
    with torch.no_grad():
        net.scale_head.bias.fill_(-200.0)  # softplus underflows: the 1e-3 floor remains
    assert torch.allclose(net(x)[:, 1], torch.full((2, 16, 16), 1e-3))


def test_laplace_nll_matches_torch_distribution():
    torch.manual_seed(0)
    mu, sigma, y = torch.randn(2, 1, 5, 6), torch.rand(2, 1, 5, 6) + 0.1, torch.randn(2, 1, 5, 6)
    nll, _ = laplace_nll_loss(_Fixed(torch.cat((mu, sigma), 1)), y, y)
    ref = -torch.distributions.Laplace(mu, sigma).log_prob(y).mean()
    assert torch.allclose(nll, ref, atol=1e-6)
    with pytest.raises(InputError):
        laplace_nll_loss(_Fixed(mu), y, y)


def test_care_receptive_field_matches_csbdeep_quote():
    # CSBDeep: ~43 px one-sided for depth 2 / kernel 5 (2D)
    assert build_network("care", ndim=2).receptive_field == (84, 84)


# ----------------------------------------------------------------------------- losses


def _global_ssim(p, t, c1=1e-4, c2=9e-4):
    p, t = np.asarray(p, np.float64).ravel(), np.asarray(t, np.float64).ravel()
    cov = np.mean((p - p.mean()) * (t - t.mean()))
    return ((2 * p.mean() * t.mean() + c1) * (2 * cov + c2)) / (
        (p.mean() ** 2 + t.mean() ** 2 + c1) * (p.var() + t.var() + c2)
    )


def test_ddn_loss_terms():
    from lucyd.train.losses import get_loss

    ddn_loss = get_loss("ddn")
    y = torch.rand(1, 1, 8, 8) + 0.5
    loss, _ = ddn_loss(_Fixed(y), y, y)
    assert abs(loss.item()) < 1e-6  # mse 0, SSIM 1, no negative output
    p = y + 0.1
    expected = 0.01 - math.log((1 + _global_ssim(p, y)) / 2)  # brighter: no reward for it
    assert abs(ddn_loss(_Fixed(p), y, y)[0].item() - expected) < 1e-5
    n = y - 1.0  # negative outputs are penalised by 1.3 × the most negative one
    expected = 1.0 - math.log((1 + _global_ssim(n, y)) / 2) + 1.3 * -n.min().item()
    assert abs(ddn_loss(_Fixed(n), y, y)[0].item() - expected) < 1e-5


def test_rbcr_loss_terms():
    rng = np.random.default_rng(3)
    p, t = rng.random((1, 1, 8, 8)), rng.random((1, 1, 8, 8))
    single = np.mean((p - t) ** 2) + 0.5 * np.mean(
        np.abs(np.abs(np.fft.rfftn(p, axes=(2, 3))) - np.abs(np.fft.rfftn(t, axes=(2, 3))))
    )
    pt, tt = torch.tensor(p), torch.tensor(t)
    assert abs(rbcr.rbcr_loss(pt, tt, scales=1).item() - single) < 1e-10
    assert rbcr.rbcr_loss(pt, tt).item() > single  # the coarser scales add to it
    assert rbcr.rbcr_loss(tt, tt).item() == 0.0
    # the FFT-magnitude term ignores circular shifts; the MSE term does not
    shifted = torch.roll(tt, shifts=(2, 3), dims=(2, 3))
    assert rbcr.fft_magnitude_l1(shifted, tt).item() < 1e-12
    assert rbcr.rbcr_loss(shifted, tt, scales=1).item() > 0.01


# ----------------------------------------------------------------------------- wavelets


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
@pytest.mark.parametrize("shape", [(16, 12), (8, 12, 16)])
def test_wavelet_perfect_reconstruction_and_energy(wavelet, shape):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    c = dwt(x, wavelet)
    assert c.shape == (2, 3 * 2 ** len(shape), *(s // 2 for s in shape))
    assert torch.allclose(idwt(c, wavelet), x, atol=1e-12)
    assert torch.allclose((c**2).sum(), (x**2).sum())
    coeffs = wavedec(x, 2, wavelet)
    assert torch.allclose(waverec(coeffs, wavelet), x, atol=1e-12)
    assert torch.allclose(sum((t**2).sum() for t in coeffs), (x**2).sum())


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_wavelet_matrix_is_orthogonal(wavelet):
    n = 8 * 4
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, 8, 4)
    w = dwt(basis, wavelet).reshape(n, n)  # rows: transforms of the basis vectors
    assert torch.allclose(w @ w.T, torch.eye(n, dtype=torch.float64), atol=1e-12)


def test_haar_of_constant_is_pure_approximation():
    x = torch.full((1, 2, 4, 6, 8), 3.0, dtype=torch.float64)
    c = dwt(x)
    assert torch.allclose(c[:, :2], torch.full_like(c[:, :2], 3.0 * 2**1.5))
    assert torch.allclose(c[:, 2:], torch.zeros_like(c[:, 2:]))
    with pytest.raises(InputError):
        dwt(torch.zeros(1, 1, 5, 4))


def test_pad_and_crop_round_trip():
    x = torch.rand(1, 1, 5, 6, 7)
    xp, shape = pad_to_multiple(x, 4)
    assert xp.shape[2:] == (8, 8, 8)
    assert torch.equal(crop_to(xp, shape), x)


# ----------------------------------------------------------------------------- rbcr PSF path


def _gauss(sigma: float, size: int = 9) -> np.ndarray:
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def test_rbcr_output_depends_on_psf():
    net = tiny("rbcr", 2, psf_shape=(9, 9)).eval()
    x = torch.rand(1, 1, 24, 20)
    net.set_psf(_gauss(0.8))
    with torch.no_grad():
        y1 = net(x)
        net.set_psf(_gauss(2.0))
        y2 = net(x)
        # per-call PSF override equals the stored PSF
        y3 = net(x, psf=torch.as_tensor(_gauss(2.0), dtype=torch.float32))
    assert (y1 - y2).abs().max() > 1e-4
    assert torch.allclose(y2, y3, atol=1e-6)
    with pytest.raises(InputError):
        tiny("rbcr", 2).set_psf(_gauss(1.0))


def test_wiener_with_delta_psf_is_scaling():
    x = torch.rand(1, 1, 10, 12)
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1.0
    y = rbcr.wiener_deconvolve(x, delta, torch.tensor(0.25))
    assert torch.allclose(y, x / 1.25, atol=1e-6)


def test_wiener_inverts_blur_with_small_lambda():
    # object zero near the edges: edge padding = zero padding, so the blur is invertible exactly
    rng = np.random.default_rng(0)
    x = np.zeros((20, 24))
    x[6:14, 6:18] = rng.random((8, 12))
    psf = _gauss(1.0, 5)
    blurred = scipy.signal.fftconvolve(x, psf, mode="same")
    y = rbcr.wiener_deconvolve(
        torch.tensor(blurred)[None, None],
        torch.tensor(psf),
        torch.tensor(1e-12, dtype=torch.float64),
    )
    assert np.abs(blurred - x).max() > 0.1
    assert np.abs(y[0, 0].numpy() - x).max() < 1e-5


# ----------------------------------------------------------------------------- receptive field


def _probe_extent(net: torch.nn.Module, ndim: int, n: int) -> list[int]:
    """Extent per axis of the non-zero input gradients of the centre output voxel."""
    net.eval()
    for m in net.modules():  # ignore RCAN's global pooling (it is not a local receptive field)
        if isinstance(m, torch.nn.AdaptiveAvgPool2d | torch.nn.AdaptiveAvgPool3d):
            m.register_forward_hook(lambda mod, inp, out: out.detach())
    torch.manual_seed(5)
    x = torch.rand(1, 1, *(n,) * ndim, requires_grad=True)
    y = net(x)
    y[(0, 0, *(n // 2,) * ndim)].backward()
    nz = torch.nonzero(x.grad[0, 0].abs() > 0)
    return [int(nz[:, i].max() - nz[:, i].min() + 1) for i in range(ndim)]


@pytest.mark.parametrize(
    "name,ndim,n",
    [
        ("care", 2, 72),
        ("rcan", 2, 40),
        ("rbcr", 2, 64),
        ("ddn", 2, 64),
        ("rcan", 3, 24),
    ],
)
def test_receptive_field_bounds_gradient_probe(name, ndim, n):
    net = tiny(name, ndim)
    reported = net.receptive_field
    assert max(reported) < n  # the probe sees the whole receptive field
    measured = _probe_extent(net, ndim, n)
    for r, m in zip(reported, measured, strict=True):
        assert m <= r
        assert m >= r // 2  # the bound is not vacuous


@pytest.mark.parametrize("name", ["rln", "care"])
def test_optimised_network_predicts_the_same(name):
    """optimise_for_inference (BN folded, oneDNN convolutions, channels-last weights) keeps the
    output to float32 round-off, and the oneDNN path is the one taken."""
    import copy

    from lucyd.nets import build_network
    from lucyd.nets.layers import _OneDNNConv3d, optimise_for_inference

    torch.manual_seed(0)
    plain = build_network(name, ndim=3)
    plain.train()
    with torch.no_grad():  # give the batch norms non-trivial running statistics
        plain(torch.rand(2, 1, 16, 32, 32))
    plain.eval()
    fast = optimise_for_inference(copy.deepcopy(plain))
    assert any(isinstance(m, _OneDNNConv3d) for m in fast.modules())
    x = torch.rand(1, 1, 16, 32, 32)
    with torch.inference_mode():
        ref, got = plain(x), fast(x)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
