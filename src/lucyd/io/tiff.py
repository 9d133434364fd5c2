"""TIFF reading and writing: ImageJ hyperstacks, OME-TIFF and plain TIFF (via tifffile).

Voxel sizes are read from

* ImageJ TIFF (Fiji, lucyd): X/YResolution tags (pixels per unit), ``spacing`` (z step) and
  ``unit`` ("um", "micron", ``"\\u00B5m"``, "nm", ...) in the ImageJ description;
* OME-TIFF: ``PhysicalSizeX/Y/Z`` and their ``PhysicalSize*Unit`` (default µm) in the OME-XML;
* plain TIFF: X/YResolution with ResolutionUnit centimetre/millimetre/micrometre (2D only: a plain
  TIFF has no z step). Anything else (no unit, inches, pixels) gives ``voxel_size=None``.

Channels and time points (:func:`lucyd.io.read_hyperstack`): OME-TIFF ``Channel`` ``Name`` and
``EmissionWavelength`` and ``Pixels/@TimeIncrement``; ImageJ hyperstacks (stored T, Z, C, Y, X;
returned as T, C, Z, Y, X) ``finterval`` (with ``tunit``), channel names from the slice labels and,
as lucyd writes them, names and emission wavelengths in the ``lucyd`` image property (ImageJ has
no wavelength field).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from lucyd.errors import FileFormatError
from lucyd.io._arrays import adapt, canonical_order, one_line, reduce_axes
from lucyd.io.metadata import (
    ImageMetadata,
    make_metadata,
    round_significant,
    unit_to_micrometre,
    unit_to_second,
)

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


def _ome_pixels(tif: tifffile.TiffFile, series_index: int = 0) -> Any:
    """The ``Pixels`` element of the OME-XML's image ``series_index``, or None."""
    try:
        root = ET.fromstring(tif.ome_metadata)
    except (ET.ParseError, TypeError, ValueError):
        return None
    images = root.findall("{*}Image")
    if not images:
        return None
    return images[min(series_index, len(images) - 1)].find("{*}Pixels")


def _positive(value: Any, factor: float | None) -> float | None:
    """``value * factor`` when both are known and the product is finite and positive."""
    if value is None or factor is None:
        return None
    try:
        size = float(value) * factor
    except ValueError:
        return None
    return round_significant(size) if math.isfinite(size) and size > 0 else None


def _ome_voxel_size(pixels: Any, axes: str) -> tuple | None:
    if pixels is None:
        return None
    sizes = []
    for ax in axes:
        size = _positive(pixels.get(f"PhysicalSize{ax}"),
                         unit_to_micrometre(pixels.get(f"PhysicalSize{ax}Unit", "µm")))
        if size is None:
            return None
        sizes.append(size)
    return tuple(sizes)


def _ome_channels_and_time(pixels: Any) -> dict:
    """``channel_names``, ``wavelengths`` (µm) and ``time_interval`` (s) from OME ``Pixels``."""
    if pixels is None:
        return {}
    channels = pixels.findall("{*}Channel")
    names = [c.get("Name") for c in channels]
    waves = [_positive(c.get("EmissionWavelength"),
                       unit_to_micrometre(c.get("EmissionWavelengthUnit", "nm")))
             for c in channels]
    return {
        "channel_names": names if names and all(n is not None for n in names) else None,
        "wavelengths": waves if any(w is not None for w in waves) else None,
        "time_interval": _positive(pixels.get("TimeIncrement"),
                                   unit_to_second(pixels.get("TimeIncrementUnit", "s"))),
    }


#: name of the ImageJ image property in which lucyd stores channel names and wavelengths
IMAGEJ_PROPERTY = "lucyd"


def _imagej_channels_and_time(tif: tifffile.TiffFile, series: Any) -> dict:
    """``channel_names``, ``wavelengths`` and ``time_interval`` from an ImageJ description."""
    meta = tif.imagej_metadata or {}
    out: dict = {"time_interval": _positive(meta.get("finterval"),
                                            unit_to_second(meta.get("tunit", "s")))}
    stored = (meta.get("Properties") or {}).get(IMAGEJ_PROPERTY)
    if stored:
        try:
            record = json.loads(stored)
            out["channel_names"] = record.get("channel_names")
            out["wavelengths"] = record.get("wavelengths")
            return out
        except (ValueError, AttributeError):
            pass
    labels = meta.get("Labels")
    channels = int(meta.get("channels", 1) or 1)
    if isinstance(labels, list) and channels > 1 and len(labels) % channels == 0:
        # planes are stored (t, z, c) with c fastest: a label that names a channel repeats
        # with period C
        first = labels[:channels]
        if all(labels[i] == first[i % channels] for i in range(len(labels))) and all(first):
            out["channel_names"] = first
    return out


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


