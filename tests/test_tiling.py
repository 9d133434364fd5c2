"""Tests for lucyd.tiling: exact reconstruction, local operators, out-of-core zarr."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lucyd.errors import InputError
from lucyd.tiling import plan_tiles, tile_shape_for_budget, tiled_apply


@pytest.fixture
def volume(rng):
    return rng.random((23, 41, 37)).astype(np.float32) * 100 + 5


def test_plan_covers_volume_with_overlap():
    shape = (23, 41, 37)
    tiles = plan_tiles(shape, (10, 16, 16), overlap=(3, 4, 4), halo=(1, 2, 0))
    count = np.zeros(shape, int)
    for t in tiles:
        count[t.keep] += 1
        # block size never exceeds the tile shape
        assert all((s.stop - s.start) <= m for s, m in zip(t.read, (10, 16, 16), strict=True))
        # crop maps the kept region inside the read block
        for r, k, c in zip(t.read, t.keep, t.crop, strict=True):
            assert r.start + c.start == k.start and r.start + c.stop == k.stop
    assert count.min() >= 1
    assert len(tiles) > 8


@pytest.mark.parametrize("blend", ["linear", "crop"])
def test_identity_is_exact(volume, blend):
    out = tiled_apply(
        lambda b: b, volume, tile_shape=(9, 14, 20), overlap=(3, 5, 4), blend=blend, progress=False
    )
    np.testing.assert_allclose(out, volume, rtol=1e-6)


def test_pointwise_is_exact(volume):
    out = tiled_apply(
        lambda b: np.sqrt(b) * 2 - 1, volume, tile_shape=(12, 17, 15), overlap=4, progress=False
    )
    np.testing.assert_allclose(out, np.sqrt(volume) * 2 - 1, rtol=1e-6)


def test_weights_sum_to_one_and_ramp(volume):
    """Blending constant per-tile values: a tile's weights decrease towards its inner faces."""
    ones = np.ones((1, 1, 40), np.float32)
    out = tiled_apply(lambda b: b, ones, tile_shape=(1, 1, 24), overlap=8, progress=False)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
    # a function that marks tiles by their position shows a linear transition across the overlap
    seen = []

    def mark(b):
        seen.append(len(seen))
        return np.full_like(b, float(len(seen) - 1))

    out = tiled_apply(mark, ones, tile_shape=(1, 1, 24), overlap=8, progress=False)
    profile = out[0, 0]
    assert profile[0] == 0 and profile[-1] == len(seen) - 1
    assert np.all(np.diff(profile) >= -1e-6)  # monotone blend, no jump
    assert np.max(np.diff(profile)) < 0.2  # spread over the overlap


def test_local_operator_matches_whole_volume_with_halo(volume):
    sigma, radius = 1.5, 6
    whole = ndimage.gaussian_filter(volume, sigma, truncate=radius / sigma, mode="reflect")
    out = tiled_apply(
        lambda b: ndimage.gaussian_filter(b, sigma, truncate=radius / sigma, mode="reflect"),
        volume,
        tile_shape=(20, 26, 24),
        overlap=4,
        halo=radius,
        progress=False,
    )
    np.testing.assert_allclose(out, whole, rtol=1e-5, atol=1e-5 * float(volume.max()))


def test_local_operator_within_half_overlap_matches_without_halo(volume):
    """radius < overlap / 2 with blend='crop': every voxel comes from a tile where it is exact."""
    sigma, radius = 1.0, 3
    whole = ndimage.gaussian_filter(volume, sigma, truncate=radius / sigma)
    out = tiled_apply(
        lambda b: ndimage.gaussian_filter(b, sigma, truncate=radius / sigma),
        volume,
        tile_shape=(16, 20, 20),
        overlap=8,
        blend="crop",
        progress=False,
    )
    inner = (slice(radius, -radius),) * 3
    np.testing.assert_allclose(out[inner], whole[inner], rtol=1e-5, atol=1e-4)


def test_linear_blend_without_halo_has_small_seams(volume):
    """Without halo the ramps down-weight (but do not remove) tile-edge errors: a sanity bound."""
    whole = ndimage.uniform_filter(volume, 3)
    out = tiled_apply(
        lambda b: ndimage.uniform_filter(b, 3),
        volume,
        tile_shape=(16, 20, 20),
        overlap=8,
        progress=False,
    )
    inner = (slice(2, -2),) * 3
    err = np.abs(out[inner] - whole[inner]).max() / whole.max()
    assert err < 0.05


