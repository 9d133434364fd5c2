"""`lucyd restore` on held-out data, beside classic RL at a fixed and at its oracle-best count.

Held-out cases (none used to design or tune the restore recipe, which was tuned on a synthetic
"nuclei" volume only):

* ``dapi`` (3D): the real DAPI nuclei of ``../shared/data/real/widefield_dapi`` (deconwolf's
  RL-20 reference, offset removed) as the object: a dense real specimen. Imaged through a
  Gaussian PSF (σ 2 / 1.5 / 1.5 px) at about 1 photon per unit (bright level 500 units),
  read noise 2 e⁻, gain 1.5, offset 100.
* ``w2s_<field>_<channel>`` (2D): the 400-frame averages of the real W2S widefield fields (the clean
  targets) as objects, through a Gaussian PSF (σ 2 px), bright level 200 photons, read noise
  1.5 e⁻, gain 1, offset 20.
* ``real_dapi`` / ``real_bead`` (no ground truth): the raw DAPI stack with its Born–Wolf PSF and
  the bead with its measured PSF: the physics self-check of RL-20, the calibrated RL and the
  network.

Tuning / held-out split (2026-11-30, recipe 2: the data-consistency step): the step and its
settings were chosen on ``w2s_020_1`` and ``w2s_035_1`` only (``--cases w2s_020_1,w2s_035_1``);
``w2s_044_0``, ``w2s_077_2``, ``w2s_099_0``, ``dapi`` and ``real_bead`` are the held-out report.

Each synthetic case is restored three ways: ``--method zoo`` (a pretrained zoo model, no training),
``--method auto`` (what a user gets) and ``--method network`` (the model trained for the image).

Every method sees only the raw image and the PSF. RL is `lucyd.deconv.deconvolve` (flipped
PSF, non-circulant) on the image minus its offset; "oracle-best" picks the count (1–100) with
the best PSNR against the ground truth, which no user can do. PSNR/SSIM: `lucyd.metrics.evaluate`.

Run: ``python benchmarks/bench_restore.py --out benchmarks/results`` (one torch thread;
``--cases dapi,w2s_044`` for a subset; ``--steps`` overrides the restore default; ``--json`` names
the results file).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

from lucyd.deconv import deconvolve
from lucyd.errors import InputError
from lucyd.forward import camera_noise, convolve
from lucyd.metrics import evaluate
from lucyd.restore import RestoreConfig, restore

REAL = Path(os.environ.get("LUCYD_REAL_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"))
FIXED_RL = 20
ORACLE_MAX = 100


def gaussian_psf(shape, sigma) -> np.ndarray:
    p = np.zeros(shape, np.float32)
    p[tuple(s // 2 for s in shape)] = 1
    p = ndimage.gaussian_filter(p, sigma)
    return p / p.sum()


def _scaled(obj: np.ndarray, bright: float, floor: float) -> np.ndarray:
    obj = np.clip(obj - np.percentile(obj, 1), 0, None)
    return (obj / np.percentile(obj, 99.9) * bright + floor).astype(np.float32)


def case_data(name: str) -> dict | None:
    if name == "dapi":
        path = REAL / "widefield_dapi" / "reference_rl20_bertero.tif"
        if not path.is_file():
            return None
        obj = _scaled(tifffile.imread(path).astype(np.float32), 500.0, 5.0)
        psf = gaussian_psf((21, 21, 21), (2.0, 1.5, 1.5))
        cam = {"photons": 1.0, "read_noise": 2.0, "gain": 1.5, "offset": 100.0}
    elif name.startswith("w2s_"):
        path = REAL / "w2s_denoise" / f"target_avg400_{name[4:]}.tif"
        if not path.is_file():
            return None
        obj = _scaled(tifffile.imread(path).astype(np.float32), 200.0, 2.0)
        psf = gaussian_psf((17, 17), (2.0, 2.0))
        cam = {"photons": 1.0, "read_noise": 1.5, "gain": 1.0, "offset": 20.0}
    else:
        raise SystemExit(f"unknown case {name}")
    raw = camera_noise(convolve(obj, psf, boundary="linear"), seed=7, **cam)
    gt = obj * np.float32(cam["photons"] * cam["gain"])
    return {"raw": raw, "psf": psf, "gt": gt, "offset": cam["offset"]}


def run_case(name: str, steps: int | None, cache: str, specimen_share: float | None = None,
             zoo_dir: str | None = None) -> dict | None:
    d = case_data(name)
    if d is None:
        print(f"{name}: skipped (real data not found under {REAL})")
        return None
    raw_above = d["raw"] - np.float32(d["offset"])
    curve_psnr, curve_ssim = [], []

    def score(i, est):
        m = evaluate(est, d["gt"])
        curve_psnr.append(m["psnr"])
        curve_ssim.append(m["ssim"])

    deconvolve(raw_above, d["psf"], iterations=ORACLE_MAX, progress=False, callback=score)

    def timed(method: str):
        t0, w0 = time.process_time(), time.perf_counter()
        cfg = RestoreConfig(steps=steps, cache_dir=cache, threads=1, method=method, specimen_share=specimen_share,
                            zoo_dir=zoo_dir)
        try:
            res = restore(d["raw"], d["psf"], config=cfg, progress=False)
        except InputError as exc:  # method=zoo with no fitting model
            print(f"{name} {method}: {exc}")
            return None, None
        return res, {"cpu_s": round(time.process_time() - t0, 1), "wall_s": round(time.perf_counter() - w0, 1)}

    zoo, zoo_time = timed("zoo")
    auto, auto_time = timed("auto")
    trained, trained_time = timed("network")
    row = {
        "case": name,
        "raw": evaluate(raw_above, d["gt"]),
        "rl_fixed": {"psnr": curve_psnr[FIXED_RL - 1], "ssim": curve_ssim[FIXED_RL - 1]},
        "rl_oracle": {"psnr": max(curve_psnr), "ssim": curve_ssim[int(np.argmax(curve_psnr))],
                      "iterations": int(np.argmax(curve_psnr)) + 1},
        "rl_discrepancy": {**evaluate(auto.candidates["rl"], d["gt"]),
                          "iterations": auto.record["rl"]["iterations"]},
        "zoo": None if zoo is None else {**evaluate(zoo.candidates["zoo"], d["gt"]), "model": zoo.record["zoo"]["used"],
                                         "passed_check": not zoo.record["physics_check"]["zoo_worse_than_rl"],
                                         **zoo_time},
        "zoo_lookup": auto.record.get("zoo"),
        "network": {**evaluate(trained.candidates["network"], d["gt"]), "steps": trained.record["model"]["steps"],
                    "passed_check": not trained.record["physics_check"]["network_worse_than_rl"], **trained_time,
                    "data_consistency_iterations": trained.record.get("data_consistency", {}).get(
                        "network", {}).get("iterations")},
        # the network's own output, before the data-consistency RL iterations (ablation)
        "network_raw": (evaluate(trained.candidates["network_raw"], d["gt"])
                        if "network_raw" in trained.candidates else None),
        "restore": {**evaluate(auto.image, d["gt"]), "chosen": auto.record["chosen"], "why": auto.record["why"],
                    **auto_time},
        "physics_check": {"zoo": None if zoo is None else zoo.record["physics_check"],
                          "network": trained.record["physics_check"]},
        "load": os.getloadavg(),
    }
    print(json.dumps({k: v for k, v in row.items() if k not in ("physics_check", "zoo_lookup")}, default=float),
          flush=True)
    return row


def real_check(name: str, cache: str, steps: int | None) -> dict | None:
    if name == "real_dapi":
        img, psf = REAL / "widefield_dapi" / "dapi_001.tif", REAL / "widefield_dapi" / "PSF_dapi.tif"
    else:
        img, psf = REAL / "widefield_bead" / "bead.tif", REAL / "widefield_bead" / "psf_bead_63_centered.tif"
    if not img.is_file():
        print(f"{name}: skipped (real data not found under {REAL})")
        return None
    image = tifffile.imread(img).astype(np.float32)
    p = tifffile.imread(psf).astype(np.float32)
    res = restore(image, p, config=RestoreConfig(steps=steps, cache_dir=cache, threads=1), progress=False)
    from lucyd.metrics.fidelity import data_fidelity

    noise = res.record["calibration"]["noise"]
    raw_e = (image - noise["dark_level"]) / noise["gain"]
    rl20 = deconvolve(raw_e, p / p.sum(), iterations=FIXED_RL, progress=False)
    f20 = data_fidelity(rl20, raw_e, p / p.sum(), read_noise_e=noise["read_noise_e"]).as_dict()
    row = {"case": name, "chosen": res.record["chosen"], "rl_fixed_check": f20,
           "physics_check": res.record["physics_check"], "calibration": res.record["calibration"],
           "rl_iterations": res.record["rl"]["iterations"],
           "mean_counts": {"raw_above_dark": float(np.mean(image - noise["dark_level"])),
                           "restored": float(np.mean(res.image))}}
    print(json.dumps(row, default=float), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="dapi,w2s_044_0,w2s_077_2,w2s_099_0,real_dapi,real_bead")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--specimen-share", type=float, default=None, help="default: restore's (1 in 2D, 0.5 in 3D)")
    ap.add_argument("--cache", default="/tmp/lucyd-bench-restore-cache")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--zoo-dir", default=None, help="zoo models (default: the package's)")
    ap.add_argument("--json", default="restore.json", help="file name of the results under --out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.cases.split(","):
        row = real_check(name, args.cache, args.steps) if name.startswith("real_") else run_case(
            name, args.steps, args.cache, args.specimen_share, args.zoo_dir)
        if row:
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / args.json).write_text(json.dumps({"rows": rows, "load": os.getloadavg()}, indent=1, default=float))


if __name__ == "__main__":
    main()
