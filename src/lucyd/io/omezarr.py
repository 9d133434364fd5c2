"""OME-Zarr (NGFF 0.5 on zarr v3) reading and writing with zarr-python 3.

lucyd writes one multiscale image with a single full-resolution level ``"0"``::

    image.ome.zarr/
        zarr.json          group; attributes {"ome": {"version": "0.5", "multiscales": [...]},
                                              "lucyd": {"extra": {...}}}
        0/                 the (z, y, x) or (y, x) array, dimension_names ("z", "y", "x")

with axes ``{"name": "z", "type": "space", "unit": "micrometer"}`` and a ``scale``
coordinate transformation equal to the voxel size. Readers also accept NGFF 0.4 (zarr v2,
``multiscales`` at the top level of the attributes), images with singleton ``t``/``c`` axes and a
bare zarr array (axes from its dimensionality).

Time series and channels (:func:`lucyd.io.read_hyperstack`) use the NGFF axes ``t`` (type
"time", unit "second", scale = the time interval) and ``c`` (type "channel", scale 1) in front of
the spatial axes; channel names go to ``omero.channels[].label`` (read by napari and other
viewers), and names and emission wavelengths (µm, which NGFF has no field for) to the ``lucyd``
attribute.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from lucyd.errors import FileFormatError, InputError
from lucyd.io._arrays import adapt, canonical_order, one_line, reduce_axes
from lucyd.io.metadata import (
    ImageMetadata,
    jsonable,
    make_metadata,
    round_significant,
    unit_to_micrometre,
    unit_to_second,
)

NGFF_VERSION = "0.5"
#: default chunk size in bytes for arrays lucyd writes (a few MB: good for tiles and for dask)
DEFAULT_CHUNK_BYTES = 8 * 2**20


def default_chunks(shape: tuple[int, ...], dtype: Any, target_bytes: int = DEFAULT_CHUNK_BYTES):
    """Chunk shape of at most ``target_bytes``: halve the longest axis until it fits.

    Examples
    --------
    >>> default_chunks((100, 2048, 2048), np.float32)
    (100, 128, 128)
    """
    itemsize = np.dtype(dtype).itemsize
    chunks = [max(1, int(n)) for n in shape]
    while math.prod(chunks) * itemsize > target_bytes and max(chunks) > 1:
        i = int(np.argmax(chunks))
        chunks[i] = (chunks[i] + 1) // 2
    return tuple(chunks)


def _check_chunks(chunks: Any, shape: tuple[int, ...], dtype: Any) -> tuple[int, ...]:
    if chunks is None:
        return default_chunks(shape, dtype)
    try:
        values = tuple(int(c) for c in chunks)
    except (TypeError, ValueError) as exc:
        raise InputError(f"chunks must be a tuple of positive integers, got {chunks!r}") from exc
    if len(values) != len(shape) or any(c < 1 for c in values):
        raise InputError(
            f"chunks must be {len(shape)} positive integers (one per axis), got {chunks!r}"
        )
    return tuple(min(c, max(1, n)) for c, n in zip(values, shape, strict=True))


def _axis_entry(axis: str, meta: ImageMetadata) -> dict:
    if axis == "t":
        entry = {"name": "t", "type": "time"}
        if meta.time_interval is not None:
            entry["unit"] = "second"
        return entry
    if axis == "c":
        return {"name": "c", "type": "channel"}
    entry = {"name": axis, "type": "space"}
    if meta.voxel_size is not None:
        entry["unit"] = "micrometer"
    return entry


def ome_attributes(meta: ImageMetadata, name: str = "image") -> dict:
    """The ``ome`` group attribute (NGFF 0.5) for one single-level image."""
    ome: dict = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [_axis_entry(ax, meta) for ax in meta.axes.lower()],
                "datasets": [
                    {"path": "0",
                     "coordinateTransformations": [{"type": "scale", "scale": list(meta.scale)}]}
                ],
            }
        ],
    }
    if meta.channel_names is not None and "C" in meta.axes:
        ome["omero"] = {"channels": [
            {"label": label, "active": True, "color": "FFFFFF",
             "window": {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}}
            for label in meta.channel_names
        ]}
    return ome


def _lucyd_attributes(meta: ImageMetadata) -> dict:
    out: dict = {}
    if meta.extra:
        out["extra"] = jsonable(meta.extra)
    if meta.channel_names is not None or meta.wavelengths is not None:
        out["channels"] = {"names": meta.channel_names, "wavelengths": meta.wavelengths}
    return out


def create_omezarr(
    tmp: Path, shape: tuple[int, ...], dtype: Any, meta: ImageMetadata, chunks: Any = None
) -> zarr.Array:
    """Create an OME-Zarr group at ``tmp`` and return its empty level-0 array (fill value 0)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"{tmp}: cannot store {dtype} data in OME-Zarr (integers/floats only)")
    attrs = {"ome": ome_attributes(meta, name=tmp.name.split(".")[0] or "image")}
    lucyd_attrs = _lucyd_attributes(meta)
    if lucyd_attrs:
        attrs["lucyd"] = lucyd_attrs
    group = zarr.create_group(store=str(tmp), zarr_format=3, attributes=attrs, overwrite=True)
    if chunks is None and not meta.is_volume:  # one chunk never spans two (t, c) volumes
        lead = meta.ndim - meta.spatial_ndim
        chunks = (1,) * lead + default_chunks(tuple(shape)[lead:], dtype)
    return group.create_array(
        "0",
        shape=tuple(int(n) for n in shape),
        dtype=dtype,
        chunks=_check_chunks(chunks, tuple(shape), dtype),
        dimension_names=tuple(meta.axes.lower()),
        fill_value=0,
    )


