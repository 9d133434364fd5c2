"""lucyd.tiling (being written)."""
