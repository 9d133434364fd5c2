"""Image-wide constants of a deconvolution job: background, positivity floor, flat start."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lucyd.deconv.engine import Stats
from lucyd.errors import InputError
from lucyd.io._arrays import streaming_blocks

#: voxels of the strided subsample on which "auto" background is estimated for lazy images
BACKGROUND_SAMPLE = 20_000_000


def estimate_background(image, sample: int = BACKGROUND_SAMPLE) -> float:
    """Constant background for ``background="auto"``.

    The 0.1th percentile of the image after a 3-voxel box filter (robust to single dark
    voxels). For lazy (out-of-core) images it is computed on a strided subsample of about
    ``sample`` voxels (it then holds ~ 12 bytes per sampled voxel).
    """
    arr = image
    if not isinstance(arr, np.ndarray):
        step = max(1, int(math.ceil((math.prod(arr.shape) / sample) ** (1 / len(arr.shape)))))
        arr = np.asarray(arr[tuple(slice(None, None, step) for _ in arr.shape)])
    arr = np.asarray(arr, dtype=np.float32)
    return float(np.percentile(ndimage.uniform_filter(arr, 3), 0.1))


def image_stats_for(image, background, offset: float, floor, budget: int | None = None) -> Stats:
    """Image-wide constants (background, floor, flat start), shared by all blocks of a job.

    ``background`` (a number or ``"auto"``), ``floor`` (a number, ``"auto"`` or None) and
    ``offset`` as validated by :class:`~lucyd.deconv.config.DeconvConfig`.

    Lazy images are streamed in blocks of at most ``budget / 8`` bytes (float32; 80 MB
    without a budget), so that this pass stays within a memory budget; the blocks of a chunked
    store (zarr) are whole chunks, so each chunk is decompressed once.
    """
    slab_voxels = (budget // 8 if budget else 80_000_000) // 4
    if isinstance(image, np.ndarray):
        mean, vmin = float(image.mean(dtype=np.float64)), float(image.min())
    else:  # lazy: stream block by block
        total, count, vmin = 0.0, 0, math.inf
        for region in streaming_blocks(image.shape, slab_voxels, getattr(image, "chunks", None)):
            block = np.asarray(image[region], dtype=np.float32)
            total += float(block.sum(dtype=np.float64))
            count += block.size
            vmin = min(vmin, float(block.min()))
            del block
        mean = total / count
    mean += offset
    vmin += offset
    if background == "auto":
        sample = BACKGROUND_SAMPLE if budget is None else min(BACKGROUND_SAMPLE, budget // 96)
        b = estimate_background(image, max(sample, 4096)) + offset
    else:
        b = float(background)
    if not mean - b > 0:
        # RL models non-negative photon counts: an image at or below its background (typically
        # over-subtracted) has no signal to restore and would converge to a constant
        hint = f"--offset {-vmin + offset:.4g} (= -minimum)" if vmin < 0 else "a smaller --background"
        raise InputError(
            f"image: its mean ({mean:.4g}) is not above the background ({b:.4g}); "
            "Richardson-Lucy needs non-negative counts — if the background was subtracted, add "
            f"it back, e.g. {hint} (the offset is kept in the output)"
        )
    scale = max(abs(mean - b), 1e-6)
    tiny = 1e-6 * scale
    if floor is None:
        fl = None
    elif floor == "auto":
        fl = max(vmin - b, tiny)
    else:
        fl = float(floor)
    start_value = max(mean - b, fl if fl is not None else tiny)
    return Stats(background=b, floor=fl, start_value=start_value, tiny=tiny)
