"""Networks through the one tiling engine on every executor; kill-and-resume on a LocalCluster
(a worker killed with SIGKILL, the client killed with SIGKILL); Slurm options; job progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lucyd.errors import InputError

distributed = pytest.importorskip("distributed")


def _care(seed, out_channels=1):
    import torch

    from lucyd.nets.registry import build_network
    from lucyd.train.model import RestorationModel

    torch.manual_seed(seed)
    net = build_network("care", ndim=3, depth=2, first_filters=4, out_channels=out_channels)
    info = {"network": {"name": "care", "ndim": 3}, "normalization": {"percentiles": [1.0, 99.0]}}
    return RestorationModel(net, info)


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(5)
    return rng.poisson(ndimage.gaussian_filter(rng.uniform(0, 200, (12, 80, 40)), 2) + 5).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def threads_client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def test_predict_is_crop_and_stitch_on_every_executor(volume, threads_client, one_thread):
    """RestorationModel.predict runs plan_for_model + NetworkTask + run_tiles: all channels in
    one pass, tiles on the size multiple and the Zarr chunks, dask = serial bit for bit."""
    import zarr

    from lucyd.tiling import DaskExecutor
    from lucyd.tiling.tasks import plan_for_model

    model = _care(0, out_channels=2)
    whole = model.predict(volume, all_channels=True, progress=False, device="cpu")
    tiled = model.predict(volume, tile_shape=(12, 56, 40), all_channels=True, progress=False,
                          device="cpu")
    assert tiled.shape == (2, *volume.shape)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * float(np.abs(whole).max()))
    on_dask = model.predict(volume, tile_shape=(12, 56, 40), all_channels=True, progress=False,
                            device="cpu", cluster=DaskExecutor(client=threads_client))
    np.testing.assert_array_equal(on_dask, tiled)
    # into a chunked zarr: kept regions start on chunk boundaries where that adds no tile
    out = zarr.create_array(store={}, shape=volume.shape, chunks=(12, 8, 40), dtype="f4")
    free = plan_for_model(model, volume.shape, (12, 72, 40))  # keeps 72 − 2·24 = 24 of 80 rows
    assert any(t.keep[1].start % 8 for t in free.tiles)  # on the size multiple (4) only
    plan = plan_for_model(model, volume.shape, (12, 72, 40), chunks=out.chunks)
    assert len(plan) == len(free) > 1 and all(t.keep[1].start % 8 == 0 for t in plan.tiles)
    # 60 keeps 12 rows: one 8-row chunk per tile would need 10 tiles instead of 7, so no chunks
    assert len(plan_for_model(model, volume.shape, (12, 60, 40), chunks=out.chunks)) == 7
    model.predict(volume, tile_shape=(12, 72, 40), out=out, progress=False, device="cpu")
    np.testing.assert_allclose(out[...], whole[0], rtol=0, atol=1e-4 * float(np.abs(whole).max()))


def test_ensemble_uncertainty_out_of_core_equals_in_memory(volume, tmp_path, threads_client,
                                                          one_thread):
    """Ensemble mean and uncertainty maps written tile by tile (files, dask) = in memory."""
    from lucyd.io import read_image, write_image
    from lucyd.tiling import DaskExecutor
    from lucyd.train.ensemble import Ensemble
    from lucyd.train.uncertainty import predict_uncertainty_file, predict_with_uncertainty

    ens = Ensemble([_care(1), _care(2), _care(3)])
    mean, unc = predict_with_uncertainty(ens, volume, device="cpu")  # whole image, in memory
    assert set(unc) == {"total", "disagreement"} and float(unc["disagreement"].max()) > 0
    write_image(tmp_path / "in.tif", volume)
    written = predict_uncertainty_file(
        ens, tmp_path / "in.tif", tmp_path / "out.ome.zarr", tile_shape=(12, 60, 40),
        device="cpu", progress=False, cluster=DaskExecutor(client=threads_client),
    )
    assert set(written) == {"restoration", "total", "disagreement"}
    got, _ = read_image(written["restoration"])
    tol = 1e-4 * float(np.abs(mean).max())
    np.testing.assert_allclose(got, mean, rtol=0, atol=tol)
    np.testing.assert_allclose(read_image(written["disagreement"])[0], unc["disagreement"],
                               rtol=0, atol=tol)
    serial_tiles, _ = predict_with_uncertainty(ens, volume, tile_shape=(12, 60, 40), device="cpu")
    np.testing.assert_array_equal(got, serial_tiles)  # same tiles: bit-identical to serial


class KillOnce:
    """A smoothing task (radius 6) whose worker process SIGKILLs itself the first time it
    sees tile 1 (a marker file says it happened)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __call__(self, block, tile):
        marker = Path(self.folder) / "killed"
        if tile.index == (0, 1) and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return ndimage.gaussian_filter(block, 1.5, truncate=4.0)


