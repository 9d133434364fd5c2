"""Tuning runs of the `lucyd restore` recipe on the W2S tuning fields (020_1, 035_1) only.

For one case (re-imaged as in ``bench_restore.py``) and one training configuration it prints,
as one JSON line: RL at its oracle-best count (1–30), the discrepancy-stopped RL, the network
alone, the convex combinations ``w·network + (1−w)·RL`` (w = 0, 0.2, …, 1) and the network
followed by the data-consistency step (:func:`lucyd.restore.physics_steps.data_consistent_rl`) with at
most 1, 2 and 3 iterations, each with its physics check against RL. The restore call's CPU
time (training included when the cache is empty) is reported too.

Run (one torch thread)::

    python benchmarks/tune_restore.py --case w2s_020_1 [--steps 4000] [--specimen-share 0.5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bench_restore import case_data
from lucyd.deconv import deconvolve
from lucyd.metrics import evaluate
from lucyd.metrics.fidelity import compare_fidelity, data_fidelity
from lucyd.restore import RestoreConfig, restore
from lucyd.restore.physics_steps import data_consistent_rl

TUNING_CASES = ("w2s_020_1", "w2s_035_1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="w2s_035_1", choices=TUNING_CASES)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--specimen-share", type=float, default=None)
    ap.add_argument("--n-train", type=int, default=12)
    ap.add_argument("--cache", default="/tmp/lucyd-cache-tune")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = case_data(args.case)
    curve: list[float] = []
    deconvolve(d["raw"] - np.float32(d["offset"]), d["psf"], iterations=30, progress=False,
               callback=lambda i, e: curve.append(evaluate(e, d["gt"])["psnr"]))
    cfg = RestoreConfig(steps=args.steps, cache_dir=args.cache, threads=1, method="network",
                        specimen_share=args.specimen_share, n_train=args.n_train, data_consistency=False)
    t0 = time.process_time()
    res = restore(d["raw"], d["psf"], config=cfg, progress=False)
    cpu = time.process_time() - t0
    noise = res.record["calibration"]["noise"]
    gain, read = noise["gain"], noise["read_noise_e"]
    raw_e = ((d["raw"] - noise["dark_level"]) / gain).astype(np.float32)
    rl, net = res.candidates["rl"], res.candidates["network"]

    def psnr(x) -> float:
        return round(evaluate(x, d["gt"])["psnr"], 3)

    out = {"case": args.case, "config": cfg.model_dump(mode="json"), "restore_cpu_s": round(cpu, 1),
           "rl_oracle": round(max(curve), 3), "rl_oracle_iterations": int(np.argmax(curve)) + 1,
           "rl_discrepancy": psnr(rl), "rl_discrepancy_iterations": res.record["rl"]["iterations"],
           "network": psnr(net), "network_flux_chi2": round(res.record["physics_check"]["network"]["flux_chi2"], 3),
           "combination": {f"{w:.1f}": psnr(w * net + (1 - w) * rl) for w in np.linspace(0, 1, 6)}}
    rl_fidelity = data_fidelity(rl / gain, raw_e, d["psf"], read_noise_e=read)
    for cap in (1, 2, 3):
        est, info = data_consistent_rl(net / gain, raw_e, d["psf"], read, max_iterations=cap)
        f = data_fidelity(est, raw_e, d["psf"], read_noise_e=read)
        out[f"data_consistency_max{cap}"] = {"psnr": psnr(est), "iterations": info["iterations"],
                                             "chi2": round(f.chi2, 3), "flux_chi2": round(f.flux_chi2, 3),
                                             "worse_than_rl": compare_fidelity(f, rl_fidelity)[0]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
