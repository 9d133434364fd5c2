"""The physics steps of ``lucyd restore``: Richardson–Lucy stopped by the discrepancy principle,
the data-consistency step after a network, and Wiener–Butterworth's α calibrated on matched
synthetic data.

Each works on an image in photo-electrons above its dark level and stops or chooses with no
ground truth: by the Poisson–Gaussian data fidelity (:mod:`lucyd.metrics.fidelity`) or on
synthetic pairs calibrated to the image (:mod:`lucyd.restore.calibration`).
"""

from __future__ import annotations

import numpy as np

from lucyd.deconv import deconvolve, prepare_psf
from lucyd.forward import convolve
from lucyd.metrics import evaluate
from lucyd.metrics.fidelity import data_fidelity
from lucyd.restore.calibration import calibrate, calibrated_pairs, plan_training_set
from lucyd.validation import as_image

#: most RL iterations of :func:`discrepancy_rl` (it stops earlier when the data are explained)
MAX_RL_ITERATIONS = 80


def discrepancy_reached(chi2: list[float]) -> bool:
    """The discrepancy principle's stop, given the voxel χ² of every iteration so far: the
    re-blur explains the data at the noise level (χ² ≤ 1), or χ² improved by less than 0.1 %."""
    return chi2[-1] <= 1.0 or (len(chi2) > 1 and chi2[-2] - chi2[-1] < 1e-3 * chi2[-2])


def discrepancy_rl(raw_e: np.ndarray, psf: np.ndarray, read_noise_e: float, *,
                   max_iterations: int = MAX_RL_ITERATIONS, progress: bool = False) -> tuple[np.ndarray, dict]:
    """Richardson–Lucy stopped by the discrepancy principle: when the re-blur explains the data at the noise level.

    Iterates classic RL (flipped PSF, non-circulant) on ``raw_e`` (photo-electrons above dark)
    and stops at the first iteration whose per-voxel χ² against the data under the
    Poisson–Gaussian noise model (:func:`lucyd.metrics.fidelity.data_fidelity`) is ≤ 1, or
    when χ² improves by less than 0.1 % per iteration (Morozov's discrepancy principle; for
    RL: Bertero & Boccacci, Introduction to Inverse Problems in Imaging, 1998). Later
    iterations fit the noise. The count adapts to the specimen: a few for large, smooth,
    dense objects, tens for sparse, sharp ones, with no ground truth.

    Returns
    -------
    estimate, info
        The estimate at the stopping iteration and ``{"iterations", "chi2"}`` (χ² per iteration).
    """
    chi2: list[float] = []

    def stop(iteration: int, estimate: np.ndarray) -> bool:
        chi2.append(data_fidelity(estimate, raw_e, psf, read_noise_e=read_noise_e).chi2)
        return discrepancy_reached(chi2)

    est = deconvolve(raw_e, psf, iterations=max_iterations, callback=stop, progress=progress)
    return est, {"iterations": len(chi2), "chi2": [round(c, 5) for c in chi2]}


#: floor of the start of :func:`data_consistent_rl`, as a fraction of the data's mean
START_FLOOR = 0.01