def test_worker_killed_with_sigkill_is_retried(tmp_path):
    """A worker process dies mid-job: the nanny restarts it, the scheduler reruns its task, the
    result equals the serial one bit for bit."""
    import cloudpickle

    from lucyd.tiling import DaskExecutor, plan_partition, run_tiles

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    img = np.random.default_rng(0).uniform(0, 1, (60, 90)).astype(np.float32)
    plan = plan_partition(img.shape, (40, 50), halo=6)
    task = KillOnce(tmp_path)
    (tmp_path / "killed").touch()
    serial = run_tiles(plan, task, img, progress=False)
    (tmp_path / "killed").unlink()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        out = run_tiles(plan, task, img, executor=DaskExecutor(client=client), progress=False)
    assert (tmp_path / "killed").exists()  # a worker really died
    np.testing.assert_array_equal(out, serial)
    whole = ndimage.gaussian_filter(img, 1.5, truncate=4.0)
    np.testing.assert_allclose(out, whole, atol=1e-6)  # halo 6 = the filter's radius


CLIENT = """
import os, signal, sys, numpy as np
from lucyd.tiling import runner, DaskExecutor
from lucyd.deconv import deconvolve_file
original = runner._write_record
def record_then_die(out, plan, task, done):
    original(out, plan, task, done)
    if len(done) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # the client dies after k recorded tiles
runner._write_record = record_then_die
psf = np.load(sys.argv[2])
ex = DaskExecutor(workers=2, processes=False)
deconvolve_file(sys.argv[1], psf, sys.argv[1] + ".out.ome.zarr", iterations=4,
                max_memory=int(sys.argv[4]), device="cpu", progress=False, cluster=ex)
"""


def test_client_killed_with_sigkill_then_rerun_computes_only_unfinished(tmp_path, monkeypatch,
                                                                        one_thread):
    """The client process (holding a LocalCluster) is SIGKILLed after k tiles were recorded;
    the same command again computes exactly the other tiles and gives the identical result."""
    from lucyd.deconv import blocked as blocked_mod
    from lucyd.deconv import deconvolve, deconvolve_file, estimate_memory
    from lucyd.io import read_image, write_image
    from lucyd.tiling import partial_path

    rng = np.random.default_rng(2)
    y = rng.poisson(ndimage.gaussian_filter(rng.uniform(0, 300, (10, 96, 48)), 1.5) + 5)
    y = y.astype(np.float32)
    grid = np.indices((5, 7, 7)) - np.array([2, 3, 3])[:, None, None, None]
    psf = np.exp(-(grid**2).sum(0) / 4.0).astype(np.float32)
    psf /= psf.sum()
    src = tmp_path / "in.tif"
    write_image(src, y)
    np.save(tmp_path / "psf.npy", psf)
    budget = int(estimate_memory(y.shape, psf.shape) * 0.6)
    out = Path(str(src) + ".out.ome.zarr")
    k = 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), LUCYD_NO_PROGRESS="1")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT), str(src), str(tmp_path / "psf.npy"),
         str(k), str(budget)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert partial_path(out).exists() and not out.exists()
    calls = []
    original = blocked_mod.RLBlockTask.__call__

    def counting(self, block, tile=None):
        calls.append(tile.index)
        return original(self, block, tile)

    monkeypatch.setattr(blocked_mod.RLBlockTask, "__call__", counting)
    kw = dict(iterations=4, max_memory=budget, device="cpu", progress=False)
    # the same job run through without a crash (the same lazy input and output chunks: the
    # same tiles), into another store
    deconvolve_file(src, psf, tmp_path / "fresh.ome.zarr", **kw)
    fresh, _ = read_image(tmp_path / "fresh.ome.zarr")
    total = len(calls)
    assert total > k + 1
    np.testing.assert_allclose(fresh, deconvolve(y, psf, iterations=4, device="cpu", progress=False),
                               rtol=0, atol=1e-4 * float(fresh.max()))  # blocked = whole image
    calls.clear()
    deconvolve_file(src, psf, out, **kw)
    assert len(calls) == total - k  # only the unfinished tiles
    resumed, _ = read_image(out)
    np.testing.assert_array_equal(resumed, fresh)


