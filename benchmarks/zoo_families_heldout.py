"""Held-out checks of the zoo's optics families on real data (no ground truth: physics only).

0. How far fresh synthetic members of each 3D family (seed 99) lie from each family's
   reference PSFs (``family.npz``), in canonical units: the margin by which ``match_zoo`` tells
   the families apart.
1. Which zoo family does :func:`lucyd.restore.zoo.match_zoo` pick for real measured PSFs of
   each modality (confocal bead, SPIM-type and lattice light-sheet beads, widefield bead)?
2. The ``confocal-3d`` model on the real confocal beads, forced past ``match_zoo`` (which
   refuses the measured PSF), through the same candidate path as ``restore``: discrepancy RL,
   zoo refinement, flux calibration, the data-consistency step
   (:func:`lucyd.restore.physics_steps.data_consistent_rl`) and the physics check against RL
   (:func:`lucyd.metrics.fidelity.compare_fidelity`). There is no ground truth: physics only.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/zoo_families_heldout.py [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lucyd.deconv import prepare_psf
from lucyd.forward.noise_estimate import NoiseModel
from lucyd.io import read_image
from lucyd.metrics.fidelity import calibrate_flux, compare_fidelity, data_fidelity
from lucyd.restore import calibrate
from lucyd.restore.calibration import Calibration
from lucyd.restore.canonical import canonical_psf, psf_distance, psf_fwhm_px
from lucyd.restore.physics_steps import data_consistent_rl, discrepancy_rl
from lucyd.restore.zoo import ZOO_DIR, ZOO_SPECS, load_zoo_model, match_zoo, zoo_refine
from lucyd.restore.zoo_optics import family_psf, sample_optics

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
#: (file, modality, voxel (z, y, x) µm) of the measured PSFs (shared/data/README.md)
PSFS = [
    ("confocal_beads/psf_45cube_ec13757.tif", "confocal", (0.125, 0.0225, 0.0225)),
    ("measured_psfs/BIL113_zstack_z300nm_current.tif", "light-sheet (SPIM-type)", (0.3, 0.0867, 0.0867)),
    ("measured_psfs/cudadecon_mbPSF_560_NAp5nap42_z100nm.tif", "lattice light-sheet", (0.1, 0.1, 0.1)),
    ("measured_psfs/cudadecon_wideFieldPSF_560_z100nm.tif", "widefield", (0.1, 0.1, 0.1)),
]


def _bin(a: np.ndarray, factors) -> np.ndarray:
    """Sum ``a`` over blocks of ``factors`` voxels (cropped to a multiple)."""
    a = a[tuple(slice(0, (n // f) * f) for n, f in zip(a.shape, factors, strict=True))]
    shape = [x for n, f in zip(a.shape, factors, strict=True) for x in (n // f, f)]
    return a.reshape(shape).sum(axis=tuple(range(1, 2 * a.ndim, 2)))


def clean_psf(raw: np.ndarray, *, max_fwhm_px: float = 5.0):
    """Background-subtracted, peak-centred, odd crop of a bead PSF, binned so its FWHM is ≤ ``max_fwhm_px``."""
    p = np.asarray(raw, np.float64)
    border = np.concatenate([p[0].ravel(), p[-1].ravel(), p[:, 0].ravel(), p[:, -1].ravel()])
    p = np.clip(p - np.median(border), 0, None)
    peak = np.unravel_index(np.argmax(p), p.shape)
    widths = psf_fwhm_px(p.astype(np.float32))
    factors = [max(1, math.ceil(w / max_fwhm_px)) for w in widths]
    half = [min(int(3 * w), c, n - 1 - c) // f * f for w, c, n, f in zip(widths, peak, p.shape, factors, strict=True)]
    # crop so the peak's bin is central: the crop spans whole bins on either side of the peak's bin
    sl = []
    for c, h, f in zip(peak, half, factors, strict=True):
        lo = c - h - f // 2
        sl.append(slice(max(lo, 0), max(lo, 0) + 2 * h + f))
    p = _bin(p[tuple(sl)], factors)
    return (p / p.sum()).astype(np.float32), factors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    noise = NoiseModel(dark_level=0.0, gain=1.0, read_noise_e=2.0, background_e=2.0, peak_e=300.0, slope_r2=1.0,
                       shot_noise_limited=True)
    in_range = Calibration(noise=noise, foreground_fraction=0.1)
    result = {"family_distances": {}, "psf_matches": [], "confocal_beads": None}
    names = [n for n in ("widefield-3d", "confocal-3d", "lightsheet-3d") if (ZOO_DIR / n / "family.npz").is_file()]
    refs = {}
    for n in names:
        with np.load(ZOO_DIR / n / "family.npz") as f:
            refs[n] = f["psfs"]
    for n in names:
        rng = np.random.default_rng(99)
        members = [sample_optics(rng, ZOO_SPECS[n]) for _ in range(6)]
        canon = [canonical_psf(family_psf(o, 3)) for o in members]
        dist = {m: [round(min(psf_distance(c, r) for r in refs[m]), 3) for c in canon] for m in names}
        result["family_distances"][n] = {"members": [o["family"] for o in members], "distance_to": dist}
        print(n, json.dumps(result["family_distances"][n]), flush=True)
    for name, modality, voxel in PSFS:
        raw, _ = read_image(REAL / name)
        psf, factors = clean_psf(raw)
        matches = match_zoo(psf, in_range)
        row = {"psf": name, "modality": modality, "voxel_um": list(voxel), "binning": factors,
               "shape": list(psf.shape), "fwhm_px": [round(w, 2) for w in psf_fwhm_px(psf)],
               "picked": matches[0].name if matches[0].fits else None, "matches": [m.as_dict() for m in matches]}
        result["psf_matches"].append(row)
        print(json.dumps({k: row[k] for k in ("psf", "modality", "binning", "fwhm_px", "picked")}),
              {m.name: (m.fits, m.as_dict()["psf_distance"]) for m in matches}, flush=True)

    image, _ = read_image(REAL / "confocal_beads" / "Bead_Image1_crop.tif")
    raw_psf, _ = read_image(REAL / "confocal_beads" / "psf_45cube_ec13757.tif")
    psf, factors = clean_psf(raw_psf)
    img = _bin(np.asarray(image, np.float32), factors)
    t0 = time.process_time()
    p = prepare_psf(psf, ndim=3).psf
    cal = calibrate(img, p)
    noise = cal.noise
    raw_e = noise.to_electrons(img)
    rl, rl_info = discrepancy_rl(raw_e, p, noise.read_noise_e)
    fid_rl = data_fidelity(rl, raw_e, p, read_noise_e=noise.read_noise_e)
    net = zoo_refine(rl, p, load_zoo_model(ZOO_DIR / "confocal-3d"))
    scale, offset = calibrate_flux(net, raw_e, p)
    net = (net * np.float32(scale) + np.float32(offset)).astype(np.float32)
    fid_net = data_fidelity(net, raw_e, p, read_noise_e=noise.read_noise_e)
    step, step_info = data_consistent_rl(net, raw_e, p, noise.read_noise_e)
    fid_step = data_fidelity(step, raw_e, p, read_noise_e=noise.read_noise_e)
    cpu = time.process_time() - t0
    verdicts = {name: compare_fidelity(f, fid_rl, tolerance=0.25) for name, f in
                (("zoo", fid_net), ("zoo+step", fid_step))}
    result["confocal_beads"] = {
        "binning": factors, "image_shape": list(img.shape), "cpu_s": round(cpu, 2),
        "calibration": cal.as_dict(), "rl": rl_info, "data_consistency": step_info,
        "fidelity": {"rl": fid_rl.as_dict(), "zoo": fid_net.as_dict(), "zoo+step": fid_step.as_dict()},
        "worse_than_rl": {k: {"worse": bool(v[0]), "why": v[1]} for k, v in verdicts.items()}}
    short = {k: {kk: vv for kk, vv in f.items() if not isinstance(vv, (list, dict))}
             for k, f in result["confocal_beads"]["fidelity"].items()}
    print(json.dumps({"binning": factors, "cpu_s": round(cpu, 2), "rl": rl_info, "step": step_info}),
          json.dumps(short), json.dumps(result["confocal_beads"]["worse_than_rl"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
