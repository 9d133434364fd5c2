"""Denoising: synthetic low-photon pairs, pair folders of real files, the W2S pairs.

CARE's denoising recipe (Weigert et al. 2018); W2S (Zhou et al. 2020) images were
contrast-stretched independently, so every metric is computed after an affine fit
(:func:`lucyd.metrics.evaluate`).
"""

from __future__ import annotations

import numpy as np
import pytest

from lucyd.denoise import (
    best_gaussian_sigma,
    evaluate_restorations,
    gaussian_denoise,
    pair_folder,
    w2s_pair_folder,
    w2s_pairs,
)
from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, write_image
from lucyd.metrics import evaluate, psnr
from lucyd.synth import SynthConfig, degrade, load_pairs, make_dataset, phantom
from lucyd.train import TrainConfig, load_model, train


def test_gaussian_baseline(rng):
    img = rng.random((12, 10)).astype(np.float32)
    np.testing.assert_allclose(gaussian_denoise(img, 0), img)
    out = gaussian_denoise(img, 1.0)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.mean() == pytest.approx(img.mean(), rel=1e-5)  # intensity scale kept
    assert out.std() < img.std()
    assert gaussian_denoise(rng.random((4, 8, 8)), (0, 1, 1)).shape == (4, 8, 8)
    for bad in (-1, (1, 2, 3), float("nan")):
        with pytest.raises(InputError, match="sigma"):
            gaussian_denoise(img, bad)


def test_pair_folder_links_without_copying(tmp_path, rng):
    src = tmp_path / "src"
    src.mkdir()
    pairs = {}
    for name in ("a", "b", "c"):
        raw, gt = rng.random((16, 16)), rng.random((16, 16))
        write_image(src / f"input_avg1_{name}.tif", raw.astype(np.float32), ImageMetadata("YX"))
        write_image(src / f"target_avg400_{name}.tif", gt.astype(np.float32), ImageMetadata("YX"))
        pairs[name] = (src / f"input_avg1_{name}.tif", src / f"target_avg400_{name}.tif")
    (src / "input_avg1_lonely.tif").write_bytes(b"")  # no target: ignored
    found = w2s_pairs(src)
    assert list(found) == ["a", "b", "c"] and found == pairs
    out = w2s_pair_folder(src, tmp_path / "view", exclude=["b"])
    loaded = load_pairs(out)
    assert [p.name for p in loaded] == ["a", "c"]
    assert (out / "raw" / "a.tif").is_symlink()
    assert (out / "raw" / "a.tif").resolve() == pairs["a"][0].resolve()
    np.testing.assert_array_equal(loaded[0].gt, np.asarray(
        __import__("lucyd.io", fromlist=["read_image"]).read_image(pairs["a"][1])[0]))
    with pytest.raises(InputError, match="already"):
        pair_folder(pairs, out)
    copied = pair_folder(pairs, out, include=["b"], link=False, overwrite=True)
    assert [p.name for p in load_pairs(copied)] == ["b"]
    assert not (copied / "raw" / "b.tif").is_symlink()
    with pytest.raises(InputError, match="not found"):
        pair_folder(pairs, tmp_path / "v2", exclude=["zzz"])
    with pytest.raises(InputError, match="no pairs"):
        pair_folder(pairs, tmp_path / "v3", include=["a"], exclude=["a"])
    with pytest.raises(FileFormatError):
        w2s_pairs(tmp_path / "nowhere")
    with pytest.raises(FileFormatError, match="no W2S pairs"):
        w2s_pairs(out)


def test_care_denoises_synthetic_pairs(tmp_path, one_thread):
    # CARE denoising recipe: low-photon input, noiseless expectation as target
    cfg = SynthConfig(kind="nuclei", task="denoising", n=3, shape=(64, 64), photons=0.02,
                      read_noise=0.5, seed=4)
    data = make_dataset(cfg, tmp_path / "data", workers=1, progress=False, device="cpu")
    model_dir = train(TrainConfig(model="care", net_kwargs={"first_filters": 8}, patch=(32, 32),
                                  batch=8, steps=100, lr=3e-3, schedule="constant",
                                  val_interval=100, device="cpu", seed=0),
                      data, tmp_path / "model")
    model = load_model(model_dir)
    tests = []
    for s in (100, 101):
        raw, gt = degrade(phantom("nuclei", (64, 64), seed=s), "denoising", photons=0.02,
                          read_noise=0.5, seed=s)
        tests.append((raw, gt))
    scores = evaluate_restorations(tests, {
        "raw": lambda x: x,
        "care": lambda x: model.predict(x, device="cpu"),
        "shuffled": lambda x: np.random.default_rng(0).permutation(
            model.predict(x, device="cpu").ravel()).reshape(x.shape),
    })
    assert scores["care"]["psnr"] > scores["raw"]["psnr"] + 2.0, scores
    assert scores["care"]["ssim"] > scores["raw"]["ssim"], scores
    assert scores["shuffled"]["psnr"] < scores["raw"]["psnr"]  # metric sees structure


def test_w2s_real_pairs(real_data, tmp_path):
    folder = real_data("w2s_denoise")
    pairs = w2s_pairs(folder)
    assert len(pairs) >= 2
    view = w2s_pair_folder(folder, tmp_path / "w2s")
    for p in load_pairs(view)[:3]:
        assert p.raw.shape == (512, 512)
        raw_score = evaluate(p.raw, p.gt)
        assert all(np.isfinite(v) for v in raw_score.values())
        # without the affine fit the independent contrast stretches dominate the error
        assert raw_score["psnr"] > psnr(p.raw / 255.0, p.gt / 255.0, data_range=1.0) - 20
        smooth = evaluate(gaussian_denoise(p.raw, 1.5), p.gt)
        assert smooth["psnr"] > raw_score["psnr"] + 3.0, (p.name, raw_score, smooth)
        assert smooth["ssim"] > raw_score["ssim"]
        sigma, best = best_gaussian_sigma(p.raw, p.gt, sigmas=(1.0, 2.0))
        assert sigma in (1.0, 2.0) and best >= smooth["psnr"] - 3.0
