"""TIFF reading and writing: ImageJ hyperstacks, OME-TIFF and plain TIFF (via tifffile).

Voxel sizes are read from

* ImageJ TIFF (Fiji, lucyd): X/YResolution tags (pixels per unit), ``spacing`` (z step) and
  ``unit`` ("um", "micron", ``"\\u00B5m"``, "nm", ...) in the ImageJ description;
* OME-TIFF: ``PhysicalSizeX/Y/Z`` and their ``PhysicalSize*Unit`` (default µm) in the OME-XML;
* plain TIFF: X/YResolution with ResolutionUnit centimetre/millimetre/micrometre (2D only: a plain
  TIFF has no z step). Anything else (no unit, inches, pixels) gives ``voxel_size=None``.
"""

from __future__ import annotations

import inspect
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from lucyd.errors import FileFormatError, InputError
from lucyd.io._arrays import adapt, one_line, reduce_axes
from lucyd.io.metadata import ImageMetadata, round_significant, unit_to_micrometre

#: dtypes an ImageJ hyperstack can hold
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

# tifffile >= 2026.5 replaced imwrite(imagej=True / ome=True) by kind='imagej' / 'ome' and
# imread(aszarr=True) by return_as='zarr'; support both generations.
_IMWRITE_HAS_KIND = "kind" in inspect.signature(tifffile.imwrite).parameters
_IMREAD_HAS_RETURN_AS = "return_as" in inspect.signature(tifffile.imread).parameters

# TIFF ResolutionUnit values (2, inch, is left out on purpose: it is what non-microscopy
# software writes, e.g. 72 dpi) → micrometres per unit
_RESUNIT_UM = {3: 1e4, 4: 1e3, 5: 1.0}


def kind_kwargs(kind: str) -> dict:
    """``imwrite`` keyword(s) selecting an ImageJ or OME file for the installed tifffile."""
    if _IMWRITE_HAS_KIND:
        return {"kind": kind}
    return {kind: True}