def test_zarr_in_zarr_out_matches_numpy(tmp_path, volume):
    zarr = pytest.importorskip("zarr")
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=volume.shape, chunks=(8, 16, 16), dtype="float32"
    )
    src[:] = volume
    dst = zarr.create_array(
        store=str(tmp_path / "out.zarr"), shape=volume.shape, chunks=(8, 16, 16), dtype="float32"
    )

    def fn(b):
        return ndimage.gaussian_filter(b, 1.0) * 3.0

    res = tiled_apply(fn, src, tile_shape=(16, 30, 30), overlap=4, halo=3, out=dst, progress=False)
    ref = tiled_apply(fn, volume, tile_shape=(16, 30, 30), overlap=4, halo=3, progress=False)
    assert res is dst
    np.testing.assert_array_equal(np.asarray(dst[:]), ref)


def test_memmap_out(tmp_path, volume):
    mm = np.lib.format.open_memmap(
        tmp_path / "o.npy", mode="w+", dtype=np.float32, shape=volume.shape
    )
    mm[:] = np.nan  # garbage: every voxel must be overwritten
    tiled_apply(lambda b: b + 1, volume, tile_shape=10, overlap=3, out=mm, progress=False)
    np.testing.assert_allclose(np.asarray(mm), volume + 1, rtol=1e-6)


def test_2d_and_single_tile(rng):
    img = rng.random((50, 33)).astype(np.float32)
    np.testing.assert_allclose(
        tiled_apply(lambda b: b * 2, img, tile_shape=(20, 20), overlap=5, progress=False),
        img * 2,
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        tiled_apply(lambda b: b, img, tile_shape=(64, 64), overlap=5, progress=False), img
    )


def test_bad_arguments(volume):
    with pytest.raises(InputError):
        tiled_apply(lambda b: b, volume, tile_shape=(8, 8, 8), overlap=8, progress=False)
    with pytest.raises(InputError):
        tiled_apply(lambda b: b, volume, tile_shape=10, overlap=2, blend="cubic", progress=False)
    with pytest.raises(InputError):
        tiled_apply(lambda b: b[:-1], volume, tile_shape=10, overlap=2, progress=False)


def test_tile_shape_for_budget():
    shape = (64, 512, 512)
    tile = tile_shape_for_budget(shape, overlap=16, budget_bytes=64e6, bytes_per_voxel=16)
    assert np.prod(tile) * 16 <= 64e6
    assert all(t <= n for t, n in zip(tile, shape, strict=True))
    assert np.prod(tile) * 16 > 0.4 * 64e6  # not needlessly small
    assert tile_shape_for_budget((10, 10), 2, 1e9, 4) == (10, 10)
    with pytest.raises(InputError):
        tile_shape_for_budget(shape, overlap=16, budget_bytes=1e3, bytes_per_voxel=16)


def test_lazy_tiff_source(tmp_path, volume):
    """A TIFF opened lazily (tifffile zarr store via lucyd.io) works as a source."""
    from lucyd.io import read_image, write_image

    write_image(tmp_path / "v.tif", volume)
    lazy, _ = read_image(tmp_path / "v.tif", lazy=True)
    assert not isinstance(lazy, np.ndarray)
    out = tiled_apply(lambda b: b * 2, lazy, tile_shape=(12, 24, 20), overlap=4, progress=False)
    np.testing.assert_allclose(out, volume * 2, rtol=1e-6)


# ---------------------------------------------------------------- planner → executor → writer
from lucyd.tiling import open_resumable_zarr, plan_partition, run_tiles  # noqa: E402


class GaussianTask:
    """Picklable local operator of radius ``radius`` (a stand-in for a network or RL block)."""

    def __init__(self, sigma=1.5, radius=6):
        self.sigma, self.radius = sigma, radius

    def __call__(self, block, tile):
        return ndimage.gaussian_filter(block, self.sigma, truncate=self.radius / self.sigma)


class TwoChannelTask:
    def __call__(self, block, tile):
        return np.stack([block * 2, np.sqrt(block)])


