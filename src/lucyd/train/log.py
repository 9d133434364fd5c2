"""The training log (``log.jsonl``) and its plot (``loss.png``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lucyd.io.atomic import atomic_path


def json_default(value):
    """JSON encoding of numpy scalars, tuples, sets and arrays (others as strings)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set, np.ndarray)):
        return list(value)
    return str(value)


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Training loss and validation PSNR against step, from ``log.jsonl``."""
    import matplotlib  # lazy: training does not need matplotlib unless the plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # slow to import; only when a loss curve is drawn

    steps, losses, vsteps, vlosses = [], [], [], []
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            steps.append(rec["step"])
            losses.append(rec["loss"])
        elif rec.get("kind") == "val":
            if rec.get("val_psnr") is not None:
                vsteps.append(rec["step"])
                vlosses.append(rec["val_psnr"])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if steps:
        ax.plot(steps, losses, lw=0.8, alpha=0.8, label="training (per interval mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(png_path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    if vsteps:
        ax2 = ax.twinx()
        ax2.plot(vsteps, vlosses, "o-", ms=3, color="C1", label="validation PSNR (dB)")
        ax2.set_ylabel("validation PSNR (dB)")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


class TrainingLog:
    """Append-only JSONL log; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        lines = []
        if keep_until is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= keep_until:
                    lines.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=json_default) + "\n")


