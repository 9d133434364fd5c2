"""Public deconvolution API: :func:`deconvolve` (arrays) and :func:`deconvolve_file` (files)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.boundaries import deconv_boundary
from lucyd.deconv.backprojectors import (
    BACK_PROJECTORS,
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    DEFAULT_ORDER,
    make_odd,
)
from lucyd.deconv.backprojectors import (
    back_projector as build_back_projector,
)
from lucyd.deconv.engine import ACCELERATIONS, Stats, estimate_memory, run_rl
from lucyd.deconv.psfprep import centre_psf, crop_psf_for_job, psf_offset, resample_psf
from lucyd.errors import InputError, LucydWarning
from lucyd.forward.fft import is_point_symmetric
from lucyd.io.outputs import check_output_path
from lucyd.validation import (
    as_image,
    as_psf,
    as_voxel_size,
    check_memory,
    return_freed_memory,
    voxel_size_mismatch,
)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_memory(value) -> int | None:
    """Bytes from ``None``, a number of bytes, or a string such as ``"2GB"``, ``"512 MiB"``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"max_memory: must be positive, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise InputError(f"max_memory: cannot parse {value!r}; use bytes or e.g. '2GB', '512MB'")
    result = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if result <= 0:
        raise InputError(f"max_memory: must be positive, got {value!r}")
    return result


#: iteration counts above this are refused: RL and its accelerated variants settle within a few
#: thousand iterations; use ``tol`` to stop earlier
MAX_ITERATIONS = 100_000


def check_iterations(iterations) -> int:
    """``iterations`` as an int in [1, :data:`MAX_ITERATIONS`], or InputError."""
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or not 1 <= iterations <= MAX_ITERATIONS
    ):
        raise InputError(
            f"iterations: must be an integer from 1 to {MAX_ITERATIONS:,}, got {iterations!r} "
            "(use tol to stop early)"
        )
    return int(iterations)


_ITERATION_COST: dict[str, float] = {}


def _iteration_seconds_per_unit(device) -> float:
    """Seconds per ``N·log2(N)`` (N job voxels) of one RL iteration on ``device``, measured once
    on a 56×120×120 job (about 0.1 s on a 2-core CPU)."""
    import time

    from lucyd.deconv.engine import Stats

    key = str(device)
    if key not in _ITERATION_COST:
        image = np.ones((48, 112, 112), np.float32)
        psf = np.full((9, 9, 9), 1 / 729, np.float32)
        stats = Stats(background=0.0, floor=1e-6, start_value=1.0, tiny=1e-6)
        kw = dict(boundary="non-circulant", stats=stats, start="mean", device=device,
                  progress=False)
        run_rl(image, psf, None, iterations=1, **kw)  # warm-up (FFT plans)
        t0 = time.perf_counter()
        run_rl(image, psf, None, iterations=3, **kw)
        n = 56 * 120 * 120
        _ITERATION_COST[key] = (time.perf_counter() - t0) / 3 / (n * math.log2(n))
    return _ITERATION_COST[key]


def estimate_deconvolution(
    image_shape,
    psf_shape,
    *,
    iterations: int = 20,
    boundary: str = "non-circulant",
    back_projector: str = "flipped",
    acceleration=None,
    tv: float = 0.0,
    max_memory=None,
    device="cpu",
) -> dict[str, Any]:
    """Peak memory and a rough running time of a deconvolution, before running it.

    Returns
    -------
    dict
        ``job_shape``; ``memory_bytes``: the whole-image job's peak
        (:func:`lucyd.deconv.estimate_memory`) or, when that exceeds ``max_memory``, the
        budget the blocks are sized to; ``blocked``; ``seconds``: iterations × the time of one
        classic RL iteration, measured once on ``device`` on a small job and scaled by N·log2 N
        (blocked jobs × 1.5 for the halos) — a rough figure (factor ~2), not a promise.
    """
    from lucyd.deconv.engine import job_plan
    from lucyd.device import resolve_device

    image_shape = tuple(int(n) for n in image_shape)
    psf_shape = tuple(min(int(k), 2 * n - 1) for k, n in zip(psf_shape, image_shape, strict=True))
    psf_shape = tuple(k + 1 - k % 2 for k in psf_shape)
    need = estimate_memory(image_shape, psf_shape, boundary=boundary, back_projector=back_projector,
                           acceleration=acceleration, tv=tv)
    budget = parse_memory(max_memory)
    blocked = budget is not None and need > budget
    job = job_plan(image_shape, psf_shape, boundary).job_shape
    n = math.prod(job)
    per_iteration = _iteration_seconds_per_unit(resolve_device(device)) * n * math.log2(max(n, 2))
    seconds = check_iterations(iterations) * per_iteration * (1.5 if blocked else 1.0)
    return {"job_shape": job, "memory_bytes": budget if blocked else need, "blocked": blocked,
            "seconds": seconds}


