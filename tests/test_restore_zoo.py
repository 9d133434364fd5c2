"""The pretrained zoo of lucyd restore: canonical optical units, model lookup, shipped models, determinism."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.psf.models import born_wolf
from lucyd.restore import calibrate, restore
from lucyd.restore.canonical import (
    CANONICAL_FWHM_PX,
    canonical_psf,
    canonical_zoom,
    psf_distance,
    psf_fwhm_px,
    resample,
)
from lucyd.restore.zoo import PSF_TOLERANCE, ZOO_DIR, ZOO_SPECS, match_zoo, read_zoo, zoo_models
from lucyd.synth import phantom
from lucyd.train import ModelCard


def gaussian_psf(shape, sigma):
    p = np.zeros(shape, np.float32)
    p[tuple(s // 2 for s in shape)] = 1
    p = ndimage.gaussian_filter(p, sigma)
    return p / p.sum()


def smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 6) * 100 + 10).astype(np.float32)


@pytest.mark.parametrize("shape,zoom", [((96, 80), (0.6, 0.6)), ((96, 80), (1.7, 1.3)),
                                        ((24, 48, 40), (0.7, 1.4, 0.8))])
def test_resample_preserves_flux_and_round_trips_a_smooth_image(shape, zoom):
    img = smooth_image(shape)
    out = resample(img, zoom)
    assert out.shape == tuple(round(n * z) for n, z in zip(shape, zoom, strict=True))
    assert out.sum() == pytest.approx(img.sum(), rel=0.01)
    back = resample(out, shape=shape)
    assert back.shape == img.shape and back.sum() == pytest.approx(img.sum(), rel=0.01)
    inner = tuple(slice(4, -4) for _ in shape)
    assert np.abs(back - img)[inner].max() < 0.02 * img.max()


def test_canonical_units_make_gaussians_of_any_width_one_shape():
    """Per-axis FWHM normalisation: Gaussian PSFs of different widths coincide in canonical units."""
    a = gaussian_psf((31, 31, 31), (2.5, 1.2, 1.2))
    b = gaussian_psf((31, 31, 31), (1.2, 2.0, 2.0))
    ca, cb = canonical_psf(a), canonical_psf(b)
    assert psf_distance(ca, cb) < 0.05
    # on the canonical grid the FWHM is 3 px, widened by up to ~0.5 px by the interpolation itself
    widths = np.array(psf_fwhm_px(resample(a, canonical_zoom(a))))
    assert np.all((widths > CANONICAL_FWHM_PX - 0.1) & (widths < CANONICAL_FWHM_PX + 0.6))
    # so do widefield PSFs of different optics and sampling; a 3D widefield PSF is another shape than a Gaussian
    oil = canonical_psf(born_wolf((31, 31, 31), (0.2, 0.065, 0.065), na=1.4, wavelength=0.52, ni=1.518))
    air = canonical_psf(born_wolf((31, 31, 31), (0.25, 0.1, 0.1), na=0.9, wavelength=0.6, ni=1.0))
    assert psf_distance(oil, air) < PSF_TOLERANCE
    assert psf_distance(oil, ca) > 3 * PSF_TOLERANCE


def _raw(psf, photons=5.0, seed=1):
    obj = phantom("nuclei", (48, 96, 96)[-psf.ndim:], seed=seed, background=2.0)
    return camera_noise(convolve(obj, psf, boundary="linear"), photons=photons, read_noise=1.5, offset=100.0,
                        gain=2.0, seed=seed)


needs_zoo = pytest.mark.skipif(not zoo_models(), reason="no zoo model installed")


@needs_zoo
def test_shipped_models_load_and_their_cards_are_complete():
    from lucyd.restore.zoo import load_zoo_model

    names = {read_zoo(f)["name"] for f in zoo_models()}
    assert {"widefield-2d", "widefield-3d"} <= names
    for folder in zoo_models():
        desc = read_zoo(folder)
        spec = ZOO_SPECS[desc["name"]]
        card = ModelCard.read(folder / "model")
        assert card.complete and card.training.steps_done == spec.steps >= 10_000
        assert card.network.name == "care" and card.network.ndim == spec.ndim and card.network.parameters > 0
        assert card.normalization.percentiles == (0.0, 99.9)
        assert desc["retrain_command"] == spec.retrain_command() and desc["name"] in desc["retrain_command"]
        # the shipped model was trained with the spec the retrain command uses today
        assert desc["spec"] == json.loads(json.dumps(asdict(spec)))
        assert len(desc["validation"]) == spec.n_validation
        assert {"rl_psnr", "zoo_psnr", "raw_psnr", "family", "peak_e"} <= set(desc["validation"][0])
        assert desc["psf_tolerance"] == PSF_TOLERANCE and desc["canonical_fwhm_px"] == CANONICAL_FWHM_PX
        with np.load(folder / "family.npz") as f:
            psfs = f["psfs"]
        assert psfs.ndim == spec.ndim + 1 and np.allclose(psfs.sum(axis=tuple(range(1, spec.ndim + 1))), 1)
        model = load_zoo_model(folder)
        assert model.complete
        assert (folder / "model" / "best.pt").stat().st_size < 2_000_000  # small enough to ship


@needs_zoo
def test_zoo_lookup_picks_the_model_and_refuses_mismatches_with_reasons():
    psf3 = gaussian_psf((21, 21, 21), (2.0, 1.5, 1.5))
    matches = match_zoo(psf3, calibrate(_raw(psf3), psf3))
    assert matches[0].fits and matches[0].name == "widefield-3d"
    assert any("2D model, the image is 3D" in r for m in matches if m.name == "widefield-2d" for r in m.reasons)

    airy = born_wolf((25, 25), (0.06, 0.06), na=1.3, wavelength=0.6, ni=1.518)
    assert match_zoo(airy, calibrate(_raw(airy), airy))[0].name == "widefield-2d"

    # a PSF of another shape (two lobes: an astigmatic / misaligned system) is refused, with its distance
    twin = gaussian_psf((25, 25), (1.5, 1.5)) + np.roll(gaussian_psf((25, 25), (1.5, 1.5)), 5, axis=1)
    twin /= twin.sum()
    refused = {m.name: m for m in match_zoo(twin, calibrate(_raw(gaussian_psf((25, 25), (1.5, 1.5))), twin))}
    assert not refused["widefield-2d"].fits
    assert any("canonical units" in r for r in refused["widefield-2d"].reasons)
    assert refused["widefield-2d"].psf_distance > PSF_TOLERANCE

    # a PSF sampled far finer than the training range, and a photon level beyond it
    fine = gaussian_psf((61, 61), (9.0, 9.0))
    assert any("sampling" in r for r in match_zoo(fine, calibrate(_raw(fine), fine))[0].reasons)
    psf2 = gaussian_psf((25, 25), (1.5, 1.5))
    bright = match_zoo(psf2, calibrate(_raw(psf2, photons=2000.0), psf2))
    assert any("bright level" in r for r in bright[0].reasons)


def test_method_zoo_refuses_clearly_when_no_model_fits(tmp_path):
    psf = gaussian_psf((25, 25), (1.5, 1.5))
    with pytest.raises(InputError, match="no zoo model"):
        restore(_raw(psf), psf, method="zoo", zoo_dir=str(tmp_path), cache_dir=str(tmp_path), progress=False)


@needs_zoo
def test_restore_with_the_zoo_is_deterministic_and_needs_no_training(tmp_path, one_thread):
    psf = gaussian_psf((25, 25), (1.5, 1.5))
    raw = _raw(psf)
    a = restore(raw, psf, method="zoo", cache_dir=str(tmp_path), progress=False)
    b = restore(raw, psf, method="zoo", cache_dir=str(tmp_path), progress=False)
    np.testing.assert_array_equal(a.image, b.image)
    rec = a.record
    assert rec["chosen"] == "zoo" and rec["zoo"]["used"] == "widefield-2d" and "model" not in rec
    assert "widefield-2d" in rec["zoo"]["why"] and "zoo" in rec["physics_check"]
    assert not list(tmp_path.iterdir())  # nothing trained, nothing cached
    dark = rec["calibration"]["noise"]["dark_level"]
    assert a.image.sum() == pytest.approx(float((raw - dark).sum()), rel=0.1)
    json.dumps(rec)  # the record is JSON


@needs_zoo
def test_auto_skips_a_zoo_model_that_lost_on_held_out_data(tmp_path, one_thread):
    """A model whose zoo.json says use_in_auto false is not used by auto; the record says why, and it trains."""
    psf = gaussian_psf((25, 25), (1.5, 1.5))
    assert read_zoo(ZOO_DIR / "widefield-2d")["use_in_auto"] is False
    res = restore(_raw(psf)[:64, :64], psf, method="auto", steps=4, n_train=3, cache_dir=str(tmp_path), progress=False)
    assert res.record["zoo"]["used"] is None and "not used by method=auto" in res.record["zoo"]["why"]
    assert "zoo" not in res.candidates and "network" in res.candidates


def test_zoo_dir_is_package_data():
    """The shipped models live inside the package (pyproject package-data includes them)."""
    import tomllib
    from pathlib import Path

    assert ZOO_DIR.parent.name == "restore"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    data = json.dumps(pyproject["tool"]["setuptools"].get("package-data", {}))
    assert "restore/models" in data


@needs_zoo
def test_cli_restore_method_zoo(tmp_path, one_thread):
    from typer.testing import CliRunner

    from lucyd.cli.main import app
    from lucyd.io import write_image

    psf = gaussian_psf((25, 25), (1.5, 1.5))
    img, p, out = tmp_path / "in.tif", tmp_path / "psf.tif", tmp_path / "out.tif"
    write_image(img, _raw(psf)[:64, :64])
    write_image(p, psf)
    r = CliRunner().invoke(app, ["restore", str(img), "--psf", str(p), "-o", str(out), "--method", "zoo",
                                 "--cache", str(tmp_path / "cache"), "--no-report"])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "out.tif.restore.json").read_text())
    assert rec["chosen"] == "zoo" and "zoo: widefield-2d" in r.output
