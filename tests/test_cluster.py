"""Blocked deconvolution = whole image, and the same result on every executor (serial,
local processes, dask.distributed LocalCluster), with tile-level resume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve

from lucyd.deconv import deconvolve, estimate_memory
from lucyd.deconv.blocked import BlockedAccuracyWarning, rl_halo
from lucyd.errors import InputError


def gaussian_psf(shape, sigma):
    grid = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 for n in shape]
    sig = np.broadcast_to(sigma, (len(shape),))
    r2 = sum(((grid[i] - centre[i]) / s) ** 2 for i, s in enumerate(sig))
    p = np.exp(-r2 / 2)
    return (p / p.sum()).astype(np.float32)


@pytest.fixture(scope="module")
def wide_scene():
    """Dense dots under a wide 15³ PSF, 20 iterations: the case where a halo of one PSF
    size (the old rule, main branch) left 6.1e-4 of the peak between blocked and whole."""
    rng = np.random.default_rng(3)
    shape = (16, 400, 32)
    x = np.zeros(shape, np.float32)
    idx = rng.integers(0, shape, size=(5000, 3))
    x[tuple(idx.T)] = rng.uniform(100, 400, 5000)
    x = ndimage.gaussian_filter(x, 0.5) * 20 + 5
    psf = gaussian_psf((15, 15, 15), (2.0, 3.0, 3.0))
    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    whole = deconvolve(y, psf, iterations=20, progress=False, device="cpu")
    return y, psf, whole


@pytest.fixture(scope="module")
def small_scene():
    rng = np.random.default_rng(7)
    x = np.zeros((12, 96, 40), np.float32)
    idx = rng.integers(0, x.shape, size=(60, 3))
    x[tuple(idx.T)] = rng.uniform(100, 400, 60)
    x = ndimage.gaussian_filter(x, 0.7) * 5 + 20
    psf = gaussian_psf((5, 9, 9), (1.0, 1.5, 1.5))
    y = rng.poisson(fftconvolve(x, psf, "same").clip(0)).astype(np.float32)
    budget = int(estimate_memory(y.shape, psf.shape) * 0.75)
    return y, psf, budget


def relmax(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_blocked_equals_whole_image_with_wide_psf(wide_scene):
    y, psf, whole = wide_scene
    halo = rl_halo(psf, 20)
    assert halo[1] > psf.shape[1]  # wider than one PSF size: the old rule was too narrow
    budget = int(estimate_memory(y.shape, psf.shape) * 0.55)  # blocked, with the full halo
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlockedAccuracyWarning)
        blocked = deconvolve(y, psf, iterations=20, max_memory=budget, progress=False, device="cpu")
    err = relmax(blocked, whole)
    assert err < 1e-4, err  # the issue asks 1e-3; the old one-PSF halo gave 6.1e-4 here
    assert np.abs(blocked - whole).max() > 0  # really blocked


def test_small_budget_warns_with_the_budget_that_would_do(wide_scene):
    y, psf, whole = wide_scene
    budget = int(estimate_memory(y.shape, psf.shape) * 0.2)
    with pytest.warns(BlockedAccuracyWarning, match=r"about (\d+) MB would do") as rec:
        deconvolve(y[:, :200], psf, iterations=20, max_memory=budget, progress=False, device="cpu")
    named = float(str(rec[0].message).rsplit("about ", 1)[1].split(" MB")[0]) * 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlockedAccuracyWarning)
        deconvolve(y, psf, iterations=20, max_memory=named * 1.05, progress=False, device="cpu")


def test_dask_local_cluster_equals_serial(small_scene):
    distributed = pytest.importorskip("distributed")
    from lucyd.tiling import DaskExecutor

    y, psf, budget = small_scene
    serial = deconvolve(y, psf, iterations=8, max_memory=budget, progress=False, device="cpu")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        ex = DaskExecutor(client=client)
        assert ex.workers == 2
        on_dask = deconvolve(
            y, psf, iterations=8, max_memory=budget, cluster=ex, progress=False, device="cpu"
        )
    np.testing.assert_allclose(on_dask, serial, rtol=0, atol=1e-5 * float(serial.max()))


@pytest.mark.slow
def test_cli_cluster_local_processes_into_zarr(tmp_path, small_scene):
    """`lucyd deconvolve --cluster local:2 -o out.ome.zarr` (worker processes) = serial."""
    pytest.importorskip("distributed")
    from typer.testing import CliRunner

    from lucyd.cli.main import app
    from lucyd.io import read_image, write_image

    y, psf, budget = small_scene
    write_image(tmp_path / "in.tif", y)
    write_image(tmp_path / "psf.tif", psf)
    serial = deconvolve(y, psf, iterations=8, max_memory=budget, progress=False, device="cpu")
    args = ["deconvolve", str(tmp_path / "in.tif"), "--psf", str(tmp_path / "psf.tif")]
    opts = ["-n", "8", "--device", "cpu", "-q", "--max-memory", str(budget)]
    res = CliRunner().invoke(
        app, [*args, "-o", str(tmp_path / "out.ome.zarr"), *opts, "--cluster", "local:2"]
    )
    assert res.exit_code == 0, res.output
    data, _ = read_image(tmp_path / "out.ome.zarr")
    np.testing.assert_allclose(data, serial, rtol=0, atol=1e-5 * float(serial.max()))
    bad = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "o2.tif"), "--cluster", "local:2"])
    assert bad.exit_code != 0 and "max-memory" in bad.output


def test_cluster_spec_errors(small_scene):
    y, psf, budget = small_scene
    for spec in ("local:0", "nowhere", "local:x"):
        with pytest.raises(InputError, match="cluster"):
            deconvolve(y, psf, iterations=2, max_memory=budget, cluster=spec, progress=False)
    with pytest.raises(InputError, match="max_memory"):
        deconvolve(y, psf, iterations=2, cluster="local:2", progress=False)


def test_deconvolve_file_resumes_after_crash(tmp_path, small_scene, monkeypatch):
    """A crash after k blocks keeps the partial store; the rerun computes only the rest."""
    from lucyd.deconv import blocked as blocked_mod
    from lucyd.deconv import deconvolve_file
    from lucyd.io import read_image, write_image
    from lucyd.tiling import partial_path

    y, psf, budget = small_scene
    write_image(tmp_path / "in.tif", y)
    out = tmp_path / "out.ome.zarr"
    kw = dict(iterations=6, max_memory=budget, device="cpu", progress=False)
    calls = []
    original = blocked_mod.RLBlockTask.__call__

    def counting(self, block, tile=None):
        calls.append(tile.index)
        if crash_after is not None and len(calls) > crash_after:
            raise RuntimeError("simulated worker crash")
        return original(self, block, tile)

    monkeypatch.setattr(blocked_mod.RLBlockTask, "__call__", counting)
    crash_after = None
    fresh = deconvolve(y, psf, iterations=6, max_memory=budget, device="cpu", progress=False)
    total = len(calls)
    assert total >= 4
    calls.clear()
    crash_after = 2
    with pytest.raises(RuntimeError):
        deconvolve_file(tmp_path / "in.tif", psf, out, **kw)
    assert partial_path(out).exists() and not out.exists()
    finished = set(calls[:2])
    calls.clear()
    crash_after = None
    deconvolve_file(tmp_path / "in.tif", psf, out, **kw)
    assert len(calls) == total - 2 and not finished & set(calls)  # only the unfinished blocks
    assert not partial_path(out).exists()
    resumed, _ = read_image(out)
    np.testing.assert_array_equal(resumed, fresh)
    # a crashed run of another input is not resumed: every block is computed again
    crash_after = 2
    with pytest.raises(RuntimeError):
        deconvolve_file(tmp_path / "in.tif", psf, out, **kw)
    write_image(tmp_path / "in.tif", y[:, ::-1].copy())
    calls.clear()
    crash_after = None
    deconvolve_file(tmp_path / "in.tif", psf, out, **kw)
    assert len(calls) == total


def _untrained_care():
    import torch

    from lucyd.nets.registry import build_network
    from lucyd.train.model import RestorationModel

    torch.manual_seed(0)
    net = build_network("care", ndim=3, depth=2, first_filters=4, out_channels=2)
    info = {"network": {"name": "care", "ndim": 3}, "normalization": {"percentiles": [1.0, 99.0]}}
    return RestorationModel(net, info)


def test_network_tiles_one_pass_all_channels_same_on_dask(small_scene, one_thread):
    """A network as a picklable task: all channels in one pass; dask = serial bit for bit;
    crop-and-stitch with the model's halo = whole-image prediction (float32 round-off)."""
    distributed = pytest.importorskip("distributed")
    from lucyd.tiling import DaskExecutor, run_tiles
    from lucyd.tiling.tasks import NetworkTask, plan_for_model

    y = small_scene[0][:, :, :32]
    model = _untrained_care()
    whole = model.predict(y, all_channels=True, progress=False, device="cpu")
    assert whole.shape == (2, *y.shape)
    plan = plan_for_model(model, y.shape, (12, 64, 32))
    assert len(plan) > 2
    task = NetworkTask.for_model(model, y, all_channels=True)
    calls = []

    class Counting(NetworkTask):
        def __call__(self, block, tile=None):
            calls.append(1)
            return super().__call__(block, tile)

    counting = Counting(**{k: getattr(task, k) for k in task.__dataclass_fields__})
    serial = run_tiles(plan, counting, y, channels=2, progress=False)
    assert len(calls) == len(plan)  # one network pass per tile for both channels
    np.testing.assert_allclose(serial, whole, rtol=1e-4, atol=1e-4 * float(np.abs(whole).max()))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        on_dask = run_tiles(
            plan, task, y, channels=2, executor=DaskExecutor(client=client), progress=False
        )
    np.testing.assert_array_equal(on_dask, serial)