def data_consistent_rl(start_e: np.ndarray, raw_e: np.ndarray, psf: np.ndarray, read_noise_e: float, *,
                       max_iterations: int = 5) -> tuple[np.ndarray, dict]:
    """Richardson–Lucy iterations started from an estimate, stopped by the discrepancy principle.

    The data-consistency step of a learned restoration: a network's output ``start_e`` is a
    good prior estimate of the object but is not constrained by the data (it can misplace a
    few per cent of the light in some regions, which the physics check's block fluxes
    detect). Classic RL iterations from it (the EM algorithm for Poisson data, Shepp & Vardi
    1982, is a monotone ascent from *any* positive start) correct the coarse, well-measured
    scales first and leave the fine detail the network added. At least one iteration is
    taken; it stops at the first iteration whose voxel χ² (:func:`lucyd.metrics.fidelity.data_fidelity`)
    is ≤ 1 or improves by less than 0.1 %, as :func:`discrepancy_rl`. This is the
    data-consistency layer of unrolled and plug-and-play methods (e.g. Aggarwal et al., IEEE
    TMI 2019, MoDL) with RL as the data term.

    The estimate is restricted to the image (zero outside, the ``"zero"`` boundary of
    :func:`lucyd.deconv.deconvolve`, normalised by ``Hᵀ1``), the re-blur that the physics
    check (:func:`lucyd.metrics.fidelity.data_fidelity`) compares with the data: a
    non-circulant start would have to invent the light outside the field, which one or two
    iterations cannot correct and which leaves artefacts at the borders.

    Returns
    -------
    estimate, info
        The estimate (photo-electrons, float32, the image's shape) and ``{"iterations", "chi2"}``.

    The PSF should be odd-sized and centred (as :func:`lucyd.deconv.prepare_psf` makes it), so
    that its flip is the adjoint of the blur.
    """
    y = np.asarray(raw_e, np.float32)
    p = np.asarray(psf, np.float32)
    p = p / np.float32(p.sum())
    flipped = np.ascontiguousarray(p[tuple(slice(None, None, -1) for _ in range(p.ndim))])
    floor = np.float32(max(1e-6 * abs(float(np.mean(y))), 1e-12))
    # RL's multiplicative update cannot lift a voxel from zero: the start is floored at
    # START_FLOOR × the data's mean, so that light the network erased can come back
    x = np.maximum(np.asarray(start_e, np.float32), np.float32(START_FLOOR * max(float(np.mean(y)), 0.0)))
    x = np.maximum(x, floor)
    weights = convolve(np.ones_like(y), flipped, boundary="linear")
    weights = np.where(weights > 1e-6, weights, np.float32(1.0)).astype(np.float32)
    chi2: list[float] = []
    for _ in range(max_iterations):
        blur = np.maximum(convolve(x, p, boundary="linear"), floor)
        x = np.maximum(x * convolve(y / blur, flipped, boundary="linear") / weights, floor).astype(np.float32)
        chi2.append(data_fidelity(x, y, p, read_noise_e=read_noise_e).chi2)
        if discrepancy_reached(chi2):
            break
    return x, {"iterations": len(chi2), "chi2": [round(c, 5) for c in chi2]}


#: Wiener parameters searched for Wiener–Butterworth RL (geometric grid)
WB_ALPHA_GRID = tuple(float(a) for a in np.geomspace(1e-3, 0.3, 11))
#: iterations of Wiener–Butterworth RL (Guo et al. 2020: 1–2 reach classic RL's 10–20)
WB_ITERATIONS = 2


def choose_wb_alpha(pairs, psf, *, alphas=WB_ALPHA_GRID, iterations: int = WB_ITERATIONS) -> tuple[float, list[float]]:
    """The Wiener parameter α with the best mean PSNR of ``iterations`` WB-RL steps on synthetic pairs.

    Guo et al. (Nat. Biotechnol. 2020) tune α to the data; a fixed α = 0.05 over-regularises
    bright, high-SNR images. On pairs calibrated to the specimen the best α is measurable.
    """
    scores = np.zeros(len(alphas))
    for _, raw, gt in pairs:
        for j, a in enumerate(alphas):
            est = deconvolve(raw, psf, iterations=iterations, back_projector="wiener-butterworth", wb_alpha=a,
                             progress=False)
            scores[j] += evaluate(est, gt)["psnr"] / len(pairs)
    return float(alphas[int(np.argmax(scores))]), [float(v) for v in scores]


def calibrated_wb_alpha(image, psf, *, n: int = 4, seed: int = 0, max_shape=(32, 96, 96)) -> dict:
    """Choose Wiener–Butterworth's α for one raw image from synthetic data calibrated to it.

    The image's noise, brightness and density are measured (:func:`calibrate`), ``n`` matched
    synthetic pairs are made through ``psf``, and the α of :data:`WB_ALPHA_GRID` whose
    :data:`WB_ITERATIONS` iterations restore them best is returned with the evidence.

    Returns
    -------
    dict
        ``alpha``, ``psnr_by_alpha`` (mean synthetic PSNR per grid value), ``calibration``.
    """
    img = as_image(image, name="image")
    p = prepare_psf(psf, ndim=img.ndim).psf
    cal = calibrate(img, p)
    plan = plan_training_set(cal, p, img.shape, n=n, seed=seed,
                             max_shape=tuple(max_shape) if img.ndim == 3 else (256, 256))
    pairs = list(calibrated_pairs(plan, cal, p))
    alpha, scores = choose_wb_alpha(pairs, p)
    return {"alpha": alpha, "psnr_by_alpha": dict(zip([f"{a:.3g}" for a in WB_ALPHA_GRID], scores, strict=True)),
            "calibration": cal.as_dict()}
