"""The data-consistency step of ``lucyd restore``: Richardson–Lucy iterations started from a network's output."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.restoration import richardson_lucy

from lucyd.forward import camera_noise, convolve
from lucyd.forward.noise_estimate import NoiseModel
from lucyd.metrics import evaluate
from lucyd.metrics.fidelity import compare_fidelity, data_fidelity
from lucyd.restore import RestoreConfig, pipeline, restore
from lucyd.restore.calibration import Calibration
from lucyd.restore.physics_steps import data_consistent_rl
from lucyd.restore.pipeline import model_key
from lucyd.synth import phantom


def gaussian_psf(shape, sigma):
    p = np.zeros(shape, np.float32)
    p[tuple(s // 2 for s in shape)] = 1
    p = ndimage.gaussian_filter(p, sigma)
    return p / p.sum()


PSF2 = gaussian_psf((15, 15), (2.0, 2.0))


def _calibration() -> Calibration:
    noise = NoiseModel(dark_level=0.0, gain=1.0, read_noise_e=1.0, background_e=1.0, peak_e=100.0, slope_r2=1.0,
                       shot_noise_limited=True)
    return Calibration(noise=noise, foreground_fraction=0.3)


def _truth_and_raw(seed=1):
    obj = phantom("mixed", (128, 128), seed=seed, background=2.0) * np.float32(50.0)
    raw = camera_noise(convolve(obj, PSF2, boundary="linear"), photons=1.0, read_noise=1.0, seed=seed + 1)
    return obj.astype(np.float32), raw.astype(np.float32)


def test_one_iteration_is_classic_richardson_lucy_inside_the_image():
    """From a flat start, one iteration equals scikit-image's RL step away from the borders (independent code)."""
    _, raw = _truth_and_raw()
    raw = np.clip(raw, 0.1, None)  # skimage divides by the blur without a floor
    start = np.full(raw.shape, 0.5, np.float32)
    ours, info = data_consistent_rl(start, raw, PSF2, 1.0, max_iterations=1)
    reference = richardson_lucy(raw.astype(np.float64), PSF2.astype(np.float64), num_iter=1, clip=False)
    inner = (slice(16, -16),) * 2  # skimage has no boundary weights: compare where they are 1
    np.testing.assert_allclose(ours[inner], reference[inner], rtol=1e-4)
    assert info["iterations"] == 1 and len(info["chi2"]) == 1


def test_it_repairs_light_a_network_misplaced_and_stops_at_the_noise_level():
    """A start that dims one region and brightens another fails the flux check; after the step it passes.

    The repaired estimate is closer to the truth than the start, and the iterations stop by the
    discrepancy principle (χ² ≤ 1) or at the cap.
    """
    obj, raw = _truth_and_raw()
    truth = data_fidelity(obj, raw, PSF2, read_noise_e=1.0)
    start = obj.copy()
    start[20:60, 20:60] *= 0.6
    start[70:110, 70:110] *= 1.4
    before = data_fidelity(start, raw, PSF2, read_noise_e=1.0)
    assert compare_fidelity(before, truth)[0]
    est, info = data_consistent_rl(start, raw, PSF2, 1.0, max_iterations=10)
    after = data_fidelity(est, raw, PSF2, read_noise_e=1.0)
    assert not compare_fidelity(after, truth)[0], after.as_dict()
    assert evaluate(est, obj)["psnr"] > evaluate(start, obj)["psnr"] + 1.0
    assert 1 <= info["iterations"] <= 10
    assert info["chi2"][-1] <= 1.0 or info["iterations"] == 10 or info["chi2"][-2] - info["chi2"][-1] < 1e-3 * info[
        "chi2"][-2]
    # flux: the step keeps the data's light (zero boundary: up to what falls outside the field)
    assert abs(est.sum() / raw.sum() - 1) < 0.03


def test_restore_applies_it_after_the_network_and_reuses_the_model_without_it(tmp_path, one_thread):
    """The network candidate is the data-consistent one; switching the step off reuses the same cached model."""
    obj = phantom("nuclei", (96, 96), seed=2, background=5.0)
    raw = camera_noise(convolve(obj, PSF2, boundary="linear"), photons=3.0, gain=2.0, offset=100.0,
                       read_noise=1.0, seed=4)
    cfg = RestoreConfig(steps=6, n_train=3, cache_dir=str(tmp_path), threads=1, method="network")
    res = restore(raw, PSF2, config=cfg, progress=False)
    dc = res.record["data_consistency"]["network"]
    assert dc["iterations"] >= 1 and len(dc["chi2"]) == dc["iterations"]
    assert "network_raw" in res.candidates
    assert not np.array_equal(res.candidates["network"], res.candidates["network_raw"])
    off = restore(raw, PSF2, config=cfg.model_copy(update={"data_consistency": False}), progress=False)
    assert off.record["model"]["reused"] is True and "data_consistency" not in off.record
    np.testing.assert_array_equal(off.candidates["network"], res.candidates["network_raw"])


def test_a_recipe_bump_invalidates_cached_models(monkeypatch):
    """Models trained by an older recipe are not reused: the recipe version is part of the cache key."""
    cal = _calibration()
    key = model_key(PSF2, cal, RestoreConfig())
    monkeypatch.setattr(pipeline, "RECIPE_VERSION", pipeline.RECIPE_VERSION + 1)
    assert model_key(PSF2, cal, RestoreConfig()) != key


def test_specimen_share_defaults_per_dimensionality_and_keys_the_cache():
    """None means 1 in 2D and 0.5 in 3D; an explicit equal share gives the same cached model, another share not."""
    cal = _calibration()
    assert pipeline.specimen_share(RestoreConfig(), 2) == 1.0
    assert pipeline.specimen_share(RestoreConfig(), 3) == 0.5
    assert model_key(PSF2, cal, RestoreConfig()) == model_key(PSF2, cal, RestoreConfig(specimen_share=1.0))
    assert model_key(PSF2, cal, RestoreConfig()) != model_key(PSF2, cal, RestoreConfig(specimen_share=0.5))
