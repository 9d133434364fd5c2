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


# ------------------------------------------------------------------ W2S-style target fit


def test_target_fit_to_input_recovers_affine_map(rng):
    from lucyd.train.data import fit_target_to_input, prepare_images

    gt = rng.random((64, 64)) * 10
    raw = 3.0 * gt + 7.0 + rng.normal(0, 2.0, gt.shape)  # independently stretched + noise
    a, b = fit_target_to_input(raw, gt)
    assert a == pytest.approx(3.0, abs=0.05) and b == pytest.approx(7.0, abs=0.3)

    from types import SimpleNamespace

    pair = SimpleNamespace(name="p", raw=raw.astype(np.float32), gt=(0.01 * gt + 100).astype(np.float32))
    (im,) = prepare_images([pair], 1.0, 99.0, clip_gt=False, target_norm="fit_to_input")
    # input and target share the input's normalisation: the target is the noiseless input
    noiseless = (3.0 * gt + 7.0 - im.raw_range[0]) / (im.raw_range[1] - im.raw_range[0])
    np.testing.assert_allclose(im.gt, noiseless, atol=0.02)
    (own,) = prepare_images([pair], 1.0, 99.0, clip_gt=False)
    assert np.abs(own.gt - noiseless).max() > 0.05  # separate percentiles do not align them


# ------------------------------------------------------------------ Noise2Void


