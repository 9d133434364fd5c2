"""Richardson–Lucy deconvolution engine (torch, CPU or CUDA, float32).

Implements the multiplicative update of Richardson (1972) and Lucy (1974)

    e ← max(floor, e · BP(y / (FP(e) + b)) / BP(1_obs))

with FP the convolution with the PSF, BP the convolution with a back projector
(the flipped PSF, or an unmatched one after Guo et al. 2020), ``b`` a constant
background and ``1_obs`` the indicator of the observed voxels. The denominator is
the Bertero–Boccacci boundary weight (Bertero & Boccacci, A&A 437, 369–374, 2005,
"A simple method for the reduction of boundary effects in the Richardson–Lucy
approach to image deconvolution"): the job is padded to image + PSF − 1 so that the
FFT convolution is linear, voxels outside the image are unobserved (ratio 0) and
the update is rescaled by the fraction of each voxel's light that falls on the
detector. Options: Biggs–Andrews vector extrapolation (Biggs & Andrews, Appl. Opt.
36, 1766–1775, 1997), the RL–TV regulariser of Dey et al. (Microsc. Res. Tech. 69,
260–266, 2006) and a stop rule on the relative change of the estimate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lucyd.boundaries import DECONV_BOUNDARIES as BOUNDARIES  # noqa: F401 (public name)
from lucyd.forward.fft import (
    FFTWorkspace,
    centre_crop_or_pad,
    fast_shape,
    kernel_spectrum,
    multiply_spectrum,
    to_tensor,
)
from lucyd.progress import progress as _progress

ACCELERATIONS = (None, "biggs-andrews")

#: Bertero weights below this value are set to zero (deconwolf uses 0.01)
BERTERO_SIGMA = 0.01


@dataclass(frozen=True)
class Stats:
    """Image-wide constants shared by every block of a blocked job."""

    background: float
    floor: float | None
    start_value: float
    tiny: float


@dataclass(frozen=True)
class Plan:
    """Geometry of one deconvolution job."""

    image_shape: tuple[int, ...]
    job_shape: tuple[int, ...]
    psf_shape: tuple[int, ...]
    boundary: str


def circulant_psf_shape(image_shape, psf_shape) -> tuple[int, ...]:
    """PSF shape for a circulant job: cropped symmetrically about its centre to the image size.

    Along an axis where the (odd) PSF is longer than the image it keeps ``k − 2·((k − n) // 2)``
    voxels (n, or n + 1 to stay odd), as deconwolf does without boundary handling (``--bq 0``).
    """
    return tuple(
        k - 2 * ((k - n) // 2) if k > n else k for n, k in zip(image_shape, psf_shape, strict=True)
    )


def job_plan(image_shape, psf_shape, boundary: str) -> Plan:
    """Job shape for ``boundary``: image + PSF − 1 (fast FFT size) or, circulant, the image.

    A circulant job is the image grid, enlarged to the cropped PSF where the (odd) PSF
    cannot fit (one extra, unobserved voxel at most per axis).
    """
    image_shape = tuple(int(n) for n in image_shape)
    if boundary == "circulant":
        psf_shape = circulant_psf_shape(image_shape, psf_shape)
        job = tuple(max(n, k) for n, k in zip(image_shape, psf_shape, strict=True))
    else:
        job = fast_shape(tuple(n + k - 1 for n, k in zip(image_shape, psf_shape, strict=True)))
    return Plan(image_shape, tuple(job), tuple(int(k) for k in psf_shape), boundary)


def estimate_memory(
    image_shape,
    psf_shape,
    *,
    boundary="non-circulant",
    back_projector="flipped",
    acceleration=None,
    tv=0.0,
    tol=None,
    symmetric_psf: bool = False,
    device="cpu",
) -> int:
    """Peak bytes of a whole-image Richardson–Lucy job: the memory model of :func:`_run_rl`.

    With ``J`` the job's voxels (image + PSF − 1 rounded up to a fast FFT size, or the image
    for ``"circulant"``), ``H = J_leading · (n_last // 2 + 1)`` its half-spectrum voxels and
    ``I`` the image's voxels, the job holds (bytes):

    * the estimate, float32: ``4 J``;
    * one FFT workspace, the real job and its half spectrum in one complex64 allocation on
      the CPU: ``8 H`` (≈ ``4 J``; :class:`lucyd.forward.fft.FFTWorkspace`), ``+ 4 J`` on CUDA
      where they are separate, ``+ 8 H`` more for the input copy ``torch.fft.irfftn`` makes;
    * the PSF's OTF: ``4 H`` when the PSF is point-symmetric (a real OTF; pass
      ``symmetric_psf=True``), else ``8 H`` (complex); the flipped back projector is its
      conjugate, applied in place; an unmatched back projector adds its own OTF (same size);
    * the Bertero weights, on a grid where the image's interior is collapsed
      (:class:`BerteroWeights`: ~1 % of ``J`` on large images);
    * the float32 image ``4 I`` (``+ 8 I`` with ``tol``: the previous estimate and a difference);
    * Biggs–Andrews ``+ 5 · 4 J`` (previous estimate, prediction, new estimate, two gradients);
      RL–TV ``+ 3 · 4 J`` (three buffers).

    Nothing job-sized is allocated inside the iterations, and the workspace and OTFs are
    freed before the result (``4 I``) is copied out, so this is the peak. It excludes the
    runtime (Python, numpy, torch: ~0.3 GB resident). Measured against ``/usr/bin/time -v``
    in ``benchmarks/results/memory.md``.
    """
    if boundary != "circulant":  # the PSF is cropped to 2n − 1 (odd) for the padded job
        psf_shape = tuple(min(int(k), 2 * int(n) - 1) for k, n in zip(psf_shape, image_shape, strict=True))
        psf_shape = tuple(k + 1 - k % 2 for k in psf_shape)
    plan = job_plan(image_shape, psf_shape, boundary)
    job_voxels = math.prod(plan.job_shape)
    half = math.prod(plan.job_shape[:-1]) * (plan.job_shape[-1] // 2 + 1)
    image = math.prod(plan.image_shape)
    dev = torch.device(device)
    total = 4 * job_voxels + FFTWorkspace.nbytes(plan.job_shape, dev)
    if dev.type != "cpu":
        total += 8 * half  # torch.fft.irfftn's copy of its input
    otf = (4 if symmetric_psf else 8) * half
    flipped = isinstance(back_projector, str) and back_projector == "flipped"
    total += otf if flipped else 2 * otf
    if boundary == "non-circulant":
        total += BerteroWeights.nbytes(plan.image_shape, plan.job_shape, plan.psf_shape)
    total += 4 * image * (3 if tol is not None else 1)
    if acceleration == "biggs-andrews":
        total += 5 * 4 * job_voxels
    if tv and tv > 0:
        total += 3 * 4 * job_voxels
    return int(total)


def _complement_slices(image_shape, job_shape):
    """Slices covering the job minus the observed corner block ``[0:n)`` per axis (disjoint)."""
    out = []
    ndim = len(job_shape)
    for d in range(ndim):
        if image_shape[d] == job_shape[d]:
            continue
        sl = [slice(0, image_shape[a]) for a in range(d)]
        sl.append(slice(image_shape[d], job_shape[d]))
        sl.extend(slice(None) for _ in range(d + 1, ndim))
        out.append(tuple(sl))
    return out


def _start_estimate(y: torch.Tensor, plan: Plan, start, stats: Stats) -> torch.Tensor:
    """Initial estimate on the job (observed block at the origin corner)."""
    job = plan.job_shape
    if isinstance(start, (int, float)) and not isinstance(start, bool):
        est = torch.full(job, float(start), dtype=torch.float32, device=y.device)
    elif start == "mean":
        est = torch.full(job, stats.start_value, dtype=torch.float32, device=y.device)
    else:  # "image": the observed data minus background, edge-extended over the padding
        est = torch.empty(job, dtype=torch.float32, device=y.device)
        torch.sub(y, stats.background, out=est[tuple(slice(0, n) for n in plan.image_shape)])
        # the image padded by its edge values about its centre and rolled back to the origin:
        # along each axis the padding's first part repeats the high edge, the rest (wrapped
        # around) the low edge; filled one axis at a time in place (no job-sized temporary)
        filled = list(plan.image_shape)
        for axis, (n, j) in enumerate(zip(plan.image_shape, job, strict=True)):
            lo = (j - n) // 2

            def part(a, b, axis=axis):
                sl = [slice(0, f) for f in filled]
                sl[axis] = slice(a, b)
                return tuple(sl)

            if j > n:
                est[part(n, j - lo)] = est[part(n - 1, n)]
                est[part(j - lo, j)] = est[part(0, 1)]
            filled[axis] = j
    if plan.boundary == "zero":
        for sl in _complement_slices(plan.image_shape, job):
            est[sl] = 0.0
    if stats.floor is not None:
        est.clamp_(min=stats.floor)
        if plan.boundary == "zero":
            for sl in _complement_slices(plan.image_shape, job):
                est[sl] = 0.0
    return est


class BerteroWeights:
    """Bertero–Boccacci weights ``W = 1 / BP(1_obs)`` (0 where ``BP(1_obs) ≤ σ``), stored compactly.

    Along an axis where a voxel's back-projection kernel (half-width ``c``) lies wholly inside
    the image, ``[c, n − c)``, ``BP(1_obs)`` does not depend on the voxel's coordinate on that
    axis (the kernel's marginal sums to the same value). The weights are therefore kept on a
    grid where that interior is collapsed to one index, and applied block by block with
    broadcasting: for deconwolf's 20×2048×2048 protocol with a 117-voxel-wide PSF, 60×256×256
    values instead of a 60×2187×2187 job array (16 MB instead of 1.1 GB).
    """

    def __init__(self, bp_mask: torch.Tensor, plan: Plan, kernel_shape):
        segments, kept = [], []
        for n, j, k in zip(plan.image_shape, plan.job_shape, kernel_shape, strict=True):
            c = (int(k) - 1) // 2
            if n - c > c + 1:  # an interior of at least two voxels: collapse it
                kept.append(((0, c + 1), (n - c, j)))
                segments.append([(0, c, 0, c), (c, n - c, c, c + 1),
                                 (n - c, j, c + 1, c + 1 + j - (n - c))])
            else:
                kept.append(((0, j),))
                segments.append([(0, j, 0, j)])
        compact = bp_mask
        # the most compressed axes first, by concatenating views (index_select would first copy
        # the whole strided job): the intermediate copies stay small
        order = sorted(range(len(kept)), key=lambda a: sum(b - a_ for a_, b in kept[a]) / plan.job_shape[a])
        for axis in order:
            if len(kept[axis]) > 1:
                compact = torch.cat([compact.narrow(axis, a, b - a) for a, b in kept[axis]], dim=axis)
        if compact is bp_mask:
            compact = bp_mask.clone()
        keep = compact > BERTERO_SIGMA
        self.compact = compact.clamp(min=BERTERO_SIGMA).reciprocal_().mul_(keep)
        self.blocks = []
        for combo in itertools.product(*segments):
            if any(hi <= lo for lo, hi, _, _ in combo):
                continue
            job_sl = tuple(slice(lo, hi) for lo, hi, _, _ in combo)
            w_sl = tuple(slice(a, b) for _, _, a, b in combo)
            self.blocks.append((job_sl, self.compact[w_sl]))

    @staticmethod
    def nbytes(image_shape, job_shape, kernel_shape) -> int:
        """Bytes of the compact weights (for the memory model)."""
        size = 1
        for n, j, k in zip(image_shape, job_shape, kernel_shape, strict=True):
            c = (int(k) - 1) // 2
            size *= (c + 1 + j - (n - c)) if n - c > c + 1 else j
        return 4 * size

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x ← x · W`` in place."""
        for job_sl, w in self.blocks:
            x[job_sl].mul_(w)
        return x


def _bertero_weights(ws: FFTWorkspace, back_project, plan: Plan, kernel_shape) -> BerteroWeights:
    """``BP(1_obs)`` computed in the workspace, turned into :class:`BerteroWeights`."""
    ws.real.zero_()
    ws.real[tuple(slice(0, n) for n in plan.image_shape)] = 1.0
    back_project(ws.forward())
    return BerteroWeights(ws.inverse(), plan, kernel_shape)


def _forward_difference(x: torch.Tensor, d: int, out: torch.Tensor) -> torch.Tensor:
    """``out ← roll(x, −1, d) − x`` (circular forward difference) without a shifted copy."""
    n = x.shape[d]
    torch.sub(x.narrow(d, 1, n - 1), x.narrow(d, 0, n - 1), out=out.narrow(d, 0, n - 1))
    torch.sub(x.narrow(d, 0, 1), x.narrow(d, n - 1, 1), out=out.narrow(d, n - 1, 1))
    return out


def _tv_denominator(
    est: torch.Tensor,
    lam: float,
    eps: float,
    grad_norm: torch.Tensor,
    comp: torch.Tensor,
    div: torch.Tensor,
) -> torch.Tensor:
    """``1 − λ div(∇e / |∇e|)`` (Dey et al. 2006), forward/backward differences, clamped ≥ 0.05."""
    ndim = est.ndim
    grad_norm.fill_(eps * eps)
    for d in range(ndim):
        _forward_difference(est, d, comp)
        grad_norm.addcmul_(comp, comp)
    grad_norm.sqrt_()
    div.zero_()
    for d in range(ndim):
        _forward_difference(est, d, comp)
        comp.div_(grad_norm)
        div.add_(comp)
        # backward difference: div −= roll(comp, 1, d)
        n = est.shape[d]
        div.narrow(d, 1, n - 1).sub_(comp.narrow(d, 0, n - 1))
        div.narrow(d, 0, 1).sub_(comp.narrow(d, n - 1, 1))
    div.mul_(-lam).add_(1.0).clamp_(min=0.05)
    return div


#: order of the Biggs–Andrews vector extrapolation (1 or 2)
BA_ORDER = 2

#: CPU jobs smaller than this many voxels run on one thread (threading overhead dominates)
SMALL_JOB_VOXELS = 1 << 20


def run_rl(*args, device: torch.device, **kwargs) -> tuple[np.ndarray, dict]:
    """Run the iterations (see :func:`_run_rl`); small CPU jobs use a single torch thread.

    On a busy 2-core machine a 16×48×48 FFT took 16 ms with 2 threads and 0.6 ms with one.
    """
    job = job_plan(args[0].shape, args[1].shape, kwargs["boundary"]).job_shape
    if device.type != "cpu" or math.prod(job) >= SMALL_JOB_VOXELS or torch.get_num_threads() == 1:
        return _run_rl(*args, device=device, **kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_rl(*args, device=device, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _run_rl(
    y: np.ndarray,
    psf: np.ndarray,
    bp: np.ndarray | None,
    *,
    iterations: int,
    boundary: str,
    stats: Stats,
    start,
    acceleration=None,
    tv: float = 0.0,
    tol: float | None = None,
    device: torch.device,
    callback: Callable | None = None,
    progress: bool = True,
    desc: str = "deconvolve",
) -> tuple[np.ndarray, dict]:
    """Run the iterations on one (in-memory) image; return the observed region and info.

    ``psf`` must already be odd-sized and normalised, ``bp`` the back-projector kernel
    (None for the flipped PSF, whose OTF is the complex conjugate of the PSF's).
    Per iteration: 2 ``rfftn`` + 2 ``irfftn`` of the job in one in-place workspace
    (:class:`lucyd.forward.fft.FFTWorkspace`) and 5–6 elementwise passes (two spectrum
    products, ratio on the observed region, weights, product, clamp); nothing job-sized is
    allocated inside the loop. Job-sized memory (classic RL): the estimate, the workspace
    and the OTF (real, half size, for a point-symmetric PSF); see :func:`estimate_memory`.
    """
    plan = job_plan(y.shape, psf.shape, boundary)
    job = plan.job_shape
    obs = tuple(slice(0, n) for n in plan.image_shape)
    comp_slices = _complement_slices(plan.image_shape, job)

    if boundary == "circulant":
        psf = centre_crop_or_pad(psf, plan.psf_shape)
        psf = psf / psf.sum()
        if bp is not None:
            bp = centre_crop_or_pad(
                bp, tuple(min(k, j) for k, j in zip(bp.shape, job, strict=True))
            )
            bp = bp / bp.sum()
    ws = FFTWorkspace(job, device)
    otf = kernel_spectrum(psf, ws)
    # flipped PSF: the adjoint, conj(OTF), taken in place (no second OTF)
    bp_otf = None if bp is None else kernel_spectrum(bp, ws)

    def back_project(spec: torch.Tensor) -> None:
        if bp_otf is None:
            multiply_spectrum(spec, otf, conjugate=True)
        else:
            multiply_spectrum(spec, bp_otf)

    weights = None
    if boundary == "non-circulant":
        kernel_shape = psf.shape if bp is None else bp.shape
        weights = _bertero_weights(ws, back_project, plan, kernel_shape)

    yt = to_tensor(y, device)
    est = _start_estimate(yt, plan, start, stats)
    work = ws.real
    ratio_obs = work[obs]

    b = float(stats.background)
    tiny = float(stats.tiny)
    floor = stats.floor
    # with a positive floor, FP(e) + b >= floor + b > 0 up to FFT round-off: no clamp needed
    guard = floor is None or (floor + b) <= 1e-3 * abs(stats.start_value + b)

    def rl_step(x: torch.Tensor, out: torch.Tensor) -> None:
        """out ← max(floor, x · BP(y / (FP x + b)) · W); ``out`` may be ``x``."""
        multiply_spectrum(ws.forward(x), otf)
        ws.inverse()
        if b != 0.0:
            ratio_obs.add_(b)
        if guard:
            ratio_obs.clamp_(min=tiny)
        torch.div(yt, ratio_obs, out=ratio_obs)
        for sl in comp_slices:  # unobserved voxels: ratio 0 (no data there)
            work[sl].zero_()
        back_project(ws.forward())
        ws.inverse()
        if tv_bufs is not None:
            den = _tv_denominator(x, tv, tv_eps, *tv_bufs)
            work.div_(den)
        if weights is not None:
            weights.apply(work)
        torch.mul(x, work, out=out)
        if floor is not None:
            out.clamp_(min=floor)
        if boundary == "zero":
            for sl in comp_slices:
                out[sl] = 0.0

    tv_bufs = None
    tv_eps = 0.0
    if tv > 0:
        tv_bufs = tuple(torch.empty(job, dtype=torch.float32, device=device) for _ in range(3))
        tv_eps = 1e-3 * max(abs(stats.start_value), tiny)

    info = {"iterations": 0, "job_shape": job, "stopped": "iterations", "relative_change": []}
    if acceleration == "biggs-andrews":
        x_prev = est.clone()
        pred = torch.empty_like(est)
        new = torch.empty_like(est)
        g_prev = None
        alpha = 0.0
        h_prev = torch.zeros_like(est) if BA_ORDER == 2 else None
    bar = _progress(
        range(iterations), total=iterations, desc=desc, disable=None if progress else True
    )
    prev_obs = None
    for k in bar:
        if tol is not None:
            prev_obs = est[obs].clone()
        if acceleration == "biggs-andrews":
            # prediction y_k = x_k + α (x_k − x_{k−1}); RL step from the prediction
            torch.sub(est, x_prev, out=pred)  # h_k
            if h_prev is not None:
                # second order: + α²/2 (h_k − h_{k−1}); h_prev becomes h_k
                h_prev.neg_().add_(pred)
                pred.mul_(alpha).add_(h_prev, alpha=0.5 * alpha * alpha).add_(est)
                torch.sub(est, x_prev, out=h_prev)
            else:
                pred.mul_(alpha).add_(est)
            if floor is not None:
                pred.clamp_(min=floor)
            rl_step(pred, new)
            pred.neg_().add_(new)  # g_k = x_{k+1} − y_k
            if g_prev is not None:
                num = float(torch.dot(pred.view(-1), g_prev.view(-1)))
                den = float(torch.dot(g_prev.view(-1), g_prev.view(-1)))
                alpha = min(max(num / den, 0.0), 0.99) if den > 0 else 0.0
                g_prev.copy_(pred)
            else:
                g_prev = pred.clone()
            x_prev, est, new = est, new, x_prev
        else:
            rl_step(est, est)
        info["iterations"] = k + 1
        if tol is not None:
            cur = est[obs]
            change = float(
                torch.linalg.vector_norm(cur - prev_obs)
                / torch.linalg.vector_norm(prev_obs).clamp(min=1e-30)
            )
            info["relative_change"].append(change)
            if change < tol:
                info["stopped"] = "tol"
                break
        if callback is not None:
            if callback(k + 1, est[obs].detach().cpu().numpy()):
                info["stopped"] = "callback"
                break
    if hasattr(bar, "close"):
        bar.close()
    # free the job's buffers before the result's copy is made (it would add to the peak)
    ratio_obs = work = otf = bp_otf = weights = tv_bufs = None
    if acceleration == "biggs-andrews":
        x_prev = pred = new = g_prev = h_prev = None
    ws.release()
    out = est[obs].detach().to("cpu", torch.float32).numpy().copy()
    return out, info
