"""Deep ensembles and per-voxel uncertainty (lucyd.train.ensemble).

Weigert et al. 2018 (probabilistic CARE, Laplace scale); Lakshminarayanan et al. 2017 (deep
ensembles). The end-to-end test trains a tiny probabilistic CARE ensemble on tiny 2D synthetic
denoising pairs and checks that the uncertainty ranks the voxels / patches by their error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lucyd.errors import FileFormatError, InputError
from lucyd.forward import camera_noise
from lucyd.io import ImageMetadata, read_image, write_image
from lucyd.synth import phantom
from lucyd.train import TrainConfig, load_model
from lucyd.train.ensemble import (
    Ensemble,
    is_ensemble,
    load_any,
    load_ensemble,
    train_ensemble,
    with_default_loss,
)
from lucyd.train.uncertainty import (
    predict_uncertainty_file,
    predict_with_uncertainty,
    spearman_uncertainty_error,
    uncertainty_paths,
)

KIND, SHAPE = "mixed", (64, 64)


# --------------------------------------------------------------------------- analytic


class _Constant(torch.nn.Module):
    """A network whose output is fixed (mean[, scale]) whatever the input."""

    def __init__(self, out):
        super().__init__()
        self.register_buffer("out", torch.from_numpy(out))

    def forward(self, x):
        return self.out[None].clone()


def FakeMember(mean, scale=None):
    """A RestorationModel with fixed outputs; given a zero image its normalisation is the
    identity (p_lo = p_hi = 0: offset 0, scale 1), so it predicts exactly (mean[, scale])."""
    from lucyd.train.model import RestorationModel

    out = np.stack([mean] + ([scale] if scale is not None else [])).astype(np.float32)
    info = {"network": {"name": "care", "ndim": mean.ndim, "receptive_radius": [0] * mean.ndim,
                        "kwargs": {"probabilistic": scale is not None}},
            "normalization": {"percentiles": [1.0, 99.0]}}
    return RestorationModel(_Constant(out), info)


def test_formulas_probabilistic_ensemble(rng):
    k, shape = 4, (5, 6)
    mus = rng.normal(size=(k, *shape))
    sig = rng.uniform(0.1, 2.0, size=(k, *shape))
    members = [FakeMember(mus[i], sig[i]) for i in range(k)]
    mean, unc = predict_with_uncertainty(members, np.zeros(shape))
    assert list(unc) == ["total", "laplace_scale", "disagreement"]
    np.testing.assert_allclose(mean, mus.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unc["laplace_scale"], sig.mean(0), rtol=1e-5)
    np.testing.assert_allclose(unc["disagreement"], mus.std(0), rtol=1e-4, atol=1e-6)
    # std of the mixture (1/K) sum Laplace(mu_i, sigma_i): Var = mean(2 sigma^2) + var(mu)
    mix_var = np.mean(2 * sig**2 + mus**2, axis=0) - mus.mean(0) ** 2
    np.testing.assert_allclose(unc["total"], np.sqrt(mix_var), rtol=1e-4)
    for v in unc.values():
        assert v.dtype == np.float32 and v.shape == shape


def test_total_matches_monte_carlo_mixture():
    # independent check of the "total" formula by sampling the Laplace mixture
    mus, sig = np.array([0.0, 3.0, -1.0]), np.array([0.5, 1.0, 2.0])
    members = [FakeMember(np.full((1, 1), m), np.full((1, 1), s)) for m, s in zip(mus, sig, strict=True)]
    _, unc = predict_with_uncertainty(members, np.zeros((1, 1)))
    r = np.random.default_rng(0)
    comp = r.integers(3, size=400_000)
    samples = r.laplace(mus[comp], sig[comp])
    assert unc["total"][0, 0] == pytest.approx(samples.std(), rel=0.01)


def test_single_probabilistic_and_plain_ensembles(rng):
    mu, s = rng.normal(size=(4, 4)), rng.uniform(1, 2, size=(4, 4))
    zeros = np.zeros_like(mu)
    mean, unc = predict_with_uncertainty(FakeMember(mu, s), zeros)
    assert set(unc) == {"total", "laplace_scale"}
    np.testing.assert_allclose(unc["total"], np.sqrt(2) * s, rtol=1e-5)  # Laplace std = √2 σ
    np.testing.assert_allclose(mean, mu, rtol=1e-6)
    plain = [FakeMember(rng.normal(size=(4, 4))) for _ in range(3)]
    _, unc = predict_with_uncertainty(Ensemble(plain), zeros)
    assert set(unc) == {"total", "disagreement"}
    np.testing.assert_array_equal(unc["total"], unc["disagreement"])
    with pytest.raises(InputError, match="no uncertainty"):
        predict_with_uncertainty(FakeMember(mu), mu)
    with pytest.raises(InputError, match="mixes"):
        predict_with_uncertainty([FakeMember(mu, s), FakeMember(mu)], mu)
    with pytest.raises(InputError, match="expected a RestorationModel"):
        predict_with_uncertainty("nope", mu)
    # Ensemble.predict is the members' mean, no uncertainty required
    np.testing.assert_allclose(Ensemble(plain).predict(zeros),
                               np.mean([p.net.out[0].numpy() for p in plain], axis=0), rtol=1e-5, atol=1e-6)


def test_uncertainty_paths():
    p = uncertainty_paths("/d/restored.tif")
    assert p["total"].name == "restored_uncertainty.tif"
    assert p["laplace_scale"].name == "restored_laplace_scale.tif"
    assert p["disagreement"].name == "restored_disagreement.tif"
    assert uncertainty_paths("x.ome.tif")["total"].name == "x_uncertainty.ome.tif"
    assert uncertainty_paths("a.b/x.ome.zarr")["total"].as_posix() == "a.b/x_uncertainty.ome.zarr"
    assert uncertainty_paths("x.npy", ["total"])["total"].name == "x_uncertainty.npy"


def test_spearman_helper(rng):
    from scipy.stats import spearmanr

    u, e = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    assert spearman_uncertainty_error(u, e) == pytest.approx(spearmanr(u.ravel(),
                                                                       np.abs(e).ravel())[0])
    ramp = np.arange(64, dtype=float).reshape(8, 8)
    assert spearman_uncertainty_error(ramp, -ramp ** 2, patch=2) == pytest.approx(1.0)
    assert spearman_uncertainty_error(ramp, -ramp, patch=(2, 4)) == pytest.approx(1.0)
    with pytest.raises(InputError):
        spearman_uncertainty_error(ramp, ramp[:4])
    with pytest.raises(InputError):
        spearman_uncertainty_error(ramp, ramp, patch=16)


def test_train_ensemble_rejects_bad_arguments(tmp_path):
    cfg = TrainConfig(model="care", steps=1)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="k:"):
            train_ensemble(cfg, tmp_path, tmp_path / "e", k)
    with pytest.raises(InputError, match="TrainConfig"):
        train_ensemble({"model": "care"}, tmp_path, tmp_path / "e", 2)
    prob = TrainConfig(model="care", net_kwargs={"probabilistic": True})
    assert with_default_loss(prob).loss == "laplace_nll"
    assert with_default_loss(prob.model_copy(update={"loss": "mae"})).loss == "mae"
    assert with_default_loss(cfg).loss is None


def test_load_ensemble_errors(tmp_path):
    with pytest.raises(FileFormatError, match="no such"):
        load_ensemble(tmp_path / "missing")
    with pytest.raises(FileFormatError, match="ensemble.json"):
        load_ensemble(tmp_path)
    (tmp_path / "ensemble.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="unreadable"):
        load_ensemble(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({"format": "lucyd-ensemble",
                                                        "format_version": 99, "members": []}))
    with pytest.raises(FileFormatError, match="version"):
        load_ensemble(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({
        "format": "lucyd-ensemble", "format_version": 1, "members": [{"name": "member_00"}]}))
    with pytest.raises(FileFormatError, match="missing"):
        load_ensemble(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({
        "format": "lucyd-ensemble", "format_version": 1, "members": [{"name": "../x"}]}))
    with pytest.raises(FileFormatError, match="invalid member"):
        load_ensemble(tmp_path)


# --------------------------------------------------------------------------- end to end


def _pair(seed):
    """A phantom and a noisy recording whose photon count varies 100-fold across the image.

    Photons per unit go log-linearly from 0.01 to 1 along a random axis and direction, so the
    restoration error is much larger on the photon-starved side; a working uncertainty must see
    that from the noise in the input.
    """
    r = np.random.default_rng(seed)
    gt = phantom(KIND, SHAPE, seed=r)
    pmap = np.broadcast_to(np.logspace(-2, 0, SHAPE[1], dtype=np.float32), SHAPE)
    if r.random() < 0.5:
        pmap = pmap[:, ::-1]
    if r.random() < 0.5:
        pmap = pmap.T
    raw = camera_noise(gt * pmap, photons=1.0, seed=r) / pmap
    return raw.astype(np.float32), gt


def _pairs(folder, seeds):
    for sub in ("raw", "gt"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for s in seeds:
        raw, gt = _pair(s)
        write_image(folder / "raw" / f"{s}.tif", raw, ImageMetadata("YX", (0.1, 0.1)))
        write_image(folder / "gt" / f"{s}.tif", gt, ImageMetadata("YX", (0.1, 0.1)))
    return folder


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("ens")
    data = _pairs(root / "data", [0, 1, 2])
    cfg = TrainConfig(model="care", net_kwargs={"first_filters": 8, "probabilistic": True},
                      patch=(32, 32), batch=8, steps=100, lr=3e-3, schedule="constant",
                      val_interval=100, device="cpu", seed=5)
    return train_ensemble(cfg, data, root / "ens", 2, base_seed=3), data


def test_ensemble_folder_layout(ensemble_dir):
    ens_dir, data = ensemble_dir
    info = json.loads((ens_dir / "ensemble.json").read_text())
    assert info["k"] == 2 and info["probabilistic"] and info["status"] == "done"
    assert [m["seed"] for m in info["members"]] == [3, 4]
    assert is_ensemble(ens_dir) and not is_ensemble(ens_dir / "member_00")
    m0, m1 = load_model(ens_dir / "member_00"), load_model(ens_dir / "member_01")
    cfg0 = TrainConfig.load(ens_dir / "member_00" / "config.json")
    assert cfg0.seed == 3 and cfg0.loss == "laplace_nll"  # probabilistic → Laplace NLL
    w0, w1 = (next(iter(m.net.state_dict().values())) for m in (m0, m1))
    assert not torch.equal(w0, w1)  # different seeds, different networks
    ens = load_any(ens_dir)
    assert isinstance(ens, Ensemble) and len(ens) == 2 and ens.probabilistic and ens.ndim == 2
    # an existing ensemble is not silently retrained; resume keeps finished members
    cfg = TrainConfig.load(ens_dir / "member_00" / "config.json")
    with pytest.raises(InputError, match="already holds an ensemble"):
        train_ensemble(cfg, data, ens_dir, 2)
    before = (ens_dir / "member_01" / "best.pt").stat().st_mtime_ns
    train_ensemble(cfg, data, ens_dir, 2, base_seed=3, resume=True)
    assert (ens_dir / "member_01" / "best.pt").stat().st_mtime_ns == before


def test_uncertainty_ranks_the_error(ensemble_dir):
    ens = load_ensemble(ensemble_dir[0])
    raw, gt = _pair(10)
    mean, unc = predict_with_uncertainty(ens, raw, device="cpu")
    assert set(unc) == {"total", "laplace_scale", "disagreement"}
    assert all(np.all(np.isfinite(v)) and v.min() >= 0 for v in unc.values())
    # the mean is a restoration in the input's units (affine-fitted PSNR far above chance)
    from lucyd.metrics import evaluate

    assert evaluate(mean, gt)["psnr"] > evaluate(raw, gt)["psnr"] - 1.5
    err = mean - gt
    for key in ("total", "laplace_scale"):
        rho_patch = spearman_uncertainty_error(unc[key], err, patch=8)
        rho_voxel = spearman_uncertainty_error(unc[key], err)
        assert rho_patch > 0.3, (key, rho_patch)
        assert rho_voxel > 0.1, (key, rho_voxel)
    # a wrong uncertainty (e.g. the inverted map) ranks the error the other way
    assert spearman_uncertainty_error(-unc["total"], err, patch=8) < 0


def test_tiled_uncertainty_matches_whole_image(ensemble_dir):
    ens = load_ensemble(ensemble_dir[0])
    raw = np.hstack([_pair(s)[0] for s in (12, 13, 14)])  # 64 x 192
    whole = predict_with_uncertainty(ens, raw, device="cpu")
    tiled = predict_with_uncertainty(ens, raw, tile_shape=(64, 112), device="cpu")
    scale = float(np.abs(whole[0]).max())
    np.testing.assert_allclose(tiled[0], whole[0], atol=1e-3 * scale)
    for key, arr in whole[1].items():
        np.testing.assert_allclose(tiled[1][key], arr, atol=1e-3 * float(arr.max()))


def test_predict_uncertainty_file(ensemble_dir, tmp_path):
    ens_dir = ensemble_dir[0]
    raw = _pair(11)[0][:40, :52]
    src = tmp_path / "in.tif"
    write_image(src, raw, ImageMetadata("YX", (0.2, 0.3)))
    written = predict_uncertainty_file(ens_dir, src, tmp_path / "out.tif", device="cpu",
                                       progress=False)
    assert set(written) == {"restoration", "total", "laplace_scale", "disagreement"}
    ens = load_ensemble(ens_dir)
    mean, unc = predict_with_uncertainty(ens, raw, device="cpu")
    for key, path in written.items():
        arr, meta = read_image(path)
        assert meta.voxel_size == pytest.approx((0.2, 0.3))
        np.testing.assert_allclose(np.asarray(arr), mean if key == "restoration" else unc[key],
                                   rtol=1e-4, atol=1e-4)
    # a single member: probabilistic, so a Laplace-scale map only
    single = predict_uncertainty_file(ens_dir / "member_00", src, tmp_path / "one.npy",
                                      device="cpu", progress=False)
    assert set(single) == {"restoration", "total", "laplace_scale"}
    assert (tmp_path / "one_uncertainty.npy").is_file()


def test_cli_train_ensemble_and_predict_uncertainty(tmp_path, one_thread):
    from typer.testing import CliRunner

    from lucyd.cli.main import app

    data = _pairs(tmp_path / "data", [0, 1])
    runner = CliRunner()
    res = runner.invoke(app, [
        "train", "--model", "care", "--data", str(data), "-o", str(tmp_path / "ens"),
        "--ensemble", "2", "--net-kwargs", '{"first_filters": 4, "probabilistic": true}',
        "--steps", "2", "--patch", "16,16", "--batch", "2", "--val-interval", "2",
        "--device", "cpu", "--seed", "7"])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert info["k"] == 2 and [m["seed"] for m in info["members"]] == [7, 8]
    assert TrainConfig.load(tmp_path / "ens" / "member_01" / "config.json").loss == "laplace_nll"
    raw = _pair(5)[0][:40, :44]
    src = tmp_path / "in.tif"
    write_image(src, raw, ImageMetadata("YX", (0.25, 0.5)))
    res = runner.invoke(app, ["predict", str(tmp_path / "ens"), str(src), "-o",
                              str(tmp_path / "out.tif"), "--uncertainty", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for name in ("out", "out_uncertainty", "out_laplace_scale", "out_disagreement"):
        arr, meta = read_image(tmp_path / f"{name}.tif")
        assert arr.shape == raw.shape and meta.voxel_size == pytest.approx((0.25, 0.5))
    mean, unc = predict_with_uncertainty(load_ensemble(tmp_path / "ens"), raw, device="cpu")
    np.testing.assert_allclose(read_image(tmp_path / "out_uncertainty.tif")[0], unc["total"],
                               rtol=1e-4, atol=1e-5)
    # an ensemble folder without --uncertainty: the mean restoration only
    res = runner.invoke(app, ["predict", str(tmp_path / "ens"), str(src), "-o",
                              str(tmp_path / "mean.tif"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_image(tmp_path / "mean.tif")[0], mean, rtol=1e-4, atol=1e-4)
    assert not (tmp_path / "mean_uncertainty.tif").exists()
    # a single non-probabilistic model has no uncertainty: one-line error, exit 2
    res = runner.invoke(app, [
        "train", "--model", "care", "--data", str(data), "-o", str(tmp_path / "plain"),
        "--net-kwargs", '{"first_filters": 4}', "--steps", "1", "--patch", "16,16",
        "--batch", "2", "--val-interval", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "plain"), str(src), "-o",
                              str(tmp_path / "p.tif"), "--uncertainty", "--device", "cpu"])
    assert res.exit_code == 2 and "no uncertainty" in res.output
    assert not (tmp_path / "p.tif").exists()
    res = runner.invoke(app, ["train", "--model", "care", "--data", str(data), "-o",
                              str(tmp_path / "e0"), "--ensemble", "0"])
    assert res.exit_code != 0