@pytest.mark.parametrize("replacement", ["n2v", "n2v2"])
def test_blind_spot_mask_uses_neighbours_never_the_centre(replacement):
    import torch

    from lucyd.n2v import blind_spot_mask

    b, h, w, r = 3, 12, 10, 2
    x = torch.arange(b * h * w, dtype=torch.float32).reshape(b, 1, h, w)  # value = position
    gen = torch.Generator().manual_seed(1)
    masked, mask = blind_spot_mask(x, fraction=0.1, radius=r, replacement=replacement, generator=gen)
    assert mask.shape == (b, 1, h, w) and mask.dtype == torch.bool
    assert mask.sum((1, 2, 3)).tolist() == [round(0.1 * h * w)] * b
    assert torch.equal(masked[~mask], x[~mask])  # unmasked pixels untouched
    for i, _, y0, x0 in mask.nonzero().tolist():
        v = masked[i, 0, y0, x0].item()
        yy = np.arange(max(0, y0 - r), min(h, y0 + r + 1))
        xx = np.arange(max(0, x0 - r), min(w, x0 + r + 1))
        neigh = [x[i, 0, a, c].item() for a in yy for c in xx if (a, c) != (y0, x0)]
        if replacement == "n2v":  # one neighbour's value, from the same sample
            assert v in neigh and v != x[i, 0, y0, x0].item()
        else:  # torch's median (lower middle) of the neighbourhood; at edges from mirrored offsets
            assert min(neigh) <= v <= max(neigh)
            if r <= y0 < h - r and r <= x0 < w - r:
                assert v == float(np.sort(neigh)[(len(neigh) - 1) // 2])
    with pytest.raises(InputError, match="too small"):
        blind_spot_mask(x[..., :4, :4], radius=2)
    with pytest.raises(InputError, match="fraction"):
        blind_spot_mask(x, fraction=0)


def test_n2v_loss_only_sees_masked_pixels():
    import torch

    from lucyd.n2v import blind_spot_mask
    from lucyd.train.losses import get_loss

    x = torch.rand(2, 1, 32, 32)
    out = torch.zeros_like(x, requires_grad=True)

    def net(inp):  # output independent of the input: gradients show where the loss looks
        return out * 1.0

    torch.manual_seed(5)
    loss, _ = get_loss("n2v")(net, x, torch.full_like(x, 1e6))  # y is ignored
    loss.backward()
    torch.manual_seed(5)
    _, mask = blind_spot_mask(x)
    assert torch.equal(out.grad != 0, mask)
    # the target is the original noisy value at the masked pixels: mean((0 - x)^2) there
    assert loss.item() == pytest.approx(float((x[mask] ** 2).mean()), rel=1e-5)


def test_n2v_denoises_poisson_image_without_targets(tmp_path, one_thread):
    from scipy import ndimage

    from lucyd.denoise import train_n2v

    shape = ndimage.gaussian_filter(phantom("nuclei", (64, 96), seed=3).astype(np.float64), 1.5)
    clean = 2.0 + 30.0 * shape / shape.max()  # low photon counts: Poisson noise dominates
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float32)
    write_image(tmp_path / "noisy.tif", noisy, ImageMetadata("YX"))
    model_dir = train_n2v([tmp_path / "noisy.tif"], tmp_path / "n2v", steps=150, seed=0,
                          patch=(32, 32), batch=8, lr=2e-3, val_interval=50,
                          net_kwargs={"depth": 2, "first_filters": 8, "kernel_size": 3, "residual": False})
    pred = load_model(model_dir).predict(noisy, progress=False)
    assert pred.dtype == np.float32 and pred.shape == noisy.shape
    err_noisy = np.mean((noisy - clean) ** 2)
    err_n2v = np.mean((pred - clean) ** 2)  # same intensity scale: no fit needed
    assert err_n2v < 0.4 * err_noisy, (err_n2v, err_noisy)


# ------------------------------------------------------------------ lucyd denoise


def test_cli_denoise_gaussian_and_errors(tmp_path, rng):
    from typer.testing import CliRunner

    from lucyd.cli.main import app
    from lucyd.io import read_image

    img = (rng.random((20, 24)) * 100).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_image(src, img, ImageMetadata("YX", (0.1, 0.1)))
    runner = CliRunner()
    out = tmp_path / "out.tif"
    r = runner.invoke(app, ["denoise", str(src), "-o", str(out), "--method", "gaussian", "--sigma", "1"])
    assert r.exit_code == 0, r.output
    res, meta = read_image(out)
    assert res.dtype == np.float32 and meta.voxel_size == pytest.approx((0.1, 0.1))
    np.testing.assert_allclose(res, gaussian_denoise(img.astype(np.float32), 1.0), rtol=1e-6)
    import json

    rec = json.loads((tmp_path / "out.tif.denoise.json").read_text())
    assert rec["method"] == "gaussian" and rec["sigma_px"] == 1.0
    for args, message in [
        ([str(tmp_path / "missing.tif"), "-o", str(out), "--method", "gaussian", "--sigma", "1"], "no such file"),
        ([str(src), "-o", str(out), "--method", "gaussian", "--sigma", "1"], "exists"),
        ([str(src), "-o", str(tmp_path / "o2.tif"), "--method", "gaussian"], "--sigma"),
        ([str(src), "-o", str(tmp_path / "o2.tif"), "--method", "care"], "--model"),
        ([str(src), "-o", str(tmp_path / "o2.tif"), "--method", "bm3d"], "--method"),
        ([str(src), "-o", str(src), "--method", "gaussian", "--sigma", "1", "--overwrite"], "overwrite the input"),
        ([str(src), "-o", str(tmp_path / "o2.tif"), "--method", "n2v", "--model", str(tmp_path / "nomodel")],
         "no such model folder"),
    ]:
        r = runner.invoke(app, ["denoise", *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_cli_denoise_n2v_trains_on_the_inputs(tmp_path, rng, one_thread):
    import json

    from typer.testing import CliRunner

    from lucyd.cli.main import app
    from lucyd.io import read_image

    for name in ("a", "b"):
        write_image(tmp_path / f"{name}.tif", rng.poisson(5.0, (72, 136)).astype(np.float32),
                    ImageMetadata("YX", (0.2, 0.2)))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["denoise", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out),
                                 "--method", "n2v", "--steps", "2"])
    assert r.exit_code == 0, r.output
    for name in ("a", "b"):
        res, meta = read_image(out / f"{name}_denoised.tif")
        assert res.shape == (72, 136) and res.dtype == np.float32 and meta.voxel_size == pytest.approx((0.2, 0.2))
        rec = json.loads((out / f"{name}_denoised.tif.denoise.json").read_text())
        assert rec["method"] == "n2v" and rec["model"] == str((tmp_path / "out_n2v_model").resolve())
    cfg = json.loads((tmp_path / "out_n2v_model" / "config.json").read_text())["config"]
    assert cfg["loss"] == "n2v" and cfg["net_kwargs"]["residual"] is False
