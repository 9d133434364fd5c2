"""Tests of lucyd.synth: phantoms, degradations, dataset folders, load_pairs and the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from typer.testing import CliRunner

from lucyd.errors import FileFormatError, InputError
from lucyd.forward import convolve
from lucyd.io import ImageMetadata, read_image, write_image
from lucyd.synth import (
    SynthConfig,
    degrade,
    file_seeds,
    load_pairs,
    make_dataset,
    make_pair,
    phantom,
    phantom_parameters,
    smooth_noise,
)
from lucyd.synth.degrade import subsample_axis0, upsample_axis0
from lucyd.synth.phantoms import count_scale, wlc_paths

KINDS = ("mixed", "tubules", "granules", "nuclei")


def gaussian_psf(shape=(9, 11, 11), sigma=(2.0, 1.2, 1.2)) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sigma, strict=True)))
    return (psf / psf.sum()).astype(np.float32)


@pytest.fixture
def psf_file(tmp_path):
    path = tmp_path / "psf.tif"
    write_image(path, gaussian_psf(), ImageMetadata("ZYX", (0.2, 0.1, 0.1)))
    return path


# ----------------------------------------------------------------------------- phantoms

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(20, 40, 36), (48, 40)])
def test_phantom_deterministic_and_seed_dependent(kind, shape):
    kw = dict(perlin={"amplitude": 10}, scale_counts=False)  # full counts in a small image
    a = phantom(kind, shape, seed=7, **kw)
    b = phantom(kind, shape, seed=7, **kw)
    c = phantom(kind, shape, seed=8, **kw)
    assert a.dtype == np.float32 and a.shape == shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.min() >= 30.0 - 1e-3  # background 30 is the floor
    assert a.max() > 60  # some structure above the background


def test_mixed_spheres_count_size_and_intensity():
    n, (r_lo, r_hi) = 10, (3.0, 4.0)
    zero = {k: 0 for k in ("n_shells", "n_dots", "n_lines", "n_planes", "n_boxes")}
    vol = phantom("mixed", (40, 64, 64), seed=3, background=0.0, n_spheres=n,
                  sphere_radius=(r_lo, r_hi), smooth_sigma=0, scale_counts=False, **zero)
    labels, count = ndi.label(vol > 0)
    assert count == n  # this seed: no two spheres touch
    for sl, idx in zip(ndi.find_objects(labels), range(1, count + 1), strict=True):
        values = np.unique(vol[sl][labels[sl] == idx])
        assert len(values) == 1 and 50 <= values[0] <= 850  # one intensity U(50, 850)
        touches = any(s.start == 0 or s.stop == size for s, size in zip(sl, vol.shape,
                                                                        strict=True))
        if not touches:
            volume = np.sum(labels[sl] == idx)
            assert 4 / 3 * np.pi * (r_lo - 0.5) ** 3 <= volume <= 4 / 3 * np.pi * (r_hi + 0.5) ** 3


def test_mixed_defaults_values_and_recipe_smoothing():
    shape = (32, 48, 48)
    raw = phantom("mixed", shape, seed=1, smooth_sigma=0)
    values = np.unique(raw)
    assert values[0] == 30.0  # background
    objects = values[1:]
    assert objects.min() >= 80.0 - 1e-3 and objects.max() <= 880.0 + 1e-3  # U(50,850) + 30
    # every object type is present: flat-topped objects of many distinct intensities
    assert len(objects) > 15
    # the recipe's smoothing: a 5-tap Gaussian of sigma 0.7 along every axis (independent)
    smooth = phantom("mixed", shape, seed=1)
    taps = np.exp(-0.5 * (np.arange(-2, 3) / 0.7) ** 2)
    taps /= taps.sum()
    ref = raw.astype(np.float64)
    for ax in range(3):
        ref = ndi.correlate1d(ref, taps, axis=ax, mode="nearest")
    np.testing.assert_allclose(smooth, ref, rtol=1e-5, atol=1e-3)


def test_counts_scale_with_volume():
    assert count_scale((128, 128, 128)) == 1.0
    assert count_scale((64, 128, 128)) == 0.5
    zero = {k: 0 for k in ("n_shells", "n_lines", "n_planes", "n_boxes", "n_spheres")}
    # 24 dots per 128^3 at dot_size 1 -> 3 dots in a 64^3 volume (no smoothing, background 0)
    kw = dict(seed=0, background=0, dot_size=1, smooth_sigma=0, **zero)
    assert np.count_nonzero(phantom("mixed", (64, 64, 64), n_dots=24, **kw)) == 3
    assert np.count_nonzero(phantom("mixed", (64, 64, 64), n_dots=0, **kw)) == 0
    # a tiny image still gets one of each requested object type; exact counts on request
    assert np.count_nonzero(phantom("mixed", (8, 8, 8), n_dots=24, **kw)) == 1
    assert np.count_nonzero(phantom("mixed", (8, 8, 8), n_dots=2, scale_counts=False,
                                    seed=0, background=0, dot_size=1, smooth_sigma=0,
                                    **zero)) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_density_scales_every_object_count(kind):
    """density multiplies each count parameter, given or default, and nothing else."""
    from lucyd.synth.phantoms import COUNT_PARAMS

    defaults = phantom_parameters(kind)
    given = {COUNT_PARAMS[kind][0]: 2 * defaults[COUNT_PARAMS[kind][0]]}
    scaled = {k: given.get(k, defaults[k]) * 0.5 for k in COUNT_PARAMS[kind]}
    np.testing.assert_array_equal(phantom(kind, (32, 40, 40), seed=3, density=0.5, **given),
                                  phantom(kind, (32, 40, 40), seed=3, **scaled))
    assert set(COUNT_PARAMS[kind]) <= set(defaults)


def test_density_sparse_and_crowded_scenes():
    fg = [np.mean(phantom("mixed", (64, 64, 64), seed=1, density=d) > 31) for d in (0.05, 1, 2)]
    assert fg[0] < fg[1] / 4 and fg[2] > fg[1]  # fewer / more objects
    with pytest.raises(InputError, match="density"):
        phantom("mixed", (16, 16, 16), density=0)


def test_wlc_persistence_length():
    lp, step = 20.0, 0.5
    rng = np.random.default_rng(0)
    for ndim in (2, 3):
        _, t = wlc_paths(rng, 300, 160, ndim, persistence=lp, step=step)
        for lag in (10, 40):  # arc length 5 and 20 px
            corr = np.mean(np.sum(t[:, lag:] * t[:, :-lag], axis=-1))
            assert corr == pytest.approx(np.exp(-lag * step / lp), abs=0.04)


def test_tubule_cross_section_below_resolution():
    width = 0.8
    vol = phantom("tubules", (96, 96), seed=2, background=0, n_tubules=1, persistence=1e7,
                  length=60, width=width, scale_counts=False)
    w = vol.astype(np.float64)
    yy, xx = np.mgrid[: vol.shape[0], : vol.shape[1]]
    coords = np.stack([yy.ravel(), xx.ravel()])
    mean = coords @ w.ravel() / w.sum()
    d = coords - mean[:, None]
    cov = (d * w.ravel()) @ d.T / w.sum()
    small, large = np.linalg.eigvalsh(cov)
    # a straight filament: cross-section variance = width^2 + ~1/6 px^2 of the splat
    assert small == pytest.approx(width**2 + 1 / 6, rel=0.2)
    assert np.sqrt(12 * large) == pytest.approx(60, rel=0.1)  # its length
    assert 40 <= vol.max() <= 900  # on-axis peak ~ intensity U(50, 850)


def test_tubules_cross():
    vol = phantom("tubules", (64, 64), seed=0, background=0, n_tubules=12, scale_counts=False)
    skeleton = vol > 5
    labels, count = ndi.label(skeleton)
    assert count < 12  # crossing filaments merge into connected networks


def test_granule_counts():
    n = 25
    vol = phantom("granules", (256, 256), seed=4, background=0, n_clusters=0, n_isolated=n,
                  radius=(1.0, 1.5), scale_counts=False)
    _, count = ndi.label(vol > 10)
    assert n - 2 <= count <= n
    # clusters: members lie within a few spreads of few centres -> few connected groups
    vol = phantom("granules", (128, 128), seed=4, background=0, n_clusters=3, per_cluster=20,
                  cluster_spread=3.0, n_isolated=0, scale_counts=False)
    _, groups = ndi.label(ndi.binary_dilation(vol > 10, iterations=3))
    assert 1 <= groups <= 6


def test_nuclei_size_and_texture():
    kw = dict(background=0, n_nuclei=1, radius=(15, 20), scale_counts=False, n_nucleoli=(0, 0))
    vol = phantom("nuclei", (96, 96), seed=5, **kw)
    mask = vol > 0.5 * np.median(vol[vol > 0])
    area = mask.sum()
    assert np.pi * 14**2 <= area <= np.pi * 21**2
    inner = vol[ndi.binary_erosion(mask, iterations=4)]
    assert inner.std() / inner.mean() > 0.15  # chromatin texture
    flat = phantom("nuclei", (96, 96), seed=5, texture=0.0, roughness=0.0, **kw)
    inner = flat[ndi.binary_erosion(flat > 0.5 * flat.max(), iterations=4)]
    assert inner.std() / inner.mean() < 1e-3


def test_perlin_background_smooth_and_bounded():
    rng = np.random.default_rng(0)
    field = smooth_noise((64, 64), rng, scale=16, octaves=1)
    assert 0 <= field.min() and field.max() <= 1 and field.std() > 0.05
    assert np.abs(np.diff(field, axis=1)).max() < 0.2  # no jumps: smooth
    vol = phantom("granules", (64, 64), seed=1, background=5, n_clusters=0, n_isolated=0,
                  perlin={"amplitude": 40, "scale": 16})
    assert 5 <= vol.min() and vol.max() <= 45 and vol.std() > 2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: phantom("blobs", (8, 8)), "unknown phantom kind"),
        (lambda: phantom("mixed", (8, 8, 8, 8)), "shape"),
        (lambda: phantom("mixed", (8, 8), n_sphere=3), "n_sphere"),
        (lambda: phantom("mixed", (8, 8), sphere_radius=(7, 4)), "sphere_radius"),
        (lambda: phantom("tubules", (8, 8), persistence=-1), "persistence"),
        (lambda: phantom("granules", (8, 8), perlin={"size": 3}), "perlin"),
        (lambda: phantom("nuclei", (8, 8), seed=-1), "seed"),
    ],
)
def test_phantom_bad_input(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_phantom_parameters_lists_defaults():
    assert phantom_parameters("mixed")["n_spheres"] == 100
    assert phantom_parameters("mixed")["intensity"] == (50, 850)


# ----------------------------------------------------------------------------- degradations

def test_deconvolution_blur_equals_forward_model():
    gt = phantom("mixed", (16, 32, 32), seed=0)
    psf = gaussian_psf()
    clean, target = degrade(gt, "deconvolution", psf=psf, photons=None)
    np.testing.assert_array_equal(target, gt)
    ref = scipy.signal.fftconvolve(gt.astype(np.float64), psf.astype(np.float64), mode="same")
    np.testing.assert_allclose(clean, ref, rtol=1e-4, atol=1e-2)
    raw, _ = degrade(gt, "deconvolution", psf=psf, photons=1e5, read_noise=0.0, seed=1)
    np.testing.assert_allclose(raw / 1e5, ref, rtol=0.02, atol=0.05)


def _fit_var_mean(samples: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of per-pixel variance against mean over realisations."""
    mean, var = samples.mean(axis=0).ravel(), samples.var(axis=0, ddof=1).ravel()
    slope, intercept = np.polyfit(mean, var, 1)
    return slope, intercept


