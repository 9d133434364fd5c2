"""Blocked (out-of-core) deconvolution on top of :mod:`lucyd.tiling`.

Each block is read with a halo of one PSF size on its faces inside the volume and
deconvolved on its own padded job with Bertero boundary weights, so that its borders
behave like unobserved data rather than wrapped-around data; the halo is discarded and
the kept parts are blended with linear ramps. The flat start value, the background and
the positivity floor are computed once for the whole image, so that every block runs
the same iteration as the whole-image job; the results then agree away from the block
borders (to ~1e-4 relative in the tests), because the influence of a block's boundary
decays over the halo.
"""

from __future__ import annotations

import math

import numpy as np

from lucyd.deconv.engine import estimate_memory, run_rl
from lucyd.errors import InputError
from lucyd.tiling import tile_shape_for_budget, tiled_apply
from lucyd.validation import check_finite


def block_geometry(
    shape, psf_shape, budget: int, *, kind: str, boundary: str, acceleration, tv, tol, overlap=None
):
    """Tile shape, overlap and halo for a memory budget (bytes).

    The memory of a tile is the job's (:func:`lucyd.deconv.estimate_memory`) plus the tile-sized
    arrays of the tiling, the input rows a block read touches and the pending blended cells;
    measured peaks (``benchmarks/bench_memory.py``) stayed within the budget on top of the
    runtime's fixed cost.
    """
    ndim = len(shape)
    halo = tuple(min(int(k), int(n)) for k, n in zip(psf_shape, shape, strict=True))
    if overlap is None:
        overlap = tuple(max(4, int(k) // 4) for k in psf_shape)
    else:
        overlap = tuple(int(v) for v in np.broadcast_to(np.asarray(overlap), (ndim,)))

    def memory_of(tile):
        job = estimate_memory(
            tile,
            psf_shape,
            boundary=boundary,
            back_projector=kind,
            acceleration=acceleration,
            tv=tv,
            tol=tol,
        )
        # block, result, weighted contribution and its normalised copy: 4 tile-sized arrays
        blocks = 16 * math.prod(tile)
        # reading a block touches whole rows of the input (memory maps, TIFF strips)
        rows = 4 * math.prod(tile[:-1]) * shape[-1]
        # contributions waiting for their last tile: an overlap-thick slab across the volume
        # along the first axis, and one along the second within the current tile row
        pending = 4 * (overlap[0] * math.prod(shape[1:]) + tile[0] * overlap[1] * math.prod(shape[2:]))
        return job + blocks + rows + pending

    tile = tile_shape_for_budget(shape, overlap, budget, 0, halo=halo, memory_of=memory_of)
    return tile, overlap, halo


def deconvolve_blocked(
    y,
    psf,
    bp,
    *,
    budget: int,
    offset: float,
    overlap,
    progress: bool,
    kind: str,
    out=None,
    iterations: int,
    boundary: str,
    stats,
    start,
    acceleration,
    tv,
    tol,
    device,
):
    """Deconvolve ``y`` (array or lazy array-like) block by block into ``out``."""
    if boundary == "circulant":
        raise InputError(
            "max_memory: blocked deconvolution needs boundary='non-circulant' or 'zero'"
        )
    shape = tuple(int(n) for n in y.shape)
    tile, ovl, halo = block_geometry(
        shape,
        psf.shape,
        budget,
        kind=kind,
        boundary=boundary,
        acceleration=acceleration,
        tv=tv,
        tol=tol,
        overlap=overlap,
    )

    def fn(block: np.ndarray) -> np.ndarray:
        check_finite(block, "image")
        if offset:
            block = block + np.float32(offset)
        result, _ = run_rl(
            block,
            psf,
            bp,
            iterations=iterations,
            boundary=boundary,
            stats=stats,
            start=start,
            acceleration=acceleration,
            tv=tv,
            tol=tol,
            device=device,
            progress=False,
        )
        return result

    return tiled_apply(
        fn,
        y,
        tile_shape=tile,
        overlap=ovl,
        halo=halo,
        out=out,
        blend="linear",
        progress=progress,
        desc="deconvolve blocks",
    )
