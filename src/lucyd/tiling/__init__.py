"""Reusable tiling engine: overlapping tiles, linear-ramp blending, out-of-core output.

See :func:`tiled_apply` (apply a function tile by tile), :func:`plan_tiles` and
:func:`tile_shape_for_budget`.
"""

from lucyd.tiling.engine import BLENDS, Tile, plan_tiles, tile_shape_for_budget, tiled_apply

__all__ = ["BLENDS", "Tile", "plan_tiles", "tile_shape_for_budget", "tiled_apply"]