def set_display_windows(group: Any, array: Any, meta: ImageMetadata) -> None:
    """Set each ``omero`` channel's display window to its data range (viewers' contrast)."""
    ome = dict(group.attrs.get("ome") or {})
    channels = (ome.get("omero") or {}).get("channels")
    if not channels or meta.channel_axis is None:
        return
    for c, channel in enumerate(channels):
        values = np.asarray(np.take(array, c, axis=meta.channel_axis), dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        channel["window"] = {"min": lo, "max": hi, "start": lo, "end": hi}
    ome["omero"] = {**ome["omero"], "channels": channels}
    group.attrs["ome"] = ome


def write_omezarr(tmp: Path, data: Any, meta: ImageMetadata, chunks: Any = None) -> None:
    """Write ``data`` as a new OME-Zarr image at ``tmp``."""
    array = create_omezarr(tmp, data.shape, data.dtype, meta, chunks)
    array[...] = data
    if meta.channel_names is not None and "C" in meta.axes:
        set_display_windows(zarr.open_group(str(tmp), mode="r+"), data, meta)


def _open_node(path: Path) -> Any:
    try:
        return zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises FileNotFoundError / KeyError / NodeNotFoundError ...
        kind = "folder" if path.is_dir() else "file"
        raise FileFormatError(
            f"{path}: {kind} is not a zarr store ({one_line(exc)})"
        ) from exc


def _scale_of(transforms: Any, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == "scale":
            values = transform.get("scale")
            if isinstance(values, list) and len(values) == ndim:
                scale = [s * float(v) for s, v in zip(scale, values, strict=True)]
    return scale


def _from_multiscales(group: Any, path: Path, keep: str = "") -> tuple[Any, str, tuple, Any, ImageMetadata]:
    attrs = group.attrs.asdict() if hasattr(group.attrs, "asdict") else dict(group.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs  # 0.5 / 0.4
    multiscales = ome.get("multiscales")
    if not multiscales or not isinstance(multiscales, list):
        raise FileFormatError(f"{path}: zarr group without OME-Zarr 'multiscales' metadata")
    ms = multiscales[0]
    datasets = ms.get("datasets") or []
    if not datasets or "path" not in datasets[0]:
        raise FileFormatError(f"{path}: OME-Zarr multiscales lists no datasets")
    try:
        array = group[datasets[0]["path"]]
    except KeyError as exc:
        raise FileFormatError(
            f"{path}: OME-Zarr dataset {datasets[0]['path']!r} is missing"
        ) from exc
    ndim = len(array.shape)
    axes_meta = ms.get("axes") or [{"name": n} for n in "tczyx"[-ndim:]]
    names = [(a.get("name") if isinstance(a, dict) else str(a)) or "?" for a in axes_meta]
    if len(names) != ndim:
        raise FileFormatError(f"{path}: OME-Zarr axes {names} do not match the array shape")
    letters = "".join(n.upper() if n.lower() in "tczyx" and len(n) == 1 else "?" for n in names)
    index, stored_axes = reduce_axes(letters, array.shape, path, keep)
    perm, axes = canonical_order(stored_axes)
    scale = _scale_of(datasets[0].get("coordinateTransformations"), ndim)
    outer = _scale_of(ms.get("coordinateTransformations"), ndim)  # applies to every level
    scale = [a * b for a, b in zip(scale, outer, strict=True)]
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    spatial = [i for i, idx in enumerate(index) if isinstance(idx, slice) and letters[i] in "ZYX"]
    voxel: tuple | None
    if all(units[i] is None for i in spatial):
        # no units at all: lucyd writes scale 1 for "unknown"; others usually mean micrometres
        voxel = None if all(scale[i] == 1.0 for i in spatial) else tuple(scale[i] for i in spatial)
    else:
        factors = [unit_to_micrometre(units[i]) for i in spatial]
        voxel = (
            None
            if any(f is None for f in factors)
            else tuple(scale[i] * f for i, f in zip(spatial, factors, strict=True))
        )
    if voxel is not None:
        voxel = tuple(round_significant(v) for v in voxel)
        if not all(math.isfinite(v) and v > 0 for v in voxel):
            voxel = None
    lucyd_attrs = attrs.get("lucyd") if isinstance(attrs.get("lucyd"), dict) else {}
    extra = dict(lucyd_attrs.get("extra") or {})
    described = _channels_and_time(ome, lucyd_attrs, letters, scale, units)
    sizes = dict(zip(letters, array.shape, strict=True))
    for key in ("channel_names", "wavelengths"):
        if described.get(key) is not None and len(described[key]) != int(sizes.get("C", 1)):
            described[key] = None  # describes other data than this image's channels
    if "T" not in axes:
        described["time_interval"] = None
    try:
        meta = make_metadata(axes, voxel, extra, **described)
    except InputError:  # an odd description must not make the pixels unreadable
        meta = make_metadata(axes, voxel, extra)
    return array, "OME-Zarr", index, perm, meta


def _channels_and_time(ome: dict, lucyd_attrs: dict, letters: str, scale: list, units: list) -> dict:
    """``channel_names``, ``wavelengths`` (µm) and ``time_interval`` (s) of an OME-Zarr image."""
    out: dict = {}
    stored = lucyd_attrs.get("channels") if isinstance(lucyd_attrs.get("channels"), dict) else {}
    omero = ome.get("omero") if isinstance(ome.get("omero"), dict) else {}
    labels = [c.get("label") for c in omero.get("channels") or [] if isinstance(c, dict)]
    out["channel_names"] = stored.get("names") or (labels if labels and all(labels) else None)
    out["wavelengths"] = stored.get("wavelengths")
    if "T" in letters:
        t = letters.index("T")
        factor = unit_to_second(units[t]) if units[t] is not None else 1.0
        if factor is not None and (units[t] is not None or scale[t] != 1.0):
            interval = scale[t] * factor
            out["time_interval"] = round_significant(interval) if interval > 0 else None
    return out


def _header(path: Path, keep: str = "") -> tuple[Any, str, tuple, Any, ImageMetadata]:
    node = _open_node(path)
    if isinstance(node, zarr.Array):
        ndim = len(node.shape)
        letters = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}.get(ndim, "?" * ndim)
        index, axes = reduce_axes(letters, node.shape, path, keep)
        lucyd_attrs = node.attrs.get("lucyd") or {}
        extra = dict(lucyd_attrs.get("extra") or {}) if isinstance(lucyd_attrs, dict) else {}
        return node, "Zarr array", index, None, make_metadata(axes, None, extra)
    return _from_multiscales(node, path, keep)


def read_omezarr_metadata(path: Path, keep: str = "") -> tuple[str, tuple, np.dtype, ImageMetadata]:
    """(kind, shape, dtype, metadata) of an OME-Zarr image or bare zarr array."""
    array, kind, index, perm, meta = _header(path, keep)
    shape = tuple(int(n) for n, i in zip(array.shape, index, strict=True) if isinstance(i, slice))
    if perm is not None:
        shape = tuple(shape[p] for p in perm)
    return kind, shape, np.dtype(array.dtype), meta


def read_omezarr(path: Path, lazy: bool = False, keep: str = "") -> tuple[Any, ImageMetadata]:
    """Read the full-resolution level of an OME-Zarr image (or a bare zarr array).

    With ``lazy=True`` the zarr array itself is returned (or a
    :class:`~lucyd.io._arrays.LazyImage` view when singleton axes must be dropped or floats
    converted to float32); nothing is loaded until it is indexed. ``keep="TC"`` keeps the time
    and channel axes.
    """
    array, _, index, perm, meta = _header(path, keep)
    if np.dtype(array.dtype).kind not in "biuf":
        raise FileFormatError(f"{path}: unsupported data type {array.dtype}")
    try:
        return adapt(array, index, lazy, perm), meta
    except FileFormatError:
        raise
    except Exception as exc:
        raise FileFormatError(
            f"{path}: corrupt zarr data ({one_line(exc)})"
        ) from exc