def test_poisson_variance_follows_mean():
    gt = phantom("nuclei", (48, 48), seed=0, n_nuclei=2, scale_counts=False)
    psf = gaussian_psf((7, 7), (1.5, 1.5))
    raws = np.stack([degrade(gt, "deconvolution", psf=psf, photons=0.2, read_noise=0.5,
                             seed=s)[0] for s in range(40)])
    slope, intercept = _fit_var_mean(raws)
    assert slope == pytest.approx(1.0, abs=0.1)
    assert intercept == pytest.approx(0.25, abs=1.0)


def test_denoising_pairs_same_expectation_different_noise():
    gt = phantom("granules", (48, 48), seed=1, perlin=True)
    psf = gaussian_psf((7, 7), (1.2, 1.2))
    low, high = 0.5, 10.0
    pairs = [degrade(gt, "denoising", psf=psf, photons=low, high_photons=high, read_noise=0.0,
                     seed=s) for s in range(40)]
    raws, targets = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    expected = low * convolve(gt, psf)
    np.testing.assert_allclose(raws.mean(0).mean(), expected.mean(), rtol=0.02)
    np.testing.assert_allclose(targets.mean(0), expected, rtol=0.05, atol=1.0)
    assert _fit_var_mean(raws)[0] == pytest.approx(1.0, abs=0.1)
    assert _fit_var_mean(targets)[0] == pytest.approx(low / high, abs=0.02)  # high-SNR target
    _, clean = degrade(gt, "denoising", psf=psf, photons=low, seed=0)
    np.testing.assert_allclose(clean, expected, rtol=1e-5, atol=1e-3)


