"""Tests of lucyd.deconv: against deconwolf references, scikit-image, independent NumPy RL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.signal import fftconvolve
from typer.testing import CliRunner

from lucyd.deconv import (
    DeconvConfig,
    back_projector,
    deconvolve,
    deconvolve_file,
    estimate_background,
    estimate_memory,
    parse_memory,
    resample_psf,
)
from lucyd.errors import InputError


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def gaussian_psf(shape, sigma):
    g = np.zeros(shape)
    g[tuple(n // 2 for n in shape)] = 1
    g = ndimage.gaussian_filter(g, sigma)
    return (g / g.sum()).astype(np.float32)


@pytest.fixture
def scene(rng):
    """Small 3D phantom (dots, a bar) blurred by a Gaussian PSF with Poisson noise."""
    x = np.zeros((16, 40, 36), np.float32)
    idx = rng.integers(2, [14, 38, 34], size=(25, 3))
    x[tuple(idx.T)] = rng.uniform(200, 800, 25)
    x[8, 10:30, 18] = 300
    x = ndimage.gaussian_filter(x, 0.6) + 10
    psf = gaussian_psf((9, 11, 11), (1.4, 1.2, 1.2))
    y = rng.poisson(np.clip(fftconvolve(x, psf, "same"), 0, None)).astype(np.float32)
    return x, psf, y


def numpy_rl_bertero(y, psf, n, floor, background=0.0):
    """Independent float64 Richardson–Lucy with Bertero weights (job = image + PSF − 1)."""
    y = y.astype(np.float64)
    w = tuple(a + b - 1 for a, b in zip(y.shape, psf.shape, strict=True))
    z = np.zeros(w)
    z[tuple(slice(0, k) for k in psf.shape)] = psf / psf.sum()
    z = np.roll(z, [-(k // 2) for k in psf.shape], axis=tuple(range(y.ndim)))
    h = np.fft.rfftn(z)
    obs = tuple(slice(0, m) for m in y.shape)
    one = np.zeros(w)
    one[obs] = 1

    def bp(a):
        return np.fft.irfftn(np.fft.rfftn(a) * np.conj(h), s=w, axes=tuple(range(len(w))))

    wts = bp(one)
    wts = np.where(wts > 0.01, 1 / np.maximum(wts, 1e-12), 0)
    x = np.full(w, y.mean() - background)
    for _ in range(n):
        fp = np.fft.irfftn(np.fft.rfftn(x) * h, s=w, axes=tuple(range(len(w)))) + background
        r = np.zeros(w)
        r[obs] = y / fp[obs]
        x = np.maximum(x * bp(r) * wts, floor)
    return x[obs]


def numpy_rl_circular(y, psf, n):
    """Independent float64 circular Richardson–Lucy (PSF of the image's shape)."""
    y = y.astype(np.float64)
    z = np.roll(psf / psf.sum(), [-(k // 2) for k in psf.shape], axis=tuple(range(y.ndim)))
    h = np.fft.rfftn(z)
    x = np.full(y.shape, y.mean())
    for _ in range(n):
        fp = np.fft.irfftn(np.fft.rfftn(x) * h, s=y.shape, axes=tuple(range(y.ndim)))
        x = x * np.fft.irfftn(np.fft.rfftn(y / fp) * np.conj(h), s=y.shape, axes=tuple(range(y.ndim)))
    return x


# ---------------------------------------------------------------- back projectors


@pytest.mark.parametrize("kind", ["flipped", "gaussian", "butterworth", "wiener-butterworth"])
def test_back_projectors_sum_to_one_and_are_centred(kind):
    psf = gaussian_psf((9, 15, 15), (1.5, 2.0, 2.5))
    bp = back_projector(psf, kind)
    assert bp.dtype == np.float32 and bp.shape == psf.shape
    assert abs(float(bp.sum()) - 1) < 1e-5
    assert np.unravel_index(np.argmax(bp), bp.shape) == (4, 7, 7)


def test_flipped_is_the_adjoint():
    rng = np.random.default_rng(3)
    psf = rng.random((5, 7, 9)).astype(np.float32)
    bp = back_projector(psf, "flipped")
    np.testing.assert_allclose(bp, np.flip(psf / psf.sum()), rtol=1e-6)
    # <Hx, y> == <x, H^T y> with H^T = convolution with the back projector
    x = rng.random((12, 14, 16))
    full_y = rng.random((16, 20, 24))
    lhs = np.sum(fftconvolve(x, psf / psf.sum(), "full") * full_y)
    rhs = np.sum(x * fftconvolve(full_y, bp, "valid"))
    assert abs(lhs - rhs) < 1e-6 * abs(lhs)


def test_wiener_butterworth_gain_at_cutoff_is_beta():
    """|BP| at the cutoff is beta (ε = β_W²/β² − 1), times (1+α) after the sum-1 normalisation."""
    psf = gaussian_psf((33, 33), (2.0, 2.0))
    alpha, beta = 0.05, 0.001  # below the Wiener filter's own cutoff gain (~0.003 here)
    bp = back_projector(psf, "wiener-butterworth", alpha=alpha, beta=beta, resolution=3.0)
    otf = np.abs(np.fft.fftn(np.fft.ifftshift(bp)))
    assert otf[0, 11] == pytest.approx(beta * (1 + alpha), rel=0.02)
    assert otf[11, 0] == pytest.approx(beta * (1 + alpha), rel=0.02)
    # high frequencies are amplified relative to the flipped PSF (the point of the method)
    flip = np.abs(np.fft.fftn(np.fft.ifftshift(back_projector(psf, "flipped"))))
    assert otf[0, 5] > 2 * flip[0, 5]


def test_unknown_back_projector():
    with pytest.raises(InputError, match="back_projector"):
        back_projector(np.ones((3, 3)), "magic")
    with pytest.raises(InputError, match="back_projector"):
        deconvolve(np.ones((8, 8)), np.ones((3, 3)), back_projector="magic", progress=False)


# ---------------------------------------------------------------- the engine


@pytest.mark.parametrize("bp", ["flipped", "wiener-butterworth"])
@pytest.mark.parametrize("boundary", ["non-circulant", "circulant"])
def test_flat_image_is_a_fixed_point(bp, boundary):
    """No boundary artefact: a flat image stays flat, even at its edges."""
    img = np.full((12, 20, 16), 37.0, np.float32)
    out = deconvolve(
        img,
        gaussian_psf((7, 9, 9), 1.5),
        iterations=5,
        back_projector=bp,
        boundary=boundary,
        progress=False,
    )
    np.testing.assert_allclose(out, 37.0, rtol=1e-4)


def test_matches_independent_numpy_bertero(scene):
    _, psf, y = scene
    ref = numpy_rl_bertero(y, psf, 10, floor=float(y.min()))
    out = deconvolve(y, psf, iterations=10, progress=False)
    assert out.dtype == np.float32 and out.shape == y.shape
    assert rel(out, ref) < 1e-4


def test_matches_independent_numpy_circular(scene):
    _, psf, y = scene
    full = np.zeros(y.shape, np.float32)
    c = tuple(n // 2 for n in y.shape)
    full[tuple(slice(ci - k // 2, ci - k // 2 + k) for ci, k in zip(c, psf.shape, strict=True))] = (
        psf
    )
    ref = numpy_rl_circular(y, full, 10)
    out = deconvolve(y, psf, iterations=10, boundary="circulant", floor=None, progress=False)
    assert rel(out, ref) < 1e-4


def test_matches_scikit_image(scene):
    """boundary='zero', start 0.5, no clamp: what skimage.restoration.richardson_lucy computes."""
    skr = pytest.importorskip("skimage.restoration")
    _, psf, y = scene
    ref = skr.richardson_lucy(y.astype(np.float64), psf.astype(np.float64), num_iter=10, clip=False)
    out = deconvolve(y, psf, iterations=10, boundary="zero", start=0.5, floor=None, progress=False)
    assert rel(out, ref) < 1e-4


def test_circulant_differs_from_non_circulant_at_borders(rng):
    """A bright object at one edge wraps around to the other edge only in circulant mode."""
    img = np.full((48, 48), 10.0, np.float32)
    img[20:28, 0:4] = 1000.0
    psf = gaussian_psf((15, 15), 2.5)
    blurred = fftconvolve(np.pad(img, 10, mode="edge"), psf, "same")[10:-10, 10:-10]
    circ = deconvolve(blurred, psf, iterations=30, boundary="circulant", floor=0.0, progress=False)
    lin = deconvolve(blurred, psf, iterations=30, floor=0.0, progress=False)
    far = (slice(18, 30), slice(-4, None))  # opposite edge
    assert np.abs(circ[far] - 10).max() > 5 * np.abs(lin[far] - 10).max()


def test_psf_padding_does_not_change_the_result(scene):
    _, psf, y = scene
    a = deconvolve(y, psf, iterations=8, progress=False)
    b = deconvolve(y, np.pad(psf, ((2, 2), (4, 4), (3, 3))), iterations=8, progress=False)
    assert rel(b, a) < 1e-4


def test_psf_larger_than_image_and_even_psf(rng):
    img = rng.uniform(50, 60, (6, 10, 12)).astype(np.float32)
    img[3, 5, 6] = 500
    big = gaussian_psf((21, 25, 31), (1.5, 1.5, 1.5))
    out = deconvolve(img, big, iterations=10, progress=False)
    assert out.shape == img.shape and np.isfinite(out).all()
    assert np.unravel_index(np.argmax(out), out.shape) == (3, 5, 6)
    even = gaussian_psf((8, 8, 8), 1.2)  # centre at index 4
    out = deconvolve(img, even, iterations=10, progress=False)
    assert np.unravel_index(np.argmax(out), out.shape) == (3, 5, 6)


def test_resampled_psf_matches_psf_on_image_grid():
    fine = np.exp(
        -0.5 * (np.arange(-40, 41)[:, None] ** 2 + np.arange(-40, 41)[None] ** 2) / 10.0**2
    )
    coarse = np.exp(
        -0.5 * (np.arange(-20, 21)[:, None] ** 2 + np.arange(-20, 21)[None] ** 2) / 5.0**2
    )
    got = resample_psf(fine / fine.sum(), 0.05, 0.1)
    assert got.shape == coarse.shape
    np.testing.assert_allclose(
        got, coarse / coarse.sum(), atol=0.02 * (coarse / coarse.sum()).max()
    )
    rng = np.random.default_rng(0)
    img = rng.uniform(10, 20, (40, 40)).astype(np.float32)
    a = deconvolve(img, coarse, iterations=5, progress=False)
    b = deconvolve(img, fine, iterations=5, voxel_size=0.1, psf_voxel_size=0.05, progress=False)
    assert rel(b, a) < 2e-3


def test_wiener_butterworth_two_iterations_match_classic_ten(scene, rng):
    x, psf, _ = scene
    # ten times more photons than `scene` (there the flat start is better for WB; see docs)
    y = (rng.poisson(10 * fftconvolve(x, psf, "same").clip(0)) / 10).astype(np.float32)
    err_rl = rel(deconvolve(y, psf, iterations=2, progress=False), x)
    err_rl10 = rel(deconvolve(y, psf, iterations=10, progress=False), x)
    err_wb = rel(
        deconvolve(y, psf, iterations=2, back_projector="wiener-butterworth", progress=False), x
    )
    assert err_wb < err_rl
    assert err_wb <= err_rl10  # Guo et al.: 1-2 unmatched iterations ~ 10-20 classic ones


def test_biggs_andrews_accelerates(scene):
    _, psf, y = scene
    target = deconvolve(y, psf, iterations=30, progress=False)
    plain = deconvolve(y, psf, iterations=8, progress=False)
    fast = deconvolve(y, psf, iterations=8, acceleration="biggs-andrews", progress=False)
    assert rel(fast, target) < 0.6 * rel(plain, target)


def test_tv_smooths(scene):
    _, psf, y = scene

    def total_variation(a):
        return sum(np.abs(np.diff(a, axis=d)).sum() for d in range(a.ndim))

    plain = deconvolve(y, psf, iterations=15, progress=False)
    tv = deconvolve(y, psf, iterations=15, tv=0.01, progress=False)
    assert total_variation(tv) < 0.95 * total_variation(plain)
    assert abs(tv.mean() - plain.mean()) < 0.05 * plain.mean()


def test_background(rng, scene):
    """FP(e) + b in the ratio: matches an independent implementation; 'auto' finds b."""
    x = np.zeros((32, 32), np.float32)
    x[10:14, 8:20] = 100
    psf = gaussian_psf((9, 9), 1.5)
    b = 250.0
    y = (fftconvolve(x, psf, "same") + b).astype(np.float32)
    assert abs(estimate_background(y) - b) < 1.0
    _, psf3, y3 = scene
    ref = numpy_rl_bertero(y3, psf3, 10, floor=1e-3, background=7.0)
    out = deconvolve(y3, psf3, iterations=10, background=7.0, floor=1e-3, progress=False)
    assert rel(out, ref) < 1e-4
    # a background-free model of background-laden data is a different answer
    assert rel(deconvolve(y3, psf3, iterations=10, floor=1e-3, progress=False), ref) > 1e-2


def test_tol_and_callback_stop_early(scene):
    _, psf, y = scene
    seen = []
    deconvolve(
        y, psf, iterations=200, tol=5e-3, callback=lambda i, e: seen.append(i), progress=False
    )
    assert 2 < len(seen) < 200
    calls = []

    def stop_at_3(i, est):
        calls.append(est.shape)
        return i >= 3

    deconvolve(y, psf, iterations=50, callback=stop_at_3, progress=False)
    assert len(calls) == 3 and calls[0] == y.shape


def test_2d_works_and_keeps_scale(rng):
    img = rng.uniform(100, 200, (30, 40)).astype(np.uint16)
    out = deconvolve(img, gaussian_psf((7, 7), 1.2), iterations=5, progress=False)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert abs(out.mean() - img.mean()) < 0.05 * img.mean()


@pytest.mark.parametrize(
    ("image", "psf", "kwargs", "match"),
    [
        (np.full((8, 8), np.nan), np.ones((3, 3)), {}, "non-finite"),
        (np.ones((8, 8)), -np.ones((3, 3)), {}, "negative"),
        (np.ones((8, 8)), np.zeros((3, 3)), {}, "zeros"),
        (np.ones((8, 8)), np.ones((3, 3, 3)), {}, "dimensions"),
        (np.ones((8, 8)), np.ones((3, 3)), {"iterations": 0}, "iterations"),
        (np.array([["a", "b"], ["c", "d"]]), np.ones((3, 3)), {}, "numeric"),
        (np.ones((8, 8)), np.ones((3, 3)), {"boundary": "mirror"}, "boundary"),
        (np.ones((8, 8)), np.ones((3, 3)), {"acceleration": "nesterov"}, "acceleration"),
        (np.ones((8, 8)), np.ones((3, 3)), {"max_memory": "lots"}, "max_memory"),
        (np.ones((8, 8)), np.ones((3, 3)), {"background": "guess"}, "background"),
    ],
)
def test_bad_input(image, psf, kwargs, match):
    with pytest.raises(InputError, match=match):
        deconvolve(image, psf, progress=False, **kwargs)


def test_parse_memory_and_estimate():
    assert parse_memory("2GB") == 2_000_000_000
    assert parse_memory("512 MiB") == 512 * 2**20
    assert parse_memory(1e6) == 1_000_000
    assert parse_memory(None) is None
    small = estimate_memory((64, 256, 256), (31, 31, 31))
    # estimate + workspace + complex OTF ≈ 4 job arrays (job 96×288×288), + the image
    assert 3.5 * 96 * 288 * 288 * 4 < small < 4.5 * 96 * 288 * 288 * 4
    assert estimate_memory((64, 256, 256), (31, 31, 31), symmetric_psf=True) < small
    assert estimate_memory((64, 256, 256), (31, 31, 31), acceleration="biggs-andrews") > small


# ---------------------------------------------------------------- blocked / files / config


def test_blocked_matches_whole_image(rng):
    x = np.zeros((12, 56, 48), np.float32)
    idx = rng.integers(0, [12, 56, 48], size=(40, 3))
    x[tuple(idx.T)] = rng.uniform(100, 400, 40)
    x = ndimage.gaussian_filter(x, 0.7) * 5 + 20
    psf = gaussian_psf((5, 9, 9), (1.0, 1.5, 1.5))
    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    whole = deconvolve(y, psf, iterations=15, progress=False)
    budget = int(estimate_memory(y.shape, psf.shape) * 0.8)  # 12 blocks
    blocked = deconvolve(y, psf, iterations=15, max_memory=budget, progress=False)
    err = np.abs(blocked - whole).max() / np.abs(whole).max()
    assert err < 1e-3, err
    assert np.abs(blocked - whole).max() > 0  # really went through blocks


def test_deconvolve_file_tiff_and_zarr(tmp_path, scene):
    from lucyd.io import ImageMetadata, read_image, write_image

    _, psf, y = scene
    y = np.tile(y, (1, 2, 2))  # large enough to be cut into blocks below
    write_image(tmp_path / "in.tif", y, ImageMetadata("ZYX", (0.3, 0.1, 0.1)))
    write_image(tmp_path / "psf.tif", psf, ImageMetadata("ZYX", (0.3, 0.1, 0.1)))
    out = deconvolve_file(
        tmp_path / "in.tif",
        tmp_path / "psf.tif",
        tmp_path / "out.tif",
        iterations=6,
        progress=False,
    )
    data, meta = read_image(out)
    assert meta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    np.testing.assert_allclose(data, deconvolve(y, psf, iterations=6, progress=False), rtol=1e-5)
    cfg = DeconvConfig.load(tmp_path / "out.tif.deconv.json")
    assert cfg.iterations == 6 and cfg.psf_voxel_size == pytest.approx((0.3, 0.1, 0.1))
    # blocked, out of core, into OME-Zarr
    need = estimate_memory(y.shape, psf.shape)
    deconvolve_file(
        tmp_path / "in.tif",
        psf,
        tmp_path / "out.ome.zarr",
        iterations=6,
        max_memory=int(need * 0.7),
        progress=False,
    )
    zdata, zmeta = read_image(tmp_path / "out.ome.zarr")
    assert zmeta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    assert np.abs(zdata - data).max() < 1e-3 * data.max()
    # blocked into a TIFF (memory-mapped, written block by block)
    deconvolve_file(
        tmp_path / "in.tif",
        psf,
        tmp_path / "out_blocked.tif",
        iterations=6,
        max_memory=int(need * 0.7),
        progress=False,
    )
    tdata, tmeta = read_image(tmp_path / "out_blocked.tif")
    assert tmeta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    np.testing.assert_allclose(tdata, zdata, rtol=1e-5, atol=1e-5 * float(zdata.max()))


def test_config_round_trip(tmp_path):
    cfg = DeconvConfig(
        iterations=3,
        back_projector="wiener-butterworth",
        background="auto",
        max_memory="2GB",
        voxel_size=(0.3, 0.1, 0.1),
    )
    cfg.save(tmp_path / "c.json")
    again = DeconvConfig.load(tmp_path / "c.json")
    assert again == cfg
    assert json.loads((tmp_path / "c.json").read_text())["kind"] == "DeconvConfig"
    with pytest.raises(InputError):
        DeconvConfig.from_call(iterations=0)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU")
def test_cuda_matches_cpu(scene):
    _, psf, y = scene
    a = deconvolve(y, psf, iterations=10, device="cpu", progress=False)
    b = deconvolve(y, psf, iterations=10, device="cuda", progress=False)
    assert rel(b, a) < 1e-4


# ---------------------------------------------------------------- CLI


def test_cli_deconvolve(tmp_path, scene):
    from lucyd.cli.main import app
    from lucyd.io import ImageMetadata, read_image, write_image

    _, psf, y = scene
    write_image(tmp_path / "in.tif", y, ImageMetadata("ZYX", (0.3, 0.1, 0.1)))
    write_image(tmp_path / "psf.tif", psf)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "deconvolve",
            str(tmp_path / "in.tif"),
            "--psf",
            str(tmp_path / "psf.tif"),
            "-o",
            str(tmp_path / "o.tif"),
            "--iterations",
            "2",
            "--back-projector",
            "wiener-butterworth",
            "--background",
            "auto",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    data, meta = read_image(tmp_path / "o.tif")
    assert data.shape == y.shape and meta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    assert (tmp_path / "o.tif.deconv.json").exists()


@pytest.mark.parametrize(
    ("extra", "psf_kind"),
    [
        ([], "negative"),
        ([], "zero"),
        ([], "3d-psf-2d-image"),
        (["--iterations", "0"], "ok"),
        (["--back-projector", "magic"], "ok"),
        (["--boundary", "mirror"], "ok"),
        (["--max-memory", "lots"], "ok"),
    ],
)
def test_cli_bad_input_writes_nothing(tmp_path, scene, extra, psf_kind):
    from lucyd.cli.main import app

    _, psf, y = scene
    tifffile.imwrite(tmp_path / "in.tif", y[0] if psf_kind == "3d-psf-2d-image" else y)
    bad = {"negative": -psf, "zero": np.zeros_like(psf), "ok": psf}.get(psf_kind, psf)
    np.save(tmp_path / "psf.npy", bad)
    res = CliRunner().invoke(
        app,
        [
            "deconvolve",
            str(tmp_path / "in.tif"),
            "--psf",
            str(tmp_path / "psf.npy"),
            "-o",
            str(tmp_path / "o.tif"),
            *extra,
        ],
    )
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:")
    assert not (tmp_path / "o.tif").exists()
    assert not (tmp_path / "o.tif.deconv.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "psf.npy"]


def test_cli_nan_image_writes_nothing(tmp_path, scene):
    from lucyd.cli.main import app

    _, psf, y = scene
    y = y.copy()
    y[0, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "in.tif", y)
    tifffile.imwrite(tmp_path / "psf.tif", psf)
    res = CliRunner().invoke(
        app,
        [
            "deconvolve",
            str(tmp_path / "in.tif"),
            "--psf",
            str(tmp_path / "psf.tif"),
            "-o",
            str(tmp_path / "o.tif"),
        ],
    )
    assert res.exit_code == 2 and "non-finite" in res.output
    assert not (tmp_path / "o.tif").exists()


# ------------------------------------------------------- real data (deconwolf 0.4.7 references)


def _read(path):
    return tifffile.imread(path).astype(np.float32)


def test_reproduces_deconwolf_bead_rl25(real_data):
    """deconwolf's default adds an offset of 5 and clamps at the (offset) image minimum."""
    img = _read(real_data("widefield_bead", "bead.tif"))
    psf = _read(real_data("widefield_bead", "psf_bead_63_centered.tif"))
    ref = _read(real_data("widefield_bead", "reference_rl25_bertero.tif"))
    out = deconvolve(img, psf, iterations=25, offset=5.0, progress=False)
    assert rel(out, ref) < 2e-2
    assert rel(out, ref) < 1e-3  # measured 4.8e-5 (float32)


def test_reproduces_deconwolf_dapi_noborder(real_data):
    img = _read(real_data("widefield_dapi", "dapi_001.tif"))
    psf = _read(real_data("widefield_dapi", "PSF_dapi.tif"))
    ref = _read(real_data("widefield_dapi", "reference_rl20_noborder.tif"))
    out = deconvolve(img, psf, iterations=20, boundary="circulant", progress=False)
    assert rel(out, ref) < 1e-2  # measured 2.7e-6


def test_reproduces_deconwolf_dapi_bertero(real_data):
    img = _read(real_data("widefield_dapi", "dapi_001.tif"))
    psf = _read(real_data("widefield_dapi", "PSF_dapi.tif"))  # larger than the image
    ref = _read(real_data("widefield_dapi", "reference_rl20_bertero.tif"))
    out = deconvolve(img, psf, iterations=20, offset=5.0, progress=False)
    assert rel(out, ref) < 1e-2  # measured 1.8e-4
