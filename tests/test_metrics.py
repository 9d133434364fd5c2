"""Tests of lucyd.metrics and `lucyd evaluate`.

References: scikit-image (test-only dependency) for PSNR / SSIM / NRMSE, analytic results for
the normalisation and the affine fit, synthetic blurred point patterns for the resolution
estimates.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import InputError
from lucyd.metrics import (
    evaluate,
    fit_affine,
    frc,
    global_ssim_torch,
    normalize_pair,
    normalize_percentile,
    nrmse,
    psnr,
    resolution,
    ssim,
    ssim_torch,
)

skm = pytest.importorskip("skimage.metrics")


def _pair(rng, shape, noise=0.1, smooth=2.0):
    """A smooth structured image and a noisy, slightly distorted copy (float64)."""
    gt = gaussian_filter(rng.random(shape), smooth)
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    pred = 0.9 * gt + 0.05 + noise * rng.standard_normal(shape)
    return pred, gt


def _sk_ssim(pred, gt, data_range):
    return skm.structural_similarity(
        gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=data_range,
    )


# ----------------------------------------------------------------------------------- SSIM
@pytest.mark.parametrize("shape", [(48, 37), (13, 24, 21)])
@pytest.mark.parametrize("data_range", [1.0, 3.7])
def test_ssim_matches_skimage(rng, shape, data_range):
    pred, gt = _pair(rng, shape)
    ours = ssim(pred, gt, data_range=data_range)
    ref = _sk_ssim(pred, gt, data_range)
    assert abs(ours - ref) < 1e-4
    assert 0.05 < ours < 0.99  # a non-trivial value, not a degenerate 0 or 1


def test_ssim_default_range_is_gt_range_and_matches_skimage(rng):
    pred, gt = _pair(rng, (32, 32))
    gt = 5.0 * gt + 2.0
    assert abs(ssim(pred, gt) - _sk_ssim(pred, gt, gt.max() - gt.min())) < 1e-4


def test_ssim_identity_symmetry_and_full_map(rng):
    pred, gt = _pair(rng, (30, 31))
    assert ssim(gt, gt, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(pred, gt, 1.0) == pytest.approx(ssim(gt, pred, 1.0), abs=1e-12)
    value, smap = ssim(pred, gt, 1.0, full=True)
    assert smap.shape == gt.shape
    assert value == pytest.approx(smap[5:-5, 5:-5].mean(), abs=1e-12)
    _, sk_map = skm.structural_similarity(
        gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, full=True,
    )
    np.testing.assert_allclose(smap, sk_map, atol=1e-6)


def test_ssim_more_noise_lower(rng):
    _, gt = _pair(rng, (40, 40))
    noise = rng.standard_normal(gt.shape)
    values = [ssim(gt + s * noise, gt, 1.0) for s in (0.01, 0.05, 0.2, 0.5)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_ssim_thin_stack_does_not_crop_short_axis(rng):
    pred, gt = _pair(rng, (4, 24, 24))
    value, smap = ssim(pred, gt, 1.0, full=True)
    assert value == pytest.approx(smap[:, 5:-5, 5:-5].mean(), abs=1e-12)


def test_ssim_accepts_torch_tensors(rng):
    pred, gt = _pair(rng, (24, 24))
    assert ssim(torch.from_numpy(pred), torch.from_numpy(gt), 1.0) == pytest.approx(
        ssim(pred, gt, 1.0), abs=1e-12
    )


# ----------------------------------------------------------------------------------- PSNR / NRMSE
def test_psnr_matches_skimage_and_analytic(rng):
    pred, gt = _pair(rng, (20, 30))
    assert psnr(pred, gt, data_range=1.0) == pytest.approx(
        skm.peak_signal_noise_ratio(gt, pred, data_range=1.0), abs=1e-10
    )
    # default data range: gt.max() - gt.min()
    gt2 = 10 * gt
    assert psnr(pred, gt2) == pytest.approx(
        skm.peak_signal_noise_ratio(gt2, pred, data_range=gt2.max() - gt2.min()), abs=1e-10
    )
    # analytic: a constant error d gives 20 log10(R / d)
    assert psnr(gt + 0.1, gt, data_range=2.0) == pytest.approx(20 * math.log10(2.0 / 0.1))
    assert psnr(gt, gt, 1.0) == math.inf


def test_nrmse_matches_skimage_and_definition(rng):
    pred, gt = _pair(rng, (20, 30))
    ref = skm.normalized_root_mse(gt, pred, normalization="euclidean")
    assert nrmse(pred, gt) == pytest.approx(ref, rel=1e-12)
    assert nrmse(pred, gt) == pytest.approx(np.linalg.norm(pred - gt) / np.linalg.norm(gt))
    assert nrmse(gt, gt) == 0.0
    assert nrmse(1.1 * gt, gt) == pytest.approx(0.1)


# ----------------------------------------------------------------------------------- normalisation
def test_normalize_percentile_definition(rng):
    x = rng.gamma(2.0, 3.0, size=(30, 40)) + 7
    out = normalize_percentile(x, 1, 99)
    lo, hi = np.percentile(x, [1, 99])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x - lo) / (hi - lo), rtol=1e-6, atol=1e-6)
    assert np.mean(out < 0) == pytest.approx(0.01, abs=0.002)
    clipped = normalize_percentile(x, 1, 99, clip=True)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    # defaults 0.1 / 99.9; constant image does not divide by zero
    lo, hi = np.percentile(x, [0.1, 99.9])
    np.testing.assert_allclose(normalize_percentile(x), (x - lo) / (hi - lo), rtol=1e-6, atol=1e-6)
    assert np.all(normalize_percentile(np.full((4, 4), 3.0)) == 0)


def test_normalize_percentile_axis_and_errors(rng):
    x = rng.random((3, 10, 10)) * np.array([1.0, 10.0, 100.0])[:, None, None]
    out = normalize_percentile(x, 0, 100, axis=(1, 2))
    np.testing.assert_allclose(out.reshape(3, -1).max(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(InputError, match="pmin"):
        normalize_percentile(x, 50, 10)
    with pytest.raises(InputError, match="non-finite"):
        normalize_percentile(np.array([[1.0, np.nan]]))


def test_fit_affine_recovers_known_transform_and_matches_polyfit(rng):
    x = rng.random((25, 25))
    scale, offset = fit_affine(x, 3.0 * x - 2.0)
    assert scale == pytest.approx(3.0) and offset == pytest.approx(-2.0)
    t = 0.5 * x + 1.0 + 0.1 * rng.standard_normal(x.shape)
    scale, offset = fit_affine(x, t)
    ref = np.polyfit(x.ravel(), t.ravel(), 1)
    assert scale == pytest.approx(ref[0], rel=1e-9) and offset == pytest.approx(ref[1], rel=1e-9)
    # as CSBDeep: alpha = cov / var, beta = mean(t) - alpha mean(x)
    c = np.cov(x.ravel(), t.ravel())
    assert scale == pytest.approx(c[0, 1] / c[0, 0], rel=1e-9)
    assert fit_affine(np.ones((4, 4)), t[:4, :4]) == (0.0, pytest.approx(t[:4, :4].mean()))


def test_evaluate_convention_against_independent_computation(rng):
    pred, gt = _pair(rng, (40, 40))
    gt = 1000 * gt + 100  # raw camera-like scale
    pred = 37 * pred - 5
    scores = evaluate(pred, gt, pmin=1, pmax=99)
    assert set(scores) == {"psnr", "ssim", "nrmse"}
    lo, hi = np.percentile(gt, [1, 99])
    gt_n = (gt - lo) / (hi - lo)
    a, b = np.polyfit(pred.ravel(), gt_n.ravel(), 1)
    pred_n = a * pred + b
    assert scores["psnr"] == pytest.approx(
        skm.peak_signal_noise_ratio(gt_n, pred_n, data_range=1.0), abs=1e-8
    )
    assert scores["ssim"] == pytest.approx(_sk_ssim(pred_n, gt_n, 1.0), abs=1e-4)
    assert scores["nrmse"] == pytest.approx(
        skm.normalized_root_mse(gt_n, pred_n, normalization="euclidean"), rel=1e-8
    )
    p_n, g_n, s, o = normalize_pair(pred, gt, pmin=1, pmax=99)
    np.testing.assert_allclose(g_n, gt_n)
    assert s == pytest.approx(a) and o == pytest.approx(b)


def test_evaluate_is_invariant_to_affine_changes_of_prediction(rng):
    pred, gt = _pair(rng, (12, 32, 32))
    base = evaluate(pred, gt)
    for a, b in [(10.0, 3.0), (0.01, -7.0), (-2.0, 1.0)]:
        other = evaluate(a * pred + b, gt)
        for key in base:
            assert other[key] == pytest.approx(base[key], rel=1e-6)
    perfect = evaluate(3 * gt + 1, gt)
    assert perfect["psnr"] > 100 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["nrmse"] < 1e-6
    # a worse prediction scores worse on all three
    worse = evaluate(pred + 0.3 * rng.standard_normal(pred.shape), gt)
    assert worse["psnr"] < base["psnr"] and worse["ssim"] < base["ssim"]
    assert worse["nrmse"] > base["nrmse"]


@pytest.mark.parametrize(
    "func", [psnr, nrmse, ssim, evaluate, fit_affine], ids=lambda f: f.__name__
)
def test_bad_input_raises_input_error(func):
    a = np.ones((16, 16))
    with pytest.raises(InputError, match="different shapes"):
        func(a, np.ones((16, 15)))
    bad = a.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        func(bad, a)
    with pytest.raises(InputError, match="non-finite"):
        func(a, np.where(a > 0, np.inf, 0))


def test_wrong_dimensionality_and_degenerate_inputs():
    with pytest.raises(InputError, match="2D or 3D"):
        ssim(np.ones((2, 3, 16, 16)), np.ones((2, 3, 16, 16)))
    with pytest.raises(InputError, match="2D or 3D"):
        evaluate(np.ones(16), np.ones(16))
    with pytest.raises(InputError, match="constant"):
        evaluate(np.random.default_rng(0).random((16, 16)), np.ones((16, 16)))
    with pytest.raises(InputError, match="data_range"):
        psnr(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(InputError, match="data_range"):
        ssim(np.ones((16, 16)), np.zeros((16, 16)), data_range=-1)
    with pytest.raises(InputError, match="all zeros"):
        nrmse(np.ones((4, 4)), np.zeros((4, 4)))


# ----------------------------------------------------------------------------------- torch SSIM
@pytest.mark.parametrize("shape", [(2, 1, 40, 33), (1, 2, 14, 20, 18)])
def test_ssim_torch_matches_numpy(rng, shape):
    pred, gt = _pair(rng, shape)
    per = ssim_torch(torch.from_numpy(pred), torch.from_numpy(gt), 1.0, reduction="none")
    assert per.shape == shape[:2]
    for b in range(shape[0]):
        for c in range(shape[1]):
            assert float(per[b, c]) == pytest.approx(ssim(pred[b, c], gt[b, c], 1.0), abs=1e-4)
    # float32 (training precision) still within 1e-4 of the float64 numpy value
    mean32 = ssim_torch(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), 1.0)
    ref = np.mean([ssim(pred[i], gt[i], 1.0) for i in np.ndindex(*shape[:2])])
    assert float(mean32) == pytest.approx(ref, abs=1e-4)


def test_ssim_torch_gradient(rng):
    pred, gt = _pair(rng, (1, 1, 24, 24))
    p = torch.tensor(pred, requires_grad=True)
    loss = 1 - ssim_torch(p, torch.from_numpy(gt), data_range=1.0)
    loss.backward()
    before = 1 - loss.item()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # a small step against the gradient improves SSIM
    with torch.no_grad():
        better = ssim_torch(p - 1e-2 * p.grad / p.grad.abs().max(), torch.from_numpy(gt), 1.0)
    assert float(better) > before


def test_global_ssim_torch_formula_and_gradient(rng):
    pred, gt = _pair(rng, (3, 1, 8, 8, 8))
    p = torch.tensor(pred, requires_grad=True)
    per = global_ssim_torch(p, torch.from_numpy(gt), reduction="none")
    for b in range(3):
        x, y = pred[b].ravel(), gt[b].ravel()
        cov = np.mean((x - x.mean()) * (y - y.mean()))
        ref = ((2 * x.mean() * y.mean() + 1e-4) * (2 * cov + 9e-4)) / (
            (x.mean() ** 2 + y.mean() ** 2 + 1e-4) * (x.var() + y.var() + 9e-4)
        )
        assert per[b].item() == pytest.approx(ref, rel=1e-10)
    (-torch.log((1 + per.mean()) / 2)).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    g = torch.from_numpy(gt)
    assert float(global_ssim_torch(g, g)) == pytest.approx(1.0)


def test_torch_ssim_input_errors():
    a = torch.zeros(1, 1, 16, 16)
    with pytest.raises(InputError, match="different shapes"):
        ssim_torch(a, torch.zeros(1, 1, 16, 15))
    with pytest.raises(InputError, match="B, C"):
        ssim_torch(torch.zeros(16, 16), torch.zeros(16, 16))
    with pytest.raises(InputError, match=">= 11"):
        ssim_torch(torch.zeros(1, 1, 8, 16), torch.zeros(1, 1, 8, 16))
    with pytest.raises(InputError, match="different shapes"):
        global_ssim_torch(a, torch.zeros(2, 1, 16, 16))


# ----------------------------------------------------------------------------------- resolution
# Synthetic sample: random sparse points blurred with a Gaussian of known sigma, plus Gaussian
# noise. The FRC / decorrelation cut-off is where the Gaussian OTF exp(-2 pi^2 sigma^2 f^2)
# meets the noise floor, 1/f_c = sqrt(2) pi sigma / sqrt(ln SNR); at this SNR that is close to
# the blur's FWHM = 2.355 sigma, the value compared against (within a factor 1.5).
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _points(sigma, shape=(160, 160), noise=0.03, seed=0, density=0.005):
    rng = np.random.default_rng(seed)
    obj = np.zeros(shape)
    n = int(density * np.prod(shape))
    idx = tuple(rng.integers(0, s, n) for s in shape)
    obj[idx] = rng.uniform(0.5, 1.0, n)
    blurred = gaussian_filter(obj, sigma)
    blurred /= blurred.max()
    return blurred, blurred + noise * rng.standard_normal(shape)


@pytest.mark.parametrize("method", ["frc", "decorrelation"])
def test_resolution_grows_with_blur_and_matches_fwhm(method):
    sigmas = [2.0, 3.0, 4.5]
    values = []
    for sigma in sigmas:
        _, img = _points(sigma)
        res = resolution(img, method=method)
        assert res["status"] == "ok" and res["method"] == method
        values.append(res["resolution_px"])
        assert 1 / 1.5 < res["resolution_px"] / (FWHM * sigma) < 1.5
    assert values[0] < values[1] < values[2]


def test_one_image_frc_agrees_with_two_image_frc():
    clean, img = _points(3.0, shape=(192, 192))
    second = clean + 0.03 * np.random.default_rng(7).standard_normal(clean.shape)
    one = resolution(img)
    two = frc(img, second)
    assert two["status"] == "ok"
    assert abs(one["resolution_px"] / two["resolution_px"] - 1) < 0.2
    # two-image FRC of identical images is 1 everywhere: limited by sampling only
    same = frc(img, img)
    assert same["status"] == "nyquist" and same["resolution_px"] == 2.0
    np.testing.assert_allclose(same["correlation"], 1.0, atol=1e-9)


def test_resolution_curve_and_micrometres():
    _, img = _points(3.0)
    px = resolution(img)
    um = resolution(img, voxel_size=(0.065, 0.065))
    assert px["resolution_um"] is None
    assert um["resolution_um"] == pytest.approx(px["resolution_px"] * 0.065)
    f, c = um["frequencies"], um["correlation"]
    assert f.shape == c.shape and np.all(np.diff(f) > 0) and f.max() == pytest.approx(0.25)
    assert c[0] > 0.9 and c[-1] < 0.3  # signal at low, noise at high frequencies
    # the reported cut-off is where the smoothed curve crosses 1/7
    fc = 1 / um["resolution_px"]
    assert np.interp(fc, f, um["correlation_smoothed"]) == pytest.approx(1 / 7, abs=1e-9)
    dec = resolution(img, voxel_size=0.1, method="decorrelation")
    assert dec["resolution_um"] == pytest.approx(dec["resolution_px"] * 0.1)


@pytest.mark.parametrize("method", ["frc", "decorrelation"])
def test_noise_only_gives_no_resolution(method):
    noise = np.random.default_rng(3).standard_normal((128, 128))
    res = resolution(noise, voxel_size=0.1, method=method)
    assert res["status"] == "no-correlation"
    assert math.isnan(res["resolution_px"]) and math.isnan(res["resolution_um"])
    two = frc(noise, np.random.default_rng(4).standard_normal((128, 128)))
    assert math.isnan(two["resolution_px"])


def test_sharp_image_is_flagged_as_sampling_limited():
    _, img = _points(1.0, noise=0.001, density=0.02)
    res = resolution(img)
    assert res["status"] == "nyquist" and res["resolution_px"] == 4.0


def test_resolution_3d_lateral_and_axial():
    shape = (64, 64, 64)
    out = []
    for sz in (2.0, 4.0):
        _, vol = _points((sz, 2.0, 2.0), shape=shape, density=0.003)
        lat = resolution(vol, voxel_size=(0.3, 0.1, 0.1))
        ax = resolution(vol, voxel_size=(0.3, 0.1, 0.1), axis="axial")
        assert lat["status"] == "ok" and ax["status"] == "ok" and ax["axis"] == "axial"
        assert lat["resolution_um"] == pytest.approx(lat["resolution_px"] * 0.1)
        assert ax["resolution_um"] == pytest.approx(ax["resolution_px"] * 0.3)
        assert 1 / 1.5 < lat["resolution_px"] / (FWHM * 2.0) < 1.5
        assert 1 / 1.5 < ax["resolution_px"] / (FWHM * sz) < 1.5
        out.append((lat["resolution_px"], ax["resolution_px"]))
    # isotropic blur: axial and lateral estimates agree; more axial blur: only axial grows
    assert abs(out[0][1] / out[0][0] - 1) < 0.25
    assert out[1][1] > 1.3 * out[0][1]
    assert abs(out[1][0] / out[0][0] - 1) < 0.15


def test_resolution_input_errors():
    img = np.random.default_rng(0).random((32, 32))
    with pytest.raises(InputError, match="method"):
        resolution(img, method="fsc")
    with pytest.raises(InputError, match="axial"):
        resolution(img, axis="axial")
    with pytest.raises(InputError, match="axial"):
        resolution(np.random.default_rng(0).random((16, 32, 32)), axis="axial",
                   method="decorrelation")
    with pytest.raises(InputError, match="at least 16"):
        resolution(img[:8])
    with pytest.raises(InputError, match="2D or 3D"):
        resolution(img[0])
    with pytest.raises(InputError, match="non-finite"):
        resolution(np.where(img > 0.5, np.nan, img))
    with pytest.raises(InputError, match="voxel_size"):
        resolution(img, voxel_size=(0.1, -0.1))
    with pytest.raises(InputError, match="different shapes"):
        frc(img, img[:, :30])


# ----------------------------------------------------------------------------------- real data
def test_evaluate_real_w2s_pair_denoising_scores_higher(real_data):
    """W2S: 1-frame input vs 400-frame average. Each was contrast-stretched independently, which
    the affine fit absorbs; a simple Gaussian denoiser must improve all three scores."""
    noisy = tifffile.imread(real_data("w2s_denoise", "input_avg1_020_1.tif"))[:192, :192]
    target = tifffile.imread(real_data("w2s_denoise", "target_avg400_020_1.tif"))[:192, :192]
    raw = evaluate(noisy, target)
    smoothed = evaluate(gaussian_filter(noisy.astype(np.float64), 1.5), target)
    assert smoothed["psnr"] > raw["psnr"] + 1.0
    assert smoothed["ssim"] > raw["ssim"] and smoothed["nrmse"] < raw["nrmse"]
    # invariant to the independent contrast stretch
    again = evaluate(3.0 * noisy.astype(np.float64) + 11.0, target)
    assert again["psnr"] == pytest.approx(raw["psnr"], rel=1e-9)


def test_resolution_real_w2s_average_resolves_finer_than_single_frame(real_data):
    """400-frame average vs single frame of the same field: far higher SNR, finer FRC cut-off."""
    noisy = tifffile.imread(real_data("w2s_denoise", "input_avg1_044_0.tif"))
    target = tifffile.imread(real_data("w2s_denoise", "target_avg400_044_0.tif"))
    r_noisy, r_avg = resolution(noisy), resolution(target)
    assert r_noisy["status"] == "ok" and r_avg["status"] == "ok"
    assert r_avg["resolution_px"] < 0.7 * r_noisy["resolution_px"]
    d_noisy = resolution(noisy, method="decorrelation")
    d_avg = resolution(target, method="decorrelation")
    assert d_avg["resolution_px"] < 0.7 * d_noisy["resolution_px"]


# ----------------------------------------------------------------------------------- CLI
runner = CliRunner()


def test_cli_json_has_no_infinity():
    from lucyd.cli.cmd_evaluate import _json_number

    assert _json_number(math.inf) is None and _json_number(1.5) == 1.5


def _write(path, array):
    if path.suffix == ".npy":
        np.save(path, array)
    else:
        tifffile.imwrite(path, array)
    return str(path)


def test_cli_evaluate_json_matches_library(tmp_path, rng):
    pred, gt = _pair(rng, (12, 40, 40))
    p = _write(tmp_path / "pred.tif", pred.astype(np.float32))
    g = _write(tmp_path / "gt.npy", (1000 * gt).astype(np.uint16))
    result = runner.invoke(app, ["evaluate", p, g, "--json", "--pmin", "1", "--pmax", "99"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    ref = evaluate(pred.astype(np.float32), (1000 * gt).astype(np.uint16), pmin=1, pmax=99)
    assert set(scores) == {"psnr", "ssim", "nrmse"}
    for key, value in ref.items():
        assert scores[key] == pytest.approx(value, rel=1e-9)


def test_cli_evaluate_table(tmp_path, rng):
    pred, gt = _pair(rng, (40, 40))
    p = _write(tmp_path / "pred.tif", pred.astype(np.float32))
    g = _write(tmp_path / "gt.tif", gt.astype(np.float32))
    result = runner.invoke(app, ["evaluate", p, g])
    assert result.exit_code == 0, result.output
    ref = evaluate(pred.astype(np.float32), gt.astype(np.float32))
    assert f"{ref['psnr']:.4f} dB" in result.stdout
    assert f"{ref['ssim']:.6f}" in result.stdout and f"{ref['nrmse']:.6f}" in result.stdout
    # a perfect prediction: PSNR limited only by round-off of the fit (inf would be JSON null)
    same = runner.invoke(app, ["evaluate", g, g, "--json"])
    assert same.exit_code == 0
    perfect = json.loads(same.stdout)
    assert perfect["psnr"] is None or perfect["psnr"] > 200
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["nrmse"] < 1e-9


@pytest.mark.parametrize(
    "case, message",
    [("shape", "different shapes"), ("nan", "non-finite"), ("missing", "")],
)
def test_cli_evaluate_bad_input_one_line_exit_2(tmp_path, case, message):
    gt = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    g = _write(tmp_path / "gt.tif", gt)
    if case == "shape":
        p = _write(tmp_path / "pred.tif", gt[:, :19].copy())
    elif case == "nan":
        bad = gt.copy()
        bad[2, 2] = np.nan
        p = _write(tmp_path / "pred.npy", bad)
    else:
        p = str(tmp_path / "nope.tif")
    result = runner.invoke(app, ["evaluate", p, g])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_metrics_normalise_through_the_one_normalizer(rng):
    """evaluate's ground-truth normalisation is Normalizer's, with exact percentiles (never
    subsampled), and per-image ranges with axis=."""
    from lucyd.metrics import normalize_pair
    from lucyd.normalization import Normalizer, percentile_range

    x = rng.gamma(2.0, 3.0, size=(6, 40, 50))
    exact = np.percentile(x, [0.1, 99.9])
    assert percentile_range(x, (0.1, 99.9), sample=None) == tuple(exact)
    assert percentile_range(x, (0.1, 99.9), sample=1000) != tuple(exact)  # subsampled
    _, gt_n, _, _ = normalize_pair(x, x)
    np.testing.assert_array_equal(gt_n, (x - exact[0]) / (exact[1] - exact[0]))
    per = Normalizer.fit(x, (0, 100), axis=(1, 2))
    out = per.apply(x, dtype=np.float64)
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(per.invert(out), x, rtol=1e-5)