def _axis_high_power(img: np.ndarray, axis: int) -> float:
    spec = np.abs(np.fft.rfft(img - img.mean(), axis=axis)) ** 2
    spec = np.moveaxis(spec, axis, 0).reshape(spec.shape[axis], -1).mean(axis=1)
    k = len(spec)
    return float(spec[k // 2:].sum() / spec[1:].sum())


def _band_transfer(raw: np.ndarray, gt: np.ndarray, axis: int, lo=0.12, hi=0.3) -> float:
    """Power of raw over power of gt (each mean-normalised) in a frequency band along axis."""
    def band(img):
        spec = np.abs(np.fft.rfft(img / img.mean() - 1, axis=axis)) ** 2
        f = np.fft.rfftfreq(img.shape[axis])
        return float(np.moveaxis(spec, axis, 0)[(f >= lo) & (f <= hi)].sum())

    return band(raw) / band(gt)


def test_isotropic_degrades_z_only():
    gt = phantom("mixed", (32, 32, 32), seed=2, smooth_sigma=0)
    raw, target = degrade(gt, "isotropic", z_factor=4, photons=None)
    np.testing.assert_array_equal(target, gt)
    assert _axis_high_power(raw, 0) < 0.2 * _axis_high_power(raw, 2)
    assert _axis_high_power(target, 0) == pytest.approx(_axis_high_power(target, 2), rel=0.3)
    # 2D: axis 0 is the axial one; noise and non-integer factors work
    raw2, tgt2 = degrade(gt[:, 5], "isotropic", z_factor=2.5, photons=5, seed=0)
    assert raw2.shape == tgt2.shape == (32, 32)
    assert _axis_high_power(raw2, 0) < _axis_high_power(raw2, 1)


def test_subsample_upsample_is_linear_interpolation():
    ramp = np.broadcast_to(np.arange(17, dtype=np.float32)[:, None], (17, 5)).copy()
    planes = subsample_axis0(ramp, 4)
    np.testing.assert_array_equal(planes[:, 0], [0, 4, 8, 12, 16])
    np.testing.assert_allclose(upsample_axis0(planes, 4, 17), ramp, atol=1e-5)
    np.testing.assert_allclose(subsample_axis0(ramp, 2.5)[:, 0], [0, 2.5, 5, 7.5, 10, 12.5, 15])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "deblur"}, "unknown task"),
        ({"task": "deconvolution"}, "psf: required"),
        ({"task": "denoising", "photons": -1}, "photons"),
        ({"task": "denoising", "high_photons": 1.0}, "high_photons"),
        ({"task": "isotropic", "z_factor": 20}, "z_factor"),
    ],
)
def test_degrade_bad_input(kwargs, match):
    gt = np.ones((16, 16), np.float32)
    task = kwargs.pop("task")
    with pytest.raises(InputError, match=match):
        degrade(gt, task, **kwargs)


