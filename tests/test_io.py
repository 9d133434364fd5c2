"""Tests of lucyd.io (ImageJ TIFF, OME-TIFF, OME-Zarr, .npy) and ``lucyd info``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from lucyd.cli.main import app
from lucyd.errors import FileFormatError, InputError
from lucyd.io import (
    ImageMetadata,
    LazyImage,
    format_from_path,
    image_info,
    open_writer,
    read_image,
    read_metadata,
    unit_to_micrometre,
    write_image,
)
from lucyd.io.api import image_stats
from lucyd.io.omezarr import default_chunks

# deliberately different y and x sizes, so that a swapped axis would be caught
VOXEL_3D = (0.3, 0.13, 0.11)
VOXEL_2D = (0.13, 0.11)
EXTENSIONS = ["tif", "tiff", "ome.tif", "ome.tiff", "ome.zarr", "zarr", "npy"]


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def volume(rng):
    return (rng.random((5, 12, 9)) * 1000).astype(np.float32)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_round_trip_3d_voxel_size_and_data(tmp_path, volume, ext):
    path = tmp_path / f"img.{ext}"
    meta = ImageMetadata("ZYX", VOXEL_3D)
    assert write_image(path, volume, meta) == path
    data, back = read_image(path)
    assert isinstance(data, np.ndarray) and data.dtype == np.float32
    np.testing.assert_array_equal(data, volume)
    assert back.axes == "ZYX"
    assert back.voxel_size == pytest.approx(VOXEL_3D, rel=1e-9)
    assert read_metadata(path).voxel_size == pytest.approx(VOXEL_3D, rel=1e-9)
    # nothing but the output (and the .npy sidecar) is left in the folder
    expected = ["img.npy", "img.npy.json"] if ext == "npy" else [f"img.{ext}"]
    assert _listing(tmp_path) == expected


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_round_trip_2d_uint16_keeps_dtype(tmp_path, rng, ext):
    image = rng.integers(0, 65535, size=(7, 11)).astype(np.uint16)
    path = write_image(tmp_path / f"plane.{ext}", image, ImageMetadata("YX", VOXEL_2D))
    data, meta = read_image(path)
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, image)
    assert meta.axes == "YX"
    assert meta.voxel_size == pytest.approx(VOXEL_2D, rel=1e-9)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_unknown_voxel_size_stays_unknown(tmp_path, volume, ext):
    path = write_image(tmp_path / f"img.{ext}", volume)  # no metadata
    data, meta = read_image(path)
    assert meta.axes == "ZYX" and meta.voxel_size is None
    np.testing.assert_array_equal(data, volume)


@pytest.mark.parametrize("ext", ["ome.zarr", "npy"])
def test_extra_metadata_round_trips(tmp_path, volume, ext):
    extra = {"wavelength_um": 0.461, "note": "nuclei", "shape": np.array([1, 2])}
    path = write_image(tmp_path / f"img.{ext}", volume, ImageMetadata("ZYX", VOXEL_3D, extra))
    _, meta = read_image(path)
    assert meta.extra == {"wavelength_um": 0.461, "note": "nuclei", "shape": [1, 2]}


@pytest.mark.parametrize("ext", ["ome.tif", "ome.zarr", "npy"])
def test_native_integer_dtypes_survive_in_general_formats(tmp_path, ext):
    image = np.arange(-60, 60, dtype=np.int32).reshape(2, 6, 10) * 100_000
    data, _ = read_image(write_image(tmp_path / f"i.{ext}", image))
    assert data.dtype == np.int32
    np.testing.assert_array_equal(data, image)


@pytest.mark.parametrize("ext", ["ome.tif", "ome.zarr", "npy"])
def test_float64_is_read_as_float32(tmp_path, rng, ext):
    image = rng.random((3, 4, 5))
    data, _ = read_image(write_image(tmp_path / f"f.{ext}", image))
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, image.astype(np.float32))


def test_imagej_dtype_rules(tmp_path, rng):
    # small integers: stored exactly as float32
    small = rng.integers(-1000, 1000, size=(3, 4, 5)).astype(np.int16)
    data, _ = read_image(write_image(tmp_path / "small.tif", small))
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, small.astype(np.float32))
    # float64: stored as float32 without rescaling
    wide = rng.random((3, 4, 5)) * 1e5
    data, _ = read_image(write_image(tmp_path / "wide.tif", wide))
    np.testing.assert_array_equal(data, wide.astype(np.float32))
    # bool: stored as 0/1 uint8
    data, _ = read_image(write_image(tmp_path / "mask.tif", small > 0))
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, (small > 0).astype(np.uint8))
    # integers that float32 cannot hold exactly: refused, nothing written
    big = np.array([[0, 2**24 + 1]], dtype=np.int64)
    with pytest.raises(InputError, match="losslessly"):
        write_image(tmp_path / "big.tif", big)
    assert not (tmp_path / "big.tif").exists()
    assert not any(".partial-" in name for name in _listing(tmp_path))


# ------------------------------------------------------------------- what other tools see


def test_imagej_file_has_fiji_calibration(tmp_path, volume):
    path = write_image(tmp_path / "img.tif", volume, ImageMetadata("ZYX", VOXEL_3D))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and not tif.is_ome
        ij = tif.imagej_metadata
        assert ij["spacing"] == pytest.approx(0.3) and ij["unit"] == "um"
        assert ij["slices"] == 5
        page = tif.pages[0]
        xnum, xden = page.tags["XResolution"].value
        ynum, yden = page.tags["YResolution"].value
    assert xden / xnum == pytest.approx(0.11, rel=1e-7)  # pixels per µm → µm per pixel
    assert yden / ynum == pytest.approx(0.13, rel=1e-7)


def test_ome_tiff_has_physical_sizes(tmp_path, volume):
    path = write_image(tmp_path / "img.ome.tif", volume, ImageMetadata("ZYX", VOXEL_3D))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        pixels = ET.fromstring(tif.ome_metadata).find(".//{*}Pixels")
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.11)
    assert float(pixels.get("PhysicalSizeY")) == pytest.approx(0.13)
    assert float(pixels.get("PhysicalSizeZ")) == pytest.approx(0.3)
    assert pixels.get("PhysicalSizeXUnit") == "µm"
    assert (pixels.get("SizeZ"), pixels.get("SizeY"), pixels.get("SizeX")) == ("5", "12", "9")


def test_ome_zarr_follows_ngff_05(tmp_path, volume):
    path = write_image(tmp_path / "img.ome.zarr", volume, ImageMetadata("ZYX", VOXEL_3D))
    assert (path / "zarr.json").is_file()  # zarr v3
    group = zarr.open_group(str(path), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "micrometer" for a in ms["axes"])
    transform = ms["datasets"][0]["coordinateTransformations"][0]
    assert transform == {"type": "scale", "scale": list(VOXEL_3D)}
    array = group[ms["datasets"][0]["path"]]
    assert array.metadata.zarr_format == 3
    assert tuple(array.metadata.dimension_names) == ("z", "y", "x")
    np.testing.assert_array_equal(array[...], volume)


def test_npy_sidecar(tmp_path, volume):
    path = write_image(tmp_path / "img.npy", volume, ImageMetadata("ZYX", VOXEL_3D))
    np.testing.assert_array_equal(np.load(path), volume)
    side = json.loads((tmp_path / "img.npy.json").read_text())
    assert side["axes"] == "ZYX" and side["voxel_size"] == list(VOXEL_3D)
    # without the sidecar: axes from the dimensionality, voxel size unknown
    (tmp_path / "img.npy.json").unlink()
    _, meta = read_image(path)
    assert meta.axes == "ZYX" and meta.voxel_size is None


# ----------------------------------------------------------------------------- foreign files


def test_fiji_style_imagej_units(tmp_path):
    data = np.zeros((3, 4, 5), np.uint16)
    # Fiji writes the micro sign as the escape sequence "\u00B5m"; others write nm
    tifffile.imwrite(tmp_path / "fiji.tif", data, imagej=True, resolution=(1 / 0.065, 1 / 0.065),
                     metadata={"spacing": 0.2, "unit": "\\u00B5m", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "nm.tif", data, imagej=True, resolution=(1 / 130, 1 / 130),
                     metadata={"spacing": 300, "unit": "nm", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "pixel.tif", data, imagej=True, metadata={"axes": "ZYX"})
    assert read_metadata(tmp_path / "fiji.tif").voxel_size == pytest.approx((0.2, 0.065, 0.065))
    assert read_metadata(tmp_path / "nm.tif").voxel_size == pytest.approx((0.3, 0.13, 0.13))
    assert read_metadata(tmp_path / "pixel.tif").voxel_size is None


def test_foreign_ome_tiff_in_nanometres(tmp_path):
    data = np.ones((2, 3, 4), np.uint8)
    tifffile.imwrite(tmp_path / "a.ome.tif", data, ome=True, photometric="minisblack", metadata={
        "axes": "ZYX", "PhysicalSizeX": 100, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 120, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.5, "PhysicalSizeZUnit": "µm"})
    meta = read_metadata(tmp_path / "a.ome.tif")
    assert meta.voxel_size == pytest.approx((0.5, 0.12, 0.1))


def test_plain_tiff(tmp_path, rng):
    stack = rng.integers(0, 255, size=(4, 6, 7)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", stack, photometric="minisblack", metadata=None)
    data, meta = read_image(tmp_path / "plain.tif")
    np.testing.assert_array_equal(data, stack)
    assert meta.axes == "ZYX" and meta.voxel_size is None
    # a 2D TIFF with a centimetre resolution unit (10 000 px/cm = 1 µm pixels)
    tifffile.imwrite(tmp_path / "cm.tif", stack[0], resolution=(10000, 5000),
                     resolutionunit="CENTIMETER", metadata=None)
    assert read_metadata(tmp_path / "cm.tif").voxel_size == pytest.approx((2.0, 1.0))
    # inches (e.g. 72 dpi from a drawing program) are not a microscope calibration
    tifffile.imwrite(tmp_path / "dpi.tif", stack[0], resolution=(72, 72),
                     resolutionunit="INCH", metadata=None)
    assert read_metadata(tmp_path / "dpi.tif").voxel_size is None


def test_singleton_time_and_channel_axes_are_dropped(tmp_path, rng):
    hyper = rng.random((1, 3, 1, 4, 5)).astype(np.float32)  # TZCYX with T = C = 1
    tifffile.imwrite(tmp_path / "h.tif", hyper, imagej=True, resolution=(10, 10),
                     metadata={"axes": "TZCYX", "spacing": 0.5, "unit": "um"})
    data, meta = read_image(tmp_path / "h.tif")
    assert data.shape == (3, 4, 5) and meta.axes == "ZYX"
    np.testing.assert_array_equal(data, hyper[0, :, 0])
    assert meta.voxel_size == pytest.approx((0.5, 0.1, 0.1))


def test_channels_are_more_axes_than_supported(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((3, 2, 4, 5), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(FileFormatError, match="more axes than supported") as info:
        read_image(tmp_path / "c.tif")
    assert "c.tif" in str(info.value) and "\n" not in str(info.value)
    np.save(tmp_path / "t.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(FileFormatError, match="more axes than supported"):
        read_image(tmp_path / "t.npy")


def _ngff04(path, data, axes, scale, units):
    """An NGFF 0.4 image on zarr v2, as older tools (ome-zarr-py < 0.10, Fiji) write it."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=data.shape)
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [
            {"name": a, **({"unit": u} if u else {})} for a, u in zip(axes, units, strict=True)
        ],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": scale}]}],
    }]


