"""Optics families of the physics zoo: confocal and light-sheet PSFs, and match_zoo telling families apart."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lucyd.forward.noise_estimate import NoiseModel
from lucyd.psf.models import born_wolf, confocal
from lucyd.restore.calibration import Calibration
from lucyd.restore.canonical import psf_fwhm_px
from lucyd.restore.zoo import (
    PSF_TOLERANCE,
    ZOO_DIR,
    ZOO_SPECS,
    family_set,
    match_zoo,
    read_zoo,
    write_family,
    zoo_models,
)
from lucyd.restore.zoo_optics import family_psf, sample_optics


def _optics(family, **kw):
    base = {"family": family, "medium": "water", "ni": 1.333, "na": 1.2, "wavelength": 0.55, "paraxial": True,
            "lateral_fwhm_px": 3.0, "axial_fwhm_px": 3.0}
    return {**base, **kw}


def _fwhm_um(psf, voxel):
    return [w * v for w, v in zip(psf_fwhm_px(psf), voxel, strict=True)]


def test_confocal_family_psf_is_narrower_than_widefield_by_sqrt2_with_a_point_pinhole():
    """Excitation × emission at λ_ex = λ_em and a pinhole ≪ 1 AU: lateral FWHM ≈ widefield/√2 (Wilson & Sheppard)."""
    voxel = (0.1, 0.03, 0.03)
    wide = family_psf(_optics("widefield"), 3, voxel=voxel)
    point = family_psf(_optics("confocal", excitation_wavelength=0.55, pinhole_au=0.05), 3, voxel=voxel)
    open_ = family_psf(_optics("confocal", excitation_wavelength=0.55, pinhole_au=1.5), 3, voxel=voxel)
    w, p, o = _fwhm_um(wide, voxel), _fwhm_um(point, voxel), _fwhm_um(open_, voxel)
    assert p[2] / w[2] == pytest.approx(1 / math.sqrt(2), abs=0.05)
    assert p[0] < w[0]  # and it is optically sectioned
    assert p[2] < o[2] < w[2]  # a wider pinhole gives back part of the gain


def test_lightsheet_family_psf_is_the_detection_psf_bounded_by_the_sheet():
    voxel = (0.4, 0.15, 0.15)
    low_na = _optics("lightsheet", na=0.4, sheet_fwhm_um=2.0)  # detection depth of field ≈ 9 µm ≫ sheet
    sheet = family_psf(low_na, 3, voxel=voxel)
    wide = family_psf({**low_na, "family": "widefield"}, 3, voxel=voxel)
    axial = _fwhm_um(sheet, voxel)[0]
    assert 0.85 * 2.0 < axial <= 2.0 + voxel[0] / 2 < _fwhm_um(wide, voxel)[0]
    # the sheet only weights the planes: the in-focus plane is the widefield one
    s, w = sheet[sheet.shape[0] // 2], wide[wide.shape[0] // 2]
    np.testing.assert_allclose(s / s.sum(), w / w.sum(), atol=1e-6)
    # a sheet much thicker than the depth of field of a high-NA objective leaves the axial width as it was
    high_na = _optics("lightsheet", na=1.1, sheet_fwhm_um=6.0)
    voxel = (0.2, 0.05, 0.05)
    a = _fwhm_um(family_psf(high_na, 3, voxel=voxel), voxel)[0]
    b = _fwhm_um(family_psf({**high_na, "family": "widefield"}, 3, voxel=voxel), voxel)[0]
    assert a == pytest.approx(b, rel=0.1)


@pytest.mark.parametrize("name", ["confocal-3d", "lightsheet-3d"])
def test_family_members_have_their_drawn_optics_and_sampling(name):
    spec = ZOO_SPECS[name]
    rng = np.random.default_rng(7)
    for _ in range(4):
        optics = sample_optics(rng, spec)
        assert optics["family"] == spec.optics
        psf = family_psf(optics, 3)
        assert psf.sum() == pytest.approx(1, abs=1e-4)
        assert np.unravel_index(np.argmax(psf), psf.shape) == tuple(n // 2 for n in psf.shape)
        # the voxel size is set so that the PSF has the drawn native FWHM
        np.testing.assert_allclose(psf_fwhm_px(psf), [optics["axial_fwhm_px"]] + [optics["lateral_fwhm_px"]] * 2,
                                   rtol=0.05)
        if spec.optics == "confocal":
            assert 0.02 <= optics["wavelength"] - optics["excitation_wavelength"] <= 0.05
            assert spec.pinhole_au[0] <= optics["pinhole_au"] <= spec.pinhole_au[1]
        else:
            assert spec.sheet_fwhm_um[0] <= optics["sheet_fwhm_um"] <= spec.sheet_fwhm_um[1]
            assert 0.3 <= optics["na"] <= 1.1


def test_widefield_family_is_unchanged_by_the_new_families():
    """The shipped widefield-3d reference PSFs are still what the code draws (same random stream)."""
    with np.load(ZOO_DIR / "widefield-3d" / "family.npz") as f:
        np.testing.assert_array_equal(f["psfs"], family_set(ZOO_SPECS["widefield-3d"]))


def _calibration(peak_e=500.0, read_noise_e=2.0):
    noise = NoiseModel(dark_level=0.0, gain=1.0, read_noise_e=read_noise_e, background_e=2.0, peak_e=peak_e,
                       slope_r2=1.0, shot_noise_limited=True)
    return Calibration(noise=noise, foreground_fraction=0.1)


def _test_psfs():
    """One PSF per family, made here independently of the zoo's family code."""
    conf = confocal("born-wolf", (21, 31, 31), (0.15, 0.05, 0.05), na=1.2, excitation_wavelength=0.488,
                    emission_wavelength=0.52, ni=1.333, pinhole_au=1.0)
    voxel = (0.5, 0.15, 0.15)
    det = born_wolf((31, 25, 25), voxel, na=0.5, wavelength=0.55, ni=1.333)
    z = (np.arange(31) - 15) * voxel[0]
    sheet = det * np.exp(-4 * math.log(2) * (z / 2.5) ** 2)[:, None, None]
    wide = born_wolf((21, 25, 25), (0.2, 0.065, 0.065), na=1.3, wavelength=0.6, ni=1.518)
    return {"confocal-3d": conf, "lightsheet-3d": (sheet / sheet.sum()).astype(np.float32), "widefield-3d": wide}


