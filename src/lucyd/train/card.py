"""The model card: one typed description of a model folder (``model.json``).

:class:`ModelCard` is written by the trainer (at the start, at every checkpoint and at the end)
and read by :func:`lucyd.train.load_model` and the CLI. It carries the network (name, ndim,
keyword arguments, parameter count, receptive radius, its spec's recipe and reference), the
normalisation (percentiles, the target-to-input scale ratio used to map outputs back to the
input's intensity units), the voxel size of the training data, the provenance (data folder,
its ``dataset.json``, validation split) and the training status:

* ``running`` — training has not finished (it is still running, or it was killed: the card
  then describes the last checkpoint, ``steps_done``);
* ``complete`` — it ran its steps or stopped early on the validation criterion;
* ``interrupted`` — it stopped before its steps (time limit, Ctrl-C, an error); resume it.

Older ``model.json`` files (status ``done`` / ``early-stopped`` / ``time-limit``) load unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from lucyd.errors import FileFormatError
from lucyd.io.atomic import atomic_path
from lucyd.train.data import target_scale_ratio

#: ``format`` field of model.json
MODEL_FORMAT = "lucyd-model"
#: the model-folder version this code writes and reads
FORMAT_VERSION = 1

Status = Literal["running", "complete", "interrupted"]

#: statuses written by lucyd before the model card: (status, stop_reason)
_LEGACY_STATUS = {
    "done": ("complete", "steps"),
    "early-stopped": ("complete", "early-stopped"),
    "time-limit": ("interrupted", "time-limit"),
}



def read_json_description(path: Path, what: str, folder_kind: str = "model") -> dict:
    """The JSON object in ``path`` (a model's or ensemble's description), or a one-line error."""
    if not path.is_file():
        raise FileFormatError(f"{path.parent}: not a lucyd {folder_kind} folder (no {path.name})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: not a {what}")
    return data

class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")


class NetworkEntry(_Entry):
    """The network: registry name, ndim, keyword arguments, size, receptive radius, spec."""

    name: str
    ndim: int
    kwargs: dict[str, Any] = {}
    size_multiple: int | None = None
    parameters: int | None = None
    receptive_radius: list[int] | None = None
    #: the network's published recipe (NetworkSpec.recipe) and reference, for the record
    spec: dict[str, Any] | None = None


class NormalizationEntry(_Entry):
    """Percentile normalisation of input and target, and how outputs are mapped back."""

    method: str = "percentile"
    percentiles: tuple[float, float]
    clip_gt: bool = True
    prediction: str = ""
    training_images: list[dict[str, Any]] = []
    #: geometric mean of the training pairs' (gt p_hi − p_lo) / (raw p_hi − p_lo)
    target_scale_ratio: float | None = None

    def output_ratio(self) -> float:
        """The target-to-input scale ratio (recorded, else from ``training_images``, else 1)."""
        if self.target_scale_ratio is not None:
            return float(self.target_scale_ratio)

        ranges = [
            (im["raw"], im["gt"]) for im in self.training_images if "raw" in im and "gt" in im
        ]
        return target_scale_ratio(ranges)


class TrainingEntry(_Entry):
    """Training status and summary (best step and validation scores)."""

    #: a card that does not say (written by hand, not by the trainer) describes a finished model
    status: Status = "complete"
    stop_reason: str | None = None
    steps_done: int = 0
    steps_planned: int | None = None
    train_time_s: float | None = None
    best_step: int | None = None
    best_val_loss: float | None = None
    best_val_psnr: float | None = None
    best_val_ssim: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data):
        if isinstance(data, dict) and data.get("status") in _LEGACY_STATUS:
            status, reason = _LEGACY_STATUS[data["status"]]
            data = {**data, "status": status, "stop_reason": data.get("stop_reason") or reason}
        if isinstance(data, dict):  # NaN / inf scores (a failed validation) are not JSON
            data = {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in data.items()
            }
        return data


class ModelCard(_Entry):
    """Everything ``model.json`` says about a model folder."""

    format: str = MODEL_FORMAT
    format_version: int = FORMAT_VERSION
    lucyd_version: str | None = None
    network: NetworkEntry
    normalization: NormalizationEntry
    voxel_size: list[float] | None = None
    provenance: dict[str, Any] = {}
    training: TrainingEntry = TrainingEntry()

    @property
    def complete(self) -> bool:
        """True when the training finished (its steps, or early stopping)."""
        return self.training.status == "complete"

    def incomplete_message(self, where: str | Path | None = None) -> str:
        """One line saying how the training of an incomplete model ended."""
        t = self.training
        what = f"{where}: " if where else ""
        planned = f" of {t.steps_planned}" if t.steps_planned else ""
        why = {
            "running": "its training is still running or was killed",
            "interrupted": f"its training was interrupted ({t.stop_reason or 'stopped'})",
        }.get(t.status, t.status)
        return (
            f"{what}incomplete model: {why} after {t.steps_done}{planned} steps; "
            "resume it with lucyd train --resume"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary (the content of model.json)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict, where: str | Path = "model.json") -> ModelCard:
        """Validate a model.json dictionary; :class:`FileFormatError` naming the first problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(v) for v in err["loc"])
            raise FileFormatError(f"{where}: model.json field {loc}: {err['msg']}") from None

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read ``model.json`` (a path to the file or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.json"
        return cls.from_dict(read_json_description(path, "model description"), path)

    def write(self, path: str | Path) -> None:
        """Write atomically to ``path`` (the file, or its folder)."""

        path = Path(path)
        if path.is_dir():
            path = path / "model.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
