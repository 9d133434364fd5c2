"""Planner → executor → writer: tiles as picklable tasks, crop-and-stitch, tile-level resume.

Design
------
* **Planner** (:func:`plan_partition`): the volume is cut into *disjoint* kept regions (each
  voxel belongs to exactly one tile), aligned to a size multiple (a network's pooling
  factor) and, where the tile is large enough, to the output's Zarr chunks. Each tile
  reads its kept region plus a ``halo`` of context inside the volume. A :class:`TilePlan`
  holds only shapes and slices, so it pickles.
* **Task**: any picklable callable ``task(block, tile)`` returning an array of the block's
  shape, or ``(C, *block.shape)`` for C output channels. A task is a description (e.g. a
  PSF and iteration parameters, or a path to model weights), never a closure over a live
  torch module, so it runs in another process or on another machine.
* **Executor** (:mod:`lucyd.tiling.executors`): runs ``task(block, tile)`` for many tiles,
  serially, in local processes, or on a dask.distributed cluster, and yields results as
  they finish, in any order.
* **Writer** (:func:`run_tiles`): crops each result to its kept region and writes it into
  the output (numpy, memmap, zarr). Because kept regions are disjoint, the order does not
  matter and every voxel is written exactly once: with a halo at least the receptive
  radius of ``task`` (crop-and-stitch, Li et al., Nat. Methods 19, 1427–1437, 2022) the
  result equals whole-volume processing, and it is bit-identical whatever the executor.
* **Resume**: when the output is a store from :func:`open_resumable_zarr` (tied to a job:
  input and parameters), the finished tiles are recorded in its attributes
  (``attrs["lucyd_tiles"]``: plan/task fingerprint and the finished tile numbers) after
  each tile's data is written. A rerun on the same store recomputes only the unfinished
  tiles (:func:`open_resumable_zarr` keeps the partial store of a crashed run).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from lucyd.errors import InputError
from lucyd.io.api import _resolve_metadata
from lucyd.io.atomic import commit
from lucyd.io.omezarr import create_omezarr
from lucyd.progress import JobProgress
from lucyd.tiling.engine import Tile, _as_tuple
from lucyd.tiling.executors import get_executor

#: zarr attribute under which finished tiles are recorded
RECORD_KEY = "lucyd_tiles"
#: zarr attribute naming the job of a resumable store (see open_resumable_zarr)
JOB_KEY = "lucyd_job"


@dataclass(frozen=True)
class TilePlan:
    """Disjoint tiles covering a volume (see :func:`plan_partition`).

    Attributes
    ----------
    shape : tuple of int
        Volume shape.
    tiles : tuple of Tile
        Tiles in raster order; their ``keep`` regions partition the volume.
    halo : tuple of int
        Context read around each kept region (inside the volume).
    """

    shape: tuple[int, ...]
    tiles: tuple[Tile, ...]
    halo: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def fingerprint(self) -> str:
        """A short hash of the geometry (shape, halo, kept regions)."""
        desc = [self.shape, self.halo, [[(s.start, s.stop) for s in t.keep] for t in self.tiles]]
        return hashlib.sha1(json.dumps(desc).encode()).hexdigest()[:16]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _axis_partition(n: int, keep: int, align: int) -> list[tuple[int, int]]:
    """Split [0, n) into ceil(n / keep) near-equal intervals whose starts are multiples of align."""
    count = max(1, math.ceil(n / keep))
    length = _round_up(math.ceil(n / count), align)
    starts = list(range(0, n, length))
    return [(s, min(n, s + length)) for s in starts]


def plan_partition(
    shape: Sequence[int],
    tile_shape: Sequence[int] | int,
    halo: Sequence[int] | int = 0,
    *,
    multiple: int = 1,
    chunks: Sequence[int] | None = None,
) -> TilePlan:
    """Plan disjoint tiles with a halo of context (crop-and-stitch).

    Parameters
    ----------
    shape : sequence of int
        Volume shape.
    tile_shape : int or sequence of int
        Largest block read per tile (kept region plus halo on both sides).
    halo : int or sequence of int
        Context read on every inner face and discarded; rounded up to ``multiple``.
    multiple : int
        Kept regions and halos start on multiples of this (a network's size multiple), so
        every tile sees the same pooling grid as the whole volume.
    chunks : sequence of int, optional
        Output chunk shape: kept regions are made multiples of the chunks on every axis
        where that does not add a tile on the axis (distinct tiles then write distinct
        chunks; elsewhere a chunk shared by two tiles is written twice, by the one writer).

    Returns
    -------
    TilePlan

    Raises
    ------
    InputError
        When ``tile_shape`` leaves no room for a kept region beside the halo.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    tile_shape = _as_tuple(tile_shape, ndim, "tile_shape", 1)
    multiple = int(multiple)
    if multiple < 1:
        raise InputError(f"multiple: must be >= 1, got {multiple}")
    halo = tuple(_round_up(h, multiple) for h in _as_tuple(halo, ndim, "halo", 0))
    chunks = None if chunks is None else _as_tuple(chunks, ndim, "chunks", 1)
    per_axis = []
    for d, (n, t, h) in enumerate(zip(shape, tile_shape, halo, strict=True)):
        if t >= n:
            per_axis.append([(0, n)])
            continue
        keep = t - 2 * h
        if keep < multiple:
            raise InputError(
                f"tile_shape: {t} voxels on axis {d} leave no room beside a halo of {h} "
                f"(need at least {2 * h + multiple})"
            )
        keep = max(multiple, (keep // multiple) * multiple)
        align = multiple
        if chunks is not None:
            # align to the chunks where that costs no extra tile on this axis: rounding a
            # kept length down to a chunk multiple could otherwise lose almost half of it
            both = math.lcm(multiple, chunks[d])
            if both <= keep and math.ceil(n / (keep // both * both)) == math.ceil(n / keep):
                align, keep = both, keep // both * both
        per_axis.append(_axis_partition(n, keep, align))
    tiles = []
    for index in np.ndindex(*[len(a) for a in per_axis]):
        read, keep, crop = [], [], []
        for d, i in enumerate(index):
            a, b = per_axis[d][i]
            r0, r1 = max(0, a - halo[d]), min(shape[d], b + halo[d])
            read.append(slice(r0, r1))
            keep.append(slice(a, b))
            crop.append(slice(a - r0, b - r0))
        tiles.append(Tile(tuple(int(i) for i in index), tuple(read), tuple(keep), tuple(crop)))
    return TilePlan(shape, tuple(tiles), halo)


# ---------------------------------------------------------------------------- resume record
def _record_id(plan: TilePlan, task) -> str:
    fp = getattr(task, "fingerprint", None)
    extra = fp() if callable(fp) else type(task).__qualname__
    return f"{plan.fingerprint()}:{extra}"


def finished_tiles(out, plan: TilePlan, task) -> set[int]:
    """Tile numbers recorded as finished in ``out`` (a zarr array) for this plan and task."""
    attrs = getattr(out, "attrs", None)
    if attrs is None:
        return set()
    rec = attrs.get(RECORD_KEY)
    if not isinstance(rec, dict) or rec.get("id") != _record_id(plan, task):
        return set()
    return {int(i) for i in rec.get("done", [])}


def _write_record(out, plan: TilePlan, task, done: set[int]) -> None:
    attrs = getattr(out, "attrs", None)
    if attrs is not None:
        attrs[RECORD_KEY] = {
            "id": _record_id(plan, task),
            "total": len(plan),
            "done": sorted(done),
        }


# ---------------------------------------------------------------------------- writer
def _read_block(source, tile: Tile, dtype) -> np.ndarray:
    return np.asarray(source[tile.read], dtype=dtype)


def run_tiles(
    plan: TilePlan,
    task: Callable[[np.ndarray, Tile], np.ndarray],
    source,
    out=None,
    *,
    executor=None,
    channels: int | None = None,
    resume: bool | None = None,
    progress: bool = True,
    desc: str = "tiles",
    dtype=np.float32,
    max_memory: float | None = None,
) -> object:
    """Run ``task`` on every tile of ``plan`` and write the kept regions into ``out``.

    Parameters
    ----------
    plan : TilePlan
        From :func:`plan_partition`.
    task : callable
        ``task(block, tile)`` with ``block = source[tile.read]`` (float32); returns the
        block's shape or ``(C, *block.shape)``. Must pickle for non-serial executors.
    source : array-like
        Sliceable volume of ``plan.shape`` (numpy, memmap, zarr, lazy TIFF); read in the
        calling process, block by block.
    out : array-like, optional
        Destination of shape ``plan.shape`` (or ``(C, *plan.shape)``) accepting slice
        assignment. A store from :func:`open_resumable_zarr` also records finished tiles. Default: a new
        float32 numpy array (``channels`` sets a leading channel axis).
    executor : None, str or Executor
        ``None``/``"serial"``, ``"processes:N"``, ``"local:N"`` (dask LocalCluster),
        ``"tcp://host:port"`` (running dask scheduler) or an object from
        :func:`lucyd.tiling.executors.get_executor`.
    channels : int, optional
        Number of output channels when ``out`` is not given (None: no channel axis).
    resume : bool, optional
        Skip tiles that ``out`` records as finished for the same plan and task. The record
        does not identify the input, so the default (None) resumes only into a store from
        :func:`open_resumable_zarr`, which is tied to its job.
    progress : bool
        Whole-job progress (:class:`lucyd.progress.JobProgress`): tiles done / total, voxels
        per second, time left; on every executor (results arrive in the calling process).
    desc : str
        Progress-bar label.
    dtype : numpy dtype
        dtype of the blocks given to ``task``.
    max_memory : float, optional
        Per-tile memory budget (bytes): the memory limit of workers that the executor starts
        (:func:`lucyd.tiling.executors.worker_memory_limit`).

    Returns
    -------
    array-like
        ``out``.
    """
    if tuple(int(n) for n in source.shape) != plan.shape:
        raise InputError(f"source: shape {tuple(source.shape)} differs from the plan's {plan.shape}")
    if out is None:
        lead = () if channels is None else (int(channels),)
        out = np.zeros(lead + plan.shape, dtype=np.float32)
    out_shape = tuple(int(n) for n in out.shape)
    if out_shape[-len(plan.shape) :] != plan.shape or len(out_shape) > len(plan.shape) + 1:
        raise InputError(f"out: shape {out_shape} does not fit the plan's {plan.shape}")
    lead = out_shape[: len(out_shape) - len(plan.shape)]
    out_dtype = np.dtype(getattr(out, "dtype", np.float32))
    resumable = JOB_KEY in (getattr(out, "attrs", None) or {})
    if resume is None:
        resume = resumable
    done = finished_tiles(out, plan, task) if resume else set()
    todo = [i for i in range(len(plan)) if i not in done]
    ex = get_executor(executor, max_memory=max_memory)
    bar = JobProgress(len(plan), done=len(done), desc=desc, disable=None if progress else True)
    jobs = ((i, plan.tiles[i], _read_block(source, plan.tiles[i], dtype)) for i in todo)
    try:
        for i, result in ex.imap_unordered(task, jobs):
            tile = plan.tiles[i]
            result = np.asarray(result)
            block_shape = tuple(s.stop - s.start for s in tile.read)
            if result.shape[-len(block_shape) :] != block_shape or (
                result.ndim - len(block_shape)
            ) != len(lead):
                raise InputError(
                    f"run_tiles: task returned shape {result.shape} for a block of shape "
                    f"{block_shape} (output {out_shape})"
                )
            kept = result[(slice(None),) * len(lead) + tile.crop]
            out[(slice(None),) * len(lead) + tile.keep] = kept.astype(out_dtype, copy=False)
            done.add(i)
            if resumable:
                _write_record(out, plan, task, done)
            bar.advance(math.prod(s.stop - s.start for s in tile.keep))
    finally:
        bar.close()
        ex.close()
    return out


class StackedOutputs:
    """Several outputs of one shape seen as one ``(C, *shape)`` destination for :func:`run_tiles`.

    ``out[(slice(None), *region)] = values`` writes ``values[c]`` into ``outputs[c]`` (an entry
    None discards channel ``c``): a task with several output channels fills several files
    (e.g. a restoration and its uncertainty maps) in one pass.
    """

    def __init__(self, outputs, shape):
        self.outputs = list(outputs)
        self.shape = (len(self.outputs), *(int(n) for n in shape))
        self.dtype = np.dtype(np.float32)

    def __setitem__(self, index, values) -> None:
        if index[0] != slice(None):
            raise IndexError("StackedOutputs: write all channels at once")
        for out, channel in zip(self.outputs, values, strict=True):
            if out is not None:
                out[tuple(index[1:])] = channel


# ---------------------------------------------------------------------------- resumable store
def partial_path(path: str | Path) -> Path:
    """The fixed name of the in-progress store of ``path`` (kept after a crash to resume)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


@contextmanager
def open_resumable_zarr(
    path: str | Path, shape, dtype=np.float32, metadata=None, chunks=None, job: str | None = None
) -> Iterator[object]:
    """Yield an OME-Zarr level-0 array to fill tile by tile; resume a crashed run's store.

    The array lives in ``.<name>.partial`` beside ``path``. If that store exists with the same
    shape, dtype and ``job`` (a string naming the input and parameters: a previous run of the
    same job crashed), it is reopened with its finished-tile record; otherwise it is created
    afresh. On success it is renamed onto ``path`` (atomically replacing
    it); on an exception it is kept, so the next run recomputes only unfinished tiles.
    """
    path = Path(path)
    tmp = partial_path(path)
    shape = tuple(int(n) for n in shape)
    array = None
    if tmp.exists():
        try:
            array = zarr.open_group(store=str(tmp), mode="r+")["0"]
            if (
                tuple(array.shape) != shape
                or np.dtype(array.dtype) != np.dtype(dtype)
                or JOB_KEY not in array.attrs
                or array.attrs[JOB_KEY] != (job or "")
            ):
                array = None
        except Exception:  # an unreadable leftover: start again
            array = None
    if array is None:
        meta = _resolve_metadata(shape, metadata, "shape")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        array = create_omezarr(tmp, shape, dtype, meta, chunks)
        array.attrs[JOB_KEY] = job or ""
    yield array
    for key in (RECORD_KEY, JOB_KEY):
        if key in array.attrs:
            del array.attrs[key]
    commit(tmp, path)
