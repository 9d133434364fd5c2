"""Blocked (out-of-core, optionally distributed) deconvolution on :mod:`lucyd.tiling`.

The image is cut into disjoint blocks (:func:`lucyd.tiling.plan_partition`); each is read
with a halo of context, deconvolved on its own padded job with Bertero boundary weights
(its borders behave like unobserved data), and only its kept region is written
(crop-and-stitch, no blending). The flat start value, the background and the positivity
floor are computed once for the whole image, so every block runs the same iteration as
the whole-image job.

Halo rule
---------
A voxel's RL estimate after ``k`` iterations depends on data up to ``2k`` PSF radii away
(each iteration convolves with the PSF and with the back projector), but the dependence
decays fast: the error that the block's boundary introduces behaves like a blur of the
boundary mismatch by ``k`` forward/back convolution pairs, i.e. a kernel of standard
deviation ``σ·√(2k)`` for a PSF of standard deviation ``σ`` (per axis, the PSF's second
moment; for an unmatched back projector the larger of the two). The halo is

    halo = min(2k·r, ceil(HALO_SIGMAS · σ_eff) + r),  σ_eff = √(σ_psf² + σ_bp²) · √k

with ``r`` the PSF radius and ``HALO_SIGMAS = 2``. Measured (Poisson scenes, Gaussian PSFs
15³ with σ 1.5–3, 10–40 iterations, one block against the whole image): the maximum
error of the kept region relative to the peak fell below 1e-3 at ``halo ≈ r + 1.2·σ_eff``
and to ~1e-5 at ``r + 2·σ_eff``; a halo of one PSF size (the previous rule) left 3e-3
to 3e-2. When the memory budget cannot hold a tile with
that halo plus a kept region, a :class:`BlockedAccuracyWarning` says so and names the
budget that would, and the largest halo that fits is used.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from lucyd.deconv.engine import Stats, estimate_memory, run_rl
from lucyd.errors import InputError
from lucyd.tiling import plan_partition, run_tiles, tile_shape_for_budget
from lucyd.validation import check_finite

#: halo width in standard deviations of the effective blur after k iterations
HALO_SIGMAS = 2.0


class BlockedAccuracyWarning(UserWarning):
    """The memory budget is too small for blocked = whole-image deconvolution to 1e-3."""


def _axis_sigmas(kernel: np.ndarray) -> np.ndarray:
    """Per-axis standard deviation (voxels) of a non-negative kernel."""
    k = np.abs(np.asarray(kernel, dtype=np.float64))
    total = k.sum()
    sig = []
    for d in range(k.ndim):
        prof = k.sum(axis=tuple(a for a in range(k.ndim) if a != d)) / total
        x = np.arange(prof.size)
        mu = (prof * x).sum()
        sig.append(math.sqrt(max(((x - mu) ** 2 * prof).sum(), 0.0)))
    return np.asarray(sig)


def rl_halo(psf: np.ndarray, iterations: int, back_projector=None) -> tuple[int, ...]:
    """Context (voxels per axis) that makes a block's RL result equal the whole image's.

    See the module notes for the rule. ``back_projector``: the unmatched back projector, if any.
    """
    psf = np.asarray(psf)
    sig2 = _axis_sigmas(psf) ** 2
    sig_bp2 = sig2 if back_projector is None else _axis_sigmas(back_projector) ** 2
    sigma_eff = np.sqrt(sig2 + sig_bp2) * math.sqrt(int(iterations))
    radius = np.array([(n - 1) // 2 for n in psf.shape])
    rule = np.ceil(HALO_SIGMAS * sigma_eff).astype(int) + radius
    cone = 2 * int(iterations) * radius
    return tuple(int(v) for v in np.minimum(rule, cone))


@dataclass(frozen=True)
class RLBlockTask:
    """Picklable RL job for one block: ``task(block, tile)`` → deconvolved block.

    Holds the PSF, the back projector and the image-wide constants; runs on any worker.
    """

    psf: np.ndarray
    bp: np.ndarray | None
    offset: float
    iterations: int
    boundary: str
    stats: Stats
    start: object
    acceleration: object
    tv: float
    tol: float | None
    device: str

    def __call__(self, block: np.ndarray, tile=None) -> np.ndarray:

        check_finite(block, "image")
        if self.offset:
            block = block + np.float32(self.offset)
        result, _ = run_rl(
            block,
            self.psf,
            self.bp,
            iterations=self.iterations,
            boundary=self.boundary,
            stats=self.stats,
            start=self.start,
            acceleration=self.acceleration,
            tv=self.tv,
            tol=self.tol,
            device=torch.device(self.device),
            progress=False,
        )
        return result

    def fingerprint(self) -> str:
        """Hash of everything that determines the result (for the resume record)."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.psf, np.float32).tobytes())
        if self.bp is not None:
            h.update(np.ascontiguousarray(self.bp, np.float32).tobytes())
        params = (
            self.offset,
            self.iterations,
            self.boundary,
            self.stats,
            self.start,
            self.acceleration,
            self.tv,
            self.tol,
        )
        h.update(repr(params).encode())
        return h.hexdigest()[:16]


