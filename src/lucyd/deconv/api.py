"""Public deconvolution API: :func:`deconvolve` (arrays) and :func:`deconvolve_file` (files).

Both validate their options once into a :class:`~lucyd.deconv.config.DeconvConfig`
(:func:`~lucyd.deconv.config.job_config`) and prepare the PSF once
(:func:`~lucyd.deconv.psfprep.prepare_psf`), then share :func:`_run_job`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.deconv.backprojectors import BACK_PROJECTORS, back_projector_for
from lucyd.deconv.backprojectors import back_projector as build_back_projector
from lucyd.deconv.blocked import deconvolve_blocked
from lucyd.deconv.config import (  # noqa: F401 (MAX_ITERATIONS, check_iterations: public names)
    MAX_ITERATIONS,
    DeconvConfig,
    check_iterations,
    job_config,
    parse_memory,
)
from lucyd.deconv.engine import estimate_memory, run_rl
from lucyd.deconv.estimate import estimate_deconvolution
from lucyd.deconv.psfprep import PreparedPSF, prepare_psf
from lucyd.deconv.stats import (  # noqa: F401 (BACKGROUND_SAMPLE: public name)
    BACKGROUND_SAMPLE,
    estimate_background,
    image_stats_for,
)
from lucyd.device import resolve_device
from lucyd.errors import InputError, LucydWarning
from lucyd.forward.fft import is_point_symmetric
from lucyd.io import image_info, open_writer, read_image, write_image
from lucyd.io._arrays import PageReleasingArray
from lucyd.io.api import format_from_path
from lucyd.io.outputs import check_output_path
from lucyd.tiling import open_resumable_zarr
from lucyd.tiling.executors import check_cluster
from lucyd.validation import as_image, check_memory, return_freed_memory, voxel_size_mismatch

__all__ = ["deconvolve", "deconvolve_file", "estimate_background", "estimate_deconvolution",
           "parse_memory", "prepare_psf"]


def deconvolve(
    image,
    psf,
    config: DeconvConfig | None = None,
    *,
    callback: Callable[[int, np.ndarray], Any] | None = None,
    progress: bool = True,
    out=None,
    cluster=None,
    **overrides,
) -> np.ndarray:
    """Richardson–Lucy deconvolution with boundary handling and unmatched back projectors.

    Iterates ``e ← max(floor, e · BP(y / (FP(e) + b)) / BP(1_obs))`` (Richardson 1972;
    Lucy 1974) on a job padded to image + PSF − 1 with the Bertero–Boccacci boundary
    weights ``1 / BP(1_obs)`` (Bertero & Boccacci 2005), so that there is no wrap-around
    ringing; FP is the convolution with the PSF, BP with the back projector.

    The options are validated once, into one :class:`~lucyd.deconv.config.DeconvConfig`
    (``config`` updated by the keyword ``overrides``), and the PSF is prepared once
    (:func:`lucyd.deconv.psfprep.prepare_psf`: resampled, made odd, centred, cropped for the
    job, normalised); nothing downstream checks or renormalises them again.

    Parameters
    ----------
    image : array_like
        2D (y, x) or 3D (z, y, x) image; any real dtype; must be finite.
    psf : array_like or PreparedPSF
        PSF with the image's dimensionality, non-negative (normalised to sum 1 here). Any
        size: it need not match the image (it is cropped to ``2n − 1`` for the padded job,
        or centre-cropped/padded to the image for ``boundary="circulant"``); an even-sized
        PSF is zero-padded to odd size keeping its centre at index ``k // 2``. A
        :class:`~lucyd.deconv.psfprep.PreparedPSF` is used as prepared.
    config : DeconvConfig, optional
        The job's options; ``overrides`` (any of its fields, below) replace some of them.
    iterations : int
        Number of iterations (≥ 1); the maximum when ``tol`` is given.
    back_projector : {"flipped", "gaussian", "butterworth", "wiener-butterworth"} or ndarray
        ``"flipped"`` is classic RL (an array: a kernel of your own, a runtime argument that
        is not part of the config). The others are the unmatched back projectors of Guo et
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
        (Runtime, not in the config.) ``callback(iteration, estimate)`` after each iteration
        (``estimate`` a float32 copy of the observed region); returning True stops. Not called
        in blocked mode.
    start : {"auto", "mean", "image"} or float
        Initial estimate. ``"mean"``: flat at the image mean (minus background), over the
        whole padded job — deconwolf's convention. ``"image"``: the image itself (minus
        background), edge-extended over the padding — the reference Wiener–Butterworth code's
        convention. ``"auto"`` (default): "mean" for the flipped back projector, "image" for
        the unmatched ones (as the references). With very few photons (< ~50 per voxel at the
        peak) the flat start gave Wiener–Butterworth the better result; with more, the raw
        image did (see the benchmarks). A number: a flat start at that value.
    progress : bool
        (Runtime.) Show a progress bar (iterations, or blocks when blocked).
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
    psf_energy : float, optional
        Trim the PSF to the smallest centred box that holds this fraction of its total (e.g.
        0.999, :func:`lucyd.deconv.psfprep.trim_psf`; deconwolf trims likewise): a PSF computed
        on a box much larger than its light makes the padded job larger for no change in the
        result. ``deconvolve_file`` records the fraction kept (``psf_energy_kept``). None (the
        default): the PSF's box as given.
    out : array-like, optional
        (Runtime.) Destination (numpy array, memmap, zarr array, :func:`lucyd.io.open_writer`) written
        block by block in blocked mode; returned instead of a new array. ``image`` may then be
        a lazy array-like too (zarr, memmap), read block by block. An array from
        :func:`lucyd.tiling.open_resumable_zarr` (which names its job: input and parameters)
        records finished blocks, so a rerun into it computes only the unfinished ones.
    cluster : None, str or executor
        (Runtime.) Where blocks run in blocked mode (:func:`lucyd.tiling.executors.get_executor`):
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
    kernel = _own_back_projector(overrides)
    cfg = job_config(config, overrides)
    y, lazy = _job_image(image)
    check_cluster(cluster, cfg.max_memory)
    prepared = prepare_psf(psf, image_shape=y.shape, voxel_size=cfg.voxel_size,
                           psf_voxel_size=cfg.psf_voxel_size, centre=cfg.centre_psf,
                           boundary=cfg.boundary, energy=cfg.psf_energy)
    return _run_job(y, lazy, prepared, cfg, kernel=kernel, callback=callback,
                    progress=progress, out=out, cluster=cluster)


