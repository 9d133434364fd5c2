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
