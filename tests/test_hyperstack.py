"""Time series and channels: TCZYX through lucyd.io and through deconvolve / restore / predict."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import FileFormatError, InputError
from lucyd.io import (
    HyperstackMetadata,
    ImageMetadata,
    image_info,
    open_writer,
    read_hyperstack,
    read_image,
    write_image,
)
from lucyd.io.hyperstack import map_volumes, per_channel, volumes

VOXEL = (0.3, 0.1, 0.1)
META = HyperstackMetadata("TCZYX", VOXEL, channel_names=("DAPI", "GFP"), wavelengths=(0.46, 0.52),
                          time_interval=2.5)
FORMATS = ["tif", "ome.tif", "ome.zarr", "npy"]


@pytest.fixture
def stack():
    return np.random.default_rng(1).random((3, 2, 4, 5, 6)).astype(np.float32)


# --------------------------------------------------------------------------------- the model


def test_metadata_maps_to_napari_and_validates():
    assert META.spatial_axes == "ZYX" and META.channel_axis == 1 and META.time_axis == 0
    assert META.scale == (2.5, 1.0, 0.3, 0.1, 0.1)
    assert META.layer_scale() == (2.5, 0.3, 0.1, 0.1)  # napari splits the channel axis off
    assert META.volume() == ImageMetadata("ZYX", VOXEL)
    assert HyperstackMetadata.from_dict(META.to_dict()) == META
    assert isinstance(ImageMetadata.from_dict(META.to_dict()), HyperstackMetadata)
    with pytest.raises(InputError, match="HyperstackMetadata"):
        ImageMetadata("TZYX")
    with pytest.raises(InputError, match="axes"):
        HyperstackMetadata("CTZYX")  # lucyd's order is T, C
    with pytest.raises(InputError, match="no channel axis"):
        HyperstackMetadata("TZYX", channel_names=("a", "b"))
    with pytest.raises(InputError, match="2 channel"):
        write_image("x.ome.zarr", np.zeros((3, 4, 5, 6), np.float32),
                    HyperstackMetadata("CZYX", channel_names=("a", "b")))


def test_layer_kwargs_open_one_napari_layer_per_channel():
    components = pytest.importorskip("napari.components")
    layers = components.ViewerModel().add_image(np.zeros((2, 2, 3, 4, 5), np.float32),
                                                **META.layer_kwargs())
    assert [layer.name for layer in layers] == ["DAPI", "GFP"]
    assert all(tuple(layer.scale) == (2.5, 0.3, 0.1, 0.1) for layer in layers)
    assert layers[0].axis_labels == ("t", "z", "y", "x")
    assert [str(u) for u in layers[0].units] == ["second"] + ["micrometer"] * 3


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", FORMATS)
def test_tczyx_round_trip_exact(tmp_path, stack, ext):
    path = write_image(tmp_path / f"s.{ext}", stack, META)
    data, meta = read_hyperstack(path)
    np.testing.assert_array_equal(data, stack)
    assert meta == META  # axes, voxel size, channel names, wavelengths, time interval
    lazy, _ = read_hyperstack(path, lazy=True)
    assert lazy.shape == stack.shape
    np.testing.assert_array_equal(np.asarray(lazy[2, 1]), stack[2, 1])
    np.testing.assert_array_equal(np.asarray(lazy[:, 0, 3]), stack[:, 0, 3])
    info = image_info(path, hyperstack=True)
    assert info.shape == stack.shape and info.metadata == META
    with pytest.raises(FileFormatError, match="more axes than supported.*read_hyperstack"):
        read_image(path)  # one volume only, as before


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("axes", ["CYX", "TZYX", "TCYX"])
def test_other_axes_round_trip(tmp_path, ext, axes):
    sizes = {"T": 3, "C": 2, "Z": 4, "Y": 5, "X": 6}
    data = np.arange(np.prod([sizes[a] for a in axes]), dtype=np.uint16).reshape(
        [sizes[a] for a in axes])
    meta = HyperstackMetadata(axes, (0.2,) * len(axes.lstrip("TC")),
                              channel_names=("a", "b") if "C" in axes else None,
                              time_interval=60.0 if "T" in axes else None)
    back, got = read_hyperstack(write_image(tmp_path / f"s.{ext}", data, meta))
    np.testing.assert_array_equal(back, data)
    assert got == meta


@pytest.mark.parametrize("ext", FORMATS)
def test_open_writer_fills_a_hyperstack_volume_by_volume(tmp_path, stack, ext):
    with open_writer(tmp_path / f"w.{ext}", stack.shape, np.float32, META) as out:
        for t in range(stack.shape[0]):
            for c in range(stack.shape[1]):
                out[t, c] = stack[t, c]
    data, meta = read_hyperstack(tmp_path / f"w.{ext}")
    np.testing.assert_array_equal(data, stack)
    assert meta == META


def test_single_volume_reads_as_before(tmp_path, stack):
    path = write_image(tmp_path / "v.ome.tif", stack[0, 0], ImageMetadata("ZYX", VOXEL))
    data, meta = read_hyperstack(path)
    np.testing.assert_array_equal(data, stack[0, 0])
    assert meta.axes == "ZYX" and meta.voxel_size == VOXEL and meta.is_volume


def test_imagej_hyperstack_as_fiji_writes_it(tmp_path, stack):
    # stored T, Z, C, Y, X with the channel name as each plane's label and the frame interval
    tzcyx = stack.transpose(0, 2, 1, 3, 4)
    labels = ["DAPI", "GFP"] * (3 * 4)
    tifffile.imwrite(tmp_path / "fiji.tif", tzcyx, imagej=True, resolution=(10, 10),
                     metadata={"axes": "TZCYX", "spacing": 0.3, "unit": "micron",
                               "finterval": 2.5, "Labels": labels})
    data, meta = read_hyperstack(tmp_path / "fiji.tif")
    np.testing.assert_array_equal(data, stack)  # transposed to T, C, Z, Y, X
    assert meta.axes == "TCZYX" and meta.voxel_size == pytest.approx(VOXEL)
    assert meta.channel_names == ("DAPI", "GFP") and meta.time_interval == 2.5
    np.testing.assert_array_equal(read_hyperstack(tmp_path / "fiji.tif", lazy=True)[0][1, 0],
                                  stack[1, 0])


def test_ome_tiff_in_another_dimension_order(tmp_path, stack):
    # an OME-TIFF stored T, Z, C (DimensionOrder XYCZT), wavelengths in nm, time in minutes
    tifffile.imwrite(tmp_path / "o.ome.tif", stack.transpose(0, 2, 1, 3, 4), ome=True,
                     photometric="minisblack",
                     metadata={"axes": "TZCYX", "PhysicalSizeZ": 300, "PhysicalSizeZUnit": "nm",
                               "PhysicalSizeY": 0.1, "PhysicalSizeX": 0.1,
                               "TimeIncrement": 0.5, "TimeIncrementUnit": "min",
                               "Channel": {"Name": ["DAPI", "GFP"],
                                           "EmissionWavelength": [461.0, 520.0]}})
    data, meta = read_hyperstack(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(data, stack)
    assert meta.axes == "TCZYX" and meta.voxel_size == pytest.approx(VOXEL)
    assert meta.channel_names == ("DAPI", "GFP") and meta.wavelengths == (0.461, 0.52)
    assert meta.time_interval == 30.0


def test_foreign_ngff_04_time_and_channels(tmp_path, stack):
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=stack, chunks=stack.shape)
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t", "type": "time", "unit": "minute"},
                 {"name": "c", "type": "channel"},
                 *({"name": a, "type": "space", "unit": "micrometer"} for a in "zyx")],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.5, 1, 0.3, 0.1, 0.1]}]}],
    }]
    group.attrs["omero"] = {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}
    data, meta = read_hyperstack(tmp_path / "old.zarr")
    np.testing.assert_array_equal(data, stack)
    assert meta.axes == "TCZYX" and meta.time_interval == 30.0
    assert meta.channel_names == ("DAPI", "GFP") and meta.voxel_size == pytest.approx(VOXEL)


def test_written_ome_zarr_is_valid_ngff_with_channel_labels(tmp_path, stack):
    path = write_image(tmp_path / "s.ome.zarr", stack, META)
    ome = zarr.open_group(str(path), mode="r").attrs["ome"]
    axes = ome["multiscales"][0]["axes"]
    assert [(a["name"], a["type"]) for a in axes] == [
        ("t", "time"), ("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space")]
    assert axes[0]["unit"] == "second"
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        2.5, 1.0, 0.3, 0.1, 0.1]
    channels = ome["omero"]["channels"]
    assert [c["label"] for c in channels] == ["DAPI", "GFP"]
    assert channels[1]["window"]["max"] == pytest.approx(float(stack[:, 1].max()))
    models = pytest.importorskip("ome_zarr_models.v05.image")
    models.Image.from_zarr(zarr.open_group(str(path), mode="r"))  # validates the NGFF schema


# ------------------------------------------------------------------------------ the loop


def test_map_volumes_processes_each_volume_with_its_channel(tmp_path, stack):
    seen = []

    def scale_by_channel(volume, where):
        seen.append((where.t, where.c))
        np.testing.assert_array_equal(volume, stack[where.t, where.c])
        return volume * (where.c + 1)

    steps = []
    out = map_volumes(scale_by_channel, stack, META, tmp_path / "o.tif",
                      progress=lambda done, total, desc: steps.append((done, total)))
    data, meta = read_hyperstack(out)
    np.testing.assert_allclose(data, stack * np.array([1, 2])[None, :, None, None, None])
    assert meta == META and seen == [(t, c) for t in range(3) for c in range(2)]
    assert steps[-1] == (6, 6)
    assert [v.key for v in volumes((4, 5), ImageMetadata("YX"))] == [()]
    with pytest.raises(InputError, match="--psf: 3 given for an image with 2 channel"):
        per_channel(["a", "b", "c"], 2, "--psf")
    assert per_channel(["a"], 3, "--psf", shared=True) == ["a", "a", "a"]


# ----------------------------------------------------------------- deconvolve / restore / predict


@pytest.fixture
def two_channel_series(tmp_path):
    """A two-channel time series blurred with two different PSFs, and the PSF files."""
    from lucyd.forward import convolve
    from lucyd.psf import make_psf

    rng = np.random.default_rng(0)
    psfs = [make_psf("gaussian", (7, 11, 11), VOXEL, na=1.2, wavelength=w, ni=1.33)
            for w in (0.46, 0.62)]
    objects = (rng.random((2, 2, 6, 20, 20)) > 0.95) * 100.0 + 1.0
    image = np.stack([np.stack([convolve(objects[t, c], psfs[c]) for c in range(2)])
                      for t in range(2)]).astype(np.float32)
    meta = HyperstackMetadata("TCZYX", VOXEL, channel_names=("DAPI", "RFP"),
                              wavelengths=(0.46, 0.62), time_interval=10.0)
    path = write_image(tmp_path / "series.ome.tif", image, meta)
    psf_paths = [write_image(tmp_path / f"psf{c}.tif", psfs[c], ImageMetadata("ZYX", VOXEL))
                 for c in range(2)]
    return path, image, meta, psfs, psf_paths


def test_two_channel_time_series_deconvolves_into_one_ome_zarr(tmp_path, two_channel_series):
    from lucyd.deconv import deconvolve

    path, image, meta, psfs, psf_paths = two_channel_series
    out = tmp_path / "out.ome.zarr"
    result = CliRunner().invoke(app, ["deconvolve", str(path), "--psf", str(psf_paths[0]),
                                      "--psf", str(psf_paths[1]), "-o", str(out), "-n", "3", "-q"])
    assert result.exit_code == 0, result.output
    data, got = read_hyperstack(out)
    assert got == meta and data.shape == image.shape
    for t in range(2):
        for c in range(2):  # each volume = that volume deconvolved alone with its channel's PSF
            alone = deconvolve(image[t, c], psfs[c], iterations=3, progress=False)
            np.testing.assert_allclose(data[t, c], alone, rtol=1e-5, atol=1e-6)
    wrong = deconvolve(image[0, 1], psfs[0], iterations=3, progress=False)
    assert np.abs(data[0, 1] - wrong).max() > 1e-2  # the channel's own PSF, not the first
    record = json.loads((tmp_path / "out.ome.zarr.deconv.json").read_text())["config"]
    assert record["psf"] == f"{psf_paths[0]}, {psf_paths[1]}" and record["iterations"] == 3


def test_model_psfs_per_wavelength(tmp_path, two_channel_series):
    from lucyd.deconv import deconvolve
    from lucyd.deconv.hyperstack import deconvolve_volumes_file
    from lucyd.psf.channels import psf_from_optics

    path, image, meta, _, _ = two_channel_series
    optics = {"na": 1.2, "ni": 1.33, "model": "gaussian"}
    # wavelengths from the file (0.46, 0.62 µm) when none are given
    out = deconvolve_volumes_file(path, tmp_path / "m.tif", optics=optics, iterations=2,
                                  progress=False)
    data, got = read_hyperstack(out)
    assert got == meta
    psf1 = psf_from_optics(image.shape[2:], VOXEL, na=1.2, wavelength=0.62, ni=1.33,
                           model="gaussian")
    alone = deconvolve(image[1, 1], psf1, iterations=2, progress=False)
    np.testing.assert_allclose(data[1, 1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--psf", "{p0}"], "2 channels, more axes than supported by one PSF"),
    (["--psf", "{p0}", "--psf", "{p1}", "--psf", "{p1}"], "--psf: 3 given for an image with 2"),
    (["--na", "1.2", "--wavelength", "0.46,0.5,0.6"], "--wavelength: 3 given for an image with 2"),
    (["--na", "1.2", "--wavelength", "0.46"], "--wavelength: 1 given for an image with 2"),
    (["--na", "1.2", "--wavelength", "520"], "micrometres"),
    (["--psf", "{p0}", "--na", "1.2"], "not both"),
    ([], "--psf"),
])
def test_deconvolve_errors_before_any_work(tmp_path, two_channel_series, args, message):
    path, _, _, _, psf_paths = two_channel_series
    out = tmp_path / "never.ome.zarr"
    args = [a.format(p0=psf_paths[0], p1=psf_paths[1]) for a in args]
    result = CliRunner().invoke(app, ["deconvolve", str(path), "-o", str(out), *args])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_same_psf_for_every_channel(tmp_path, two_channel_series):
    from lucyd.deconv import deconvolve

    path, image, _, psfs, psf_paths = two_channel_series
    out = tmp_path / "same.npy"
    result = CliRunner().invoke(app, ["deconvolve", str(path), "--psf", str(psf_paths[0]),
                                      "--same-psf", "-o", str(out), "-n", "2", "-q"])
    assert result.exit_code == 0, result.output
    alone = deconvolve(image[1, 1], psfs[0], iterations=2, progress=False)
    np.testing.assert_allclose(read_hyperstack(out)[0][1, 1], alone, rtol=1e-5, atol=1e-6)


def test_restore_each_volume_with_its_channels_psf(tmp_path, one_thread):
    from lucyd.forward import convolve
    from lucyd.psf import make_psf
    from lucyd.restore import RestoreConfig
    from lucyd.restore.pipeline import restore

    rng = np.random.default_rng(2)
    vs = (0.1, 0.1)
    psfs = [make_psf("gaussian", (13, 13), vs, na=1.2, wavelength=w, ni=1.33) for w in (0.45, 0.6)]
    objects = (rng.random((2, 2, 40, 40)) > 0.97) * 300.0
    raw = np.stack([np.stack([rng.poisson(convolve(objects[t, c], psfs[c]) + 10.0)
                              for c in range(2)]) for t in range(2)]).astype(np.float32)
    meta = HyperstackMetadata("TCYX", vs, channel_names=("a", "b"), time_interval=1.0)
    path = write_image(tmp_path / "raw.tif", raw, meta)
    psf_paths = [write_image(tmp_path / f"p{c}.tif", psfs[c], ImageMetadata("YX", vs))
                 for c in range(2)]
    out = tmp_path / "r.ome.zarr"
    result = CliRunner().invoke(app, ["restore", str(path), "--psf", str(psf_paths[0]), "--psf",
                                      str(psf_paths[1]), "-o", str(out), "--method", "rl"])
    assert result.exit_code == 0, result.output
    data, got = read_hyperstack(out)
    assert got == meta
    cfg = RestoreConfig.build(method="rl")
    alone = restore(raw[1, 1], psfs[1], config=cfg, voxel_size=vs, psf_voxel_size=vs,
                    progress=False).image
    np.testing.assert_allclose(data[1, 1], alone, rtol=1e-5, atol=1e-5)
    record = json.loads((tmp_path / "r.ome.zarr.restore.json").read_text())
    assert [(v["t"], v["c"]) for v in record["volumes"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_predict_every_volume(tmp_path, one_thread):
    from lucyd.train import TrainConfig, load_model, train

    rng = np.random.default_rng(3)
    meta2d = ImageMetadata("YX", (0.13, 0.13))
    for i in range(3):  # a 2-step RLN: what matters is the loop, not the model's quality
        gt = (rng.random((32, 32)) > 0.9) * 200.0 + 10.0
        write_image(tmp_path / "data" / "raw" / f"{i}.tif", rng.poisson(gt).astype(np.float32), meta2d)
        write_image(tmp_path / "data" / "gt" / f"{i}.tif", gt.astype(np.float32), meta2d)
    config = TrainConfig.build(model="rln", patch=(16, 16), batch=2, steps=2, val_interval=2,
                               val_patches=2, device="cpu", seed=0)
    model_dir = train(config, tmp_path / "data", tmp_path / "model")
    stack = (rng.random((2, 3, 32, 32)) * 100).astype(np.float32)
    meta = HyperstackMetadata("TCYX", (0.13, 0.13), channel_names=("a", "b", "c"),
                              time_interval=4.0)
    path = write_image(tmp_path / "in.ome.tif", stack, meta)
    out = tmp_path / "p.ome.zarr"
    result = CliRunner().invoke(app, ["predict", str(model_dir), str(path), "-o", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data, got = read_hyperstack(out)
    assert got == meta
    alone = load_model(model_dir).predict(stack[1, 2], device="cpu", progress=False)
    np.testing.assert_allclose(data[1, 2], alone, rtol=1e-4, atol=1e-4)
    refused = CliRunner().invoke(app, ["predict", str(model_dir), str(path), "-o",
                                       str(tmp_path / "u.tif"), "--uncertainty"])
    assert refused.exit_code == 2 and "one volume" in refused.output


# ------------------------------------------------------------------------------ vendor files


def test_vendor_reader_through_bioio(tmp_path, stack, monkeypatch):
    reader = pytest.importorskip("bioio_ome_tiff").Reader
    import lucyd.io.vendor as vendor

    source = write_image(tmp_path / "s.ome.tif", stack, META)
    czi = tmp_path / "s.czi"  # no CZI file exists here: an OME-TIFF read by bioio as one
    czi.write_bytes(source.read_bytes())
    monkeypatch.setattr(vendor, "_plugin_reader", lambda path: reader)
    data, meta = read_hyperstack(czi)
    np.testing.assert_array_equal(data, stack)
    assert meta.axes == "TCZYX" and meta.voxel_size == VOXEL
    assert meta.channel_names == META.channel_names and meta.wavelengths == META.wavelengths
    assert meta.time_interval == META.time_interval and meta.extra["format"] == "bioio"
    lazy, _ = read_hyperstack(czi, lazy=True)
    np.testing.assert_array_equal(lazy[1, 0], stack[1, 0])
    assert image_info(czi, hyperstack=True).shape == stack.shape
    with pytest.raises(FileFormatError, match="more axes than supported"):
        read_image(czi)


def test_vendor_formats_name_the_extra_when_missing(tmp_path, monkeypatch):
    nd2 = tmp_path / "scan.nd2"
    nd2.write_bytes(b"not an nd2 file")
    # bioio installed without the ND2 plugin, or bioio absent: either way one line naming the extra
    with pytest.raises(FileFormatError, match=r"lucyd\[formats\]") as info:
        read_hyperstack(nd2)
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "bioio", None)  # import fails as when not installed
    with pytest.raises(FileFormatError, match=r"needs bioio: pip install 'lucyd\[formats\]'"):
        read_image(tmp_path / "scan.nd2")
    result = CliRunner().invoke(app, ["deconvolve", str(nd2), "--psf", str(nd2), "-o",
                                      str(tmp_path / "o.tif")])
    assert result.exit_code == 2 and "lucyd[formats]" in result.output