class _Collect(logging.Handler):
    """Collects tifffile's log messages (it logs, rather than raises, on broken page chains)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_log() -> Iterator[_Collect]:
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# tifffile log messages that mean the file is cut short or its structure is broken
_CORRUPT_MARKERS = (
    "invalid page offset",
    "invalid offset to first page",
    "invalid value offset",
)


def _check_complete(tif: tifffile.TiffFile, path: Path, messages: list[str]) -> None:
    """Raise FileFormatError when the file is truncated: broken page chain, fewer planes than
    the ImageJ header announces, or image data that ends beyond the end of the file."""
    for message in messages:
        if any(marker in message.lower() for marker in _CORRUPT_MARKERS):
            raise FileFormatError(f"{path}: truncated or corrupt TIFF file ({message})")
    series = tif.series[0]
    size = tif.filehandle.size
    ij = tif.imagej_metadata or {}
    images = ij.get("images")
    if isinstance(images, int) and images > 1:
        plane = math.prod(n for n, ax in zip(series.shape, series.axes, strict=True) if ax in "YXS")
        planes = math.prod(series.shape) // max(1, plane)
        if planes < images:
            raise FileFormatError(
                f"{path}: truncated TIFF file (ImageJ header announces {images} planes, "
                f"found {planes})"
            )
    offset = getattr(series, "dataoffset", None)
    if offset is not None:
        if offset + series.nbytes > size:
            raise FileFormatError(
                f"{path}: truncated TIFF file (image data ends at byte {offset + series.nbytes}, "
                f"file has {size})"
            )
        return
    last = series.pages[-1] if len(series.pages) else None
    if last is None:
        return
    ends = [o + n for o, n in zip(last.dataoffsets, last.databytecounts, strict=False) if o]
    if ends and max(ends) > size:
        raise FileFormatError(
            f"{path}: truncated TIFF file (last plane ends at byte {max(ends)}, file has {size})"
        )


def open_tiff(path: Path) -> tifffile.TiffFile:
    """Open a TIFF file, turning tifffile's many exception types into :class:`FileFormatError`.

    Also rejects truncated files (see :func:`_check_complete`), which tifffile often opens with
    only a warning and fewer planes.
    """
    tif = None
    try:
        with _tifffile_log() as log:
            tif = tifffile.TiffFile(path)
            if not tif.series:
                raise FileFormatError(f"{path}: TIFF file contains no image")
            _check_complete(tif, path, log.messages)
        return tif
    except FileFormatError:
        if tif is not None:
            tif.close()
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        if tif is not None:
            tif.close()
        raise FileFormatError(f"{path}: not a readable TIFF file ({one_line(exc)})") from exc


def _resolution(page: Any, name: str) -> float | None:
    """Pixels per unit from an X/YResolution tag, or None."""
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    try:
        num, den = value if isinstance(value, tuple) else (value, 1)
        res = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return res if math.isfinite(res) and res > 0 else None


def _lateral(page: Any, um_per_unit: float) -> tuple[float, float] | None:
    """(dy, dx) in micrometres from the resolution tags, or None."""
    xres, yres = _resolution(page, "XResolution"), _resolution(page, "YResolution")
    if xres is None:
        return None
    yres = yres or xres
    return (um_per_unit / yres, um_per_unit / xres)


def _imagej_voxel_size(tif: tifffile.TiffFile, page: Any, axes: str) -> tuple | None:
    meta = tif.imagej_metadata or {}
    factor = unit_to_micrometre(meta.get("unit"))
    if factor is None:
        return None
    lateral = _lateral(page, factor)
    if lateral is None:
        return None
    if axes == "YX":
        return lateral
    # Fiji shows a z step of 1 unit when the file has no 'spacing'
    spacing = float(meta.get("spacing", 1.0) or 1.0)
    return (abs(spacing) * factor, *lateral)


def _ome_voxel_size(tif: tifffile.TiffFile, series_index: int, axes: str) -> tuple | None:
    try:
        root = ET.fromstring(tif.ome_metadata)
    except (ET.ParseError, TypeError, ValueError):
        return None
    images = root.findall("{*}Image")
    if not images:
        return None
    pixels = images[min(series_index, len(images) - 1)].find("{*}Pixels")
    if pixels is None:
        return None
    sizes = []
    for ax in axes:
        value = pixels.get(f"PhysicalSize{ax}")
        factor = unit_to_micrometre(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if value is None or factor is None:
            return None
        try:
            size = float(value) * factor
        except ValueError:
            return None
        if not (math.isfinite(size) and size > 0):
            return None
        sizes.append(size)
    return tuple(sizes)


def _plain_voxel_size(page: Any, axes: str) -> tuple | None:
    if axes != "YX":
        return None
    tag = page.tags.get("ResolutionUnit")
    factor = _RESUNIT_UM.get(int(tag.value)) if tag is not None else None
    if factor is None:
        return None
    return _lateral(page, factor)


def tiff_kind(tif: tifffile.TiffFile) -> str:
    """"ImageJ TIFF", "OME-TIFF" or "TIFF"."""
    if tif.is_ome:
        return "OME-TIFF"
    if tif.is_imagej:
        return "ImageJ TIFF"
    return "TIFF"


def _header(tif: tifffile.TiffFile, path: Path) -> tuple[Any, tuple, ImageMetadata]:
    series = tif.series[0]
    index, axes = reduce_axes(series.axes, series.shape, path)
    page = series.keyframe if hasattr(series, "keyframe") else tif.pages[0]
    if tif.is_ome:
        voxel = _ome_voxel_size(tif, 0, axes)
    elif tif.is_imagej:
        voxel = _imagej_voxel_size(tif, page, axes)
    else:
        voxel = _plain_voxel_size(page, axes)
    if voxel is not None:
        voxel = tuple(round_significant(v) for v in voxel)
        if not all(math.isfinite(v) and v > 0 for v in voxel):
            voxel = None
    return series, index, ImageMetadata(axes, voxel)


def read_tiff_metadata(path: Path) -> tuple[str, tuple, np.dtype, ImageMetadata]:
    """(kind, shape, dtype, metadata) of a TIFF file, from its header only."""
    with open_tiff(path) as tif:
        series, index, meta = _header(tif, path)
        shape = tuple(n for n, i in zip(series.shape, index, strict=True) if isinstance(i, slice))
        return tiff_kind(tif), shape, np.dtype(series.dtype), meta


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.kind not in "biuf":
        raise FileFormatError(f"{path}: unsupported pixel type {dtype} (integers/floats only)")


def read_tiff(path: Path, lazy: bool = False) -> tuple[Any, ImageMetadata]:
    """Read the first image series of a TIFF file.

    Parameters
    ----------
    path : Path
        ImageJ TIFF, OME-TIFF or plain TIFF.
    lazy : bool
        Return a zarr array on tifffile's zarr store (loads only what is indexed) instead of
        numpy data. The store keeps the file open while the array is alive.

    Returns
    -------
    array, ImageMetadata
    """
    with open_tiff(path) as tif:
        series, index, meta = _header(tif, path)
        _check_dtype(np.dtype(series.dtype), path)
        if not lazy:
            try:
                data = series.asarray()
            except Exception as exc:
                raise FileFormatError(
                    f"{path}: truncated or corrupt TIFF data ({one_line(exc)})"
                ) from exc
            data = data.reshape(series.shape)
            return adapt(data, index, lazy=False), meta
    return _lazy_tiff(path, index), meta


def _lazy_tiff(path: Path, index: tuple) -> Any:
    import zarr

    try:
        with _tifffile_log():  # problems were reported by open_tiff already
            if _IMREAD_HAS_RETURN_AS:
                store = tifffile.imread(path, return_as="zarr", series=0, level=0)
            else:
                store = tifffile.imread(path, aszarr=True, series=0, level=0)
        node = zarr.open(store, mode="r")
    except Exception as exc:
        raise FileFormatError(f"{path}: cannot open TIFF lazily ({one_line(exc)})") from exc
    if not hasattr(node, "shape"):  # a multiscale group: take the full-resolution level
        node = node["0"]
    if len(node.shape) != len(index):
        raise FileFormatError(
            f"{path}: lazy TIFF view has shape {node.shape}, expected {len(index)} dimensions"
        )
    return adapt(node, index, lazy=True)


# --------------------------------------------------------------------------------------- writing


def imagej_compatible(data: np.ndarray, path: Path) -> np.ndarray:
    """Return ``data`` in a dtype an ImageJ hyperstack can store, without changing any value.

    uint8, uint16 and float32 pass unchanged; bool becomes uint8 (0/1); other floats become
    float32 (lucyd's working precision; an error if a value overflows float32); other integers
    become float32 only when every value is exactly representable (|v| <= 2**24).

    Raises
    ------
    InputError
        The conversion would change values.
    """
    dtype = data.dtype
    if dtype in IMAGEJ_DTYPES:
        return data
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype.kind == "f":
        finite = data[np.isfinite(data)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise InputError(
                f"{path}: {dtype} values exceed the float32 range that ImageJ TIFF can store; "
                "write .ome.tif, .zarr or .npy instead"
            )
        return data.astype(np.float32)
    if dtype.kind in "iu":
        if data.size == 0:
            return data.astype(np.float32)
        lo, hi = int(data.min()), int(data.max())
        if max(abs(lo), abs(hi)) <= 2**24:
            return data.astype(np.float32)
        raise InputError(
            f"{path}: {dtype} values in [{lo}, {hi}] cannot be stored losslessly in an ImageJ "
            "TIFF (uint8/uint16/float32 only); write .ome.tif, .zarr or .npy, or convert first"
        )
    raise InputError(f"{path}: cannot write {dtype} data to a TIFF file")


def imagej_dtype(dtype: Any, path: Path) -> np.dtype:
    """dtype for an ImageJ file created empty (``open_writer``): floats → float32, else error."""
    dtype = np.dtype(dtype)
    if dtype in IMAGEJ_DTYPES:
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32)
    raise InputError(
        f"{path}: ImageJ TIFF holds uint8, uint16 or float32 only, not {dtype}; "
        "use .ome.tif, .zarr or .npy for other types"
    )


def _imagej_kwargs(meta: ImageMetadata) -> dict:
    ij: dict = {"axes": meta.axes}
    kwargs: dict = {"metadata": ij}
    if meta.voxel_size is not None:
        dy, dx = meta.voxel_size[-2:]
        kwargs["resolution"] = (1.0 / dx, 1.0 / dy)
        ij["unit"] = "um"
        if meta.ndim == 3:
            ij["spacing"] = meta.voxel_size[0]
    return kwargs


def _ome_kwargs(meta: ImageMetadata) -> dict:
    ome: dict = {"axes": meta.axes}
    if meta.voxel_size is not None:
        for ax, size in zip(meta.axes, meta.voxel_size, strict=True):
            ome[f"PhysicalSize{ax}"] = size
            ome[f"PhysicalSize{ax}Unit"] = "µm"
    return {"metadata": ome}


def tiff_write_kwargs(kind: str, meta: ImageMetadata) -> dict:
    """Keyword arguments for ``tifffile.imwrite`` / ``tifffile.memmap``: ``kind`` is "imagej" or
    "ome"."""
    extra = _imagej_kwargs(meta) if kind == "imagej" else _ome_kwargs(meta)
    return {**kind_kwargs(kind), "photometric": "minisblack", **extra}


def write_tiff(tmp: Path, data: np.ndarray, meta: ImageMetadata, kind: str, path: Path) -> None:
    """Write ``data`` to ``tmp`` as an ImageJ (``kind="imagej"``) or OME-TIFF (``"ome"``) file."""
    if kind == "imagej":
        data = imagej_compatible(data, path)
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    tifffile.imwrite(tmp, data, **tiff_write_kwargs(kind, meta))


def create_tiff_memmap(
    tmp: Path, shape: tuple, dtype: Any, meta: ImageMetadata, kind: str, path: Path
) -> np.memmap:
    """Create an empty, uncompressed TIFF at ``tmp`` and return a writable memmap of its data."""
    dtype = imagej_dtype(dtype, path) if kind == "imagej" else np.dtype(dtype)
    out = tifffile.memmap(tmp, shape=shape, dtype=dtype, **tiff_write_kwargs(kind, meta))
    return out.reshape(shape)
