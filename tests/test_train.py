"""Generic trainer, model folders, prediction (whole, tiled, out of core) and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn
from typer.testing import CliRunner

from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, read_image, write_image
from lucyd.train import TrainConfig, load_model, predict_file, train
from lucyd.train.data import PatchSampler, TrainImage, prepare_images, split_validation
from lucyd.train.losses import get_loss
from lucyd.train.model import IncompleteModelWarning, RestorationModel


def _pair(rng, shape, sigma=1.5):
    gt = np.zeros(shape, np.float32)
    idx = tuple(rng.integers(0, s, size=max(4, math.prod(shape) // 60)) for s in shape)
    gt[idx] = rng.uniform(50, 300, size=len(idx[0]))
    gt = ndimage.gaussian_filter(gt, 0.7) + 10
    raw = rng.poisson(ndimage.gaussian_filter(gt, sigma)).astype(np.float32)
    return raw, gt.astype(np.float32)


def _dataset(root: Path, shape, n=2, seed=0, voxel=None) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        raw, gt = _pair(rng, shape)
        meta = ImageMetadata.for_array(raw, voxel)
        write_image(root / "raw" / f"{i:04d}.tif", raw, meta)
        write_image(root / "gt" / f"{i:04d}.tif", gt, meta)
    (root / "dataset.json").write_text(json.dumps({"kind": "test", "n": n}))
    return root


@pytest.fixture
def data2d(tmp_path):
    return _dataset(tmp_path / "d2", (48, 48), n=3, voxel=(0.1, 0.1))


@pytest.fixture
def data3d(tmp_path):
    return _dataset(tmp_path / "d3", (12, 24, 24), n=2, voxel=(0.3, 0.13, 0.13))


def _cfg(**kw):
    base = dict(
        model="rln",
        patch=(16, 16),
        batch=2,
        steps=4,
        val_interval=2,
        val_patches=2,
        device="cpu",
        seed=0,
    )
    base.update(kw)
    return TrainConfig.build(**base)


# ------------------------------------------------------------------ configuration


def test_config_defaults_follow_the_rln_recipe():
    cfg = TrainConfig(model="rln").resolved(3, (128, 128, 128))
    assert cfg.lr == 0.015 and cfg.schedule == "exp"
    assert cfg.lr_decay == 0.95 and cfg.lr_decay_steps == 600
    assert cfg.batch == 4 and cfg.loss == "rln" and cfg.augment is False
    assert cfg.norm_percentiles == (0.01, 99.5) and cfg.patch == (64, 64, 64)
    assert cfg.patch_rejection == "mean" and cfg.rejection_threshold == 0.8
    # default patch clipped to small data, on the size multiple
    assert TrainConfig(model="rln").resolved(3, (20, 33, 80)).patch == (20, 32, 64)
    with pytest.raises(InputError, match="patch"):
        TrainConfig.build(model="rln", patch=(16, 16), ndim=3)
    with pytest.raises(InputError, match="unknown network"):
        TrainConfig(model="nope").resolved(3)


def test_exponential_schedule_matches_formula():
    from lucyd.train.trainer import _lr_lambda

    cfg = TrainConfig(model="rln", steps=2000).resolved(3, (64, 64, 64))
    f = _lr_lambda(cfg)
    for step in (0, 1, 600, 1234):
        assert math.isclose(cfg.lr * f(step), 0.015 * 0.95 ** (step / 600), rel_tol=1e-12)
    q = _lr_lambda(TrainConfig(model="rln", steps=400, schedule="quarter", lr_decay=0.5))
    assert [q(s) for s in (0, 99, 100, 250, 399)] == [1, 1, 0.5, 0.25, 0.125]


# ------------------------------------------------------------------ losses


class _Fixed(nn.Module):
    def __init__(self, out, t2=None):
        super().__init__()
        self.out, self.t2 = out, t2

    def forward(self, x, return_intermediate=False):
        return (self.out, self.t2) if return_intermediate else self.out


def test_rln_loss_equals_formula():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 4, 6, 6, generator=g), torch.rand(2, 1, 4, 6, 6, generator=g)
    out, t2 = torch.rand(2, 1, 4, 6, 6, generator=g), torch.rand(2, 1, 4, 6, 6, generator=g)
    loss, pred = get_loss("rln")(_Fixed(out, t2), x, y)
    ssims = []
    for b in range(2):
        p, t = out[b].double().ravel(), y[b].double().ravel()
        mp, mt = p.mean(), t.mean()
        vp, vt = ((p - mp) ** 2).mean(), ((t - mt) ** 2).mean()
        c = ((p - mp) * (t - mt)).mean()
        ssims.append(
            (2 * mp * mt + 1e-4) * (2 * c + 9e-4) / ((mp**2 + mt**2 + 1e-4) * (vp + vt + 9e-4))
        )
    ssim = torch.stack(ssims).mean()
    expect = ((out - y) ** 2).mean() + 0.1 * ((t2 - (0.8 * y + 0.2 * x)) ** 2).mean()
    expect = expect.double() - torch.log((1 + ssim) / 2)
    assert math.isclose(float(loss), float(expect), rel_tol=1e-5)
    assert pred is out


def test_rln_local_loss_uses_windowed_ssim():
    """rln_local = rln's mse terms − log((1 + SSIM)/2), SSIM the mean of the Gaussian-window map
    (checked against scikit-image's gaussian-weighted SSIM, population covariance)."""
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 1, 12, 14, 13, generator=g), torch.rand(2, 1, 12, 14, 13, generator=g)
    out, t2 = torch.rand(2, 1, 12, 14, 13, generator=g), torch.rand(2, 1, 12, 14, 13, generator=g)
    loss, pred = get_loss("rln_local")(_Fixed(out, t2), x, y)
    ssim = np.mean([
        skm.structural_similarity(out[b, 0].double().numpy(), y[b, 0].double().numpy(), data_range=1.0,
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for b in range(2)
    ])
    expect = ((out - y) ** 2).mean() + 0.1 * ((t2 - (0.8 * y + 0.2 * x)) ** 2).mean()
    expect = float(expect) - math.log((1 + ssim) / 2)
    assert math.isclose(float(loss), expect, rel_tol=1e-4)
    assert pred is out
    # faint texture on an empty background: the global term hardly sees it next to the
    # structure's variance, the local one does (the windows of the empty half)
    gt = torch.zeros(1, 1, 16, 16, 32)
    gt[..., :16] = torch.rand(1, 1, 16, 16, 16, generator=g)
    speckle = gt + 0.05 * (torch.rand(1, 1, 16, 16, 32, generator=g) - 0.5)
    cost = {name: float(get_loss(name)(_Fixed(speckle, gt), gt, gt)[0] - get_loss(name)(_Fixed(gt, gt), gt, gt)[0])
            for name in ("rln", "rln_local")}
    assert cost["rln_local"] > 10 * cost["rln"] > 0


def test_laplace_mae_mse_losses():
    y = torch.zeros(1, 1, 2, 2)
    mu = torch.full((1, 1, 2, 2), 0.5)
    sigma = torch.full((1, 1, 2, 2), 0.25)
    loss, pred = get_loss("laplace_nll")(_Fixed(torch.cat([mu, sigma], 1)), y, y)
    assert math.isclose(float(loss), 0.5 / 0.25 + math.log(0.25) + math.log(2), rel_tol=1e-6)
    assert torch.equal(pred, mu)
    assert math.isclose(float(get_loss("mae")(_Fixed(mu), y, y)[0]), 0.5)
    assert math.isclose(float(get_loss("mse")(_Fixed(mu), y, y)[0]), 0.25)
    with pytest.raises(InputError, match="2-channel"):
        get_loss("laplace_nll")(_Fixed(mu), y, y)
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("nope")


# ------------------------------------------------------------------ data


def _img(raw, gt=None, name="a"):
    gt = raw if gt is None else gt
    return TrainImage(name, raw, gt, (0, 1), (0, 1), tuple(slice(0, n) for n in raw.shape))


def test_normalisation_per_image_and_gt_clipped():
    rng = np.random.default_rng(0)

    class P:
        name = "p"
        raw = rng.uniform(100, 200, (20, 20)).astype(np.float32)
        gt = rng.uniform(-5, 50, (20, 20)).astype(np.float32)
        metadata = ImageMetadata("YX", (0.1, 0.1))

    (im,) = prepare_images([P], 1.0, 99.0)
    lo, hi = np.percentile(P.raw, [1, 99])
    assert np.allclose(im.raw, (P.raw - lo) / (hi - lo), atol=1e-5)
    assert im.gt.min() >= 0 and im.raw_range == pytest.approx((lo, hi))
    assert im.voxel_size == (0.1, 0.1)


def test_validation_split_never_overlaps():
    ims = [_img(np.full((20, 20), i, np.float32), name=str(i)) for i in range(5)]
    tr, va, info = split_validation(ims, 0.2, (8, 8), seed=0)
    assert len(va) == 1 and len(tr) == 4 and info["mode"] == "images"
    assert not {i.name for i in tr} & {i.name for i in va}
    # single image: a separate region along the longest axis
    (tr1,), (va1,), info = split_validation([_img(np.zeros((16, 40), np.float32))], 0.1, (8, 8), 0)
    assert info["mode"] == "region" and info["axis"] == 1
    assert tr1.region[1].stop <= va1.region[1].start
    assert va1.region_shape[1] >= 8 and tr1.region_shape[1] >= 8
    with pytest.raises(InputError, match="too small"):
        split_validation([_img(np.zeros((14, 12), np.float32))], 0.1, (8, 8), 0)


def test_sampler_background_rejection_and_region():
    raw = np.zeros((64, 64), np.float32)
    raw[:, 32:] = 1.0  # right half bright, image mean 0.5
    im = _img(raw)
    s = PatchSampler([im], (8, 8), rejection="mean", threshold=0.8, seed=0)
    x, _ = s.sample(50)
    assert x.shape == (50, 1, 8, 8)
    assert (x.mean(axis=(1, 2, 3)) >= 0.4).all()  # patch mean >= 0.8 x image mean
    s_none = PatchSampler([im], (8, 8), rejection="none", seed=0)
    assert (s_none.sample(50)[0].mean(axis=(1, 2, 3)) < 0.4).any()
    # care rule: max-filtered target above 0.4 x its 99.9th percentile
    gt = np.zeros((64, 64), np.float32)
    gt[50, 50] = 1.0
    s_care = PatchSampler([_img(raw, gt)], (8, 8), rejection="care", seed=0)
    g = s_care.sample(30)[1]
    assert (g.max(axis=(1, 2, 3)) > 0).all()
    # regions are respected
    sub = TrainImage("r", raw, raw, (0, 1), (0, 1), (slice(0, 64), slice(0, 20)))
    assert PatchSampler([sub], (8, 8), seed=1).sample(40)[0].max() == 0.0


def test_sampler_augmentation_keeps_pairs_aligned():
    rng = np.random.default_rng(0)
    raw = rng.random((10, 16, 16)).astype(np.float32)
    s = PatchSampler([_img(raw, 2 * raw)], (6, 8, 8), augment=True, seed=0)
    x, y = s.sample(20)
    assert np.array_equal(2 * x, y)
    seen = {tuple(np.round(p[0, 0, :2, 0], 6)) for p in x}
    assert len(seen) > 5
    # reproducible from the state
    st = s.state
    a = s.sample(3)[0]
    s.state = st
    assert np.array_equal(a, s.sample(3)[0])


# ------------------------------------------------------------------ training


def test_train_writes_model_folder_and_predicts(data2d, tmp_path):
    out = train(_cfg(), data2d, tmp_path / "m")
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.json", "best.pt", "last.pt", "log.jsonl", "loss.png"} <= files
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "model.json").read_text())
    assert info["format_version"] == 1 and info["network"]["name"] == "rln"
    assert info["network"]["ndim"] == 2 and info["network"]["parameters"] == 5_472
    assert info["voxel_size"] == [0.1, 0.1]
    assert info["provenance"]["dataset"] == {"kind": "test", "n": 3}
    assert info["provenance"]["split"]["mode"] == "images"
    assert info["normalization"]["percentiles"] == [0.01, 99.5]
    assert info["training"]["steps_done"] == 4 and info["training"]["status"] == "complete"
    cfg = TrainConfig.load(out / "config.json")
    assert cfg.lr == 0.015 and cfg.ndim == 2  # resolved values saved
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [2, 4]
    assert all(np.isfinite(r["val_psnr"]) for r in vals)
    model = load_model(out)
    raw, _ = read_image(data2d / "raw" / "0000.tif")
    pred = model.predict(raw[:, :45])  # odd size: padded and cropped back
    assert pred.shape == (48, 45) and pred.dtype == np.float32 and np.isfinite(pred).all()
    with pytest.raises(InputError, match="2D"):
        model.predict(np.zeros((4, 8, 8), np.float32))


