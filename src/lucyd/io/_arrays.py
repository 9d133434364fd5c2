"""Axis reduction (drop singleton T/C, map to "YX"/"ZYX", or keep T/C for hyperstacks and put
them in lucyd's "TCZYX" order) and the lazy view readers return."""

from __future__ import annotations

import math
import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucyd.errors import FileFormatError, LucydError

#: axis letters that stand for a stack of planes when no Z axis is named
#: (tifffile: I = image sequence, Q = unknown; ImageJ stacks without hyperstack info)
_PLANE_STACK = "IQ"


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception on one line (for error messages)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def output_dtype(dtype: Any) -> np.dtype:
    """The dtype a reader returns for stored ``dtype``: floats become float32, the rest stay."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return dtype


def reduce_axes(axes: str, shape: Sequence[int], path: Any, keep: str = "") -> tuple[tuple, str]:
    """Map a file's axes onto lucyd's "YX" / "ZYX" (or, with ``keep``, "TCZYX" subsets).

    Parameters
    ----------
    axes : str
        One letter per stored dimension (tifffile style: T, C, Z, Y, X, S, I, Q, ...).
    shape : sequence of int
        Stored shape.
    path : path-like
        File name for error messages.
    keep : str
        Non-spatial axes that may be longer than 1 and are kept ("TC" for hyperstacks; ""
        reads one volume). Kept axes of length 1 are dropped all the same.

    Returns
    -------
    index : tuple
        Index to apply to the stored array: ``0`` for each dropped singleton axis, ``slice(None)``
        for each kept one.
    axes : str
        The kept axes in the file's order: "YX" or "ZYX", with ``keep``'s letters in front or
        between (e.g. ImageJ's "TZCYX"); :func:`canonical_order` gives lucyd's order.

    Raises
    ------
    FileFormatError
        A non-spatial axis longer than 1 (channels, time points, RGB samples) not in ``keep``,
        no Y/X plane, or spatial axes in an order other than (z, y, x).
    """
    axes = axes.upper()
    keep = keep.upper()
    if len(axes) != len(shape):
        raise FileFormatError(f"{path}: axes {axes!r} do not match the data shape {tuple(shape)}")
    index: list = []
    kept: list[str] = []
    for ax, n in zip(axes, shape, strict=True):
        if ax in "ZYX" or n != 1:  # a named z axis is kept even with one plane
            index.append(slice(None))
            kept.append(ax)
        else:
            index.append(0)
    extra = [ax for ax in kept if ax not in "YX" + keep]
    if len(extra) == 1 and extra[0] in _PLANE_STACK and "Z" not in axes:
        kept[kept.index(extra[0])] = "Z"
        extra = ["Z"]
    described = ", ".join(f"{ax}={n}" for ax, n in zip(axes, shape, strict=True))
    if extra == ["S"] and "Z" not in axes:
        # RGB(A) samples: tifffile marks any array whose last axis has 3 or 4 entries as RGB
        # unless told otherwise, so a small (z, y, x) volume can arrive here; a real RGB image
        # cannot be told apart from it, so say both and how to fix it rather than guess
        dims = dict(zip(axes, shape, strict=True))
        raise FileFormatError(
            f"{path}: stored as an RGB image ({dims['Y']} x {dims['X']} pixels, {dims['S']} "
            "samples each); lucyd reads grey-level images. If it is a "
            f"({dims['Y']}, {dims['X']}, {dims['S']}) (z, y, x) volume, write it with "
            "photometric='minisblack' (tifffile), lucyd.io.write_image or as .npy; if it is "
            "colour, split the channels into separate files"
        )
    if any(ax != "Z" for ax in extra) or len(extra) > 1:
        if keep:
            raise FileFormatError(
                f"{path}: more axes than supported ({described}); lucyd reads images with "
                "time (T), channel (C), z, y and x axes only"
            )
        raise FileFormatError(
            f"{path}: more axes than supported ({described}) for one 2D (y, x) or 3D (z, y, x) "
            "volume; lucyd.io.read_hyperstack reads channels and time points, and lucyd "
            "deconvolve / restore / predict process each (t, c) volume"
        )
    spatial = "".join(ax for ax in kept if ax in "ZYX")
    if spatial not in ("YX", "ZYX") or kept[-2:] != ["Y", "X"] or len(set(kept)) != len(kept):
        raise FileFormatError(
            f"{path}: unsupported axis order ({described}); expected (z, y, x) or (y, x)"
        )
    return tuple(index), "".join(kept)


def canonical_order(axes: str) -> tuple[tuple[int, ...], str]:
    """Transposition that puts ``axes`` (a permutation of a "TCZYX" subset) in lucyd's order.

    Returns
    -------
    perm : tuple of int
        ``array.transpose(perm)`` has the axes ``ordered``.
    ordered : str
        The axes in "TCZYX" order.

    Examples
    --------
    >>> canonical_order("TZCYX")
    ((0, 2, 1, 3, 4), 'TCZYX')
    """
    perm = tuple(sorted(range(len(axes)), key=lambda i: "TCZYX".index(axes[i])))
    return perm, "".join(axes[i] for i in perm)


def _expand_key(key: Any, ndim: int) -> list:
    """A basic numpy index (ints, slices, one Ellipsis) as exactly ``ndim`` entries."""
    if not isinstance(key, tuple):
        key = (key,)
    for k in key:
        if k is None or not (k is Ellipsis or isinstance(k, (slice, int, np.integer))):
            raise IndexError(
                "lazy images support basic indexing only (integers, slices, ...); "
                f"got {k!r}: load the data with np.asarray(image[...]) first"
            )
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ellipsis:
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        fill = ndim - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1 :]
    if len(key) > ndim:
        raise IndexError(f"too many indices: {len(key)} for an array of {ndim} dimensions")
    return list(key) + [slice(None)] * (ndim - len(key))


class LazyImage:
    """A read-only, sliceable view of an image that is loaded only where it is indexed.

    Readers return it (``read_image(path, lazy=True)``) when the stored array needs adapting:
    singleton non-spatial axes dropped (e.g. OME-Zarr ``(1, 1, z, y, x)``) or floats other than
    float32 (converted per slice). Indexing with integers, slices and ``...`` returns numpy arrays;
    ``np.asarray(image)`` loads everything. ``dask.array.from_array(image)`` works as well.

    Parameters
    ----------
    source : array-like
        The stored array (zarr array, numpy memmap, ...), supporting basic indexing.
    index : tuple
        ``0`` for each stored axis to drop, ``slice(None)`` for each kept one.
    dtype : numpy dtype, optional
        dtype of the returned data (default: the source's).
    perm : tuple of int, optional
        Order of the kept axes as seen through the view (``kept.transpose(perm)``), e.g. an
        ImageJ hyperstack's TZCYX shown as TCZYX.
    """

    def __init__(self, source: Any, index: tuple | None = None, dtype: Any = None,
                 perm: tuple[int, ...] | None = None) -> None:
        self.source = source
        self._index = tuple(index) if index is not None else (slice(None),) * len(source.shape)
        kept = tuple(
            int(n) for n, i in zip(source.shape, self._index, strict=True) if isinstance(i, slice)
        )
        self._perm = tuple(perm) if perm is not None else tuple(range(len(kept)))
        self.shape = tuple(kept[p] for p in self._perm)
        self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(source.dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes the data would take in memory."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        user = _expand_key(key, self.ndim)
        stored = [None] * self.ndim  # the user's key in the kept axes' stored order
        for view_axis, kept_axis in enumerate(self._perm):
            stored[kept_axis] = user[view_axis]
        entries = iter(stored)
        full = tuple(next(entries) if isinstance(i, slice) else i for i in self._index)
        data = np.asarray(self.source[full])
        remaining = [k for k in range(self.ndim) if isinstance(stored[k], slice)]
        if remaining:
            position = {k: v for v, k in enumerate(self._perm)}
            order = sorted(range(len(remaining)), key=lambda j: position[remaining[j]])
            if order != list(range(len(remaining))):
                data = data.transpose(order)
        return data.astype(self.dtype, copy=False)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __repr__(self) -> str:
        source = type(self.source).__name__
        return f"LazyImage(shape={self.shape}, dtype={self.dtype}, source={source})"


def adapt(source: Any, index: tuple, lazy: bool, perm: tuple[int, ...] | None = None) -> Any:
    """Apply a reader's axis ``index``, axis order ``perm`` and float32 conversion, lazily or
    eagerly.

    Lazily, ``source`` itself is returned when nothing needs adapting (so OME-Zarr written by
    lucyd reads back as a plain ``zarr.Array``); otherwise a :class:`LazyImage`.
    """
    dtype = output_dtype(source.dtype)
    if perm is not None and tuple(perm) == tuple(range(len(perm))):
        perm = None
    if lazy:
        if (all(isinstance(i, slice) for i in index) and dtype == np.dtype(source.dtype)
                and perm is None):
            return source
        return LazyImage(source, index, dtype, perm)
    data = np.asarray(source[index])
    if perm is not None:
        data = data.transpose(perm)
    return np.ascontiguousarray(data.astype(dtype, copy=False))


#: bytes read or written through a :class:`PageReleasingArray` between two releases (a block
#: narrower than the array touches whole pages, up to several times its own size)
RELEASE_BYTES = 4 * 2**20


class PageReleasingArray:
    """A memory-mapped array (``numpy.memmap``) that keeps its pages out of the resident set.

    Every page of a file mapping that a process touches counts in its resident memory until
    the kernel needs it back, so writing (or reading) a file larger than a memory budget through
    a memmap makes the process *look* (and be accounted, e.g. by cgroups and schedulers) as
    large as the file. This wrapper passes slice reads (as copies) and slice assignments to the
    memmap and, every :data:`RELEASE_BYTES`, tells the kernel it may drop the mapped pages
    (``madvise(MADV_DONTNEED)``; for a shared file mapping the data stays in the file and the
    page cache, nothing is lost).
    """

    def __init__(self, mapped: np.memmap, release_bytes: int = RELEASE_BYTES):
        self._mapped = mapped
        self._release_bytes = int(release_bytes)
        self._since = 0

    shape = property(lambda self: self._mapped.shape)
    dtype = property(lambda self: self._mapped.dtype)
    ndim = property(lambda self: self._mapped.ndim)
    size = property(lambda self: self._mapped.size)

    def __len__(self) -> int:
        return len(self._mapped)

    def _count(self, nbytes: int) -> None:
        self._since += int(nbytes)
        if self._since >= self._release_bytes:
            self.release()

    def release(self) -> None:
        """Drop the mapped pages from the resident set now."""
        self._since = 0
        handle = getattr(self._mapped, "_mmap", None)
        if handle is not None and hasattr(handle, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            handle.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, key):
        block = np.array(self._mapped[key])
        self._count(block.nbytes)
        return block

    def __setitem__(self, key, value) -> None:
        self._mapped[key] = value
        self._count(np.asarray(value).nbytes if np.ndim(value) else self._mapped[key].nbytes)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._mapped, dtype=dtype)

    def flush(self) -> None:
        self._mapped.flush()


class GuardedReads:
    """A lazy array whose reads turn a damaged file's decoding errors into FileFormatError.

    A lazy reader (zarr, tifffile's zarr store) decodes chunks only when they are indexed, so a
    corrupted chunk fails in the middle of a job with whatever its codec raises
    (``RuntimeError: Zstd decompression error``, found by fuzzing). Indexing goes through
    :meth:`__getitem__`, which names the file instead; every other attribute (``shape``,
    ``dtype``, ``chunks``, ...) is the wrapped array's. ``wrapped`` is the array itself.
    """

    def __init__(self, wrapped: Any, path: Any, description: str):
        self.wrapped = wrapped
        self._path = path
        self._description = description

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("wrapped", "_path", "_description"):
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __len__(self) -> int:
        return len(self.wrapped)

    def __getitem__(self, key):
        try:
            return self.wrapped[key]
        except (LucydError, IndexError, TypeError, MemoryError):
            raise  # lucyd's own errors and a wrong index are not the file's fault
        except Exception as exc:  # noqa: BLE001 - codecs fail in many ways
            detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise FileFormatError(
                f"{self._path}: damaged {self._description} data ({detail})"
            ) from None

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[...], dtype=dtype)


def streaming_blocks(shape, max_voxels: int, chunks=None):
    """Slices that cover ``shape`` in raster order, each at most ``max_voxels`` (but at least
    one chunk, or one row), made of whole ``chunks`` when given (so that a compressed store
    decodes each chunk once: slabs thinner than its chunks would decode every chunk again for
    each slab)."""
    shape = tuple(int(n) for n in shape)
    unit = [1] * len(shape) if chunks is None else [max(1, min(int(c), n)) for c, n in
                                                     zip(chunks, shape, strict=True)]
    if chunks is None:
        unit[-1] = shape[-1]
    block = list(unit)
    # grow from the last axis: whole rows, then whole planes, then more planes
    for d in reversed(range(len(shape))):
        per_unit = math.prod(block) // block[d]
        fit = max(unit[d], max_voxels // max(1, per_unit) // unit[d] * unit[d])
        block[d] = min(shape[d], fit)
        if block[d] < shape[d]:
            break
    for index in np.ndindex(*[-(-n // b) for n, b in zip(shape, block, strict=True)]):
        yield tuple(slice(i * b, min(n, (i + 1) * b)) for i, b, n in
                    zip(index, block, shape, strict=True))
