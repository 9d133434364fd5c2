"""``lucyd restore --sample``: the whole restore pipeline on the built-in sample, scored against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lucyd.deconv import deconvolve
from lucyd.io import read_image, write_image
from lucyd.io.atomic import atomic_path
from lucyd.io.metadata import ImageMetadata
from lucyd.metrics import evaluate
from lucyd.restore.files import restore_files
from lucyd.restore.pipeline import RestoreConfig
from lucyd.restore.sample import SAMPLE_CAMERA, make_sample

#: the oracle-free classical baseline shown beside the restore result
FIXED_RL_ITERATIONS = 20
#: counts searched for the (ground-truth) oracle-best RL
ORACLE_RL_MAX = 100


def run_sample(folder: str | Path, config: RestoreConfig | None = None) -> str:
    """Write the sample into ``folder``, restore it, score every method; return a text table.

    Files: ``sample_raw.tif``, ``sample_psf.tif``, ``sample_gt.tif``, ``restored.tif`` (+
    ``.restore.json``, ``.html``) and ``sample_scores.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = make_sample()
    meta = ImageMetadata(axes="zyx", voxel_size=s["voxel_size"])
    for name in ("raw", "psf", "gt"):
        write_image(folder / f"sample_{name}.tif", s[name], meta)
    out = folder / "restored.tif"
    restore_files([folder / "sample_raw.tif"], out, psf=folder / "sample_psf.tif", config=config, report=True)
    record = json.loads((folder / "restored.tif.restore.json").read_text())
    raw_above = s["raw"] - np.float32(SAMPLE_CAMERA["offset"])
    gt = s["gt"]
    curve: list[float] = []
    deconvolve(raw_above, s["psf"], iterations=ORACLE_RL_MAX, progress=False,
               callback=lambda i, est: curve.append(evaluate(est, gt)["psnr"]))

    restored, _ = read_image(out)
    rows = {
        "raw": evaluate(raw_above, gt)["psnr"],
        f"RL, {FIXED_RL_ITERATIONS} it. (fixed)": curve[FIXED_RL_ITERATIONS - 1],
        f"RL, oracle-best ({int(np.argmax(curve)) + 1} it.)": max(curve),
        f"lucyd restore ({record['chosen']})": evaluate(restored, gt)["psnr"],
    }
    scores = {"psnr": rows, "record": str(out) + ".restore.json"}
    with atomic_path(folder / "sample_scores.json") as tmp:
        tmp.write_text(json.dumps(scores, indent=2))
    lines = ["method                              PSNR (dB, vs ground truth)"]
    lines += [f"{k:<36}{v:6.2f}" for k, v in rows.items()]
    lines.append(f"report: {folder / 'restored.tif.html'}")
    return "\n".join(lines)