# ----------------------------------------------------------------------------- datasets

def _config(psf_file, **kw):
    base = dict(n=3, shape=(12, 24, 24), psf=str(psf_file), seed=11,
                phantom_params={"scale_counts": False})
    base.update(kw)
    return SynthConfig.build(**base)


def test_make_dataset_layout_seeds_and_workers(tmp_path, psf_file):
    cfg = _config(psf_file)
    one = make_dataset(cfg, tmp_path / "one", workers=1)
    two = make_dataset(cfg, tmp_path / "two", workers=2)
    names = sorted(p.name for p in (one / "raw").iterdir())
    assert names == ["0000.tif", "0001.tif", "0002.tif"]
    assert sorted(p.name for p in (one / "gt").iterdir()) == names
    for name in names:
        for sub in ("raw", "gt"):
            a, meta = read_image(one / sub / name)
            b, _ = read_image(two / sub / name)
            np.testing.assert_array_equal(a, b)  # independent of the worker count
            assert meta.voxel_size == pytest.approx((0.2, 0.1, 0.1))  # from the PSF file
    psf, meta = read_image(one / "psf.tif")
    assert meta.voxel_size == pytest.approx((0.2, 0.1, 0.1))
    np.testing.assert_allclose(psf, gaussian_psf(), rtol=1e-5)
    info = json.loads((one / "dataset.json").read_text())
    assert info["config"]["seed"] == 11 and info["lucyd_version"]
    assert [f["seed"] for f in info["files"]] == file_seeds(11, 3)
    assert SynthConfig.load(one / "dataset.json") == cfg
    # a pair can be reproduced on its own from its seed
    raw, gt = make_pair(cfg, info["files"][1]["seed"], gaussian_psf())
    np.testing.assert_array_equal(read_image(one / "raw" / "0001.tif")[0], raw)
    np.testing.assert_array_equal(read_image(one / "gt" / "0001.tif")[0], gt)
    # different base seeds give different data
    other = make_dataset(_config(psf_file, seed=12), tmp_path / "other", workers=1)
    assert not np.array_equal(read_image(other / "gt" / "0000.tif")[0],
                              read_image(one / "gt" / "0000.tif")[0])