class FailsOnce:
    """Raises the first time each tile is seen (a marker file per tile), then works."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __call__(self, block, tile):
        from pathlib import Path

        marker = Path(self.folder) / ("tile" + "_".join(map(str, tile.index)))
        if not marker.exists():
            marker.touch()
            raise RuntimeError("transient worker failure")
        return block * 2


def test_dask_retries_failed_tasks(tmp_path):
    distributed = pytest.importorskip("distributed")
    from lucyd.tiling import DaskExecutor, plan_partition, run_tiles

    vol = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    plan = plan_partition(vol.shape, 10)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        out = run_tiles(
            plan, FailsOnce(tmp_path), vol, executor=DaskExecutor(client=client, retries=1),
            progress=False,
        )
    np.testing.assert_array_equal(out, vol * 2)
    assert len(list(tmp_path.iterdir())) == len(plan)


def test_cli_wb_alpha_auto_with_cluster(tmp_path, monkeypatch):
    """`deconvolve --wb-alpha auto --cluster local:2`: the cluster request is checked before the
    calibration (without --max-memory: refused, nothing calibrated); with --max-memory it is
    calibrated on the image's centred crop within the budget and the job gets the cluster."""
    from typer.testing import CliRunner

    import lucyd.deconv
    from lucyd.cli.cmd_deconvolve import CALIBRATION_BYTES_PER_VOXEL
    from lucyd.cli.main import app
    from lucyd.io import write_image
    from lucyd.restore import physics_steps

    y = np.random.default_rng(0).gamma(2.0, 10.0, (24, 96, 96)).astype(np.float32)
    write_image(tmp_path / "in.tif", y)
    write_image(tmp_path / "psf.tif", gaussian_psf((5, 9, 9), (1.0, 1.5, 1.5)))
    seen = {}

    def calibration(image, psf, **kw):
        seen["image"] = image
        return {"alpha": 0.0123}

    def job(inp, psf, out, config, *, progress, cluster):
        seen["config"], seen["cluster"] = config, cluster

    monkeypatch.setattr(physics_steps, "calibrated_wb_alpha", calibration)
    monkeypatch.setattr(lucyd.deconv, "deconvolve_file", job)
    args = ["deconvolve", str(tmp_path / "in.tif"), "--psf", str(tmp_path / "psf.tif"), "-o",
            str(tmp_path / "out.ome.zarr"), "--back-projector", "wiener-butterworth",
            "--wb-alpha", "auto", "-q", "--cluster", "local:2"]
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2 and "--cluster: needs --max-memory" in bad.output and not seen
    budget = 4_000_000
    res = CliRunner().invoke(app, [*args, "--max-memory", str(budget)])
    assert res.exit_code == 0, res.output
    assert seen["cluster"] == "local:2" and seen["config"].max_memory == budget
    assert seen["config"].wb_alpha == pytest.approx(0.0123)
    crop = seen["image"]
    assert crop.size * CALIBRATION_BYTES_PER_VOXEL <= budget < y.size * CALIBRATION_BYTES_PER_VOXEL
    start = [(n - c) // 2 for n, c in zip(y.shape, crop.shape, strict=True)]
    np.testing.assert_array_equal(
        crop, y[tuple(slice(s, s + c) for s, c in zip(start, crop.shape, strict=True))]
    )