def test_foreign_ome_zarr_04_with_singleton_axes(tmp_path, rng):
    data = rng.random((1, 1, 3, 4, 5))  # float64, t and c of size 1
    path = tmp_path / "old.ome.zarr"
    _ngff04(path, data, "tczyx", [1, 1, 250, 100, 100],
            [None, None, "nanometer", "nanometer", "nanometer"])
    image, meta = read_image(path)
    assert image.shape == (3, 4, 5) and image.dtype == np.float32
    np.testing.assert_array_equal(image, data[0, 0].astype(np.float32))
    assert meta.voxel_size == pytest.approx((0.25, 0.1, 0.1))
    lazy, _ = read_image(path, lazy=True)
    assert isinstance(lazy.wrapped, LazyImage) and lazy.shape == (3, 4, 5) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy[1, :, -2:], data[0, 0, 1, :, -2:].astype(np.float32))
    # channels are refused
    _ngff04(tmp_path / "c.zarr", np.zeros((2, 3, 4)), "cyx", [1, 1, 1], [None, None, None])
    with pytest.raises(FileFormatError, match="more axes than supported"):
        read_image(tmp_path / "c.zarr")


# ------------------------------------------------------------------------------- lazy reading


@pytest.mark.parametrize("ext", ["tif", "ome.tif", "ome.zarr", "npy"])
def test_lazy_reading_slices_like_numpy(tmp_path, volume, ext):
    path = write_image(tmp_path / f"img.{ext}", volume, ImageMetadata("ZYX", VOXEL_3D))
    lazy, meta = read_image(path, lazy=True)
    assert type(lazy) is not np.ndarray  # not loaded
    if ext != "npy":
        assert isinstance(lazy.wrapped, zarr.Array)  # behind GuardedReads (damaged chunks)
    assert lazy.shape == volume.shape and lazy.dtype == np.float32
    assert meta.voxel_size == pytest.approx(VOXEL_3D)
    for key in [(1,), (slice(1, 4), slice(2, 9), 3), (Ellipsis, slice(-3, None)), (-1, 0)]:
        np.testing.assert_array_equal(np.asarray(lazy[key]), volume[key])