def test_slurm_options_and_cluster_construction(monkeypatch):
    """--cluster slurm:... parsed over LUCYD_SLURM_* variables into a dask-jobqueue SLURMCluster
    (a stand-in here: no Slurm in CI); one-line errors for bad options or no dask-jobqueue."""
    import types

    from lucyd.tiling.executors import (
        check_cluster_spec,
        slurm_cluster,
        slurm_options,
        worker_memory_limit,
    )

    opts = slurm_options("slurm:queue=gpu,jobs=4,processes=2,gpus=2,walltime=02:00:00",
                         environ={"LUCYD_SLURM_CORES": "8", "LUCYD_SLURM_QUEUE": "cpu"})
    assert opts["queue"] == "gpu" and opts["jobs"] == 4 and opts["cores"] == 8  # spec beats env
    made = {}

    class FakeSLURMCluster:
        def __init__(self, **kwargs):
            made["kwargs"] = kwargs

        def scale(self, jobs):
            made["jobs"] = jobs

    monkeypatch.setitem(sys.modules, "dask_jobqueue",
                        types.SimpleNamespace(SLURMCluster=FakeSLURMCluster))
    slurm_cluster(opts, max_memory=2 * 2**30)
    kw = made["kwargs"]
    assert made["jobs"] == 4 and kw["queue"] == "gpu" and kw["processes"] == 2
    assert kw["cores"] == 8 and kw["walltime"] == "02:00:00"
    assert kw["job_extra_directives"] == ["--gres=gpu:2"]
    limit = worker_memory_limit(2 * 2**30)
    assert kw["memory"] == f"{-(-2 * limit // 2**30)}GiB"  # two workers' limits per job
    for bad in ("slurm:queue", "slurm:nodes=3", "slurm:jobs=0", "slurm:cores=x"):
        with pytest.raises(InputError, match="cluster: .*Slurm option"):
            check_cluster_spec(bad)
    check_cluster_spec("slurm:jobs=2")
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # not installed
    with pytest.raises(InputError, match=r"lucyd\[slurm\]"):
        check_cluster_spec("slurm")  # said by the CLI before any work
    with pytest.raises(InputError, match=r"lucyd\[slurm\]"):
        slurm_cluster(slurm_options("slurm"))


def test_job_progress_reports_tiles_throughput_and_time_left():
    from lucyd.progress import JobProgress, Reporter, reporting
    from lucyd.tiling import plan_partition, run_tiles

    seen = []
    with reporting(Reporter(lambda done, total, desc: seen.append((done, total, desc)))):
        bar = JobProgress(5, done=2, desc="job")
        bar.advance(1000)
        bar.close()
        plan = plan_partition((30, 40), 20)
        run_tiles(plan, lambda b, t: b, np.zeros((30, 40), np.float32), desc="tiles")
    assert seen[0][:2] == (3, 5) and "vox_s=" in seen[0][2] and "left=" in seen[0][2]
    st = bar.status()
    assert st["done"] == 3 and st["voxels_per_s"] > 0 and st["eta_s"] is not None
    steps = [s for s in seen[1:] if s[2].startswith("tiles")]
    assert [s[0] for s in steps] == list(range(1, len(plan) + 1))  # every tile, on any executor


def test_worker_device_is_the_requested_one_off_a_cluster():
    from lucyd.tiling.tasks import worker_device

    assert worker_device("cpu").type == "cpu"


@pytest.mark.slow
def test_cli_predict_cluster_local_equals_serial(tmp_path, one_thread):
    """`lucyd predict MODEL in -o out.ome.zarr --max-memory … --cluster local:2` (worker
    processes, the model sent to them) = the serial file, bit for bit."""
    from typer.testing import CliRunner

    from lucyd.cli.main import app
    from lucyd.io import ImageMetadata, read_image, write_image
    from lucyd.train import TrainConfig, train

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i in range(2):
        gt = ndimage.gaussian_filter(rng.uniform(0, 100, (8, 24, 24)), 1).astype(np.float32)
        write_image(data / "raw" / f"{i}.tif", rng.poisson(gt + 5).astype(np.float32))
        write_image(data / "gt" / f"{i}.tif", gt)
    cfg = TrainConfig.build(model="rln", patch=(8, 16, 16), batch=1, steps=1, val_interval=1,
                            val_patches=1, device="cpu", seed=0)
    model = train(cfg, data, tmp_path / "model")
    vol = rng.poisson(50, (8, 96, 64)).astype(np.float32)
    write_image(tmp_path / "in.ome.zarr", vol, ImageMetadata("ZYX", (0.3, 0.1, 0.1)))
    args = ["predict", str(model), str(tmp_path / "in.ome.zarr"), "--device", "cpu",
            "--max-memory", "18MB"]
    serial = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "serial.ome.zarr")])
    assert serial.exit_code == 0, serial.output
    res = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "dask.ome.zarr"),
                                   "--cluster", "local:2"])
    assert res.exit_code == 0, res.output
    a, meta = read_image(tmp_path / "serial.ome.zarr")
    b, _ = read_image(tmp_path / "dask.ome.zarr")
    assert meta.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    np.testing.assert_array_equal(a, b)
    bad = CliRunner().invoke(app, [*args[:-2], "-o", str(tmp_path / "x.tif"), "--cluster", "local:2"])
    assert bad.exit_code != 0 and "max-memory" in bad.output


