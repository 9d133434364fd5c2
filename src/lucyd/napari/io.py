"""napari reader and writer built on :mod:`lucyd.io`: voxel size ↔ layer scale (µm), channels.

The reader returns napari "layer data" tuples ``(data, kwargs, "image")``; :func:`layer_data` is
the one place that turns lucyd's :class:`~lucyd.io.ImageMetadata` into layer keywords (scale,
axis labels, units, channel axis and names), so a richer metadata object (channel and time
axes) changes only this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import lucyd.io
import lucyd.io.metadata
from lucyd.errors import LucydError
from lucyd.io import ImageMetadata, format_from_path
from lucyd.io import write_image as _write_image

__all__ = ["get_reader", "layer_data", "layer_metadata", "layer_voxel_size", "read_layers", "write_image"]

#: key of the lucyd metadata dictionary in ``layer.metadata``
METADATA_KEY = "lucyd"
_SPATIAL = "ZYX"


def _meta_value(meta: Any, name: str) -> Any:
    """An optional metadata field: an attribute of a richer metadata object or a key of ``extra``."""
    value = getattr(meta, name, None)
    if value is None:
        value = (getattr(meta, "extra", None) or {}).get(name)
    return value


def layer_data(data: Any, meta: ImageMetadata, name: str) -> list[tuple[Any, dict, str]]:
    """napari layer data for an image and its lucyd metadata.

    Parameters
    ----------
    data : array_like
        The image, axes in the order of ``meta.axes``.
    meta : ImageMetadata
        ``axes`` (``"YX"``, ``"ZYX"``; a ``"C"`` or ``"T"`` axis when the metadata has one),
        ``voxel_size`` in µm for the spatial axes (or for every axis), optionally
        ``channel_names`` and ``time_interval`` (attributes, or keys of ``meta.extra``).

    Returns
    -------
    list of (data, kwargs, "image")
        One tuple; with a channel axis its kwargs hold ``channel_axis`` (napari then makes one
        layer per channel, named after the channels). ``scale`` is the voxel size in µm (1 where
        unknown), ``metadata["lucyd"]`` the metadata as a dictionary.
    """
    axes = str(getattr(meta, "axes", "") or "").upper()
    if len(axes) != np.ndim(data):
        axes = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}.get(np.ndim(data), "")
    spatial = [a for a in axes if a in _SPATIAL]
    voxel = getattr(meta, "voxel_size", None)
    scale_of: dict[str, float] = {}
    if voxel is not None:
        if len(voxel) == len(spatial):
            scale_of.update(zip(spatial, (float(v) for v in voxel), strict=True))
        elif len(voxel) == len(axes):
            scale_of.update((a, float(v)) for a, v in zip(axes, voxel, strict=True) if a != "C")
    interval = _meta_value(meta, "time_interval")
    if "T" in axes and interval:
        scale_of["T"] = float(interval)
    shown = [a for a in axes if a != "C"]
    units = {a: ("micrometer" if a in scale_of and a in _SPATIAL else
                 "second" if a == "T" and a in scale_of else "pixel") for a in shown}
    to_dict = getattr(meta, "to_dict", None)
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": [scale_of.get(a, 1.0) for a in shown],
        "axis_labels": [a.lower() for a in shown],
        "units": [units[a] for a in shown],
        "metadata": {METADATA_KEY: to_dict() if to_dict else {"axes": axes, "voxel_size": voxel}},
    }
    if "C" in axes:
        channel_axis = axes.index("C")
        kwargs["channel_axis"] = channel_axis
        names = _meta_value(meta, "channel_names")
        count = np.shape(data)[channel_axis]
        if not names or len(names) != count:
            names = [f"channel {i}" for i in range(count)]
        kwargs["name"] = [f"{name} [{c}]" for c in names]
    return [(data, kwargs, "image")]


def _reader():
    """lucyd's reader of time series and channels (``read_hyperstack``) where lucyd.io has one,
    else :func:`lucyd.io.read_image` (one (z, y, x) or (y, x) image)."""
    return getattr(lucyd.io, "read_hyperstack", None) or lucyd.io.read_image


def read_layers(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    """Read one or more image files with lucyd.io into napari layer data (:func:`layer_data`)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[tuple[Any, dict, str]] = []
    read = _reader()
    for p in paths:
        image, meta = read(p)
        name = Path(str(p).rstrip("/")).name
        for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        layers.extend(layer_data(image, meta, name))
    return layers


def get_reader(path: str | list[str]):
    """napari reader hook: :func:`read_layers` for files lucyd reads, None for the others."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    try:
        for p in paths:
            format_from_path(p)
    except LucydError:
        return None
    return read_layers


def layer_voxel_size(scale, metadata: dict | None, ndim: int) -> tuple[float, ...] | None:
    """Voxel size (µm) of the last ``ndim`` axes of a layer, or None when it is unknown.

    The layer's scale is the truth (the user may have changed it); a scale of all ones on a
    layer that lucyd did not read, or one read from a file without a voxel size, is unknown.
    """
    values = tuple(float(s) for s in np.asarray(scale, dtype=float)[-ndim:])
    lucyd_meta = (metadata or {}).get(METADATA_KEY)
    if lucyd_meta is not None and lucyd_meta.get("voxel_size") is None and all(v == 1 for v in values):
        return None
    if lucyd_meta is None and all(v == 1 for v in values):
        return None
    return values


def layer_metadata(array: np.ndarray, attributes: dict) -> ImageMetadata:
    """lucyd metadata of a layer's data: spatial voxel size from its scale
    (:func:`layer_voxel_size`); a (t, z, y, x) layer labelled so (axis labels ``t, z, y, x``)
    keeps its time axis and interval where lucyd.io writes time series (``make_metadata``)."""
    scale = np.asarray(attributes.get("scale", (1.0,) * array.ndim), dtype=float)
    extra = {"napari_layer": attributes.get("name", "")}
    labels = "".join(str(a).upper() for a in attributes.get("axis_labels") or ())
    make_metadata = getattr(lucyd.io.metadata, "make_metadata", None)
    in_order = "".join(a for a in "TCZYX" if a in labels)  # lucyd's axis order
    if array.ndim > 3 and make_metadata is not None and len(labels) == array.ndim and labels == in_order:
        spatial = sum(a in _SPATIAL for a in labels)
        interval = float(scale[0]) if labels[0] == "T" and scale[0] != 1 else None
        voxel = layer_voxel_size(scale, attributes.get("metadata"), spatial)
        return make_metadata(labels, voxel, extra, time_interval=interval)
    voxel = layer_voxel_size(scale, attributes.get("metadata"), array.ndim)
    return ImageMetadata.for_array(array, voxel, extra=extra)


def write_image(path: str, data: Any, attributes: dict) -> list[str]:
    """napari writer hook: one image layer to ``path`` with :func:`lucyd.io.write_image`.

    The voxel size is the layer's scale (:func:`layer_metadata`); the format follows the
    extension (ImageJ TIFF, OME-TIFF, OME-Zarr, ``.npy``); the write is atomic.
    """
    array = np.asarray(data)
    _write_image(path, array, layer_metadata(array, attributes))
    return [str(path)]