def test_lazy_image_view(rng):
    source = rng.random((1, 4, 1, 5, 6))
    view = LazyImage(source, (0, slice(None), 0, slice(None), slice(None)), np.float32)
    assert view.shape == (4, 5, 6) and view.ndim == 3 and len(view) == 4
    expected = source[0, :, 0].astype(np.float32)
    np.testing.assert_array_equal(view[2], expected[2])
    np.testing.assert_array_equal(view[..., 1:3], expected[..., 1:3])
    np.testing.assert_array_equal(view[1:3, -1], expected[1:3, -1])
    np.testing.assert_array_equal(np.asarray(view), expected)
    assert view[0].dtype == np.float32
    with pytest.raises(IndexError):
        view[[0, 1]]
    with pytest.raises(IndexError):
        view[0, 0, 0, 0]


# ------------------------------------------------------------------------------ open_writer


@pytest.mark.parametrize("ext", ["tif", "ome.tif", "ome.zarr", "npy"])
def test_open_writer_writes_blocks_atomically(tmp_path, volume, ext):
    path = tmp_path / f"out.{ext}"
    meta = ImageMetadata("ZYX", VOXEL_3D)
    with open_writer(path, volume.shape, np.float32, meta, chunks=(2, 6, 9)) as out:
        assert out.shape == volume.shape
        assert not path.exists()  # written under a temporary name
        for z in range(0, 4):  # leave the last plane unwritten
            out[z : z + 1, :, :] = volume[z : z + 1]
    data, back = read_image(path)
    np.testing.assert_array_equal(data[:4], volume[:4])
    assert np.all(data[4] == 0)
    assert back.voxel_size == pytest.approx(VOXEL_3D)


