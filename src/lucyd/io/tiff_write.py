"""TIFF writing (ImageJ hyperstacks, OME-TIFF, plain TIFF): the writer half of :mod:`lucyd.io.tiff`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from lucyd.errors import InputError
from lucyd.io.metadata import (
    ImageMetadata,
)
from lucyd.io.tiff import (
    IMAGEJ_DTYPES,
    IMAGEJ_PROPERTY,
    kind_kwargs,
)


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


#: the order ImageJ stores hyperstack axes in
IMAGEJ_ORDER = "TZCYXS"


def imagej_axes(axes: str) -> tuple[tuple[int, ...], str]:
    """Transposition from lucyd's order (T, C, Z, Y, X) to ImageJ's (T, Z, C, Y, X).

    Examples
    --------
    >>> imagej_axes("TCZYX")
    ((0, 2, 1, 3, 4), 'TZCYX')
    """
    perm = tuple(sorted(range(len(axes)), key=lambda i: IMAGEJ_ORDER.index(axes[i])))
    return perm, "".join(axes[i] for i in perm)


def _imagej_kwargs(meta: ImageMetadata) -> dict:
    ij: dict = {"axes": imagej_axes(meta.axes)[1]}
    kwargs: dict = {"metadata": ij}
    if meta.voxel_size is not None:
        dy, dx = meta.voxel_size[-2:]
        kwargs["resolution"] = (1.0 / dx, 1.0 / dy)
        ij["unit"] = "um"
        if meta.spatial_ndim == 3:
            ij["spacing"] = meta.voxel_size[0]
    if meta.time_interval is not None:
        ij["finterval"] = meta.time_interval
    if meta.channel_names is not None or meta.wavelengths is not None:
        record = {"channel_names": meta.channel_names, "wavelengths": meta.wavelengths}
        ij["Properties"] = {IMAGEJ_PROPERTY: json.dumps(record)}
    return kwargs


def _imagej_labels(meta: ImageMetadata, shape: tuple[int, ...]) -> list[str] | None:
    """One slice label per plane (the channel name; Fiji shows it), planes in (t, z, c) order."""
    if meta.channel_names is None or "C" not in meta.axes:
        return None
    planes = math.prod(shape[: -2]) // len(meta.channel_names)
    return list(meta.channel_names) * planes


def _ome_kwargs(meta: ImageMetadata) -> dict:
    ome: dict = {"axes": meta.axes}
    if meta.voxel_size is not None:
        for ax, size in zip(meta.spatial_axes, meta.voxel_size, strict=True):
            ome[f"PhysicalSize{ax}"] = size
            ome[f"PhysicalSize{ax}Unit"] = "µm"
    if meta.time_interval is not None:
        ome["TimeIncrement"] = meta.time_interval
        ome["TimeIncrementUnit"] = "s"
    channel: dict = {}
    if meta.channel_names is not None:
        channel["Name"] = list(meta.channel_names)
    if meta.wavelengths is not None and all(w is not None for w in meta.wavelengths):
        # OME has one EmissionWavelength per channel; partly unknown wavelengths are left out
        channel["EmissionWavelength"] = list(meta.wavelengths)
        channel["EmissionWavelengthUnit"] = ["µm"] * len(meta.wavelengths)
    if channel:
        ome["Channel"] = channel
    return {"metadata": ome}


def tiff_write_kwargs(kind: str, meta: ImageMetadata, shape: tuple[int, ...] | None = None) -> dict:
    """Keyword arguments for ``tifffile.imwrite`` / ``tifffile.memmap``: ``kind`` is "imagej" or
    "ome"; ``shape`` (as stored) gives the ImageJ slice labels."""
    extra = _imagej_kwargs(meta) if kind == "imagej" else _ome_kwargs(meta)
    if kind == "imagej" and shape is not None:
        labels = _imagej_labels(meta, shape)
        if labels is not None:
            extra["metadata"]["Labels"] = labels
    return {**kind_kwargs(kind), "photometric": "minisblack", **extra}


def write_tiff(tmp: Path, data: np.ndarray, meta: ImageMetadata, kind: str, path: Path) -> None:
    """Write ``data`` to ``tmp`` as an ImageJ (``kind="imagej"``) or OME-TIFF (``"ome"``) file."""
    if kind == "imagej":
        data = imagej_compatible(data, path).transpose(imagej_axes(meta.axes)[0])
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    tifffile.imwrite(tmp, data, **tiff_write_kwargs(kind, meta, data.shape))


def create_tiff_memmap(
    tmp: Path, shape: tuple, dtype: Any, meta: ImageMetadata, kind: str, path: Path
) -> np.memmap:
    """Create an empty, uncompressed TIFF at ``tmp`` and return a writable memmap of its data."""
    perm = imagej_axes(meta.axes)[0] if kind == "imagej" else tuple(range(len(shape)))
    stored = tuple(shape[p] for p in perm)
    dtype = imagej_dtype(dtype, path) if kind == "imagej" else np.dtype(dtype)
    out = tifffile.memmap(tmp, shape=stored, dtype=dtype, **tiff_write_kwargs(kind, meta, stored))
    return out.reshape(stored).transpose(np.argsort(perm))  # a view in lucyd's axis order