def _check_choice(value, choices, name):
    if value not in choices:
        shown = ", ".join(str(c) for c in choices)
        raise InputError(f"{name}: unknown value {value!r}; use one of {shown}")


#: voxels of the strided subsample on which "auto" background is estimated for lazy images
BACKGROUND_SAMPLE = 20_000_000


def estimate_background(image, sample: int = BACKGROUND_SAMPLE) -> float:
    """Constant background for ``background="auto"``.

    The 0.1th percentile of the image after a 3-voxel box filter (robust to single dark
    voxels). For lazy (out-of-core) images it is computed on a strided subsample of about
    ``sample`` voxels (it then holds ~ 12 bytes per sampled voxel).
    """
    from scipy import ndimage

    arr = image
    if not isinstance(arr, np.ndarray):
        step = max(1, int(math.ceil((math.prod(arr.shape) / sample) ** (1 / len(arr.shape)))))
        arr = np.asarray(arr[tuple(slice(None, None, step) for _ in arr.shape)])
    arr = np.asarray(arr, dtype=np.float32)
    return float(np.percentile(ndimage.uniform_filter(arr, 3), 0.1))


def image_stats_for(image, background, offset: float, floor, budget: int | None = None) -> Stats:
    """Image-wide constants (background, floor, flat start), shared by all blocks of a job.

    Lazy images are streamed along the first axis in slabs of at most ``budget / 8`` bytes
    (float32; 80 MB without a budget), so that this pass stays within a memory budget.
    """
    slab_voxels = (budget // 8 if budget else 80_000_000) // 4
    if isinstance(image, np.ndarray):
        mean, vmin = float(image.mean(dtype=np.float64)), float(image.min())
    else:  # lazy: stream along the first axis
        total, count, vmin = 0.0, 0, math.inf
        step = max(1, int(slab_voxels // max(1, math.prod(image.shape[1:]))))
        for z in range(0, image.shape[0], step):
            block = np.asarray(image[z : z + step], dtype=np.float32)
            total += float(block.sum(dtype=np.float64))
            count += block.size
            vmin = min(vmin, float(block.min()))
            del block
        mean = total / count
    mean += offset
    vmin += offset
    if isinstance(background, str):
        if background != "auto":
            raise InputError(f"background: use a number or 'auto', got {background!r}")
        sample = BACKGROUND_SAMPLE if budget is None else min(BACKGROUND_SAMPLE, budget // 96)
        b = estimate_background(image, max(sample, 4096)) + offset
    else:
        b = float(background)
        if not math.isfinite(b):
            raise InputError(f"background: must be finite, got {background!r}")
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
    elif isinstance(floor, str):
        if floor != "auto":
            raise InputError(f"floor: use a number, 'auto' or None, got {floor!r}")
        fl = max(vmin - b, tiny)
    else:
        fl = float(floor)
    start_value = max(mean - b, fl if fl is not None else tiny)
    return Stats(background=b, floor=fl, start_value=start_value, tiny=tiny)


def prepare_psf(psf, ndim: int, voxel_size=None, psf_voxel_size=None, *,
                centre: bool = True) -> np.ndarray:
    """Validate, resample to the image grid if voxel sizes differ, make odd, centre the main
    lobe on the array centre (:func:`lucyd.deconv.psfprep.centre_psf`; ``centre=False`` keeps
    the PSF where it is), normalise."""
    p = as_psf(psf, image_ndim=ndim)
    if psf_voxel_size is not None and voxel_size is not None:
        p = resample_psf(
            p,
            as_voxel_size(psf_voxel_size, ndim, "psf_voxel_size"),
            as_voxel_size(voxel_size, ndim, "voxel_size"),
        )
    p = make_odd(p)
    if centre:
        p, _ = centre_psf(p)
    return (p / p.sum(dtype=np.float64)).astype(np.float32)


def _resolve_start(start, kind):
    if start is None or start == "auto":
        return "mean" if isinstance(kind, str) and kind == "flipped" else "image"
    if isinstance(start, str):
        _check_choice(start, ("mean", "image", "auto"), "start")
        return start
    if isinstance(start, (int, float)) and not isinstance(start, bool) and math.isfinite(start):
        return float(start)
    raise InputError(f"start: use 'mean', 'image', 'auto' or a number, got {start!r}")


def deconvolve(
    image,
    psf,
    *,
    iterations: int = 20,
    back_projector: str | np.ndarray = "flipped",
    boundary: str = "non-circulant",
    acceleration: str | None = None,
    tv: float = 0.0,
    background: float | str = 0.0,
    tol: float | None = None,
    voxel_size: Sequence[float] | float | None = None,
    psf_voxel_size: Sequence[float] | float | None = None,
    device: str = "auto",
    max_memory: int | float | str | None = None,
    callback: Callable[[int, np.ndarray], Any] | None = None,
    start: str | float | None = "auto",
    progress: bool = True,
    wb_alpha: float = DEFAULT_ALPHA,
    wb_beta: float = DEFAULT_BETA,
    wb_order: int = DEFAULT_ORDER,
    wb_resolution: float | Sequence[float] | None = None,
    floor: float | str | None = "auto",
    offset: float = 0.0,
    overlap: Sequence[int] | int | None = None,
    centre_psf: bool = True,
    out=None,
    cluster=None,
) -> np.ndarray:
    """Richardson–Lucy deconvolution with boundary handling and unmatched back projectors.

    Iterates ``e ← max(floor, e · BP(y / (FP(e) + b)) / BP(1_obs))`` (Richardson 1972;
    Lucy 1974) on a job padded to image + PSF − 1 with the Bertero–Boccacci boundary
    weights ``1 / BP(1_obs)`` (Bertero & Boccacci 2005), so that there is no wrap-around
    ringing; FP is the convolution with the PSF, BP with the back projector.

    Parameters
    ----------
    image : array_like
        2D (y, x) or 3D (z, y, x) image; any real dtype; must be finite.
    psf : array_like
        PSF with the image's dimensionality, non-negative (normalised to sum 1 here). Any
        size: it need not match the image (it is cropped to ``2n − 1`` for the padded job,
        or centre-cropped/padded to the image for ``boundary="circulant"``); an even-sized
        PSF is zero-padded to odd size keeping its centre at index ``k // 2``.
    iterations : int
        Number of iterations (≥ 1); the maximum when ``tol`` is given.
    back_projector : {"flipped", "gaussian", "butterworth", "wiener-butterworth"} or ndarray
        ``"flipped"`` is classic RL. The others are the unmatched back projectors of Guo et
        al. (Nat. Biotechnol. 2020), built by :func:`lucyd.deconv.back_projector` with
        ``wb_alpha``, ``wb_beta``, ``wb_order``, ``wb_resolution``; 1–3 iterations suffice.
    boundary : {"non-circulant", "circulant", "zero"}
        (``"linear"``, the forward model's name of ``"zero"``, is accepted: :mod:`lucyd.boundaries`.)
        ``"non-circulant"`` (default): linear convolution on the padded job, padding
        unobserved, Bertero weights. ``"circulant"``: FFT convolution on the image grid
        (wrap-around; for comparison). ``"zero"``: linear convolution with the estimate
        restricted to the image and zero outside, no weights (what
        ``skimage.restoration.richardson_lucy`` computes).
    acceleration : {None, "biggs-andrews"}
        Biggs & Andrews (Appl. Opt. 1997) vector extrapolation, second order: the RL step is
        taken from the prediction ``y_k = x_k + α h_k + (α²/2)(h_k − h_{k−1})`` with
        ``h_k = x_k − x_{k−1}`` and ``α = <g_{k−1}, g_{k−2}> / <g_{k−2}, g_{k−2}>`` clipped to
        [0, 0.99], ``g`` the change made by the RL step to the previous predictions
        (acceleration starts at the third iteration). Costs 5 extra job-sized arrays.
    tv : float
        RL–TV regularisation weight λ (Dey et al., Microsc. Res. Tech. 2006): the update is
        divided by ``1 − λ div(∇e/|∇e|)`` (clamped ≥ 0.05). Typical 1e-3–1e-2; 0 disables.
    background : float or "auto"
        Constant background ``b`` in the forward model ``FP(e) + b``, in image units; ``"auto"``
        estimates it (0.1th percentile of the 3-voxel box-filtered image).
    tol : float, optional
        Stop when ``‖e_{k+1} − e_k‖ / ‖e_k‖`` over the observed region falls below ``tol``.
    voxel_size, psf_voxel_size : float or sequence of float, optional
        Voxel sizes (µm) of the image and of the PSF; when both are given and differ, the PSF
        is resampled onto the image grid (linear interpolation, renormalised, odd, centred).
    device : {"auto", "cpu", "cuda"}
        Torch device (auto = CUDA when present).
    max_memory : int, float or str, optional
        Memory budget (bytes, or e.g. ``"2GB"``). When the whole-image job would exceed it,
        the image is deconvolved in blocks (:func:`lucyd.deconv.blocked.deconvolve_blocked`:
        crop-and-stitch with a halo from the PSF width and the iteration count, so that the
        result equals the whole-image one to ~1e-5; a budget too small for that halo warns
        and names the budget that would do) with image-wide start/floor/background. The
        budget bounds the memory of one block's job, i.e. of each worker.
        The budget covers everything the job allocates (job arrays, blocks, the input pages a
        block touches; image-wide statistics are streamed in slabs of budget/8): the process's
        peak resident memory stays below the budget plus the runtime's fixed cost (measured on
        CPU for 256 MB–2 GB, ``benchmarks/bench_memory.py``). Without a budget, a job larger
        than the available memory is refused.
    callback : callable, optional
        ``callback(iteration, estimate)`` after each iteration (``estimate`` a float32 copy of
        the observed region); returning True stops. Not called in blocked mode.
    start : {"auto", "mean", "image"} or float
        Initial estimate. ``"mean"``: flat at the image mean (minus background), over the
        whole padded job — deconwolf's convention. ``"image"``: the image itself (minus
        background), edge-extended over the padding — the reference Wiener–Butterworth code's
        convention. ``"auto"`` (default): "mean" for the flipped back projector, "image" for
        the unmatched ones (as the references). With very few photons (< ~50 per voxel at the
        peak) the flat start gave Wiener–Butterworth the better result; with more, the raw
        image did (see the benchmarks). A number: a flat start at that value.
    progress : bool
        Show a progress bar (iterations, or blocks when blocked).
    wb_alpha, wb_beta, wb_order, wb_resolution :
        Unmatched back-projector parameters (Guo et al. defaults 0.05, 1.0 = automatic β,
        10, PSF FWHM in pixels); see :func:`lucyd.deconv.back_projector`.
    floor : float, "auto" or None
        Positivity floor applied to the estimate after every iteration. ``"auto"`` (default):
        ``max(min(image) − b, 1e-6·(mean(image) − b))``, i.e. deconwolf's clamp at the image
        minimum when ``b = 0``, and a small positive value otherwise (strictly positive so
        that no voxel freezes at zero). None: no clamp (scikit-image with ``clip=False``).
    offset : float
        Constant added to the image before deconvolution and *kept* in the output
        (deconwolf 0.4.7 adds 5 by default; lucyd's default is 0).
    overlap : int or sequence of int, optional
        Accepted for compatibility and ignored: blocks are now cropped to disjoint kept
        regions with a sufficient halo, not blended.
    centre_psf : bool
        Move the PSF's main lobe (centroid of the voxels above half its peak, whole voxels) onto
        the array centre before use (default). The centre voxel ``k // 2`` is the origin of the
        convolution, so a measured PSF whose bead sat off-centre would otherwise shift the
        whole result by the same number of voxels. ``deconvolve_file`` records the offset it
        found in the job's record (``psf_offset_voxels``). False: use the PSF as given.
    out : array-like, optional
        Destination (numpy array, memmap, zarr array, :func:`lucyd.io.open_writer`) written
        block by block in blocked mode; returned instead of a new array. ``image`` may then be
        a lazy array-like too (zarr, memmap), read block by block. An array from
        :func:`lucyd.tiling.open_resumable_zarr` (which names its job: input and parameters)
        records finished blocks, so a rerun into it computes only the unfinished ones.
    cluster : None, str or executor
        Where blocks run in blocked mode (:func:`lucyd.tiling.executors.get_executor`):
        None (this process), ``"local:N"`` (a dask LocalCluster of N workers),
        ``"processes:N"``, ``"tcp://HOST:PORT"`` (a running dask scheduler). Needs
        ``max_memory``.

    Returns
    -------
    numpy.ndarray
        float32 estimate of the image's shape, in the image's intensity units.

    Raises
    ------
    InputError
        Non-numeric or non-finite image, bad PSF (negative, all zero, wrong dimensionality),
        iterations < 1, unknown back projector / boundary / acceleration, a budget too small.

    Notes
    -----
    Memory of a whole-image job, in float32 job-sized arrays (job = image + PSF − 1 rounded
    up to a fast FFT size): about 11 for RL with Bertero weights (measured 16–25× the image
    for a 64×256×256 image and a 31³ PSF), +5 with Biggs–Andrews, +3 with TV; see
    :func:`lucyd.deconv.estimate_memory`.

    References
    ----------
    Richardson, W. H. J. Opt. Soc. Am. 62, 55–59 (1972). Lucy, L. B. Astron. J. 79, 745–754
    (1974). Bertero, M. & Boccacci, P. Astron. Astrophys. 437, 369–374 (2005). Biggs, D. S. C.
    & Andrews, M. Appl. Opt. 36, 1766–1775 (1997). Dey, N. et al. Microsc. Res. Tech. 69,
    260–266 (2006). Guo, M. et al. Nat. Biotechnol. 38, 1337–1346 (2020).

    Examples
    --------
    >>> restored = deconvolve(image, psf, iterations=20)  # doctest: +SKIP
    >>> kw = dict(iterations=2, back_projector="wiener-butterworth")
    >>> wb = deconvolve(image, psf, **kw)  # doctest: +SKIP
    """
    from lucyd.device import resolve_device

    lazy = isinstance(image, np.memmap) or (
        not isinstance(image, np.ndarray)
        and hasattr(image, "shape")
        and hasattr(image, "__getitem__")
        and not hasattr(image, "detach")
    )
    if lazy:
        if len(image.shape) not in (2, 3):
            raise InputError(f"image: expected a 2D or 3D array, got shape {tuple(image.shape)}")
        dtype = np.dtype(getattr(image, "dtype", np.float32))
        if dtype.kind not in "iuf":
            raise InputError(
                f"image: expected a numeric (integer or float) array, got dtype {dtype}"
            )
        y = image
        ndim = len(image.shape)
    else:
        y = as_image(image, name="image")
        ndim = y.ndim
    check_iterations(iterations)
    if isinstance(back_projector, str):
        _check_choice(back_projector, BACK_PROJECTORS, "back_projector")
    elif not hasattr(back_projector, "shape"):
        raise InputError(f"back_projector: use one of {', '.join(BACK_PROJECTORS)} or an array")
    boundary = deconv_boundary(boundary)  # also accepts the forward spelling "linear"
    _check_choice(acceleration, ACCELERATIONS, "acceleration")
    if not (isinstance(tv, (int, float)) and math.isfinite(tv) and 0 <= tv < 1):
        raise InputError(f"tv: must be a number in [0, 1), got {tv!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise InputError(f"tol: must be a positive number, got {tol!r}")
    if not (isinstance(offset, (int, float)) and math.isfinite(offset)):
        raise InputError(f"offset: must be a finite number, got {offset!r}")
    start = _resolve_start(start, back_projector)
    budget = parse_memory(max_memory)
    if cluster is not None:
        from lucyd.tiling.executors import check_cluster_spec

        check_cluster_spec(cluster)
        if budget is None:
            raise InputError("cluster: needs max_memory (the memory of one block, per worker)")
    if budget is not None:
        return_freed_memory()  # else freed job arrays stay resident and the budget drifts
    dev = resolve_device(device)

    p = prepare_psf(psf, ndim, voxel_size, psf_voxel_size, centre=bool(centre_psf))
    if boundary != "circulant":
        p = make_odd(crop_psf_for_job(p, y.shape))
    bp = None
    if not (isinstance(back_projector, str) and back_projector == "flipped"):
        bp = build_back_projector(
            p,
            back_projector,
            alpha=wb_alpha,
            beta=wb_beta,
            order=wb_order,
            resolution=wb_resolution,
        )
        if bp.ndim != ndim:
            raise InputError(f"back_projector: has {bp.ndim} dimensions, the image {ndim}")

    stats = image_stats_for(y, background, float(offset), floor, budget=budget)
    kind = back_projector if isinstance(back_projector, str) else "array"
    need = estimate_memory(
        y.shape,
        p.shape,
        boundary=boundary,
        back_projector=kind,
        acceleration=acceleration,
        tv=tv,
        tol=tol,
        symmetric_psf=is_point_symmetric(p),
    )
    common = dict(
        iterations=int(iterations),
        boundary=boundary,
        stats=stats,
        start=start,
        acceleration=acceleration,
        tv=float(tv),
        tol=tol,
        device=dev,
    )
    if budget is None:
        check_memory(need, f"image of shape {tuple(y.shape)}",
                     "give max_memory (--max-memory) to deconvolve it block by block")
    if budget is not None and need > budget:
        from lucyd.deconv.blocked import deconvolve_blocked

        return deconvolve_blocked(
            y,
            p,
            bp,
            budget=budget,
            offset=float(offset),
            overlap=overlap,
            progress=progress,
            kind=kind,
            out=out,
            cluster=cluster,
            **common,
        )
    arr = np.asarray(y[...] if lazy else y, dtype=np.float32)
    if lazy:
        arr = as_image(arr, name="image")
    if offset:
        arr = arr + np.float32(offset)
    result, _ = run_rl(arr, p, bp, callback=callback, progress=progress, **common)
    if out is not None:
        out[...] = result
        return out
    return result


def deconvolve_file(
    input_path: str | Path,
    psf,
    output_path: str | Path,
    *,
    psf_voxel_size=None,
    voxel_size=None,
    config_path: str | Path | None = None,
    **kwargs,
) -> Path:
    """Deconvolve an image file into ``output_path`` (TIFF, OME-TIFF, OME-Zarr, .npy).

    The input is opened lazily (:func:`lucyd.io.read_image` with ``lazy=True``). With
    ``max_memory`` set and exceeded, blocks are read from the input and the output is
    written block by block through :func:`lucyd.io.open_writer` (atomic: the output appears
    only when complete), so volumes larger than memory work. Otherwise the image is
    deconvolved in memory and written with :func:`lucyd.io.write_image`. Blocked into
    OME-Zarr, the output is built in ``.<name>.partial`` beside it with a record of the
    finished blocks: a rerun after a crash computes only the unfinished ones. ``cluster``
    (see :func:`deconvolve`) runs the blocks on local processes or a dask cluster. The voxel size of
    the input is carried to the output. ``psf`` is an array or a path (its voxel size,
    if stored, is used as ``psf_voxel_size`` unless given).

    A PSF whose main lobe is off the array centre is centred (``centre_psf=True``, the default)
    and the offset found is recorded as ``psf_offset_voxels`` (z, y, x).

    A :class:`~lucyd.deconv.config.DeconvConfig` with every parameter is saved as
    ``<output>.deconv.json`` (or ``config_path``).

    Returns
    -------
    Path
        ``output_path``.
    """
    from lucyd.deconv.config import DeconvConfig
    from lucyd.io import image_info, open_writer, read_image, write_image
    from lucyd.io._arrays import PageReleasingArray
    from lucyd.io.api import format_from_path

    cluster = kwargs.pop("cluster", None)  # where blocks run: not a parameter of the result
    input_path, output_path = Path(input_path), Path(output_path)
    image, meta = read_image(input_path, lazy=True)
    if isinstance(image, np.memmap):  # .npy: read blocks without keeping their pages resident
        image = PageReleasingArray(image)
    psf_path = Path(psf) if isinstance(psf, (str, Path)) else None
    check_iterations(kwargs.get("iterations", 20))
    if kwargs.get("max_memory") is None:  # refuse before loading what cannot be processed
        psf_shape = image_info(psf_path).shape if psf_path else np.shape(psf)
        if len(psf_shape) == len(image.shape):
            estimate = estimate_deconvolution(
                image.shape, psf_shape, boundary=kwargs.get("boundary", "non-circulant"),
                back_projector=kwargs.get("back_projector", "flipped"),
                acceleration=kwargs.get("acceleration"), tv=kwargs.get("tv", 0.0))
            check_memory(estimate["memory_bytes"], f"{input_path} (shape {tuple(image.shape)})",
                         "give --max-memory to deconvolve it block by block")
    record = Path(config_path or output_path.with_name(output_path.name + ".deconv.json"))
    for path, size in ((output_path, 4 * math.prod(image.shape)), (record, None)):
        check_output_path(path, [input_path, psf_path], expected_bytes=size)
    if psf_path is not None:
        psf_arr, psf_meta = read_image(psf_path)
        if psf_voxel_size is None:
            psf_voxel_size = psf_meta.voxel_size
        psf = psf_arr
    if voxel_size is None:
        voxel_size = meta.voxel_size
    if psf_path is not None and (voxel_size is None) != (psf_voxel_size is None):
        # both known: the PSF is resampled onto the image grid; one known: nothing to compare
        warnings.warn(
            voxel_size_mismatch(psf_voxel_size, voxel_size, expected_name=f"the PSF ({psf_path})",
                                actual_name=f"the image ({input_path})"),
            LucydWarning,
            stacklevel=2,
        )
    offset = None
    if kwargs.get("centre_psf", True):
        # what deconvolve() will move the PSF by: recorded so that the shift is not silent
        ndim = len(image.shape)
        offset = psf_offset(prepare_psf(psf, ndim, voxel_size, psf_voxel_size, centre=False))
        if any(offset):
            warnings.warn(
                f"psf: its main lobe is {offset} voxels off the array centre; centred it so that "
                "the result is not shifted (recorded as psf_offset_voxels; --no-centre-psf: as is)",
                LucydWarning,
                stacklevel=2,
            )
    cfg = DeconvConfig.from_call(
        input=str(input_path),
        psf=str(psf_path) if psf_path else None,
        output=str(output_path),
        voxel_size=voxel_size,
        psf_voxel_size=psf_voxel_size,
        psf_offset_voxels=offset,
        **kwargs,
    )
    run_kwargs = cfg.deconvolve_kwargs()
    callback = kwargs.get("callback")
    run_kwargs["progress"] = kwargs.get("progress", True)
    budget = parse_memory(run_kwargs.get("max_memory"))
    if cluster is not None:
        run_kwargs["cluster"] = cluster
    unknown = set(kwargs) - set(DeconvConfig.model_fields) - {"callback", "progress"}
    if unknown:
        raise InputError(f"deconvolve_file: unknown argument(s) {', '.join(sorted(unknown))}")
    shape = tuple(int(n) for n in image.shape)
    if budget is not None and format_from_path(output_path) == "zarr":
        # resumable: a crashed run's store is kept and its finished blocks are not recomputed
        from lucyd.tiling import open_resumable_zarr

        stat = input_path.stat()
        job = f"{input_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{cfg.model_dump_json()}"
        with open_resumable_zarr(output_path, shape, np.float32, meta, job=job) as out:
            deconvolve(image, psf, callback=callback, out=out, **run_kwargs)
    elif budget is not None:
        with open_writer(output_path, shape, np.float32, meta) as out:
            deconvolve(image, psf, callback=callback, out=out, **run_kwargs)
    else:
        data = np.asarray(image[...])
        result = deconvolve(data, psf, callback=callback, **run_kwargs)
        write_image(output_path, result, meta)
    cfg.save(record)
    return output_path