@pytest.fixture(scope="module")
def family_zoo(tmp_path_factory):
    """A zoo of the three 3D families' reference PSFs and descriptions (match_zoo needs no network)."""
    root = tmp_path_factory.mktemp("zoo")
    for name in ("widefield-3d", "confocal-3d", "lightsheet-3d"):
        spec = ZOO_SPECS[name]
        (root / name).mkdir()
        write_family(spec, root / name)
        from dataclasses import asdict

        (root / name / "zoo.json").write_text(json.dumps({"name": name, "ndim": 3, "psf_tolerance": PSF_TOLERANCE,
                                                          "spec": asdict(spec)}))
    return root


@pytest.mark.parametrize("family", ["confocal-3d", "lightsheet-3d", "widefield-3d"])
def test_match_zoo_picks_the_family_of_the_psf(family_zoo, family):
    psf = _test_psfs()[family]
    matches = match_zoo(psf, _calibration(), zoo_dir=family_zoo)
    assert matches[0].fits and matches[0].name == family, [m.as_dict() for m in matches]


def test_match_zoo_refuses_a_confocal_psf_for_widefield_and_says_why(family_zoo):
    conf = _test_psfs()["confocal-3d"]
    by_name = {m.name: m for m in match_zoo(conf, _calibration(), zoo_dir=family_zoo)}
    assert not by_name["widefield-3d"].fits
    assert any("canonical units" in r for r in by_name["widefield-3d"].reasons)
    # nothing fits a confocal image at a photon level far beyond training: every model says so
    bright = match_zoo(conf, _calibration(peak_e=1e6), zoo_dir=family_zoo)
    assert not any(m.fits for m in bright)
    assert all(any("bright level" in r for r in m.reasons) for m in bright)


shipped = pytest.mark.skipif(not {"confocal-3d", "lightsheet-3d"} <= {p.name for p in zoo_models()},
                             reason="confocal/light-sheet zoo models not installed")


@shipped
def test_shipped_confocal_and_lightsheet_models_are_described_and_matched():
    for name in ("confocal-3d", "lightsheet-3d"):
        desc = read_zoo(ZOO_DIR / name)
        spec = ZOO_SPECS[name]
        assert desc["optics"] == spec.optics and desc["spec"]["steps"] == spec.steps == 10_000
        assert desc["retrain_command"] == spec.retrain_command()
        assert {r["family"] for r in desc["validation"]} == {spec.optics}
        assert desc["use_in_auto"] is False and desc.get("use_in_auto_reason")
    for name, psf in _test_psfs().items():
        assert match_zoo(psf, _calibration())[0].name == name