def test_resume_gives_identical_weights(data2d, tmp_path):
    straight = train(_cfg(steps=4), data2d, tmp_path / "a")
    half = train(_cfg(steps=2), data2d, tmp_path / "b")
    resumed = train(_cfg(steps=4), data2d, half, resume=True)
    wa = torch.load(straight / "last.pt", weights_only=True)
    wb = torch.load(resumed / "last.pt", weights_only=True)
    assert wa["step"] == wb["step"] == 4
    for k, v in wa["model"].items():
        assert torch.equal(v, wb["model"][k]), k
    la = (straight / "log.jsonl").read_text().splitlines()
    lb = (resumed / "log.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in la]
    assert strip == [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lb]
    with pytest.raises(InputError, match="already holds"):
        train(_cfg(), data2d, straight)
    with pytest.raises(InputError, match="resume: lr"):
        train(_cfg(steps=6, lr=0.1), data2d, straight, resume=True)


def test_interrupted_checkpoint_write_keeps_best(data2d, tmp_path, monkeypatch):
    out = train(_cfg(steps=2), data2d, tmp_path / "m")
    before = torch.load(out / "best.pt", weights_only=True)
    import lucyd.train.trainer as tr

    def broken_save(obj, path, *a, **k):
        Path(path).write_bytes(b"garbage")  # half-written file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(tr.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(steps=4), data2d, out, resume=True)
    monkeypatch.undo()
    after = torch.load(out / "best.pt", weights_only=True)
    assert after["step"] == before["step"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.warns(IncompleteModelWarning, match="interrupted"):
        load_model(out)


def test_early_stopping(data2d, tmp_path):
    cfg = _cfg(
        steps=50,
        val_interval=1,
        patience=2,
        lr=1e-9,
        min_delta=1.0,
        net_kwargs={"bn_momentum": 0.0},
    )
    out = train(cfg, data2d, tmp_path / "m")
    info = json.loads((out / "model.json").read_text())
    assert info["training"]["status"] == "complete"
    assert info["training"]["stop_reason"] == "early-stopped"
    assert info["training"]["steps_done"] == 3 and info["training"]["best_step"] == 1


def test_bad_training_input(tmp_path, data2d):
    with pytest.raises(FileFormatError):
        train(_cfg(), tmp_path / "missing", tmp_path / "m")
    bad = _dataset(tmp_path / "bad", (32, 32), n=2)
    (bad / "gt" / "0001.tif").unlink()
    with pytest.raises(InputError, match="unpaired"):
        train(_cfg(), bad, tmp_path / "m")
    with pytest.raises(InputError, match="larger than"):
        train(_cfg(patch=(64, 64)), data2d, tmp_path / "m")
    with pytest.raises(InputError, match="multiple"):
        train(_cfg(patch=(15, 16)), data2d, tmp_path / "m")
    with pytest.raises(InputError, match="unknown network"):
        train(_cfg(model="nope"), data2d, tmp_path / "m")
    with pytest.raises(InputError, match="2D"):
        train(_cfg(patch=(8, 8, 8)), data2d, tmp_path / "m")
    with pytest.raises(InputError, match="at least 11 px"):
        train(_cfg(patch=(10, 16), loss="rln_local"), data2d, tmp_path / "m")


def test_train_with_local_ssim_loss(data2d, tmp_path):
    """rln_local trains like rln: same network, same model folder, finite validation scores."""
    out = train(_cfg(loss="rln_local", steps=6, val_interval=3), data2d, tmp_path / "m")
    assert TrainConfig.load(out / "config.json").loss == "rln_local"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if r["kind"] == "val"]
    assert len(vals) == 2 and all(np.isfinite(r["val_psnr"]) for r in vals)
    assert load_model(out).predict(read_image(data2d / "raw" / "0000.tif")[0]).shape == (48, 48)


# ------------------------------------------------------------------ model folders


@pytest.fixture
def model2d(data2d, tmp_path):
    return train(_cfg(steps=2), data2d, tmp_path / "model")


def test_load_model_errors(model2d, tmp_path):
    import shutil

    with pytest.raises(FileFormatError, match="no such"):
        load_model(tmp_path / "nothing")
    v = tmp_path / "v"
    shutil.copytree(model2d, v)
    info = json.loads((v / "model.json").read_text())
    info["format_version"] = 99
    (v / "model.json").write_text(json.dumps(info))
    with pytest.raises(FileFormatError, match="version 99"):
        load_model(v)
    n = tmp_path / "n"
    shutil.copytree(model2d, n)
    cfg = json.loads((n / "config.json").read_text())
    cfg["config"]["model"] = "care"
    (n / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FileFormatError, match="inconsistent"):
        load_model(n)
    c = tmp_path / "c"
    shutil.copytree(model2d, c)
    (c / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FileFormatError, match="corrupt"):
        load_model(c)
    (c / "model.json").unlink()
    with pytest.raises(FileFormatError, match="model.json"):
        load_model(c)


class _Identity(nn.Module):
    size_multiple = 2
    receptive_radius = 0

    def forward(self, x):
        return x.clone()


def _identity_model(ndim=2, pct=(1.0, 99.0)):
    info = {
        "network": {"name": "identity", "ndim": ndim, "receptive_radius": [0] * ndim},
        "normalization": {"percentiles": list(pct)},
    }
    return RestorationModel(_Identity(), info)


def test_prediction_maps_back_to_input_scale():
    rng = np.random.default_rng(0)
    img = rng.uniform(100, 5000, (30, 41)).astype(np.float32)
    m = _identity_model()
    for kw in ({}, {"tile_shape": (16, 16), "overlap": (4, 6)}):
        out = m.predict(img, **kw)
        assert out.dtype == np.float32
        assert np.allclose(out, img, rtol=1e-5)  # normalise then out*(p_hi-p_lo)+p_lo


def test_tiles_off_the_pooling_grid_are_realigned():
    """lucyd.tiling places tiles at any offset; RLN's 2x pooling needs even origins."""
    from lucyd.tiling import plan_tiles

    starts = {t.read[0].start % 2 for t in plan_tiles((71,), (48,), (8,), halo=(18,))}
    assert 1 in starts  # the plan has odd origins, so realignment is exercised
    m = _identity_model(ndim=1)
    m.size_multiple = 2

    # an "odd-phase detector": output = input at even positions, 0 at odd positions
    class Phase(nn.Module):
        size_multiple = 2

        def forward(self, x):
            y = x.clone()
            y[..., 1::2] = 0
            return y

    m.net = Phase()
    img = np.arange(1, 72, dtype=np.float32)
    whole = m.predict(img)
    tiled = m.predict(img, tile_shape=48, overlap=8)
    assert np.allclose(tiled, whole, atol=1e-4)


def test_tiled_equals_whole_2d(model2d):
    m = load_model(model2d)
    rng = np.random.default_rng(1)
    img = rng.poisson(100, (70, 93)).astype(np.float32)
    whole = m.predict(img)
    tiled = m.predict(img, tile_shape=(48, 52))  # halo 18 read and discarded: crop and stitch
    assert np.abs(tiled - whole).max() <= 1e-4 * np.abs(whole).max()
    assert m.halo == (18, 18)
    with pytest.raises(InputError, match="no room beside a halo of 18"):
        m.predict(img, tile_shape=(37, 37))


def test_tiled_equals_whole_3d_and_predict_file(data3d, tmp_path):
    out = train(_cfg(patch=(8, 16, 16), steps=2, batch=1), data3d, tmp_path / "m3")
    m = load_model(out)
    assert m.voxel_size == (0.3, 0.13, 0.13)
    rng = np.random.default_rng(2)
    img = rng.poisson(80, (6, 12, 75)).astype(np.float32)
    whole = m.predict(img)
    tiled = m.predict(img, tile_shape=(6, 12, 56))
    assert np.abs(tiled - whole).max() <= 1e-4 * np.abs(whole).max()
    src = write_image(tmp_path / "in.tif", img, ImageMetadata("ZYX", (0.3, 0.13, 0.13)))
    dst = predict_file(m, src, tmp_path / "out.ome.tif", tile_shape=(6, 12, 56))
    res, meta = read_image(dst)
    assert res.dtype == np.float32 and meta.voxel_size == pytest.approx((0.3, 0.13, 0.13))
    assert np.abs(res - whole).max() <= 1e-4 * np.abs(whole).max()
    with pytest.raises(InputError, match="3D images but the input is 4D"):
        m.predict(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(InputError, match="restore it plane by plane"):  # a 2D model, a volume
        _identity_model(ndim=2).predict(img)


def test_3d_model_restores_a_2d_image_as_a_single_plane_volume(data3d, tmp_path):
    """A 2D image through a 3D model = the plane mirrored to the z multiple (2), restored, plane 0."""
    m = load_model(train(_cfg(patch=(8, 16, 16), steps=1, batch=1), data3d, tmp_path / "m3"))
    rng = np.random.default_rng(3)
    plane = rng.poisson(80, (20, 100)).astype(np.float32)
    with pytest.warns(UserWarning, match="single-plane"):
        pred = m.predict(plane)
    assert pred.shape == plane.shape and pred.dtype == np.float32
    # independent route: the two-plane volume, normalised with the plane's own percentiles
    norm_in, norm_out = m.normalizers(plane)
    with torch.no_grad():
        out = m.net(torch.from_numpy(norm_in.apply(np.stack([plane, plane]))[None, None]))
    expected = norm_out.invert(out[0, 0, 0].numpy())
    assert np.abs(pred - expected).max() <= 1e-5 * np.abs(expected).max()
    with pytest.warns(UserWarning, match="single-plane"):
        tiled = m.predict(plane, tile_shape=(20, 48), overlap=(4, 4))
    assert np.abs(tiled - pred).max() <= 1e-4 * np.abs(pred).max()


# ------------------------------------------------------------------ CLI


def test_cli_train_and_predict(data2d, tmp_path):
    from lucyd.cli.main import app

    runner = CliRunner()
    model = tmp_path / "cli_model"
    r = runner.invoke(
        app,
        [
            "train",
            "--model",
            "rln",
            "--data",
            str(data2d),
            "-o",
            str(model),
            "--steps",
            "2",
            "--patch",
            "16,16",
            "--batch",
            "2",
            "--device",
            "cpu",
            "--val-interval",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "5472 parameters" in r.output
    raw = data2d / "raw" / "0000.tif"
    r = runner.invoke(
        app,
        [
            "predict",
            str(model),
            str(raw),
            "-o",
            str(tmp_path / "p.tif"),
            "--tile",
            "48,48",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    res, _ = read_image(tmp_path / "p.tif")
    assert res.shape == (48, 48) and res.dtype == np.float32
    r = runner.invoke(app, ["predict", str(tmp_path / "nope"), str(raw), "-o", "x.tif"])
    assert r.exit_code == 2 and "no such model folder" in r.output
    r = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data2d),
            "-o",
            str(tmp_path / "x"),
            "--patch",
            "128,128",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 2 and "larger than" in r.output


# ------------------------------------------------------------------ other networks


def test_other_networks_plug_into_trainer_conventions():
    from lucyd.train import receptive_radius

    class Declared(nn.Module):
        receptive_field = (45, 45)  # full extent, as lucyd's CARE/RCAN/DDN declare it

    assert receptive_radius(Declared(), 2) == (22, 22)

    class Probe(nn.Module):  # 3-tap conv twice: radius 2, found by the gradient probe
        size_multiple = 1

        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.c(self.c(x))

    assert receptive_radius(Probe(), 2) == (2, 2)
    cfg = TrainConfig(model="care", net_kwargs={"probabilistic": True}).resolved(2, (64, 64))
    assert cfg.loss == "laplace_nll" and cfg.lr == 4e-4 and cfg.schedule == "plateau"
    # a loss defined beside its network (lucyd.nets.<name>.<name>_loss) is found by name
    import lucyd.nets.rbcr as rbcr_mod

    if hasattr(rbcr_mod, "rbcr_loss"):
        y = torch.rand(1, 1, 16, 16)
        loss, pred = get_loss("rbcr")(_Fixed(y.clone()), y, y)
        assert float(loss) == pytest.approx(0.0, abs=1e-6) and pred.shape == y.shape


# ------------------------------------------------------------------ batch-norm statistics


def test_recalibrate_batch_norm_is_an_exact_average():
    from lucyd.nets import build_network
    from lucyd.train import recalibrate_batch_norm

    torch.manual_seed(0)
    net = build_network("rln", ndim=2).eval()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.rand((2, 1, 16, 16), generator=gen) * (k + 1) for k in range(3)]
    assert recalibrate_batch_norm(net, batches) == 3
    assert not net.training  # mode restored
    bn = net.fp1_1.bn
    assert bn.momentum == pytest.approx(0.01)  # momentum restored (Keras 0.99)
    conv = net.fp1_1.conv
    with torch.no_grad():
        feats = [conv(net.pool(b)) for b in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == 3
    # a network without batch norm is left alone
    assert recalibrate_batch_norm(nn.Sequential(nn.Conv2d(1, 1, 3)), batches) == 0


def _synthetic_rln_data(root: Path, n: int = 4, size: int = 64) -> Path:
    """Sparse spots blurred by a Gaussian (σ 2 px), Poisson noise: a 2D deconvolution task."""
    rng = np.random.default_rng(3)
    for i in range(n):
        gt = np.zeros((size, size), np.float32)
        gt[tuple(rng.integers(2, size - 2, size=(2, 40)))] = rng.uniform(100, 400, 40)
        gt = ndimage.gaussian_filter(gt, 0.8) * 4 + 5
        raw = rng.poisson(ndimage.gaussian_filter(gt, 2.0)).astype(np.float32)
        write_image(root / "raw" / f"{i:04d}.tif", raw)
        write_image(root / "gt" / f"{i:04d}.tif", gt.astype(np.float32))
    return root


def test_short_rln_training_eval_mode_matches_batch_statistics(tmp_path):
    """Eval-mode RLN (running statistics) must behave like the train-mode network it was fitted as.

    With the moving averages of a short training (Keras momentum 0.99: after 60 steps the running
    statistics are still ~55 % their initial 0 / 1) the eval-mode output was far from the
    batch-statistics output and below the raw input in quality; the trainer now re-estimates the
    statistics exactly (precise BN) before every validation and checkpoint.
    """
    from lucyd.metrics import psnr
    from lucyd.train.data import load_training_pairs

    data = _synthetic_rln_data(tmp_path / "d")
    cfg = TrainConfig.build(model="rln", patch=(32, 32), batch=4, steps=60, val_interval=30,
                            val_patches=4, device="cpu", seed=0, lr_decay_steps=200, threads=1)
    model = load_model(train(cfg, data, tmp_path / "m"))
    ck = torch.load(tmp_path / "m" / "last.pt", weights_only=True)
    assert int(ck["model"]["fp1_1.bn.num_batches_tracked"]) == cfg.bn_recalibration
    pairs = load_training_pairs(data)
    lo, hi = np.percentile(pairs[0].raw, (0.01, 99.5))
    x = torch.from_numpy(((pairs[0].raw - lo) / (hi - lo))[None, None].astype(np.float32))
    with torch.no_grad():
        out_eval = model.net.eval()(x)[0, 0].numpy()
        out_batch = model.net.train()(x)[0, 0].numpy()  # (updates the stats of this copy only)
    model.net.eval()
    scale = float(out_batch.max() - out_batch.min())
    assert psnr(out_eval, out_batch, data_range=scale) > 30.0  # without recalibration: 22
    # and the saved model restores better than the raw input (after the usual affine fit)
    from lucyd.metrics import evaluate

    scores = [(evaluate(model.predict(p.raw, device="cpu", progress=False), p.gt)["psnr"],
               evaluate(p.raw, p.gt)["psnr"]) for p in pairs]
    assert np.mean([s[0] for s in scores]) > np.mean([s[1] for s in scores]) + 2.0  # +4.8 dB (+0.5 without)


# ------------------------------------------------------------------ validation, flux, status


def test_validation_psnr_tracks_test_psnr(tmp_path, one_thread):
    """Validation scores held-out images like the test does: it rises with training and sits
    near the PSNR of fresh test images (evaluate: percentile-normalised gt, affine fit)."""
    from lucyd.metrics import evaluate

    data = _dataset(tmp_path / "d", (64, 64), n=6, seed=4)
    test = [_pair(np.random.default_rng(100 + i), (64, 64)) for i in range(3)]
    cfg = _cfg(steps=2, val_interval=2, val_fraction=0.34, patch=(32, 32), batch=4, val_patches=4)
    val, tst = [], []
    for steps in (2, 60):
        out = train(cfg.model_copy(update={"steps": steps, "val_interval": min(steps, 40)}),
                    data, tmp_path / f"m{steps}")
        last = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()][-1]
        assert last["kind"] == "val" and last["step"] == steps
        val.append(last["val_psnr"])
        m = load_model(out, weights="last")
        tst.append(np.mean([evaluate(m.predict(raw), gt)["psnr"] for raw, gt in test]))
    assert val[1] > val[0] + 1.0 and tst[1] > tst[0] + 1.0  # both see the improvement
    assert abs(val[0] - tst[0]) < 2.0 and abs(val[1] - tst[1]) < 2.0  # and agree with the test


class _Oracle(nn.Module):
    """A perfect network: outputs the target normalised as in training, whatever the input."""

    size_multiple = 1

    def __init__(self, gt_n):
        super().__init__()
        self.gt_n = torch.from_numpy(gt_n)

    def forward(self, x):
        return self.gt_n[None, None].clone()


def test_predictions_keep_the_flux_of_the_input():
    """A network that restores the target exactly gives an output whose background-subtracted
    sum is the input's (the gt carries the raw's flux), not a copy dimmed into the input's range."""
    from lucyd.normalization import Normalizer
    from lucyd.train.data import target_scale_ratio

    pct = (0.01, 99.5)
    rng = np.random.default_rng(0)
    train_pairs = [_pair(rng, (128, 128)) for _ in range(6)]
    ranges = [(Normalizer.fit(r, pct), Normalizer.fit(g, pct)) for r, g in train_pairs]
    ratio = target_scale_ratio(((a.lo, a.hi), (b.lo, b.hi)) for a, b in ranges)
    assert ratio > 1.5  # the sharp target has brighter peaks than the blurred raw
    raw, gt = _pair(np.random.default_rng(50), (128, 128))
    assert abs(raw.sum() - gt.sum()) < 0.01 * gt.sum()  # blur and noise keep the flux
    info = {
        "network": {"name": "oracle", "ndim": 2, "receptive_radius": [0, 0]},
        "normalization": {"percentiles": list(pct), "target_scale_ratio": ratio},
    }
    model = RestorationModel(_Oracle(Normalizer.fit(gt, pct).apply(gt, clip=True)), info)
    pred = model.predict(raw)

    raw_flux = float(np.sum(raw - 10.0))  # _pair's background is 10 in gt and raw

    def flux(a):
        return float(np.sum(a - a.min()))  # the output's background is its minimum (gt's 10)

    assert abs(flux(pred) - raw_flux) < 0.05 * raw_flux
    old = RestorationModel(model.net, {**info, "normalization": {"percentiles": list(pct)}})
    assert old.output_ratio == 1.0  # the mapping into the input's range alone loses the flux
    assert flux(old.predict(raw)) < 0.8 * raw_flux


def test_interrupted_training_is_marked_and_warned(data2d, tmp_path, monkeypatch):
    import lucyd.train.trainer as tr

    seen = {}
    real_step = tr._Run.train_step

    def step_then_stop(self):
        if self.step == 3:  # after the checkpoint at step 2: what a killed process leaves
            seen.update(json.loads((self.model_dir / "model.json").read_text())["training"])
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(tr._Run, "train_step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(steps=6), data2d, tmp_path / "m")
    assert seen["status"] == "running" and seen["steps_done"] == 2  # current at the checkpoint
    info = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    assert info["status"] == "interrupted" and info["steps_done"] == 2
    assert info["stop_reason"] == "KeyboardInterrupt"
    with pytest.warns(IncompleteModelWarning, match="after 2 of 6 steps"):
        model = load_model(tmp_path / "m")
    raw = read_image(data2d / "raw" / "0000.tif")[0]
    model._warned = False
    with pytest.warns(IncompleteModelWarning):
        model.predict(raw)
    monkeypatch.undo()
    out = train(_cfg(steps=6), data2d, tmp_path / "m", resume=True)
    assert json.loads((out / "model.json").read_text())["training"]["status"] == "complete"


def test_folder_killed_before_its_first_checkpoint_restarts(data2d, tmp_path, monkeypatch):
    import lucyd.train.trainer as tr

    def die(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr._Run, "train_step", die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(steps=4), data2d, tmp_path / "m")
    assert not (tmp_path / "m" / "last.pt").exists()
    assert json.loads((tmp_path / "m" / "model.json").read_text())["training"]["status"] == "running"
    monkeypatch.undo()
    out = train(_cfg(steps=4), data2d, tmp_path / "m")  # no overwrite needed
    assert json.loads((out / "model.json").read_text())["training"]["steps_done"] == 4


def test_legacy_model_json_status_loads():
    from lucyd.train.card import ModelCard

    base = {"network": {"name": "rln", "ndim": 2}, "normalization": {"percentiles": [1, 99]}}
    for old, (status, reason) in {
        "done": ("complete", "steps"),
        "early-stopped": ("complete", "early-stopped"),
        "time-limit": ("interrupted", "time-limit"),
        "running": ("running", None),
    }.items():
        card = ModelCard.from_dict({**base, "training": {"status": old, "steps_done": 3}})
        assert (card.training.status, card.training.stop_reason) == (status, reason)
    ranges = [{"name": "a", "raw": [0, 10], "gt": [0, 40]}, {"name": "b", "raw": [0, 10], "gt": [0, 10]}]
    card = ModelCard.from_dict({**base, "normalization": {"percentiles": [1, 99], "training_images": ranges}})
    assert card.normalization.output_ratio() == pytest.approx(2.0)  # geometric mean of 4 and 1


def test_cli_train_recipe_options(data2d, tmp_path):
    from lucyd.cli.main import app

    model = tmp_path / "cli"
    args = ["train", "--data", str(data2d), "-o", str(model), "--steps", "2", "--patch", "16,16",
            "--batch", "2", "--device", "cpu", "--val-interval", "2", "--lr", "0.01",
            "--schedule", "exp", "--lr-decay", "0.9", "--lr-decay-steps", "300",
            "--val-patches", "3", "--threads", "1", "--loss", "rln_local", "--ndim", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    cfg = TrainConfig.load(model / "config.json")
    assert (cfg.lr, cfg.schedule, cfg.lr_decay, cfg.lr_decay_steps) == (0.01, "exp", 0.9, 300)
    assert (cfg.val_patches, cfg.threads, cfg.loss, cfg.ndim) == (3, 1, "rln_local", 2)


def test_2d_model_trains_on_the_planes_of_volumes(data3d, tmp_path):
    out = train(_cfg(ndim=2, patch=(16, 16), steps=2), data3d, tmp_path / "m")
    m = load_model(out)
    assert m.ndim == 2 and m.voxel_size == (0.13, 0.13)
    assert m.predict(read_image(data3d / "raw" / "0000.tif")[0][3]).shape == (24, 24)


def test_ddn_beats_the_raw_input_on_a_small_budget(tmp_path, one_thread):
    """DDN (with its bounded positivity term) improves on the raw input within 200 steps."""
    from lucyd.metrics import evaluate

    data = _dataset(tmp_path / "d", (64, 64), n=4, seed=7)
    test = [_pair(np.random.default_rng(200 + i), (64, 64)) for i in range(2)]
    cfg = _cfg(model="ddn", steps=200, val_interval=100, patch=(32, 32), batch=4, lr=None)
    m = load_model(train(cfg, data, tmp_path / "m"))
    gain = np.mean([evaluate(m.predict(raw), gt)["psnr"] - evaluate(raw, gt)["psnr"] for raw, gt in test])
    assert gain > 1.0  # +1.3 dB; the published −1.3·min(out) term gave −1.5 dB here


class _ToyNet(nn.Module):
    """A network added the documented way (one NetworkSpec), to check nothing else is needed."""

    def __init__(self, ndim=2, width=4):
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        self.body = nn.Sequential(conv(1, width, 3, padding=1), nn.ReLU(), conv(width, 1, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def test_a_network_added_by_one_spec_trains_and_predicts(data2d, tmp_path):
    from lucyd.nets import NetworkSpec, get_spec, register_spec

    def own_loss(net, x, y):
        out = net(x)
        return torch.mean(torch.abs(out - y)), out

    register_spec(NetworkSpec(name="toy_added", network=_ToyNet, recipe={"loss": "toy_l1", "lr": 1e-3,
                              "batch": 3}, losses={"toy_l1": own_loss}, size_multiple=1,
                              receptive_radius=2, ndims=(2,)))
    assert get_spec("toy_added").network is _ToyNet
    cfg = TrainConfig(model="toy_added", steps=2, val_interval=2, patch=(16, 16), device="cpu")
    out = train(cfg, data2d, tmp_path / "toy")
    saved = TrainConfig.load(out / "config.json")
    assert (saved.loss, saved.lr, saved.batch) == ("toy_l1", 1e-3, 3)  # the spec's recipe
    m = load_model(out)
    assert m.receptive_radius == (2, 2) and m.card.network.spec["recipe"]["loss"] == "toy_l1"
    assert m.predict(read_image(data2d / "raw" / "0000.tif")[0]).shape == (48, 48)
    from lucyd.nets import build_network

    with pytest.raises(InputError, match="supports"):  # ndims=(2,) in its spec
        build_network("toy_added", ndim=3)


@pytest.mark.parametrize("name", ["rln", "ddn"])
def test_folded_batch_norm_predicts_the_same(data2d, tmp_path, name):
    from lucyd.nets.layers import fold_batch_norm

    out = train(_cfg(model=name, steps=2, lr=None, batch=2), data2d, tmp_path / name)
    plain, fused = load_model(out, fuse_batch_norm=False), load_model(out)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.net.modules())
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.net.modules())
    assert left < n_bn  # the conv–BN blocks are folded (RLN's / DDN's free-standing BNs stay)
    raw = read_image(data2d / "raw" / "0000.tif")[0]
    a, b = plain.predict(raw), fused.predict(raw)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    assert fold_batch_norm(fused.net) == 0  # nothing left to fold


def test_target_scale_input_keeps_each_images_flux():
    """target_scale="input": targets in the input's units, ratio 1, flux kept image by image."""
    from types import SimpleNamespace

    from lucyd.train.data import target_scale_ratio

    pct = (0.01, 99.5)
    raw, gt = _pair(np.random.default_rng(50), (64, 64))
    pair = SimpleNamespace(name="p", raw=raw, gt=gt, metadata=None)
    [im] = prepare_images([pair], *pct, target_scale="input")
    assert im.raw_range[1] - im.raw_range[0] == pytest.approx(im.gt_range[1] - im.gt_range[0])
    assert target_scale_ratio([(im.raw_range, im.gt_range)]) == pytest.approx(1.0)
    info = {
        "network": {"name": "oracle", "ndim": 2, "receptive_radius": [0, 0]},
        "normalization": {"percentiles": list(pct),
                          "training_images": [{"raw": list(im.raw_range), "gt": list(im.gt_range)}]},
    }
    pred = RestorationModel(_Oracle(im.gt), info).predict(raw)
    raw_flux = float(np.sum(raw - 10.0))
    assert abs(float(np.sum(pred - pred.min())) - raw_flux) < 0.02 * raw_flux
