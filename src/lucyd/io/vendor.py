"""Microscope vendor formats (Zeiss CZI, Nikon ND2, Leica LIF) through bioio, read only.

bioio (https://github.com/bioio-devs/bioio) reads each format with a plugin package
(``bioio-czi``, ``bioio-nd2``, ``bioio-lif``); lucyd installs them with the optional extra
``pip install 'lucyd[formats]'`` and says so in one line when they are missing. bioio presents
every file as T, C, Z, Y, X with the physical pixel sizes (µm), the channel names and, through
its OME metadata, emission wavelengths and the time increment; lucyd reads the first scene.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.errors import FileFormatError
from lucyd.io._arrays import LazyImage, canonical_order, one_line, output_dtype, reduce_axes
from lucyd.io.metadata import (
    ImageMetadata,
    make_metadata,
    round_significant,
    unit_to_micrometre,
    unit_to_second,
)

#: file extensions read through bioio, with the plugin package that reads each
VENDOR_SUFFIXES = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
#: the optional extra that installs bioio and the plugins
FORMATS_EXTRA = "lucyd[formats]"


def _plugin_reader(path: Path) -> Any:
    """The bioio reader class to use for ``path``; None lets bioio choose by extension (tests
    replace this to read a format whose plugin is installed under a vendor extension)."""
    return None


def _install_hint(path: Path) -> str:
    plugin = VENDOR_SUFFIXES.get(path.suffix.lower(), "a bioio format plugin")
    return f"pip install '{FORMATS_EXTRA}' (bioio with {plugin})"


def open_bioimage(path: str | Path, reader: Any = None) -> Any:
    """A ``bioio.BioImage`` of ``path``, or a one-line FileFormatError naming the extra to
    install when bioio or the format's plugin is missing."""
    path = Path(path)
    try:
        from bioio import BioImage  # optional extra (lucyd[formats])
    except ImportError:
        raise FileFormatError(
            f"{path}: reading {path.suffix} files needs bioio: {_install_hint(path)}"
        ) from None
    reader = reader if reader is not None else _plugin_reader(path)
    try:
        return BioImage(path, reader=reader) if reader is not None else BioImage(path)
    except Exception as exc:  # noqa: BLE001 - plugins fail in many ways
        if type(exc).__name__ == "UnsupportedFileFormatError":
            raise FileFormatError(
                f"{path}: no bioio reader for {path.suffix} files is installed: "
                f"{_install_hint(path)}"
            ) from None
        raise FileFormatError(f"{path}: not readable by bioio ({one_line(exc)})") from None


def _seconds(value: Any) -> float | None:
    """A time interval from bioio (a number in seconds or a quantity with units) in seconds."""
    if value is None:
        return None
    if hasattr(value, "to"):  # a pint quantity
        try:
            value = value.to("second").magnitude
        except Exception:  # noqa: BLE001
            return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return round_significant(seconds) if math.isfinite(seconds) and seconds > 0 else None


def _ome_pixels(image: Any) -> Any:
    try:
        return image.ome_metadata.images[image.current_scene_index].pixels
    except Exception:  # noqa: BLE001 - not every plugin converts its metadata to OME
        return None


def _enum_value(unit: Any) -> str | None:
    return getattr(unit, "value", unit) if unit is not None else None


def _describe(image: Any, axes: str, sizes: dict) -> ImageMetadata:
    spatial = axes.lstrip("TC")
    pps = image.physical_pixel_sizes
    voxel = tuple(getattr(pps, ax) for ax in spatial)
    voxel = None if any(v is None or not v > 0 for v in voxel) else tuple(
        round_significant(float(v)) for v in voxel)
    pixels = _ome_pixels(image)
    names = [str(n) for n in (image.channel_names or [])]
    waves = None
    if pixels is not None:
        waves = []
        for channel in pixels.channels:
            factor = unit_to_micrometre(_enum_value(channel.emission_wavelength_unit) or "nm")
            w = channel.emission_wavelength
            waves.append(round_significant(float(w) * factor) if w and factor else None)
    interval = None
    if "T" in axes:
        interval = _seconds(getattr(image, "time_interval", None))
        if interval is None and pixels is not None and pixels.time_increment:
            factor = unit_to_second(_enum_value(pixels.time_increment_unit) or "s")
            interval = _seconds(pixels.time_increment * factor) if factor else None
    channels = int(sizes.get("C", 1))
    described = {
        "channel_names": names if len(names) == channels else None,
        "wavelengths": waves if waves and len(waves) == channels else None,
        "time_interval": interval,
    }
    extra = {"format": "bioio", "reader": type(image.reader).__module__.split(".")[0]}
    if len(image.scenes) > 1:
        extra["scenes"] = len(image.scenes)  # the first is read
    try:
        return make_metadata(axes, voxel, extra, **described)
    except Exception:  # noqa: BLE001 - odd metadata must not make the pixels unreadable
        return make_metadata(axes, voxel, extra)


def _header(path: Path, keep: str, reader: Any = None) -> tuple[Any, tuple, tuple, ImageMetadata]:
    image = open_bioimage(path, reader)
    stored_axes = "".join(image.dims.order)
    shape = tuple(int(n) for n in image.shape)
    index, kept = reduce_axes(stored_axes, shape, path, keep)
    perm, axes = canonical_order(kept)
    return image, index, perm, _describe(image, axes, dict(zip(stored_axes, shape, strict=True)))


def read_vendor_metadata(path: Path, keep: str = "") -> tuple[str, tuple, np.dtype, ImageMetadata]:
    """(kind, shape, dtype, metadata) of a vendor file through bioio."""
    image, index, perm, meta = _header(Path(path), keep)
    kept = tuple(int(n) for n, i in zip(image.shape, index, strict=True) if isinstance(i, slice))
    kind = f"{Path(path).suffix.lstrip('.').upper()} (bioio)"
    return kind, tuple(kept[p] for p in perm), np.dtype(image.dtype), meta


def read_vendor(path: Path, lazy: bool = False, keep: str = "", reader: Any = None
                ) -> tuple[Any, ImageMetadata]:
    """Read the first scene of a CZI / ND2 / LIF file (any format with a bioio ``reader``).

    Lazily, a :class:`~lucyd.io._arrays.LazyImage` over bioio's dask array (numpy out);
    otherwise a numpy array. Axes as :func:`lucyd.io.read_hyperstack` (``keep="TC"``) or
    :func:`lucyd.io.read_image` (``keep=""``).
    """
    image, index, perm, meta = _header(Path(path), keep, reader)
    if np.dtype(image.dtype).kind not in "biuf":
        raise FileFormatError(f"{path}: unsupported data type {image.dtype}")
    view = LazyImage(image.dask_data, index, output_dtype(image.dtype), perm)
    return (view if lazy else np.ascontiguousarray(view[...])), meta