def test_isotropic_prediction_tiles_equal_whole_and_run_on_dask(threads_client, one_thread):
    """lucyd isotropic's XZ/YZ prediction as an IsotropicTask: tiles (halo = the 2D model's on
    every axis) = the whole stack, dask = serial bit for bit."""
    import torch

    from lucyd.isotropic import predict_isotropic
    from lucyd.nets.registry import build_network
    from lucyd.tiling import DaskExecutor
    from lucyd.train.model import RestorationModel

    torch.manual_seed(0)
    net = build_network("care", ndim=2, depth=1, first_filters=4)
    model = RestorationModel(net, {"network": {"name": "care", "ndim": 2},
                                   "normalization": {"percentiles": [1.0, 99.0]}})
    stack = np.random.default_rng(3).uniform(0, 100, (10, 96, 80)).astype(np.float32)
    whole = predict_isotropic(model, stack, 2.0, device="cpu")
    tile = (20, 52, 48)
    tiled = predict_isotropic(model, stack, 2.0, device="cpu", tile_shape=tile)
    assert whole.shape == (20, 96, 80)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * float(np.abs(whole).max()))
    on_dask = predict_isotropic(model, stack, 2.0, device="cpu", tile_shape=tile,
                                cluster=DaskExecutor(client=threads_client))
    np.testing.assert_array_equal(on_dask, tiled)


def test_cli_restore_cluster_local_equals_serial(tmp_path, one_thread, monkeypatch):
    """`lucyd restore IN --psf P -o out.ome.zarr --max-memory … --cluster local:2`: the network's
    prediction in tiles on two dask worker processes writes the serial OME-Zarr, bit for bit."""
    from typer.testing import CliRunner

    import lucyd.tiling
    from lucyd.cli.main import app
    from lucyd.forward import camera_noise, convolve
    from lucyd.io import ImageMetadata, read_image, write_image
    from lucyd.synth import phantom

    executors = []
    run_tiles = lucyd.tiling.run_tiles
    monkeypatch.setattr(lucyd.tiling, "run_tiles", lambda plan, *a, **k: executors.append(
        (len(plan.tiles), k.get("executor"))) or run_tiles(plan, *a, **k))
    grid = np.indices((15, 15)) - 7
    psf = np.exp(-(grid**2).sum(0) / (2 * 1.5**2)).astype(np.float32)
    psf /= psf.sum()
    obj = phantom("nuclei", (96, 96), seed=2, background=5.0)
    raw = camera_noise(convolve(obj, psf, boundary="linear"), photons=3.0, gain=2.0, offset=100.0,
                       read_noise=1.0, seed=4)
    write_image(tmp_path / "raw.tif", raw, ImageMetadata("YX", (0.1, 0.1)))
    write_image(tmp_path / "psf.tif", psf, ImageMetadata("YX", (0.1, 0.1)))
    args = ["restore", str(tmp_path / "raw.tif"), "--psf", str(tmp_path / "psf.tif"), "--method",
            "network", "--steps", "4", "--threads", "1", "--device", "cpu", "--cache",
            str(tmp_path / "cache"), "--no-report", "--max-memory", "6MB"]
    serial = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "serial.ome.zarr")])
    assert serial.exit_code == 0, serial.output
    dask = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "dask.ome.zarr"), "--cluster",
                                    "local:2"])
    assert dask.exit_code == 0, dask.output
    a, meta = read_image(tmp_path / "serial.ome.zarr")
    b, _ = read_image(tmp_path / "dask.ome.zarr")
    np.testing.assert_array_equal(a, b)
    assert a.shape == raw.shape and meta.voxel_size == pytest.approx((0.1, 0.1))
    # the budget split the prediction into tiles; the second run sent them to the cluster
    split = [(n, ex) for n, ex in executors if n > 1]
    assert len(split) == 2 and split[0][0] == split[1][0]
    assert split[0][1] is None and split[1][1] == "local:2"
