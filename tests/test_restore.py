"""lucyd restore: noise estimation, calibrated synthetic data, physics self-check, the pipeline and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.forward.noise_estimate import estimate_noise
from lucyd.io import read_image, write_image
from lucyd.metrics.fidelity import compare_fidelity, data_fidelity
from lucyd.restore import RestoreConfig, calibrate, restore
from lucyd.restore.calibration import foreground_fraction, match_density
from lucyd.synth import phantom


def gaussian_psf(shape, sigma):
    p = np.zeros(shape, np.float32)
    p[tuple(s // 2 for s in shape)] = 1
    p = ndimage.gaussian_filter(p, sigma)
    return p / p.sum()


PSF3 = gaussian_psf((15, 15, 15), (2.0, 1.5, 1.5))
PSF2 = gaussian_psf((15, 15), (1.5, 1.5))


@pytest.mark.parametrize("photons, gain, offset, read", [(1.0, 2.0, 100.0, 3.0), (50.0, 3.0, 200.0, 10.0)])
def test_noise_estimate_recovers_gain_and_dark_noise(photons, gain, offset, read):
    """Gain within 10 % and dark-level noise within 15 % of the simulated camera, dim and bright."""
    obj = phantom("mixed", (24, 96, 96), seed=1, background=0.0)
    blurred = convolve(obj, PSF3, boundary="reflect")
    raw = camera_noise(blurred, photons=photons, gain=gain, offset=offset, read_noise=read, seed=0)
    nm = estimate_noise(raw, PSF3)
    assert nm.shot_noise_limited
    assert abs(nm.gain / gain - 1) < 0.10
    # at the dark level the signal is ~0 photons: the noise there is the read noise
    dark_signal_e = float(np.percentile(ndimage.uniform_filter(blurred, 3), 0.5)) * photons
    expected = np.sqrt(read**2 + dark_signal_e)
    assert abs(nm.read_noise_e / expected - 1) < 0.15
    assert abs(nm.dark_level - offset - gain * dark_signal_e) < 3 * gain * expected


def test_noise_estimate_without_psf_on_smooth_image():
    """The Haar-detail estimate is exact on a smooth ramp (no structure at the pixel scale)."""
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    signal = 20 + 2 * x + y
    raw = camera_noise(signal, photons=1.0, gain=1.5, read_noise=2.0, offset=50, seed=3)
    nm = estimate_noise(raw)
    assert abs(nm.gain / 1.5 - 1) < 0.1


def test_noise_estimate_rejects_bad_input():
    with pytest.raises(InputError, match="constant"):
        estimate_noise(np.ones((32, 32)))
    bad = np.ones((32, 32))
    bad[3, 3] = np.nan
    with pytest.raises(InputError):
        estimate_noise(bad)


def test_match_density_brackets_target_fraction():
    """A third of the matched density fills less than the requested share of the field, thrice it more."""
    shape = (192, 192)

    def fraction(d):
        blur = convolve(phantom("mixed", shape, seed=0, density=d, background=0.0), PSF2)
        return foreground_fraction(blur, float(np.percentile(ndimage.uniform_filter(blur, 3), 99.9)))

    for target in (0.05, 0.2):
        d = match_density("mixed", shape, PSF2, target)
        assert fraction(d / 3) < target < fraction(3 * d)


def _truth_and_raw(seed=0):
    obj = phantom("nuclei", (24, 64, 64), seed=seed, background=5.0) * 2.0
    raw_e = camera_noise(convolve(obj, PSF3, boundary="linear"), photons=1.0, read_noise=1.0, seed=seed)
    return obj, raw_e


def test_fidelity_of_the_truth_is_one():
    """The true object explains its own data at the noise level: χ² ≈ 1 per voxel and per block."""
    obj, raw_e = _truth_and_raw()
    f = data_fidelity(obj, raw_e, PSF3, read_noise_e=1.0)
    assert abs(f.chi2 - 1) < 0.05
    assert f.flux_chi2 < 1 + 3 * np.sqrt(2 / f.flux_map.size) + 0.3


def test_fidelity_flags_dimmed_and_erased_structure():
    """A restoration at 80 % of the flux, or with one object erased, explains the data worse."""
    obj, raw_e = _truth_and_raw()
    truth = data_fidelity(obj, raw_e, PSF3, read_noise_e=1.0)
    dim = data_fidelity(obj * 0.8, raw_e, PSF3, read_noise_e=1.0)
    worse, why = compare_fidelity(dim, truth)
    assert worse and "χ²" in why
    erased = obj.copy()
    labels, n = ndimage.label(obj > 0.5 * obj.max())
    biggest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    erased[ndimage.binary_dilation(labels == biggest, iterations=2)] = obj.min()
    f = data_fidelity(erased, raw_e, PSF3, read_noise_e=1.0)
    assert compare_fidelity(f, truth)[0]
    assert f.worst_block_z > 5
    # and the truth is not worse than itself
    assert not compare_fidelity(truth, truth)[0]


def test_restore_2d_end_to_end(tmp_path, one_thread):
    """A tiny 2D restore: flux kept, record complete, the second call reuses the cached model."""
    obj = phantom("nuclei", (96, 96), seed=2, background=5.0)
    raw = camera_noise(convolve(obj, PSF2, boundary="linear"), photons=3.0, gain=2.0, offset=100.0,
                       read_noise=1.0, seed=4)
    cfg = RestoreConfig(steps=6, n_train=3, cache_dir=str(tmp_path), threads=1, method="network")
    res = restore(raw, PSF2, config=cfg, progress=False)
    assert res.image.shape == raw.shape and res.image.dtype == np.float32
    assert np.isfinite(res.image).all()
    dark = res.record["calibration"]["noise"]["dark_level"]
    # flux: the restoration (counts above dark) carries the data's light within 10 %
    assert abs(res.candidates["rl"].sum() / (raw - dark).sum() - 1) < 0.1
    assert abs(res.image.sum() / (raw - dark).sum() - 1) < 0.25
    rec = res.record
    assert rec["chosen"] == "network" and rec["model"]["reused"] is False
    assert {"rl", "network", "verdict"} <= set(rec["physics_check"])
    assert rec["rl"]["iterations"] >= 1 and (rec["rl"]["chi2"][-1] <= 1 or rec["rl"]["iterations"] == 80)
    again = restore(raw, PSF2, config=cfg, progress=False)
    assert again.record["model"]["reused"] is True
    np.testing.assert_array_equal(again.image, res.image)


def test_restore_rejects_non_finite_and_bad_psf(tmp_path):
    img = np.ones((32, 32), np.float32)
    img[0, 0] = np.inf
    with pytest.raises(InputError):
        restore(img, PSF2, cache_dir=str(tmp_path))
    with pytest.raises(InputError):
        restore(np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32), -PSF2, cache_dir=str(tmp_path))


def test_calibrate_measures_brightness(one_thread):
    obj = phantom("mixed", (192, 192), seed=1, background=0.0)
    raw = camera_noise(convolve(obj, PSF2), photons=2.0, gain=1.0, seed=0)
    cal = calibrate(raw, PSF2)
    bright = 2.0 * float(np.percentile(ndimage.uniform_filter(convolve(obj, PSF2), 3), 99.9))
    assert abs(cal.noise.peak_e / bright - 1) < 0.2


def test_cli_restore_errors(tmp_path):
    runner = CliRunner()
    img = tmp_path / "in.tif"
    write_image(img, np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32))
    psf = tmp_path / "psf.tif"
    write_image(psf, PSF2)
    r = runner.invoke(app, ["restore", str(img), "--psf", str(psf), "-o", str(img)])
    assert r.exit_code == 2 and "input" in r.output
    r = runner.invoke(app, ["restore", str(img), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "--psf" in r.output
    r = runner.invoke(app, ["restore", str(img), "--psf", str(psf), "-o", str(tmp_path / "o.tif"), "--budget", "x"])
    assert r.exit_code == 2 and "budget" in r.output
    r = runner.invoke(app, ["restore", str(img), "--psf", str(psf), "-o", str(tmp_path / "o.tif"),
                            "--method", "magic"])
    assert r.exit_code == 2 and "method" in r.output
    assert not (tmp_path / "o.tif").exists()


def test_cli_restore_writes_record_and_voxel_size(tmp_path, one_thread):
    from lucyd.io.metadata import ImageMetadata

    obj = phantom("nuclei", (64, 64), seed=2, background=5.0)
    raw = camera_noise(convolve(obj, PSF2), photons=3.0, offset=50.0, seed=1)
    img = tmp_path / "cells.tif"
    write_image(img, raw, ImageMetadata(axes="yx", voxel_size=(0.1, 0.1)))
    psf = tmp_path / "psf.tif"
    write_image(psf, PSF2)
    out = tmp_path / "out.tif"
    r = CliRunner().invoke(app, ["restore", str(img), "--psf", str(psf), "-o", str(out), "--steps", "4",
                                 "--method", "network",
                                 "--cache", str(tmp_path / "cache"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    restored, meta = read_image(out)
    assert restored.shape == raw.shape and meta.voxel_size == pytest.approx((0.1, 0.1))
    rec = json.loads((tmp_path / "out.tif.restore.json").read_text())
    assert rec["input"] == str(img) and rec["chosen"] == "network"
    assert "physics check" in r.output
    html = (tmp_path / "out.tif.html").read_text()
    assert "Physics self-check" in html and "data:image/png;base64," in html
    assert rec["model"]["complete"] is True


def test_restore_warns_when_the_forward_model_cannot_explain_real_data(tmp_path, real_data):
    """The resampled real bead (no shot-noise structure left) is not explained by RL at any count: said so."""
    bead = read_image(real_data("widefield_bead", "bead.tif"))[0]
    psf = read_image(real_data("widefield_bead", "psf_bead_63_centered.tif"))[0]
    res = restore(bead, psf, method="rl", cache_dir=str(tmp_path), progress=False)
    assert res.record["physics_check"]["rl"]["chi2"] > 2
    assert "does not describe this image" in res.record["physics_check"]["model_warning"]
    obj = phantom("granules", (96, 96), seed=3, background=2.0)
    raw = camera_noise(convolve(obj, PSF2), photons=20.0, offset=10.0, seed=2)
    good = restore(raw, PSF2, method="rl", cache_dir=str(tmp_path), progress=False)
    assert "model_warning" not in good.record["physics_check"]


def test_cli_deconvolve_wb_alpha_auto(tmp_path, one_thread):
    """--wb-alpha auto picks an α from the calibration grid, records it and restores better than raw."""
    from lucyd.metrics import evaluate
    from lucyd.restore.physics_steps import WB_ALPHA_GRID

    obj = phantom("granules", (96, 96), seed=4, background=2.0)
    raw = camera_noise(convolve(obj, PSF2), photons=10.0, offset=20.0, seed=1)
    img, psf, out = tmp_path / "raw.tif", tmp_path / "psf.tif", tmp_path / "wb.tif"
    write_image(img, raw)
    write_image(psf, PSF2)
    r = CliRunner().invoke(app, ["deconvolve", str(img), "--psf", str(psf), "-o", str(out), "-n", "2",
                                 "--back-projector", "wiener-butterworth", "--wb-alpha", "auto", "--background", "20"])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "wb.tif.deconv.json").read_text())["config"]
    assert any(abs(rec["wb_alpha"] - a) < 1e-12 for a in WB_ALPHA_GRID)
    assert evaluate(read_image(out)[0], obj)["psnr"] > evaluate(raw, obj)["psnr"]
    bad = CliRunner().invoke(app, ["deconvolve", str(img), "--psf", str(psf), "-o", str(tmp_path / "x.tif"),
                                   "--wb-alpha", "often"])
    assert bad.exit_code == 2 and "--wb-alpha" in bad.output


def test_restore_prediction_on_a_local_cluster_equals_serial(tmp_path, one_thread, monkeypatch):
    """`restore(..., cluster="local:2", max_memory=…)`: the network's prediction runs in tiles on two
    dask worker processes and gives the serial tiled result bit for bit (the cached model is reused)."""
    import lucyd.tiling

    tile_counts = []
    run_tiles = lucyd.tiling.run_tiles
    monkeypatch.setattr(lucyd.tiling, "run_tiles",
                        lambda plan, *a, **k: tile_counts.append(len(plan.tiles)) or run_tiles(plan, *a, **k))
    obj = phantom("nuclei", (96, 96), seed=2, background=5.0)
    raw = camera_noise(convolve(obj, PSF2, boundary="linear"), photons=3.0, gain=2.0, offset=100.0,
                       read_noise=1.0, seed=4)
    cfg = RestoreConfig(steps=4, n_train=3, cache_dir=str(tmp_path), threads=1, method="network")
    budget = "6MB"
    serial = restore(raw, PSF2, config=cfg, progress=False, max_memory=budget)
    tiles = serial.record["model"]
    dask = restore(raw, PSF2, config=cfg, progress=False, max_memory=budget, cluster="local:2")
    assert dask.record["model"]["reused"] is True and tiles["reused"] is False
    np.testing.assert_array_equal(dask.image, serial.image)
    np.testing.assert_array_equal(dask.candidates["network"], serial.candidates["network"])
    assert max(tile_counts) > 1  # the budget did split the prediction into tiles