@pytest.mark.parametrize("ext", ["tif", "ome.tif", "ome.zarr", "npy"])
def test_open_writer_leaves_nothing_on_error(tmp_path, ext):
    path = tmp_path / f"out.{ext}"
    with pytest.raises(RuntimeError, match="tile failed"):
        with open_writer(path, (3, 8, 8)) as out:
            out[0] = 1.0
            raise RuntimeError("tile failed")
    assert _listing(tmp_path) == []


def test_open_writer_zarr_chunks_and_dtype(tmp_path):
    with open_writer(tmp_path / "o.zarr", (10, 64, 64), np.uint16, chunks=(4, 32, 32)) as out:
        assert out.chunks == (4, 32, 32) and out.dtype == np.uint16
        out[4:8, 32:, :32] = 7
    data, _ = read_image(tmp_path / "o.zarr")
    assert data.dtype == np.uint16 and int(data.sum()) == 7 * 4 * 32 * 32
    with pytest.raises(InputError, match="uint8, uint16 or float32"):
        with open_writer(tmp_path / "o.tif", (2, 4, 4), np.int32):
            pass
    chunks = default_chunks((100, 2048, 2048), np.float32)
    assert chunks == (100, 128, 128) and np.prod(chunks) * 4 <= 8 * 2**20


def test_failed_write_keeps_previous_file(tmp_path, volume):
    path = write_image(tmp_path / "img.tif", volume)
    with pytest.raises(InputError):
        write_image(path, np.array([[0, 2**40]], dtype=np.int64))
    np.testing.assert_array_equal(read_image(path)[0], volume)
    assert _listing(tmp_path) == ["img.tif"]


