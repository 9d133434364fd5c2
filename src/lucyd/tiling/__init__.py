"""Tiling engine for volumes larger than memory, on one or many machines.

* :func:`plan_partition` → :func:`run_tiles` (planner → executor → writer): disjoint
  crop-and-stitch tiles, picklable ``task(block, tile)`` descriptions, serial / local
  process / dask.distributed executors (:mod:`lucyd.tiling.executors`), tile-level resume
  recorded in a zarr output (:func:`open_resumable_zarr`).
* :func:`tiled_apply`: overlapping tiles with linear-ramp blending, in one process
  (:func:`plan_tiles`, :func:`tile_shape_for_budget`).
"""

from lucyd.tiling.engine import BLENDS, Tile, plan_tiles, tile_shape_for_budget, tiled_apply
from lucyd.tiling.executors import DaskExecutor, ProcessExecutor, SerialExecutor, get_executor
from lucyd.tiling.runner import (
    StackedOutputs,
    TilePlan,
    finished_tiles,
    open_resumable_zarr,
    partial_path,
    plan_partition,
    run_tiles,
)

__all__ = [
    "BLENDS",
    "DaskExecutor",
    "ProcessExecutor",
    "SerialExecutor",
    "StackedOutputs",
    "Tile",
    "TilePlan",
    "finished_tiles",
    "get_executor",
    "open_resumable_zarr",
    "partial_path",
    "plan_partition",
    "plan_tiles",
    "run_tiles",
    "tile_shape_for_budget",
    "tiled_apply",
]
