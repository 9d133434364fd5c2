"""One validation of a deconvolution's options (DeconvConfig) and one preparation of its PSF."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lucyd.deconv.api as api
from lucyd.deconv import DeconvConfig, PreparedPSF, deconvolve, deconvolve_file, prepare_psf
from lucyd.errors import InputError
from lucyd.io import ImageMetadata, write_image
from lucyd.methods import build_method


def _gauss(shape, sigma, centre=None):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = [n // 2 for n in shape] if centre is None else centre
    r2 = sum((g - c) ** 2 / (2 * s**2) for g, c, s in zip(grids, centre, sigma, strict=True))
    return np.exp(-r2).astype(np.float32)


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.uniform(5, 50, (8, 64, 64)).astype(np.float32)
    return image, 3.0 * _gauss((5, 7, 7), (1.0, 1.2, 1.2))  # sum far from 1


@pytest.fixture
def builds(monkeypatch):
    """Counts every DeconvConfig built (constructor or model_validate)."""
    count = {"n": 0}
    init = DeconvConfig.__init__

    def counting_init(self, **data):
        count["n"] += 1
        init(self, **data)

    monkeypatch.setattr(DeconvConfig, "__init__", counting_init)
    return count


def test_deconvolve_builds_its_config_once(scene, builds):
    image, psf = scene
    deconvolve(image, psf, iterations=2, tv=0.001, max_memory="1GB", device="cpu", progress=False)
    assert builds["n"] == 1
    cfg = DeconvConfig(iterations=2, device="cpu")
    builds["n"] = 0
    deconvolve(image, psf, cfg, progress=False)  # a given config is used as is
    assert builds["n"] == 0
    deconvolve(image, psf, cfg, boundary="linear", progress=False)  # updated: one build
    assert builds["n"] == 1


def test_deconvolve_file_builds_its_config_once(scene, builds, tmp_path):
    image, psf = scene
    write_image(tmp_path / "in.tif", image, ImageMetadata("ZYX", (0.3, 0.1, 0.1)))
    deconvolve_file(tmp_path / "in.tif", psf, tmp_path / "out.tif", iterations=2, device="cpu",
                    max_memory="1GB", progress=False)
    assert builds["n"] == 1
    record = json.loads((tmp_path / "out.tif.deconv.json").read_text())["config"]
    # parsed once, at validation; the record holds bytes and the voxel size read from the file
    assert record["max_memory"] == 1_000_000_000 and record["voxel_size"] == [0.3, 0.1, 0.1]


def test_options_are_refused_by_the_config_before_any_work(scene, monkeypatch):
    image, psf = scene
    monkeypatch.setattr(api, "prepare_psf", lambda *a, **k: pytest.fail("prepared the PSF"))
    for bad, needle in ((dict(back_projector="magic"), "back_projector"),
                        (dict(iterations=0), "1 to 100,000"), (dict(tv=float("nan")), "finite"),
                        (dict(max_memory="lots"), "cannot parse"),
                        (dict(boundary="reflect"), "no deconvolution counterpart"),
                        (dict(start="middle"), "start"), (dict(bogus=1), "unknown argument")):
        with pytest.raises(InputError, match=needle) as info:
            deconvolve(image, psf, **bad)
        assert "\n" not in str(info.value)


def test_every_path_prepares_the_psf_once(scene, monkeypatch):
    """deconvolve, blocked deconvolve and the registry's RL all run prepare_psf exactly once,
    and a prepared PSF gives bit-identical results to the raw one."""
    image, psf = scene
    calls = []
    original = api.prepare_psf

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "prepare_psf", counting)
    blocks = []
    run_blocked = api.deconvolve_blocked
    monkeypatch.setattr(api, "deconvolve_blocked", lambda *a, **k: blocks.append(1) or run_blocked(*a, **k))
    whole = deconvolve(image, psf, iterations=3, device="cpu", progress=False)
    # half of what the whole-image job needs: blocked
    budget = api.estimate_memory(image.shape, psf.shape, symmetric_psf=True) // 2
    blocked = deconvolve(image, psf, iterations=3, device="cpu", progress=False,
                         max_memory=budget)
    via = build_method("rl", iterations=3, device="cpu").restore(image, psf=psf)
    assert len(calls) == 3 and blocks == [1]
    assert np.array_equal(via, whole)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=2e-3 * float(whole.max()))
    prepared = original(psf, image_shape=image.shape)
    assert np.array_equal(deconvolve(image, prepared, iterations=3, device="cpu", progress=False),
                          whole)


def test_prepare_psf_records_what_it_did():
    # even-sized, off-centre (main lobe 2 voxels right of the centre along x), sum 7
    psf = _gauss((6, 9, 10), (1.0, 1.0, 1.0), centre=(3, 4, 7))
    psf *= 7 / psf.sum()
    out = prepare_psf(psf, image_shape=(3, 40, 40))
    assert isinstance(out, PreparedPSF)
    assert out.given_shape == (6, 9, 10) and out.given_sum == pytest.approx(7, rel=1e-6)
    assert out.padded_to_odd and out.offset == (0, 0, 2) and out.centred
    # odd (7, 9, 11); x padded by 4 at the end to centre the lobe; z cropped to 2·3 − 1
    assert out.cropped_from == (7, 9, 15) and out.shape == (5, 9, 15)
    assert float(out.psf.sum(dtype=np.float64)) == pytest.approx(1, abs=1e-6)
    peak = np.unravel_index(np.argmax(out.psf), out.shape)
    assert peak == tuple(n // 2 for n in out.shape)
    assert any("moved" in s for s in out.steps())
    # already prepared: returned as is for the same image; a smaller image crops it further
    assert prepare_psf(out, image_shape=(3, 40, 40)) is out
    small = prepare_psf(out, image_shape=(2, 40, 40))
    assert small.shape == (3, 9, 15) and small.cropped_from == (7, 9, 15)
    assert float(small.psf.sum(dtype=np.float64)) == pytest.approx(1, abs=1e-6)


def test_prepare_psf_resamples_to_the_image_grid():
    psf = _gauss((9, 21, 21), (1.0, 2.0, 2.0))
    out = prepare_psf(psf, ndim=3, psf_voxel_size=(0.2, 0.05, 0.05), voxel_size=(0.2, 0.1, 0.1))
    assert out.resampled == ((0.2, 0.05, 0.05), (0.2, 0.1, 0.1))
    assert out.shape == (9, 11, 11) and out.cropped_from is None
    # a Gaussian of σ = 2 fine voxels is σ ≈ 1 coarse voxel (second moment along x)
    x = np.arange(11) - 5
    profile = out.psf.sum(axis=(0, 1))
    assert np.sqrt((profile * x**2).sum()) == pytest.approx(1.0, rel=0.1)
    with pytest.raises(InputError, match="dimensions"):
        prepare_psf(psf[0], ndim=3)


def test_cli_builds_one_config_and_shows_its_error(scene, builds, tmp_path):
    from typer.testing import CliRunner

    from lucyd.cli.main import app

    image, psf = scene
    write_image(tmp_path / "in.tif", image)
    write_image(tmp_path / "psf.tif", psf)
    args = ["deconvolve", str(tmp_path / "in.tif"), "--psf", str(tmp_path / "psf.tif"), "-q",
            "-n", "2", "--device", "cpu", "--max-memory", "1GB"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 0, result.output
    assert builds["n"] == 1
    bad = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "x.tif"), "--back-projector", "x"])
    # the config's one-line message, with the option spelled as on the command line
    assert bad.exit_code == 2 and "--back-projector: Input should be 'flipped'" in bad.output


def test_psf_energy_trims_a_padded_psf_to_the_same_result(scene, tmp_path):
    """A PSF zero-padded into a large box, trimmed with psf_energy, gives what the compact PSF
    gives, in a smaller job; deconvolve_file records the fraction kept."""
    image, psf = scene
    big = np.zeros((15, 41, 41), np.float32)
    big[5:10, 17:24, 17:24] = psf
    compact = deconvolve(image, psf, iterations=3, device="cpu", progress=False)
    trimmed = deconvolve(image, big, iterations=3, device="cpu", progress=False, psf_energy=1.0)
    np.testing.assert_allclose(trimmed, compact, rtol=1e-5, atol=1e-5 * float(compact.max()))
    prepared = api.prepare_psf(big, image_shape=image.shape, energy=0.99)
    assert prepared.trimmed_from == (15, 41, 41) and prepared.energy_kept >= 0.99
    assert all(k <= n for k, n in zip(prepared.psf.shape, (5, 7, 7), strict=True))
    assert any("trimmed" in step for step in prepared.steps())
    write_image(tmp_path / "in.tif", image)
    write_image(tmp_path / "psf.tif", big)
    api.deconvolve_file(tmp_path / "in.tif", tmp_path / "psf.tif", tmp_path / "out.tif",
                        iterations=2, psf_energy=0.999, progress=False)
    record = DeconvConfig.load(tmp_path / "out.tif.deconv.json")
    assert record.psf_energy == 0.999 and 0.999 <= record.psf_energy_kept <= 1.0