def _own_back_projector(overrides: dict):
    """Take an array ``back_projector`` out of ``overrides`` (a runtime kernel, not an option)."""
    value = overrides.get("back_projector")
    if value is None and "back_projector" not in overrides or isinstance(value, str):
        return None
    overrides.pop("back_projector")
    if not hasattr(value, "shape"):
        raise InputError(f"back_projector: use one of {', '.join(BACK_PROJECTORS)} or an array")
    return value


def _job_image(image) -> tuple[Any, bool]:
    """``(image, lazy)``: a validated float32 array, or a lazy array-like (memmap, zarr, reader)
    checked for shape and dtype only (its blocks are checked as they are read)."""
    lazy = isinstance(image, np.memmap) or (
        not isinstance(image, np.ndarray)
        and hasattr(image, "shape")
        and hasattr(image, "__getitem__")
        and not hasattr(image, "detach")
    )
    if not lazy:
        return as_image(image, name="image"), False
    if len(image.shape) not in (2, 3):
        raise InputError(f"image: expected a 2D or 3D array, got shape {tuple(image.shape)}")
    dtype = np.dtype(getattr(image, "dtype", np.float32))
    if dtype.kind not in "iuf":
        raise InputError(f"image: expected a numeric (integer or float) array, got dtype {dtype}")
    return image, True


def _run_job(y, lazy: bool, prepared: PreparedPSF, cfg: DeconvConfig, *, kernel=None,
             callback=None, progress=True, out=None, cluster=None) -> np.ndarray:
    """Deconvolve the checked image ``y`` with the prepared PSF under the validated ``cfg``:
    whole-image, or block by block when the job exceeds ``cfg.max_memory``."""
    ndim = len(y.shape)
    budget = cfg.max_memory
    if budget is not None:
        return_freed_memory()  # else freed job arrays stay resident and the budget drifts
    device = resolve_device(cfg.device)
    p = prepared.psf
    if kernel is not None:
        bp = build_back_projector(p, kernel)  # validates the array
    elif cfg.back_projector != "flipped":
        bp = back_projector_for(prepared, cfg.back_projector, alpha=cfg.wb_alpha,
                                beta=cfg.wb_beta, order=cfg.wb_order,
                                resolution=cfg.wb_resolution)
    else:
        bp = None
    if bp is not None and bp.ndim != ndim:
        raise InputError(f"back_projector: has {bp.ndim} dimensions, the image {ndim}")
    stats = image_stats_for(y, cfg.background, cfg.offset, cfg.floor, budget=budget)
    kind = "array" if kernel is not None else cfg.back_projector
    start = "image" if kernel is not None and cfg.start == "auto" else cfg.resolved_start()
    need = estimate_memory(y.shape, p.shape, boundary=cfg.boundary, back_projector=kind,
                           acceleration=cfg.acceleration, tv=cfg.tv, tol=cfg.tol,
                           symmetric_psf=is_point_symmetric(p))
    common = dict(iterations=cfg.iterations, boundary=cfg.boundary, stats=stats, start=start,
                  acceleration=cfg.acceleration, tv=cfg.tv, tol=cfg.tol, device=device)
    if budget is None:
        check_memory(need, f"image of shape {tuple(y.shape)}",
                     "give max_memory (--max-memory) to deconvolve it block by block")
    if budget is not None and need > budget:
        return deconvolve_blocked(y, p, bp, budget=budget, offset=cfg.offset,
                                  overlap=cfg.overlap, progress=progress, kind=kind, out=out,
                                  cluster=cluster, **common)
    arr = np.asarray(y[...] if lazy else y, dtype=np.float32)
    if lazy:
        arr = as_image(arr, name="image")
    if cfg.offset:
        arr = arr + np.float32(cfg.offset)
    result, _ = run_rl(arr, p, bp, callback=callback, progress=progress, **common)
    if out is not None:
        out[...] = result
        return out
    return result