# ------------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="no such file") as info:
        read_image(tmp_path / "absent.tif")
    assert "absent.tif" in str(info.value)


@pytest.mark.parametrize("ext", ["tif", "ome.tif"])
def test_truncated_tiff(tmp_path, rng, ext):
    path = write_image(tmp_path / f"full.{ext}", rng.random((8, 32, 32)).astype(np.float32))
    raw = path.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(raw[: len(raw) // 2])
    for lazy in (False, True):
        with pytest.raises(FileFormatError, match="truncated|corrupt") as info:
            read_image(cut, lazy=lazy)
        assert "cut." in str(info.value) and "\n" not in str(info.value)
    cut.write_bytes(raw[:100])
    with pytest.raises(FileFormatError, match="cut."):
        read_image(cut)


def test_truncated_npy_and_garbage(tmp_path, volume):
    path = write_image(tmp_path / "a.npy", volume)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FileFormatError, match="a.npy"):
        read_image(path)
    (tmp_path / "junk.tif").write_text("not an image at all")
    with pytest.raises(FileFormatError, match="junk.tif: not a readable TIFF"):
        read_image(tmp_path / "junk.tif")


def test_unsupported_extension(tmp_path, volume):
    with pytest.raises(FileFormatError, match="unsupported file extension '.png'"):
        write_image(tmp_path / "img.png", volume)
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(FileFormatError, match="unsupported file extension"):
        read_image(tmp_path / "img.png")
    with pytest.raises(FileFormatError, match="unsupported"):
        open_writer(tmp_path / "x.jpg", (4, 4)).__enter__()
    assert format_from_path("A.OME.TIFF") == "ome-tiff" and format_from_path("b.Zarr") == "zarr"


def test_folder_that_is_not_zarr(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    with pytest.raises(FileFormatError, match="not a zarr store"):
        read_image(folder)
    plain = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    plain.create_array("a", shape=(2, 2), dtype="f4")
    with pytest.raises(FileFormatError, match="multiscales"):
        read_image(tmp_path / "g.zarr")


def test_write_rejects_bad_shapes_and_metadata(tmp_path):
    with pytest.raises(InputError, match="2D"):
        write_image(tmp_path / "a.tif", np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(InputError, match="axes 'YX'"):
        write_image(tmp_path / "a.tif", np.zeros((2, 3, 4)), ImageMetadata("YX"))
    with pytest.raises(InputError):
        write_image(tmp_path / "a.npy", np.zeros((2, 3), complex))
    assert _listing(tmp_path) == []


def test_image_metadata_validation():
    meta = ImageMetadata("zyx", [0.3, 0.1, 0.1])
    assert meta.axes == "ZYX" and meta.voxel_size == (0.3, 0.1, 0.1) and meta.ndim == 3
    assert ImageMetadata.for_array(np.zeros((3, 4)), 0.5).voxel_size == (0.5, 0.5)
    assert ImageMetadata.from_dict(meta.to_dict()) == meta
    with pytest.raises(InputError, match="axes"):
        ImageMetadata("CYX")
    with pytest.raises(InputError, match="3 spatial axes"):
        ImageMetadata("ZYX", (0.1, 0.1))
    with pytest.raises(InputError, match="positive"):
        ImageMetadata("YX", (0.1, -0.1))
    with pytest.raises(InputError, match="2D"):
        ImageMetadata.for_array(np.zeros(5))


def test_units():
    assert unit_to_micrometre("micron") == 1.0
    assert unit_to_micrometre("\\u00B5m") == 1.0
    assert unit_to_micrometre("μm") == 1.0  # greek mu
    assert unit_to_micrometre("nanometer") == pytest.approx(1e-3)
    assert unit_to_micrometre("mm") == pytest.approx(1e3)
    assert unit_to_micrometre("pixel") is None and unit_to_micrometre(None) is None


def test_image_stats_blockwise_matches_numpy(rng):
    data = rng.normal(100, 20, size=(9, 7, 5)).astype(np.float32)
    stats = image_stats(data, block_bytes=7 * 5 * 4 * 2)  # two planes per block
    assert stats["min"] == pytest.approx(float(data.min()))
    assert stats["max"] == pytest.approx(float(data.max()))
    assert stats["mean"] == pytest.approx(float(data.astype(np.float64).mean()), rel=1e-9)
    data[3, 2, 1] = np.nan
    stats = image_stats(data, block_bytes=1)
    assert stats["nonfinite"] == 1
    assert stats["mean"] == pytest.approx(float(np.nanmean(data.astype(np.float64))), rel=1e-9)


# -------------------------------------------------------------------------------------- CLI


def test_cli_info(tmp_path):
    image = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    path = write_image(tmp_path / "img.ome.zarr", image, ImageMetadata("ZYX", VOXEL_3D))
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "OME-Zarr" in out and "2 x 3 x 4" in out and "uint16" in out and "ZYX" in out
    assert "0.3 x 0.13 x 0.11 µm" in out
    assert "min:         0" in out and "max:         23" in out and "mean:        11.5" in out
    result = runner.invoke(app, ["info", "--json", str(path)])
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["shape"] == [2, 3, 4] and record["voxel_size_um"] == list(VOXEL_3D)
    assert record["mean"] == pytest.approx(11.5) and record["format"] == "OME-Zarr"


def test_cli_info_bad_file(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    runner = CliRunner()
    for target in [tmp_path / "bad.tif", tmp_path / "missing.tif"]:
        result = runner.invoke(app, ["info", str(target)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and target.name in lines[0]
        assert "Traceback" not in result.output


# -------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_widefield_files(real_data):
    image, meta = read_image(real_data("widefield_dapi", "dapi_001.tif"))
    assert image.shape == (40, 201, 101) and image.dtype == np.uint16
    assert meta.axes == "ZYX" and meta.voxel_size is None  # plain TIFF: no calibration
    assert 1000 < image.min() < 3000  # camera offset ~1758, not rescaled
    psf, meta = read_image(real_data("widefield_dapi", "PSF_dapi.tif"))
    assert psf.shape == (79, 181, 181) and psf.dtype == np.float32
    assert meta.voxel_size == pytest.approx((0.3, 0.13, 0.13))  # ImageJ, unit nm
    assert psf.min() > 0  # not normalised to sum 1 despite the data README (sum is ~37.4)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (39, 90, 90)
    lazy, _ = read_image(real_data("widefield_dapi", "dapi_001.tif"), lazy=True)
    np.testing.assert_array_equal(np.asarray(lazy[10:12, 50:60]), image[10:12, 50:60])


@pytest.mark.realdata
def test_real_confocal_and_measured_psfs(real_data):
    beads, meta = read_image(real_data("confocal_beads", "Bead_Image1_crop.tif"))
    assert beads.shape == (41, 150, 150) and beads.dtype == np.uint8
    assert meta.voxel_size[0] == pytest.approx(0.125)
    assert meta.voxel_size[1:] == pytest.approx((0.0225, 0.0225), rel=0.01)  # Fiji "\u00B5m"
    psf, meta = read_image(real_data("confocal_beads", "psf_45cube_ec13757.tif"))
    assert psf.shape == (45, 45, 45) and psf.dtype == np.float32  # stored as float64
    assert psf.sum() == pytest.approx(1.0, rel=1e-3)
    measured, meta = read_image(real_data("measured_psfs", "pycudadecon_tests_psf.tif"))
    assert measured.shape == (61, 128, 128) and measured.dtype == np.uint16
    otf, meta = read_image(real_data("measured_psfs", "pycudadecon_tests_otf.tif"))
    assert otf.shape == (65, 122) and meta.axes == "YX"
    info = image_info(real_data("measured_psfs", "redlionfish_PSF_RFI_8bit.tif"))
    assert info.format == "ImageJ TIFF" and info.shape == (61, 32, 32)
    assert info.metadata.voxel_size == pytest.approx((0.3, 0.3, 0.3), rel=1e-3)


@pytest.mark.realdata
def test_real_file_converts_to_every_format(tmp_path, real_data):
    grid = real_data("confocal_beads", "DeconvolutionSampleVerticalGrid1AU-crop.tif")
    image, _ = read_image(grid)
    meta = ImageMetadata("ZYX", (0.125, 0.022, 0.022))
    for ext in ["tif", "ome.tif", "ome.zarr", "npy"]:
        data, back = read_image(write_image(tmp_path / f"grid.{ext}", image, meta))
        assert data.dtype == np.uint8 and back.voxel_size == pytest.approx(meta.voxel_size)
        np.testing.assert_array_equal(data, image)
