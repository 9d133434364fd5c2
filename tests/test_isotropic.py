"""Isotropic restoration (lucyd.isotropic; CARE recipe, Weigert et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from lucyd.errors import InputError
from lucyd.io import ImageMetadata, read_image, write_image
from lucyd.isotropic import (
    axial_kernel,
    degrade_lateral,
    isotropic_restore,
    isotropic_voxel_size,
    predict_isotropic,
    training_pairs,
    upsample_z,
)
from lucyd.metrics import evaluate
from lucyd.synth import degrade, phantom

F = 4
SHAPE = (32, 48, 48)


@pytest.fixture(scope="module")
def aniso():
    """A 3D phantom seen with lateral-quality resolution, and its 4x axially degraded stack."""
    gt = phantom("granules", SHAPE, seed=1)
    raw_full, target = degrade(gt, "isotropic", z_factor=F, photons=None, seed=1)
    return raw_full[::F].copy(), raw_full, target


def test_upsample_and_voxel_size_bookkeeping(rng):
    stack = rng.random((5, 6, 7)).astype(np.float32)
    up = upsample_z(stack, 3)
    assert up.shape == (15, 6, 7) and up.dtype == np.float32
    np.testing.assert_allclose(up[::3], stack, rtol=1e-6)  # plane 3j is input plane j
    np.testing.assert_allclose(up[1], stack[0] + (stack[1] - stack[0]) / 3, rtol=1e-5)
    np.testing.assert_allclose(up[13], stack[4], rtol=1e-6)  # beyond the last plane: repeated
    assert upsample_z(stack, 2.5).shape == (12, 6, 7)  # round(5 * 2.5)
    assert isotropic_voxel_size((0.8, 0.2, 0.1), 4) == pytest.approx((0.2, 0.2, 0.1))
    assert isotropic_voxel_size(None, 4) is None


def test_axial_kernels():
    g = axial_kernel(4.0)  # Gaussian sigma = F/2 along axis 0 only
    assert g.shape[1] == 1 and g.sum() == pytest.approx(1.0)
    z = np.arange(g.shape[0]) - g.shape[0] // 2
    assert np.sqrt(np.sum(g[:, 0] * z**2)) == pytest.approx(2.0, rel=1e-3)
    assert axial_kernel(4.0, axial_sigma=0).shape == (1, 1)
    # a 3D Gaussian PSF with sigma_z = 2 planes of dz = 0.4 µm, lateral dx = 0.1 µm
    zz, yy, xx = np.meshgrid(*(np.arange(n) - n // 2 for n in (21, 9, 9)), indexing="ij")
    psf = np.exp(-0.5 * ((zz / 2.0) ** 2 + (yy / 1.0) ** 2 + (xx / 1.0) ** 2))
    k = axial_kernel(4.0, axial_psf=psf, voxel_size=(0.4, 0.1, 0.1))
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    assert k.shape[0] % 2 == 1 and np.unravel_index(np.argmax(k), k.shape) == (k.shape[0] // 2, 4)
    prof = k.sum(1)
    zk = np.arange(k.shape[0]) - k.shape[0] // 2
    # 2 planes × 0.4 µm / 0.1 µm = 8 lateral px (+ linear-interpolation smoothing)
    assert np.sqrt(np.sum(prof * zk**2)) == pytest.approx(8.0, rel=0.03)
    one_d = axial_kernel(4.0, axial_psf=[1, 2, 1])
    np.testing.assert_allclose(one_d[:, 0], [0.25, 0.5, 0.25])
    with pytest.raises(InputError):
        axial_kernel(4.0, axial_psf=np.ones((2, 2, 2, 2)))
    with pytest.raises(InputError):
        axial_kernel(4.0, axial_sigma=-1)


def test_lateral_degradation_matches_synth(rng):
    # independent implementation: lucyd.synth.degrade(task="isotropic") on each plane
    planes = phantom("granules", (3, 40, 36), seed=2)
    ours = degrade_lateral(planes, 4, axial_kernel(4.0), device="cpu")
    for p, o in zip(planes, ours, strict=True):
        ref, _ = degrade(p, "isotropic", z_factor=4, photons=None, device="cpu")
        np.testing.assert_allclose(o, ref, rtol=1e-4, atol=1e-3 * float(p.max()))
    raws, targets = training_pairs(planes, 4, device="cpu")
    assert len(raws) == 6 and raws[0].shape == (40, 36) and raws[3].shape == (36, 40)
    np.testing.assert_array_equal(targets[3], planes[0].T)
    noisy = degrade_lateral(planes, 4, axial_kernel(4.0), photons=0.05, seed=0, device="cpu")
    assert noisy.shape == planes.shape and not np.allclose(noisy, ours)


def test_errors(aniso):
    stack = aniso[0]
    with pytest.raises(InputError, match="3D"):
        isotropic_restore(stack[0], F, steps=1)
    with pytest.raises(InputError, match="z_factor"):
        isotropic_restore(stack, 0.5, steps=1)
    with pytest.raises(InputError, match="z_factor"):
        isotropic_restore(stack, float("nan"), steps=1)
    with pytest.raises(InputError, match="fuse"):
        isotropic_restore(stack, F, steps=1, fuse="max")
    with pytest.raises(InputError, match="patch"):
        isotropic_restore(stack, F, steps=1, patch=96)
    bad = stack.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError):
        isotropic_restore(bad, F, steps=1)
    with pytest.raises(InputError, match="2 planes"):
        isotropic_restore(stack[:1], F, steps=1)


def test_restores_axial_resolution(aniso, tmp_path, one_thread):
    stack, linear, target = aniso
    model_dir = tmp_path / "iso_model"
    out = isotropic_restore(stack, F, steps=150, net_kwargs={"first_filters": 8}, batch=8,
                            lr=3e-3, seed=0, device="cpu", model_dir=model_dir)
    assert out.shape == SHAPE and out.dtype == np.float32
    np.testing.assert_allclose(upsample_z(stack, F), linear, rtol=1e-5, atol=1e-3)
    lin_psnr, net_psnr = evaluate(linear, target)["psnr"], evaluate(out, target)["psnr"]
    assert net_psnr > lin_psnr + 1.5, (lin_psnr, net_psnr)
    # keeps the intensity scale (no silent rescaling): same mean within a few percent
    assert out.mean() == pytest.approx(linear.mean(), rel=0.1)
    # the kept model restores the same stack again; the two views are both better than linear
    fused, xz, yz = predict_isotropic(model_dir, stack, F, device="cpu", return_views=True)
    np.testing.assert_allclose(fused, out, rtol=1e-4, atol=1e-3)
    assert evaluate(xz, target)["psnr"] > lin_psnr and evaluate(yz, target)["psnr"] > lin_psnr
    np.testing.assert_allclose(fused, np.sqrt(np.clip(xz, 0, None) * np.clip(yz, 0, None)),
                               rtol=1e-5)
    mean_fused = predict_isotropic(model_dir, stack, F, fuse="mean", device="cpu")
    np.testing.assert_allclose(mean_fused, (xz + yz) / 2, rtol=1e-5, atol=1e-4)


def test_cli(tmp_path, one_thread):
    from lucyd.cli.main import app

    stack = phantom("granules", (6, 24, 20), seed=3)
    src = tmp_path / "stack.tif"
    write_image(src, stack, ImageMetadata("ZYX", (0.8, 0.2, 0.2)))
    runner = CliRunner()
    res = runner.invoke(app, ["isotropic", str(src), "-o", str(tmp_path / "iso.tif"), "--steps",
                              "2", "--batch", "2", "--patch", "16", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    out, meta = read_image(tmp_path / "iso.tif")
    assert out.shape == (24, 24, 20)  # z-factor from the voxel size: 0.8 / 0.2 = 4
    assert meta.voxel_size == pytest.approx((0.2, 0.2, 0.2))
    res = runner.invoke(app, ["isotropic", str(src), "-o", str(tmp_path / "b.tif"), "-f", "2",
                              "--steps", "1", "--batch", "1", "--patch", "16", "--device", "cpu",
                              "-q"])
    assert res.exit_code == 0, res.output
    out2, meta2 = read_image(tmp_path / "b.tif")
    assert out2.shape == (12, 24, 20) and meta2.voxel_size == pytest.approx((0.4, 0.2, 0.2))
    # errors: 2D input, z-factor < 1, no voxel size and no --z-factor
    flat = tmp_path / "flat.tif"
    write_image(flat, stack[0], ImageMetadata("YX", (0.2, 0.2)))
    for args in (["isotropic", str(flat), "-o", str(tmp_path / "x.tif"), "-f", "4"],
                 ["isotropic", str(src), "-o", str(tmp_path / "x.tif"), "-f", "0.5"],
                 ["isotropic", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.tif")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "error:" in res.output, res.output
    nov = tmp_path / "novs.npy"
    np.save(nov, stack)
    res = runner.invoke(app, ["isotropic", str(nov), "-o", str(tmp_path / "x.tif")])
    assert res.exit_code == 2 and "--z-factor" in res.output
    assert not (tmp_path / "x.tif").exists()


def test_lazy_upsampled_stack_equals_upsample_z(rng):
    """UpsampledZ (the z-upsampled stack read tile by tile) = upsample_z of the whole, bit for bit."""
    from lucyd.isotropic import UpsampledZ, upsample_z_shape

    stack = rng.uniform(0, 100, (7, 12, 10)).astype(np.float32)
    for f in (2.0, 2.5, 3.7):
        whole = upsample_z(stack, f)
        lazy = UpsampledZ(stack, f)
        assert lazy.shape == whole.shape == upsample_z_shape(stack.shape, f)
        for key in (Ellipsis, (slice(3, 11), slice(2, 9), slice(None)), (slice(None, None, 5),),
                    (slice(0, 1),), (slice(len(whole) - 3, None), slice(4, 5), slice(1, 8))):
            np.testing.assert_array_equal(lazy[key], whole[key])


def test_cli_out_of_core_equals_in_memory(tmp_path, one_thread):
    """`lucyd isotropic in.ome.zarr --max-memory …`: the stack is read lazily, the upsampled stack
    formed tile by tile and the output written tile by tile, with the in-memory run's result (to
    the tiles' float32 round-off); a budget without room for 2 training planes is refused first."""
    import lucyd.tiling
    from lucyd.cli.main import app

    plans = []
    run_tiles = lucyd.tiling.run_tiles
    stack = phantom("granules", (6, 160, 96), seed=3)
    write_image(tmp_path / "in.ome.zarr", stack, ImageMetadata("ZYX", (0.4, 0.2, 0.2)))
    args = ["isotropic", str(tmp_path / "in.ome.zarr"), "--steps", "2", "--batch", "2", "--patch",
            "16", "--device", "cpu", "-q"]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "mem.tif")])
    assert res.exit_code == 0, res.output
    import lucyd.isotropic as iso

    original = iso.run_tiles
    iso.run_tiles = lambda plan, task, source, *a, **k: plans.append((len(plan), source)) or original(
        plan, task, source, *a, **k)
    try:
        res = runner.invoke(app, [*args, "-o", str(tmp_path / "ooc.ome.zarr"), "--max-memory", "25MB"])
    finally:
        iso.run_tiles = original
    assert res.exit_code == 0, res.output
    mem, _ = read_image(tmp_path / "mem.tif")
    ooc, meta = read_image(tmp_path / "ooc.ome.zarr")
    assert ooc.shape == mem.shape == (12, 160, 96) and meta.voxel_size == pytest.approx((0.2, 0.2, 0.2))
    np.testing.assert_allclose(ooc, mem, rtol=0, atol=1e-4 * float(np.abs(mem).max()))
    (count, source), = plans
    assert count > 1 and isinstance(source, iso.UpsampledZ)  # tiles of the lazy upsampled stack
    assert run_tiles is lucyd.tiling.run_tiles
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "x.ome.zarr"), "--max-memory", "500KB"])
    assert res.exit_code == 2 and "fewer than 2 training planes" in res.output
    assert not (tmp_path / "x.ome.zarr").exists()
