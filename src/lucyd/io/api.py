"""Public image I/O: :func:`read_image`, :func:`write_image`, :func:`open_writer` and friends.

Formats by extension (case-insensitive):

=====================  ==========================================================
``.tif``, ``.tiff``     ImageJ hyperstack (reads any TIFF: ImageJ, OME or plain)
``.ome.tif(f)``         OME-TIFF
``.zarr``, ``.ome.zarr`` OME-Zarr, NGFF 0.5 on zarr v3 (reads 0.4 / zarr v2 too)
``.npy``                NumPy array + ``<name>.npy.json`` sidecar
``.czi``, ``.nd2``,     read only, through bioio and its format plugins (the
``.lif``                optional extra ``lucyd[formats]``)
=====================  ==========================================================

:func:`read_image` reads one 2D or 3D volume (files with channels or time points are refused);
:func:`read_hyperstack` reads time series and channels as well, axes in "TCZYX" order.
:func:`write_image` and :func:`open_writer` write either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.errors import FileFormatError, InputError, LucydError
from lucyd.io._arrays import GuardedReads, PageReleasingArray, streaming_blocks
from lucyd.io.atomic import atomic_path
from lucyd.io.metadata import AXES_BY_NDIM, ImageMetadata, as_hyperstack
from lucyd.io.npy import read_npy, read_npy_metadata, write_sidecar
from lucyd.io.omezarr import create_omezarr, read_omezarr, read_omezarr_metadata, write_omezarr
from lucyd.io.tiff import read_tiff, read_tiff_metadata
from lucyd.io.tiff_write import create_tiff_memmap, write_tiff
from lucyd.io.vendor import VENDOR_SUFFIXES, read_vendor, read_vendor_metadata

#: format names returned by :func:`format_from_path`
FORMATS = ("tiff", "ome-tiff", "zarr", "npy")

_SUFFIXES = (
    (".ome.tiff", "ome-tiff"),
    (".ome.tif", "ome-tiff"),
    (".tiff", "tiff"),
    (".tif", "tiff"),
    (".ome.zarr", "zarr"),
    (".zarr", "zarr"),
    (".npy", "npy"),
)
_SUPPORTED = ".tif, .tiff, .ome.tif, .ome.tiff, .zarr, .ome.zarr, .npy"


def format_from_path(path: str | Path) -> str:
    """The format lucyd writes for ``path``'s extension: "tiff" (ImageJ), "ome-tiff", "zarr" or
    "npy".

    Raises
    ------
    FileFormatError
        Unsupported extension.

    Examples
    --------
    >>> format_from_path("cells.OME.TIF")
    'ome-tiff'
    """
    name = Path(path).name.lower().rstrip("/")
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise FileFormatError(
        f"{path}: unsupported file extension {Path(path).suffix or '(none)'!r}; "
        f"use one of {_SUPPORTED}"
    )


def _format_for_reading(path: Path) -> str:
    """Format of an existing ``path``: folders are zarr; files by extension, then by content."""
    if not path.exists():
        raise FileFormatError(f"{path}: no such file or folder")
    if path.is_dir():
        return "zarr"
    if path.suffix.lower() in VENDOR_SUFFIXES:
        return "vendor"
    try:
        return format_from_path(path)
    except FileFormatError:
        with open(path, "rb") as fh:  # unknown extension: sniff TIFF / npy magic bytes
            head = fh.read(6)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return "tiff"
        if head == b"\x93NUMPY":
            return "npy"
        raise


_FORMAT_NAMES = {"tiff": "TIFF", "ome-tiff": "OME-TIFF", "zarr": "Zarr", "npy": "NumPy .npy",
                 "vendor": "microscope vendor"}


@contextmanager
def _unreadable_as_format_error(path: Path, fmt: str) -> Iterator[None]:
    """Any failure of a third-party reader on a damaged file becomes one FileFormatError line.

    tifffile, zarr, numcodecs and numpy raise many kinds of exception on truncated or corrupted
    files (ValueError, KeyError, struct.error, IndexError, UnicodeDecodeError, ...); found by
    fuzzing (tests/test_fuzz_readers.py). lucyd's own errors pass through unchanged.
    """
    try:
        yield
    except LucydError:
        raise
    except MemoryError:
        raise FileFormatError(
            f"{path}: damaged {_FORMAT_NAMES[fmt]} file (its header asks for more memory than "
            "there is)"
        ) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise FileFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - third-party readers fail in many ways
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise FileFormatError(
            f"{path}: not a readable {_FORMAT_NAMES[fmt]} file (damaged or truncated: {detail})"
        ) from None


def _reader(fmt: str):
    return {"tiff": read_tiff, "ome-tiff": read_tiff, "zarr": read_omezarr, "npy": read_npy,
            "vendor": read_vendor}[fmt]


def _read(path: str | Path, lazy: bool, keep: str) -> tuple[Any, ImageMetadata]:
    path = Path(path)
    fmt = _format_for_reading(path)
    with _unreadable_as_format_error(path, fmt):
        data, meta = _reader(fmt)(path, lazy=lazy, keep=keep)
    if lazy and not isinstance(data, np.ndarray):  # memory maps cannot fail to decode
        data = GuardedReads(data, path, _FORMAT_NAMES[fmt])
    return data, (as_hyperstack(meta) if keep else meta)


def read_image(path: str | Path, *, lazy: bool = False) -> tuple[Any, ImageMetadata]:
    """Read a 2D or 3D image and its axes and voxel size.

    Parameters
    ----------
    path : str or Path
        ImageJ / OME / plain TIFF, OME-Zarr folder (or bare zarr array), or ``.npy`` file.
    lazy : bool
        If True, return a sliceable array-like (``.shape``, ``.dtype``, numpy basic indexing)
        that loads data only where it is indexed: a ``zarr.Array`` for OME-Zarr and for TIFF
        (via tifffile's zarr store), a memory map for ``.npy``, or a
        :class:`~lucyd.io._arrays.LazyImage` view when singleton axes are dropped or floats
        converted; all but memory maps are wrapped in :class:`~lucyd.io._arrays.GuardedReads`
        (``.wrapped`` is the array) so that a damaged chunk raises FileFormatError naming
        ``path``. ``np.asarray(lazy[...])`` loads it.

    Returns
    -------
    array : numpy.ndarray or array-like
        Shape (y, x) or (z, y, x). Floating-point data is float32; integer data keeps its
        stored dtype (no rescaling).
    metadata : ImageMetadata
        ``axes`` ("YX"/"ZYX") and ``voxel_size`` in micrometres (None when the file has none).

    Raises
    ------
    FileFormatError
        Missing, unreadable or truncated file; a folder that is not a zarr store; an unsupported
        extension; channels or time points (more axes than supported: use
        :func:`read_hyperstack`).

    Examples
    --------
    >>> image, meta = read_image("nuclei.tif")  # doctest: +SKIP
    >>> meta.axes, meta.voxel_size  # doctest: +SKIP
    ('ZYX', (0.3, 0.13, 0.13))
    """
    return _read(path, lazy, keep="")


def read_hyperstack(path: str | Path, *, lazy: bool = False) -> tuple[Any, ImageMetadata]:
    """Read an image with its time (T) and channel (C) axes, in lucyd's "TCZYX" order.

    Like :func:`read_image`, but a time series or several channels are kept: OME-TIFF
    (any dimension order), ImageJ hyperstacks (stored TZCYX, returned TCZYX), OME-Zarr (NGFF
    0.4/0.5 ``t``/``c`` axes), ``.npy`` with a sidecar, and through bioio (``lucyd[formats]``)
    CZI, ND2 and LIF. Axes of length 1 are dropped, so a single volume reads exactly as with
    :func:`read_image` ("YX" / "ZYX").

    Parameters
    ----------
    path : str or Path
        Image file or OME-Zarr folder.
    lazy : bool
        Return a sliceable array-like that loads only what is indexed (see :func:`read_image`);
        ``image[t, c]`` is one volume.

    Returns
    -------
    array : numpy.ndarray or array-like
        Axes ``metadata.axes``: an ordered subset of "TCZYX" ending in "YX".
    metadata : ImageMetadata
        ``axes``, ``voxel_size`` (µm, spatial axes), ``channel_names``, ``wavelengths``
        (emission, µm), ``time_interval`` (s); for napari: ``metadata.channel_axis`` and
        ``metadata.layer_scale()``.

    Raises
    ------
    FileFormatError
        As :func:`read_image`; other non-spatial axes (RGB samples, angles, phases, ...).

    Examples
    --------
    >>> image, meta = read_hyperstack("cells.ome.zarr")  # doctest: +SKIP
    >>> meta.axes, image.shape, meta.channel_names  # doctest: +SKIP
    ('TCZYX', (5, 2, 16, 256, 256), ('DAPI', 'GFP'))
    """
    return _read(path, lazy, keep="TC")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`image_info` reports about a file without loading its data."""

    path: Path
    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    metadata: ImageMetadata


def image_info(path: str | Path, *, hyperstack: bool = False) -> ImageInfo:
    """Format ("ImageJ TIFF", "OME-TIFF", "TIFF", "OME-Zarr", "Zarr array", "NumPy .npy", or a
    vendor format), shape, dtype as returned by :func:`read_image` (with ``hyperstack=True``:
    by :func:`read_hyperstack`), and metadata, from the header only."""
    path = Path(path)
    fmt = _format_for_reading(path)
    reader = {
        "tiff": read_tiff_metadata,
        "ome-tiff": read_tiff_metadata,
        "zarr": read_omezarr_metadata,
        "npy": read_npy_metadata,
        "vendor": read_vendor_metadata,
    }[fmt]
    with _unreadable_as_format_error(path, fmt):
        kind, shape, dtype, meta = reader(path, keep="TC" if hyperstack else "")
    out_dtype = np.dtype(np.float32) if dtype.kind == "f" else dtype
    meta = as_hyperstack(meta) if hyperstack else meta
    return ImageInfo(path, kind, tuple(int(n) for n in shape), out_dtype, meta)


def read_metadata(path: str | Path) -> ImageMetadata:
    """Axes and voxel size of an image file, reading only its header.

    Raises
    ------
    FileFormatError
        As :func:`read_image`.
    """
    return image_info(path).metadata


def _resolve_metadata(shape: tuple[int, ...], metadata: ImageMetadata | None, name: str):
    if metadata is None and len(shape) not in AXES_BY_NDIM:
        raise InputError(
            f"{name} must be 2D (y, x) or 3D (z, y, x), got shape {tuple(shape)} (give "
            "ImageMetadata with axes such as 'TCZYX' for time points and channels)"
        )
    if any(int(n) < 1 for n in shape):
        raise InputError(f"{name} has an empty axis: shape {tuple(shape)}")
    if metadata is None:
        return ImageMetadata(AXES_BY_NDIM[len(shape)])
    if not isinstance(metadata, ImageMetadata):
        raise InputError(f"metadata must be an ImageMetadata, got {type(metadata).__name__}")
    if metadata.ndim != len(shape):
        raise InputError(
            f"{name} has shape {tuple(shape)} but the metadata says axes {metadata.axes!r}"
        )
    metadata.check_array(_Shape(shape), name)
    return metadata


class _Shape:
    """Something with a ``shape`` (for :meth:`ImageMetadata.check_array` without an array)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)


def write_image(
    path: str | Path,
    array: Any,
    metadata: ImageMetadata | None = None,
    *,
    chunks: tuple[int, ...] | None = None,
) -> Path:
    """Write an image with its axes, voxel size, channels and time interval, atomically.

    The file is written under a temporary name beside ``path`` and renamed onto ``path`` only
    when complete, so an interrupted write never leaves a partial file under ``path``.

    Parameters
    ----------
    path : str or Path
        Output; the extension selects the format: ``.tif``/``.tiff`` ImageJ hyperstack,
        ``.ome.tif``/``.ome.tiff`` OME-TIFF, ``.zarr``/``.ome.zarr`` OME-Zarr (NGFF 0.5, zarr v3),
        ``.npy`` NumPy plus ``<name>.npy.json`` sidecar. An existing file is replaced.
    array : array-like
        (y, x) or (z, y, x) data, or with time and channel axes in front as ``metadata.axes``
        says (e.g. "TCZYX"); integers or floats. Values are never rescaled. ImageJ TIFF
        holds uint8, uint16 and float32 only: other floats are stored as float32; other
        integers as float32 when exact (|v| <= 2**24), otherwise an error.
    metadata : ImageMetadata, optional
        Axes, voxel size (µm), channel names, emission wavelengths, time interval; default: axes
        from the dimensionality, no voxel size. Each format stores what it can hold: OME-TIFF
        and OME-Zarr all of it, ImageJ TIFF all (wavelengths in a ``lucyd`` image property),
        ``.npy`` all in its sidecar.
    chunks : tuple of int, optional
        Chunk shape for zarr output (default: about 8 MB chunks); ignored for other formats.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileFormatError
        Unsupported extension.
    InputError
        Wrong dimensionality, metadata that does not match, or a dtype the format cannot hold.
    """
    path = Path(path)
    fmt = format_from_path(path)
    data = np.asarray(array)
    if data.dtype.kind not in "biuf":
        raise InputError(f"cannot write {data.dtype} data to {path} (integers/floats only)")
    meta = _resolve_metadata(data.shape, metadata, "image")
    with atomic_path(path) as tmp:
        if fmt == "tiff":
            write_tiff(tmp, data, meta, "imagej", path)
        elif fmt == "ome-tiff":
            write_tiff(tmp, data, meta, "ome", path)
        elif fmt == "zarr":
            write_omezarr(tmp, data, meta, chunks)
        else:
            np.save(tmp, data, allow_pickle=False)
    if fmt == "npy":
        write_sidecar(path, meta)
    return path


@contextmanager
def open_writer(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: Any = np.float32,
    metadata: ImageMetadata | None = None,
    chunks: tuple[int, ...] | None = None,
) -> Iterator[Any]:
    """Create an image to be filled block by block (``out[slices] = block``), atomically.

    For outputs larger than memory (tiled deconvolution / prediction). The yielded array is
    backed by a temporary file or folder beside ``path``; it is renamed onto ``path`` only when
    the ``with`` block ends without an exception, otherwise it is deleted and ``path`` is left
    as it was.

    * ``.zarr`` / ``.ome.zarr``: a ``zarr.Array`` (level "0" of an OME-Zarr image). Parallel
      writers are safe when each writes whole, distinct chunks: align tiles to ``chunks``.
    * ``.tif`` / ``.ome.tif``: a :class:`~lucyd.io._arrays.PageReleasingArray` over a
      ``numpy.memmap`` of the uncompressed pixel data of the TIFF (created by
      ``tifffile.memmap``); it keeps written pages out of the process's resident memory.
      ImageJ files: float dtypes are stored as float32; integer dtypes other than
      uint8/uint16 are refused.
    * ``.npy``: the same over ``np.lib.format.open_memmap``, plus the JSON sidecar.

    Unwritten regions read as 0.

    Parameters
    ----------
    path : str or Path
        Output path; the extension selects the format as in :func:`write_image`.
    shape : tuple of int
        (y, x) or (z, y, x), or with T/C axes in front as ``metadata.axes`` says.
    dtype : numpy dtype
        Stored dtype (default float32).
    metadata : ImageMetadata, optional
        Axes and voxel size (µm).
    chunks : tuple of int, optional
        Zarr chunk shape (default about 8 MB); ignored for other formats.

    Yields
    ------
    array-like
        Writable, sliceable array of ``shape``.

    Examples
    --------
    >>> with open_writer("o.zarr", (64, 512, 512), chunks=(16, 128, 128)) as out:  # doctest: +SKIP
    ...     for sl in tiles:
    ...         out[sl] = process(image[sl])
    """
    path = Path(path)
    fmt = format_from_path(path)
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as exc:
        raise InputError(f"shape must be a tuple of integers, got {shape!r}") from exc
    meta = _resolve_metadata(shape, metadata, "shape")
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"cannot write {dtype} data to {path} (integers/floats only)")
    with atomic_path(path) as tmp:
        if fmt == "zarr":
            yield create_omezarr(tmp, shape, dtype, meta, chunks)
        else:
            if fmt == "npy":
                mapped = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            else:
                kind = "imagej" if fmt == "tiff" else "ome"
                mapped = create_tiff_memmap(tmp, shape, dtype, meta, kind, path)
            out = PageReleasingArray(mapped)
            try:
                yield out
                out.flush()
            finally:
                del out, mapped
    if fmt == "npy":
        write_sidecar(path, meta)


def require_finite(array: Any, name: str) -> dict[str, float | int]:
    """:func:`image_stats` of ``array`` (read block by block), or InputError if it holds NaN/Inf.

    For lazy inputs (zarr, memory maps) that never pass through
    :func:`lucyd.validation.as_image`: one NaN would otherwise spread through a network or a
    convolution and make the whole output NaN.
    """
    stats = image_stats(array)
    if stats["nonfinite"]:
        raise InputError(
            f"{name}: contains {stats['nonfinite']} non-finite value(s) (NaN or Inf); "
            "replace them (e.g. with the local background) first"
        )
    return stats


def image_stats(array: Any, block_bytes: int = 64 * 2**20) -> dict[str, float | int]:
    """Minimum, maximum and mean of an image, computed block by block (whole chunks of a
    chunked store).

    Works on lazy arrays (zarr, memory maps) without loading them whole. Non-finite values are
    left out of min/max/mean and counted.

    Parameters
    ----------
    array : array-like
        Numpy array or sliceable array-like with ``.shape`` and ``.dtype``.
    block_bytes : int
        Approximate size of one block in bytes.

    Returns
    -------
    dict
        ``min``, ``max``, ``mean`` (float; NaN when there is no finite value) and ``nonfinite``
        (int).
    """
    shape = tuple(array.shape)
    if not shape or 0 in shape:
        return {"min": float("nan"), "max": float("nan"), "mean": float("nan"), "nonfinite": 0}
    voxels = max(1, block_bytes // np.dtype(array.dtype).itemsize)
    lo, hi, total, count, bad = np.inf, -np.inf, 0.0, 0, 0
    # whole chunks of a chunked store (zarr): each chunk decoded once
    for region in streaming_blocks(shape, voxels, getattr(array, "chunks", None)):
        block = np.asarray(array[region])
        if block.dtype.kind == "f":
            finite = np.isfinite(block)
            n_bad = int(block.size - np.count_nonzero(finite))
            if n_bad:
                bad += n_bad
                block = block[finite]
        if block.size == 0:
            continue
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
        total += float(block.sum(dtype=np.float64))
        count += block.size
    if count == 0:
        return {"min": float("nan"), "max": float("nan"), "mean": float("nan"), "nonfinite": bad}
    return {"min": lo, "max": hi, "mean": total / count, "nonfinite": bad}