def deconvolve_file(
    input_path: str | Path,
    psf,
    output_path: str | Path,
    config: DeconvConfig | None = None,
    *,
    config_path: str | Path | None = None,
    callback: Callable[[int, np.ndarray], Any] | None = None,
    progress: bool = True,
    cluster=None,
    **overrides,
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

    ``config`` and ``overrides`` as for :func:`deconvolve`: validated once, before any file is
    read. A PSF whose main lobe is off the array centre is centred (``centre_psf=True``, the
    default) and the offset found is recorded as ``psf_offset_voxels`` (z, y, x).

    The :class:`~lucyd.deconv.config.DeconvConfig` with every parameter (and the voxel sizes
    read from the files) is saved as ``<output>.deconv.json`` (or ``config_path``).

    Returns
    -------
    Path
        ``output_path``.
    """
    cfg = job_config(config, overrides, "deconvolve_file")
    check_cluster(cluster, cfg.max_memory)
    input_path, output_path = Path(input_path), Path(output_path)
    image, meta = read_image(input_path, lazy=True)
    if isinstance(image, np.memmap):  # .npy: read blocks without keeping their pages resident
        image = PageReleasingArray(image)
    psf_path = Path(psf) if isinstance(psf, (str, Path)) else None
    if cfg.max_memory is None:  # refuse before loading what cannot be processed
        psf_shape = image_info(psf_path).shape if psf_path else np.shape(psf)
        if len(psf_shape) == len(image.shape):
            estimate = estimate_deconvolution(image.shape, psf_shape, cfg)
            check_memory(estimate["memory_bytes"], f"{input_path} (shape {tuple(image.shape)})",
                         "give --max-memory to deconvolve it block by block")
    record = Path(config_path or output_path.with_name(output_path.name + ".deconv.json"))
    for path, size in ((output_path, 4 * math.prod(image.shape)), (record, None)):
        check_output_path(path, [input_path, psf_path], expected_bytes=size)
    psf_voxel_size, voxel_size = cfg.psf_voxel_size, cfg.voxel_size
    if psf_path is not None:
        psf, psf_meta = read_image(psf_path)
        if psf_voxel_size is None:
            psf_voxel_size = psf_meta.voxel_size
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
    prepared = prepare_psf(psf, image_shape=image.shape, voxel_size=voxel_size,
                           psf_voxel_size=psf_voxel_size, centre=cfg.centre_psf,
                           boundary=cfg.boundary, energy=cfg.psf_energy)
    if cfg.centre_psf and any(prepared.offset):
        warnings.warn(
            f"psf: its main lobe is {prepared.offset} voxels off the array centre; centred it so "
            "that the result is not shifted (recorded as psf_offset_voxels; --no-centre-psf: as "
            "is)",
            LucydWarning,
            stacklevel=2,
        )
    # what the files said, recorded (values already checked: not a second validation)
    cfg = cfg.model_copy(update=dict(
        input=str(input_path), psf=str(psf_path) if psf_path else None, output=str(output_path),
        voxel_size=None if voxel_size is None else tuple(voxel_size),
        psf_voxel_size=None if psf_voxel_size is None else tuple(psf_voxel_size),
        psf_offset_voxels=prepared.offset if cfg.centre_psf else None,
        psf_energy_kept=prepared.energy_kept,
    ))
    run = dict(callback=callback, progress=progress, cluster=cluster)
    shape = tuple(int(n) for n in image.shape)
    if cfg.max_memory is not None and format_from_path(output_path) == "zarr":
        # resumable: a crashed run's store is kept and its finished blocks are not recomputed
        stat = input_path.stat()
        job = f"{input_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{cfg.model_dump_json()}"
        with open_resumable_zarr(output_path, shape, np.float32, meta, job=job) as out:
            _run_job(*_job_image(image), prepared, cfg, out=out, **run)
    elif cfg.max_memory is not None:
        with open_writer(output_path, shape, np.float32, meta) as out:
            _run_job(*_job_image(image), prepared, cfg, out=out, **run)
    else:
        result = _run_job(*_job_image(np.asarray(image[...])), prepared, cfg, **run)
        write_image(output_path, result, meta)
    cfg.save(record)
    return output_path