def _header(tif: tifffile.TiffFile, path: Path, keep: str = "") -> tuple[Any, tuple, Any, ImageMetadata]:
    """(series, index, perm, metadata): ``series.asarray()[index].transpose(perm)`` has the
    metadata's axes (``perm`` None: no transposition)."""
    series = tif.series[0]
    index, stored_axes = reduce_axes(series.axes, series.shape, path, keep)
    perm, axes = canonical_order(stored_axes)
    spatial = axes.lstrip("TC")
    page = series.keyframe if hasattr(series, "keyframe") else tif.pages[0]
    described: dict = {}
    if tif.is_ome:
        pixels = _ome_pixels(tif, 0)
        voxel = _ome_voxel_size(pixels, spatial)
        described = _ome_channels_and_time(pixels)
    elif tif.is_imagej:
        voxel = _imagej_voxel_size(tif, page, spatial)
        described = _imagej_channels_and_time(tif, series)
    else:
        voxel = _plain_voxel_size(page, spatial)
    if voxel is not None:
        voxel = tuple(round_significant(v) for v in voxel)
        if not all(math.isfinite(v) and v > 0 for v in voxel):
            voxel = None
    return series, index, perm, _described(path, axes, voxel, described, series)


def _described(path: Path, axes: str, voxel: Any, described: dict, series: Any) -> ImageMetadata:
    """ImageMetadata with the channel description kept only when it fits the channel count."""
    sizes = dict(zip(series.axes.upper(), series.shape, strict=True))
    channels = int(sizes.get("C", 1))
    for key in ("channel_names", "wavelengths"):
        if described.get(key) is not None and len(described[key]) != channels:
            described[key] = None  # a description of other data: not this image's channels
    if "T" not in axes:
        described["time_interval"] = None
    try:
        return make_metadata(axes, voxel, **described)
    except Exception:  # noqa: BLE001 - an odd description must not make pixels unreadable
        return make_metadata(axes, voxel)


def read_tiff_metadata(path: Path, keep: str = "") -> tuple[str, tuple, np.dtype, ImageMetadata]:
    """(kind, shape, dtype, metadata) of a TIFF file, from its header only."""
    with open_tiff(path) as tif:
        series, index, perm, meta = _header(tif, path, keep)
        kept = tuple(n for n, i in zip(series.shape, index, strict=True) if isinstance(i, slice))
        shape = tuple(kept[p] for p in perm)
        return tiff_kind(tif), shape, np.dtype(series.dtype), meta


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.kind not in "biuf":
        raise FileFormatError(f"{path}: unsupported pixel type {dtype} (integers/floats only)")


def read_tiff(path: Path, lazy: bool = False, keep: str = "") -> tuple[Any, ImageMetadata]:
    """Read the first image series of a TIFF file.

    Parameters
    ----------
    path : Path
        ImageJ TIFF, OME-TIFF or plain TIFF.
    lazy : bool
        Return a zarr array on tifffile's zarr store (loads only what is indexed) instead of
        numpy data. The store keeps the file open while the array is alive.
    keep : str
        "TC" keeps time and channel axes (returned in T, C, Z, Y, X order); "" reads one volume.

    Returns
    -------
    array, ImageMetadata
    """
    with open_tiff(path) as tif:
        series, index, perm, meta = _header(tif, path, keep)
        _check_dtype(np.dtype(series.dtype), path)
        if not lazy:
            try:
                data = series.asarray()
            except Exception as exc:
                raise FileFormatError(
                    f"{path}: truncated or corrupt TIFF data ({one_line(exc)})"
                ) from exc
            data = data.reshape(series.shape)
            return adapt(data, index, lazy=False, perm=perm), meta
    return _lazy_tiff(path, index, perm), meta


def _lazy_tiff(path: Path, index: tuple, perm: Any = None) -> Any:
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
    return adapt(node, index, lazy=True, perm=perm)


# --------------------------------------------------------------------------------------- writing
