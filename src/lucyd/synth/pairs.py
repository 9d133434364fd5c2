"""Folders of training pairs, synthetic or real: :func:`load_pairs` → :class:`ImagePair`.

Layout: ``DIR/raw/NAME.ext`` + ``DIR/gt/NAME.ext`` (same name = same pair); made by
:func:`lucyd.synth.make_dataset` or by the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, read_image
from lucyd.validation import as_image

__all__ = ["IMAGE_SUFFIXES", "ImagePair", "load_pairs"]

#: extensions recognised as images in raw/ and gt/ (longest first)
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy")


@dataclass
class ImagePair:
    """One (raw, gt) training pair loaded by :func:`load_pairs`.

    Attributes
    ----------
    name : str
        File name without its image extension (``"0000"``).
    raw, gt : ndarray, float32
        Degraded input and target, same shape.
    metadata : lucyd.io.ImageMetadata
        Axes and voxel size of the raw file.
    """

    name: str
    raw: np.ndarray
    gt: np.ndarray
    metadata: ImageMetadata


# --------------------------------------------------------------------------- loading

def _image_stem(name: str) -> str | None:
    low = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: len(name) - len(suffix)]
    return None


def _list_images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue  # hidden files, including partial files of an interrupted run
        stem = _image_stem(p.name)
        if stem is None:
            continue
        if stem in found:
            raise InputError(f"{folder}: two images named {stem!r} ({found[stem].name}, "
                             f"{p.name}); keep one per name")
        found[stem] = p
    return found


def _names(items, limit: int = 8) -> str:
    items = sorted(items)
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _read(path: Path, label: str) -> tuple[np.ndarray, ImageMetadata]:
    arr, meta = read_image(path)
    return as_image(np.asarray(arr), name=label, dtype=np.float32), meta


def load_pairs(directory: str | Path) -> list[ImagePair]:
    """Load and validate a folder of training pairs: ``DIR/raw/NAME.ext`` + ``DIR/gt/NAME.ext``.

    Images are paired by name without the extension (``.tif``, ``.tiff``, ``.ome.tif``,
    ``.npy``, ``.zarr``, ``.ome.zarr``; read with :func:`lucyd.io.read_image`), so raw and gt
    may even use different formats. Hidden files and other extensions are ignored.

    Parameters
    ----------
    directory : str or Path
        A folder made by :func:`make_dataset` or by the user (real pairs).

    Returns
    -------
    list of ImagePair
        Sorted by name; arrays float32.

    Raises
    ------
    FileFormatError
        Missing folder, raw/ or gt/; an unreadable image.
    InputError
        No pairs; unpaired names (listed); a pair with different shapes; non-finite values;
        an image that is not 2D or 3D; pairs of mixed dimensionality.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileFormatError(f"{root}: no such folder (expected a folder with raw/ and gt/)")
    for sub in ("raw", "gt"):
        if not (root / sub).is_dir():
            raise FileFormatError(f"{root}: no {sub}/ folder (training pairs live in "
                                  f"{root}/raw and {root}/gt with the same file names)")
    raw_files, gt_files = _list_images(root / "raw"), _list_images(root / "gt")
    only_raw, only_gt = set(raw_files) - set(gt_files), set(gt_files) - set(raw_files)
    if only_raw or only_gt:
        parts = []
        if only_raw:
            parts.append(f"in raw/ only: {_names(only_raw)}")
        if only_gt:
            parts.append(f"in gt/ only: {_names(only_gt)}")
        raise InputError(f"{root}: unpaired images ({'; '.join(parts)})")
    if not raw_files:
        raise InputError(f"{root}: no images in raw/ and gt/ (extensions: "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    pairs = []
    for name in sorted(raw_files):
        raw, meta = _read(raw_files[name], f"raw/{raw_files[name].name}")
        gt, _ = _read(gt_files[name], f"gt/{gt_files[name].name}")
        if raw.shape != gt.shape:
            raise InputError(f"{root}: pair {name!r} has different shapes: raw {raw.shape} vs "
                             f"gt {gt.shape}")
        if pairs and raw.ndim != pairs[0].raw.ndim:
            raise InputError(f"{root}: pair {name!r} is {raw.ndim}D but {pairs[0].name!r} is "
                             f"{pairs[0].raw.ndim}D; use one dimensionality per folder")
        pairs.append(ImagePair(name, raw, gt, meta))
    return pairs