class CrashAfter:
    """Counts calls; raises on call number ``limit`` (simulates a crash mid-run)."""

    def __init__(self, inner, limit=None):
        self.inner, self.limit, self.calls = inner, limit, 0

    def __call__(self, block, tile):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise RuntimeError("simulated crash")
        return self.inner(block, tile)

    def fingerprint(self):  # the same job whatever the crash limit
        return "gaussian"


def test_partition_covers_each_voxel_once_aligned():
    shape = (23, 64, 61)
    tile = (16, 48, 40)
    plan = plan_partition(shape, tile, halo=(3, 6, 6), multiple=4, chunks=(8, 16, 16))
    count = np.zeros(shape, int)
    for t in plan.tiles:
        count[t.keep] += 1
        for d, (r, k, c) in enumerate(zip(t.read, t.keep, t.crop, strict=True)):
            assert r.stop - r.start <= tile[d]
            assert r.start + c.start == k.start and r.start + c.stop == k.stop
            assert k.start % 4 == 0 and r.start % 4 == 0  # network size multiple
        # z: 16 − 2·4 = 8 → chunk 8; y: 48 − 16 = 32, two chunks, 2 tiles either way: aligned
        assert t.keep[0].start % 8 == 0 and t.keep[1].start % 16 == 0
    np.testing.assert_array_equal(count, 1)
    # x: 40 − 16 = 24 keeps 3 tiles over 61 voxels; rounding down to one 16-chunk would need 4,
    # so x is aligned to the multiple only
    x_starts = sorted({t.keep[2].start for t in plan.tiles})
    assert len(x_starts) == 3 and any(s % 16 for s in x_starts)
    assert len({t.keep[1].start for t in plan.tiles}) == 2
    assert plan.halo == (4, 8, 8)  # rounded up to the multiple
    with pytest.raises(InputError):
        plan_partition(shape, 10, halo=5)


def test_run_tiles_equals_whole_volume_with_halo(volume):
    task = GaussianTask()
    whole = task(volume, None)
    plan = plan_partition(volume.shape, (14, 24, 22), halo=task.radius)
    assert len(plan) > 8
    out = run_tiles(plan, task, volume, progress=False)
    np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-6 * float(whole.max()))


def test_run_tiles_channels(volume):
    plan = plan_partition(volume.shape, 12, halo=0)
    out = run_tiles(plan, TwoChannelTask(), volume, channels=2, progress=False)
    assert out.shape == (2, *volume.shape)
    np.testing.assert_allclose(out[0], volume * 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], np.sqrt(volume), rtol=1e-6)
    with pytest.raises(InputError):
        run_tiles(plan, TwoChannelTask(), volume, progress=False)  # no channel axis in out


def test_resume_recomputes_only_unfinished_tiles(tmp_path, volume):
    plan = plan_partition(volume.shape, (14, 24, 22), halo=6)
    reference = run_tiles(plan, GaussianTask(), volume, progress=False)
    path = tmp_path / "out.ome.zarr"
    crashing = CrashAfter(GaussianTask(), limit=5)
    with pytest.raises(RuntimeError):
        with open_resumable_zarr(path, volume.shape) as out:
            run_tiles(plan, crashing, volume, out, progress=False)
    assert not path.exists()  # the output appears only when complete
    rerun = CrashAfter(GaussianTask())
    with open_resumable_zarr(path, volume.shape) as out:
        run_tiles(plan, rerun, volume, out, progress=False)
    assert rerun.calls == len(plan) - 5
    from lucyd.io import read_image

    data, _ = read_image(path)
    np.testing.assert_array_equal(data, reference)
    # a different task does not reuse the record
    other = CrashAfter(GaussianTask(sigma=1.0))
    other.fingerprint = lambda: "other"
    with open_resumable_zarr(tmp_path / "b.ome.zarr", volume.shape) as out:
        run_tiles(plan, crashing.inner, volume, out, progress=False)
        run_tiles(plan, other, volume, out, progress=False)
    assert other.calls == len(plan)


def test_process_executor_equals_serial(volume):
    """Tasks pickled to 2 spawned processes give the serial result bit for bit."""
    plan = plan_partition(volume.shape, (14, 24, 22), halo=6)
    serial = run_tiles(plan, GaussianTask(), volume, progress=False)
    parallel = run_tiles(plan, GaussianTask(), volume, executor="processes:2", progress=False)
    np.testing.assert_array_equal(parallel, serial)
