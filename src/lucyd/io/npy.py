"""NumPy ``.npy`` files with a JSON sidecar ``<name>.npy.json`` holding axes and voxel size.

The sidecar is ``{"axes": "ZYX", "voxel_size": [0.3, 0.13, 0.13], "extra": {...}}`` (plus
``channel_names``, ``wavelengths`` and ``time_interval`` when known; axes in "TCZYX" order). Without a
sidecar, axes follow the dimensionality and the voxel size is unknown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.errors import FileFormatError, InputError
from lucyd.io._arrays import adapt, one_line, reduce_axes
from lucyd.io.atomic import atomic_path
from lucyd.io.metadata import ImageMetadata


def sidecar_path(path: str | Path) -> Path:
    """The metadata file that goes with a ``.npy`` file: ``image.npy`` → ``image.npy.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(path: Path, meta: ImageMetadata) -> None:
    """Write ``meta`` atomically as the JSON sidecar of ``path``."""
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta.to_dict(), indent=2) + "\n", encoding="utf-8")


def _read_sidecar(path: Path) -> ImageMetadata | None:
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        return ImageMetadata.from_dict(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError, InputError) as exc:
        raise FileFormatError(f"{side}: unreadable metadata sidecar ({exc})") from exc


def _open(path: Path, lazy: bool) -> np.ndarray:
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled / truncated), OSError, EOFError, ...
        raise FileFormatError(f"{path}: not a readable .npy file ({one_line(exc)})") from exc
    if not isinstance(data, np.ndarray):
        raise FileFormatError(f"{path}: expected one array in a .npy file")
    if data.dtype.kind not in "biuf":
        raise FileFormatError(f"{path}: unsupported data type {data.dtype}")
    return data


def _header(path: Path, data: np.ndarray, keep: str = "") -> tuple[tuple, ImageMetadata]:
    side = _read_sidecar(path)
    shape = data.shape
    if side is not None:
        if len(shape) != side.ndim:
            raise FileFormatError(
                f"{path}: array has shape {shape} but its sidecar says axes {side.axes!r}"
            )
        try:
            side.check_array(data, str(path))
        except InputError as exc:
            raise FileFormatError(f"{path}: sidecar does not match the array ({exc})") from exc
        index, axes = reduce_axes(side.axes, shape, path, keep)  # written in canonical order
        return index, side if axes == side.axes else side.with_axes(axes)
    if len(shape) < 2:
        raise FileFormatError(f"{path}: array of shape {shape} is not a 2D or 3D image")
    # no sidecar: the last two axes are (y, x); before them at most one z axis, and any
    # leading singleton axes are dropped
    letters = "?" * (len(shape) - 3) + ("Z" if len(shape) >= 3 else "") + "YX"
    index, axes = reduce_axes(letters, shape, path, keep)
    return index, ImageMetadata(axes)


def read_npy_metadata(path: Path, keep: str = "") -> tuple[str, tuple, np.dtype, ImageMetadata]:
    """(kind, shape, dtype, metadata) of a ``.npy`` file (memory-mapped, nothing loaded)."""
    data = _open(path, lazy=True)
    index, meta = _header(path, data, keep)
    shape = tuple(n for n, i in zip(data.shape, index, strict=True) if isinstance(i, slice))
    return "NumPy .npy", shape, data.dtype, meta


def read_npy(path: Path, lazy: bool = False, keep: str = "") -> tuple[Any, ImageMetadata]:
    """Read a ``.npy`` file (memory-mapped when ``lazy``) and its sidecar metadata."""
    data = _open(path, lazy)
    index, meta = _header(path, data, keep)
    return adapt(data, index, lazy), meta