def test_resume_keeps_pairs_and_regenerates_missing(tmp_path, psf_file):
    cfg = _config(psf_file)
    out = make_dataset(cfg, tmp_path / "d", workers=1)
    kept = {p: p.stat().st_mtime_ns for p in (out / "raw").glob("*.tif")}
    original = read_image(out / "raw" / "0001.tif")[0]
    (out / "raw" / "0001.tif").unlink()  # interrupted between gt and raw of pair 1
    (out / "raw" / ".0002.partial-123-abc.tif").write_bytes(b"junk")  # killed mid-write
    make_dataset(cfg, out, workers=1)
    np.testing.assert_array_equal(read_image(out / "raw" / "0001.tif")[0], original)
    for p, mtime in kept.items():
        if p.name != "0001.tif":
            assert p.stat().st_mtime_ns == mtime  # complete pairs untouched
    assert not list((out / "raw").glob(".*partial*"))
    # growing n keeps the existing pairs
    make_dataset(_config(psf_file, n=4), out, workers=1)
    assert len(load_pairs(out)) == 4
    # different parameters: clear error unless overwrite
    with pytest.raises(InputError, match="photons"):
        make_dataset(_config(psf_file, n=4, photons=9.0), out, workers=1)
    make_dataset(_config(psf_file, n=2, photons=9.0), out, workers=1, overwrite=True)
    assert len(load_pairs(out)) == 2