def block_geometry(
    shape,
    psf,
    budget: int,
    *,
    iterations: int,
    bp=None,
    kind: str,
    boundary: str,
    acceleration,
    tv,
    tol,
    halo=None,
    source_chunks=None,
):
    """Tile shape and halo for a memory budget (bytes); warns when the halo does not fit.

    The memory of a tile is the job's (:func:`lucyd.deconv.estimate_memory`) plus the tile-sized
    arrays of the tiling and what reading a block touches: whole input rows for memory maps and
    TIFF strips, or, for a chunked store (``source_chunks``, zarr), the chunks it decodes
    (bounded by one more block); measured peaks (``benchmarks/bench_memory.py``,
    ``benchmarks/results/scale.md``) stayed within the budget on top of the runtime's fixed
    cost.

    Returns
    -------
    tile : tuple of int
        Largest block (kept region + 2 halos) whose job fits ``budget``.
    halo : tuple of int
    """
    shape = tuple(int(n) for n in shape)
    psf_shape = tuple(int(n) for n in np.shape(psf))
    want = rl_halo(psf, iterations, bp) if halo is None else tuple(int(h) for h in halo)
    want = tuple(min(h, n) for h, n in zip(want, shape, strict=True))

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
        # block, result and its kept copy: 3 tile-sized arrays
        blocks = 12 * math.prod(tile)
        if source_chunks is None:  # reading a block touches whole rows (memmaps, TIFF strips)
            reading = 4 * math.prod(tile[:-1]) * shape[-1]
        else:  # a chunked store (zarr, TIFF pages) decodes a few chunks at a time into the
            # block: one more block bounds it (measured, benchmarks/results/scale.md)
            reading = 4 * math.prod(tile)
        return job + blocks + reading

    def fits(h, within=budget) -> tuple[int, ...] | None:
        """Largest tile with halo h in the budget, keeping at least a quarter of its size."""

        try:
            t = tile_shape_for_budget(shape, 0, within, 0, halo=h, memory_of=memory_of)
        except InputError:
            return None
        ok = all(ti >= n or ti - 2 * hi >= max(1, ti // 4) for ti, hi, n in zip(t, h, shape, strict=True))
        return t if ok else None

    tile = fits(want)
    if tile is not None:
        return tile, want
    # the smallest budget (to ~10 %) that holds the wanted halo
    need = memory_of(tuple(min(n, 3 * h + 1) for h, n in zip(want, shape, strict=True)))
    while fits(want, need) is None and need < memory_of(shape):
        need *= 1.1
    halo_now = want
    while tile is None and any(halo_now):
        halo_now = tuple(int(h * 0.8) for h in halo_now)
        tile = fits(halo_now)
    if tile is None:
        raise InputError(
            f"max_memory: {budget / 1e6:.1f} MB is too small for any block "
            f"(about {need / 1e6:.0f} MB gives blocked = whole-image results)"
        )
    # an axis that is not split reads all its context whatever the halo
    halo_now = tuple(
        w if t >= n else h for w, h, t, n in zip(want, halo_now, tile, shape, strict=True)
    )
    if halo_now == want:
        return tile, want
    warnings.warn(
        f"max_memory: {budget / 1e6:.1f} MB allows a halo of {halo_now} voxels, less than the "
        f"{want} needed for blocked = whole-image results to 1e-3; about {need / 1e6:.0f} MB "
        "would do",
        BlockedAccuracyWarning,
        stacklevel=3,
    )
    return tile, halo_now


def deconvolve_blocked(
    y,
    psf,
    bp,
    *,
    budget: int,
    offset: float,
    overlap=None,
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
    cluster=None,
    halo=None,
):
    """Deconvolve ``y`` (array or lazy array-like) block by block into ``out``.

    ``cluster``: executor spec for :func:`lucyd.tiling.run_tiles` (None = serial). ``overlap``
    is accepted for compatibility and ignored (blocks are cropped, not blended). ``halo``
    overrides :func:`rl_halo`.
    """
    if boundary == "circulant":
        raise InputError(
            "max_memory: blocked deconvolution needs boundary='non-circulant' or 'zero'"
        )
    shape = tuple(int(n) for n in y.shape)
    tile, halo = block_geometry(
        shape,
        psf,
        budget,
        iterations=iterations,
        bp=bp,
        kind=kind,
        boundary=boundary,
        acceleration=acceleration,
        tv=tv,
        tol=tol,
        halo=halo,
        source_chunks=getattr(y, "chunks", None),
    )
    chunks = getattr(out, "chunks", None)
    plan = plan_partition(shape, tile, halo, chunks=chunks)
    task = RLBlockTask(
        psf=np.asarray(psf, np.float32),
        bp=None if bp is None else np.asarray(bp, np.float32),
        offset=float(offset),
        iterations=int(iterations),
        boundary=boundary,
        stats=stats,
        start=start,
        acceleration=acceleration,
        tv=float(tv),
        tol=tol,
        device=str(device),
    )
    # run_tiles resumes only into a store from open_resumable_zarr (tied to input + parameters)
    return run_tiles(
        plan,
        task,
        y,
        out,
        executor=cluster,
        progress=progress,
        desc="deconvolve blocks",
        max_memory=budget,
    )