def test_dataset_density_range_per_pair(tmp_path, psf_file):
    """Each pair draws its density log-uniformly from its own generator, before the phantom."""
    cfg = _config(psf_file, n=6, density=(0.05, 2.0), phantom_params={})
    out = make_dataset(cfg, tmp_path / "d", workers=1)
    info = json.loads((out / "dataset.json").read_text())
    assert info["config"]["density"] == [0.05, 2.0]
    densities = []
    for f in info["files"]:
        rng = np.random.default_rng(f["seed"])
        d = float(np.exp(rng.uniform(np.log(0.05), np.log(2.0))))
        densities.append(d)
        expect = phantom(cfg.kind, cfg.shape, seed=rng, background=cfg.background, density=d)
        np.testing.assert_array_equal(read_image(out / "gt" / f"{f['name']}.tif")[0], expect)
    assert min(densities) >= 0.05 and max(densities) <= 2.0 and len(set(densities)) == 6
    # a fixed density draws nothing: the same data as a set made without the option
    fixed = make_dataset(_config(psf_file, density=1.0), tmp_path / "fixed", workers=1)
    plain = make_dataset(_config(psf_file), tmp_path / "plain", workers=1)
    np.testing.assert_array_equal(read_image(fixed / "raw" / "0000.tif")[0],
                                  read_image(plain / "raw" / "0000.tif")[0])
    # a manifest written before the option existed resumes as density 1
    manifest = json.loads((plain / "dataset.json").read_text())
    del manifest["config"]["density"]
    (plain / "dataset.json").write_text(json.dumps(manifest))
    make_dataset(_config(psf_file), plain, workers=1)
    with pytest.raises(InputError, match="density"):
        make_dataset(_config(psf_file, density=0.5), plain, workers=1)
    for bad in ((1.0, 0.5), 0, (0.1, 0.2, 0.3)):
        with pytest.raises(InputError, match="density"):
            _config(psf_file, density=bad)


def test_dataset_tasks_and_2d(tmp_path, psf_file):
    iso = make_dataset(SynthConfig.build(task="isotropic", kind="mixed", n=1, shape=(32, 32, 32),
                                         z_factor=4, voxel_size=(0.1, 0.1, 0.1)),
                       tmp_path / "iso", workers=1)
    pair = load_pairs(iso)[0]
    # transfer raw/gt of the band 0.12-0.3 cycles/px (beyond the z sampling's 1/8): z << x
    assert _band_transfer(pair.raw, pair.gt, 0) < 0.4 * _band_transfer(pair.raw, pair.gt, 2)
    assert not (iso / "psf.tif").exists()
    den = make_dataset(SynthConfig.build(task="denoising", kind="tubules", n=1, shape=(32, 32),
                                         high_photons=50.0), tmp_path / "den", workers=1)
    pair = load_pairs(den)[0]
    assert pair.raw.ndim == 2 and pair.metadata.voxel_size == (0.1, 0.1)


def test_dataset_with_model_psf(tmp_path):
    cfg = SynthConfig.build(n=1, shape=(8, 16, 16), psf_model="gaussian", na=1.2, wavelength=0.5,
                            ni=1.33, voxel_size=(0.3, 0.1, 0.1), psf_shape=(7, 9, 9))
    out = make_dataset(cfg, tmp_path / "m", workers=1)
    psf, meta = read_image(out / "psf.tif")
    assert psf.shape == (7, 9, 9) and psf.sum() == pytest.approx(1.0, rel=1e-4)
    assert meta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    assert np.unravel_index(np.argmax(psf), psf.shape) == (3, 4, 4)
    assert load_pairs(out)[0].metadata.voxel_size == pytest.approx((0.3, 0.1, 0.1))


def test_config_errors(psf_file):
    with pytest.raises(InputError, match="needs a PSF"):
        SynthConfig.build(task="deconvolution")
    with pytest.raises(InputError, match="shape"):
        SynthConfig.build(shape=(4, 4, 4, 4), psf=str(psf_file))
    with pytest.raises(InputError, match="n_sphere"):
        SynthConfig.build(psf=str(psf_file), phantom_params={"n_sphere": 3})
    with pytest.raises(InputError, match="either psf"):
        SynthConfig.build(psf=str(psf_file), psf_model="born-wolf", na=1.4, wavelength=0.5)


# ----------------------------------------------------------------------------- load_pairs

def _folder(tmp_path, names_raw, names_gt, shape=(8, 8)):
    for sub, names in (("raw", names_raw), ("gt", names_gt)):
        (tmp_path / sub).mkdir(exist_ok=True)
        for name in names:
            np.save(tmp_path / sub / f"{name}.npy", np.ones(shape, np.float32))
    return tmp_path


def test_load_pairs_user_folder_mixed_formats(tmp_path):
    _folder(tmp_path, ["a", "b"], ["a"])
    write_image(tmp_path / "gt" / "b.tif", np.zeros((8, 8), np.float32),
                ImageMetadata("YX", (0.1, 0.1)))
    (tmp_path / "raw" / "notes.txt").write_text("ignored")
    pairs = load_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b"]
    assert pairs[1].gt.dtype == np.float32 and pairs[1].gt.max() == 0


def test_load_pairs_errors(tmp_path):
    with pytest.raises(FileFormatError, match="no such folder"):
        load_pairs(tmp_path / "missing")
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileFormatError, match="no gt/"):
        load_pairs(tmp_path)
    (tmp_path / "gt").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_pairs(tmp_path)
    _folder(tmp_path, ["x", "y", "z"], ["x", "w"])
    with pytest.raises(InputError, match=r"raw/ only: y, z; in gt/ only: w"):
        load_pairs(tmp_path)
    os.remove(tmp_path / "raw" / "y.npy")
    os.remove(tmp_path / "raw" / "z.npy")
    np.save(tmp_path / "raw" / "w.npy", np.ones((8, 9), np.float32))
    with pytest.raises(InputError, match=r"'w' has different shapes"):
        load_pairs(tmp_path)
    bad = np.ones((8, 9), np.float32)
    bad[0, 0] = np.nan
    np.save(tmp_path / "gt" / "w.npy", bad)
    with pytest.raises(InputError, match="non-finite"):
        load_pairs(tmp_path)


# ----------------------------------------------------------------------------- CLI

def test_cli_synth(tmp_path, psf_file):
    from lucyd.cli.main import app

    out = tmp_path / "cli"
    args = ["synth", "--kind", "granules", "--task", "deconvolution", "--psf", str(psf_file),
            "--n", "2", "--shape", "8,16,16", "--photons", "5", "--read-noise", "0.5",
            "--background", "30", "--seed", "0", "--workers", "1", "--param",
            "n_isolated=100", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = SynthConfig.load(out / "dataset.json")
    assert cfg.kind == "granules" and cfg.phantom_params == {"n_isolated": 100}
    assert [p.name for p in load_pairs(out)] == ["0000", "0001"]
    # same options again: resumes, nothing to do; changed options: one-line error, exit 2
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, args[:-2] + ["--photons", "7", "-o", str(out)])
    assert result.exit_code == 2 and "error:" in result.output and "photons" in result.output
    result = CliRunner().invoke(app, ["synth", "--shape", "8,a", "-o", str(out)])
    assert result.exit_code == 2 and "--shape" in result.output
    dense = tmp_path / "dense"
    result = CliRunner().invoke(app, args[:-2] + ["--density", "0.1,1", "-o", str(dense)])
    assert result.exit_code == 0, result.output
    assert SynthConfig.load(dense / "dataset.json").density == (0.1, 1.0)
    result = CliRunner().invoke(app, args[:-2] + ["--density", "1,0.1", "-o", str(dense)])
    assert result.exit_code == 2 and "density" in result.output
