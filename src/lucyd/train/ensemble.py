"""Deep ensembles and per-voxel uncertainty for lucyd's restoration networks.

Two complementary readouts of how much a restoration can be trusted (Weigert et al., "Content-
aware image restoration: pushing the limits of fluorescence microscopy", Nature Methods 15:1090,
2018; Lakshminarayanan, Pritzel & Blundell, "Simple and scalable predictive uncertainty
estimation using deep ensembles", NeurIPS 2017):

* **Laplace scale** (aleatoric): a *probabilistic* network (``care`` with
  ``probabilistic=True``, trained with the Laplace negative log-likelihood ``laplace_nll``)
  predicts, per voxel, the mean μ and the scale σ of a Laplace distribution of the true value.
  The standard deviation of a Laplace distribution is ``√2 · σ``.
* **Disagreement** (epistemic): ``K`` networks trained identically but from different seeds
  (initialisation, patch sampling, validation split) disagree where the data do not determine
  the answer; their per-voxel standard deviation is the disagreement.

An *ensemble folder* written by :func:`train_ensemble` holds ``K`` complete model folders
``member_00`` … ``member_{K-1}`` (each loadable on its own with :func:`lucyd.train.load_model`)
and an ``ensemble.json``::

    {"format": "lucyd-ensemble", "format_version": 1, "lucyd_version": ..., "k": K,
     "model": "care", "probabilistic": true, "base_seed": 0,
     "members": [{"name": "member_00", "seed": 0}, ...], "created": ...}

:func:`lucyd.train.uncertainty.predict_with_uncertainty` combines the members (see its docstring
for the formulas); :func:`lucyd.train.uncertainty.predict_uncertainty_file` writes the mean
restoration and the uncertainty maps, which is what ``lucyd predict --uncertainty`` does (both
also importable from this module).

Warning
-------
As the CARE paper states, restored images — and these uncertainty maps — must not be used for
intensity quantification such as counting fluorophores: networks can produce plausible but
wrong intensities, and the uncertainty estimates are themselves learned and only
approximately calibrated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import lucyd
from lucyd.errors import FileFormatError, InputError, LucydError
from lucyd.io.atomic import atomic_path
from lucyd.train.card import ModelCard
from lucyd.train.config import TrainConfig
from lucyd.train.loading import load_model, read_json_description
from lucyd.train.trainer import train

#: ``format`` field of ensemble.json
ENSEMBLE_FORMAT = "lucyd-ensemble"
#: version of the ensemble folder layout this code writes and reads
ENSEMBLE_VERSION = 1
#: name of the ensemble description file
ENSEMBLE_FILE = "ensemble.json"


def member_name(index: int) -> str:
    """Folder name of ensemble member ``index`` (``member_00``, ``member_01``, ...)."""
    return f"member_{int(index):02d}"


def is_probabilistic(config) -> bool:
    """Whether a :class:`~lucyd.train.TrainConfig` asks for a probabilistic (mean + scale) network."""
    return bool((config.net_kwargs or {}).get("probabilistic", False))


def with_default_loss(config):
    """``config`` with the Laplace NLL loss when the network is probabilistic and no loss is set.

    Probabilistic CARE (Weigert et al. 2018) has two output channels (mean, Laplace scale) and
    must be trained with ``laplace_nll``; the network's published default (MAE) would fail.
    """
    if is_probabilistic(config) and config.loss is None:
        return config.model_copy(update={"loss": "laplace_nll"})
    return config


# ---------------------------------------------------------------------------- training

def _member_done(folder: Path) -> bool:

    try:
        return ModelCard.read(folder).complete
    except LucydError:
        return False


def _write_json(path: Path, data: dict) -> None:

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def train_ensemble(config, data_dir: str | Path, out_dir: str | Path, k: int, *,
                   base_seed: int | None = None, resume: bool = False,
                   overwrite: bool = False) -> Path:
    """Train ``k`` networks with different seeds into one ensemble folder (deep ensemble).

    Member ``i`` is trained by :func:`lucyd.train.train` with ``config`` and seed
    ``base_seed + i`` (initial weights, patch sampling and validation split all follow the seed),
    into ``out_dir/member_{i:02d}``; ``out_dir/ensemble.json`` describes the ensemble
    (Lakshminarayanan et al., NeurIPS 2017; for CARE, Weigert et al., Nature Methods 2018,
    used ~5 probabilistic networks).

    Parameters
    ----------
    config : lucyd.train.TrainConfig
        The training job of every member. A probabilistic network
        (``net_kwargs={"probabilistic": True}``) without an explicit loss is trained with
        ``laplace_nll``.
    data_dir : str or Path
        Folder with ``raw/`` and ``gt/`` pairs.
    out_dir : str or Path
        The ensemble folder (created).
    k : int
        Number of members (≥ 1; 5 in the CARE paper).
    base_seed : int, optional
        Seed of member 0; default ``config.seed``.
    resume : bool
        Continue an interrupted ensemble: finished members are kept, a member with a
        ``last.pt`` is resumed, missing members are trained.
    overwrite : bool
        Replace the members of an existing ensemble folder.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``k < 1``, a negative seed, an existing ensemble without ``resume`` / ``overwrite``,
        or any error of :func:`lucyd.train.train`.
    """

    if not isinstance(config, TrainConfig):
        raise InputError("config: expected a TrainConfig")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: the ensemble needs at least 1 member, got {k!r}")
    k = int(k)
    seed0 = int(config.seed if base_seed is None else base_seed)
    if seed0 < 0:
        raise InputError(f"base_seed: must be ≥ 0, got {seed0}")
    out = Path(out_dir)
    if (out / ENSEMBLE_FILE).exists() and not (resume or overwrite):
        raise InputError(f"{out}: already holds an ensemble; use resume to continue it, "
                         "overwrite to replace it, or another folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    config = with_default_loss(config)
    out.mkdir(parents=True, exist_ok=True)
    members = [{"name": member_name(i), "seed": seed0 + i} for i in range(k)]
    info: dict[str, Any] = {
        "format": ENSEMBLE_FORMAT,
        "format_version": ENSEMBLE_VERSION,
        "lucyd_version": _lucyd_version(),
        "k": k,
        "model": config.model.lower(),
        "probabilistic": is_probabilistic(config),
        "base_seed": seed0,
        "members": members,
        "status": "training",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(out / ENSEMBLE_FILE, info)
    for m in members:
        folder = out / m["name"]
        cfg = config.model_copy(update={"seed": m["seed"]})
        if resume and _member_done(folder):
            continue
        if resume and (folder / "last.pt").is_file():
            train(cfg, data_dir, folder, resume=True)
        else:
            train(cfg, data_dir, folder, overwrite=overwrite or resume)
    info["status"] = "done"
    _write_json(out / ENSEMBLE_FILE, info)
    return out


def _lucyd_version() -> str:

    return str(getattr(lucyd, "__version__", "unknown"))


# ---------------------------------------------------------------------------- loading

class Ensemble:
    """``K`` trained restoration models used together (a deep ensemble).

    Obtain one with :func:`load_ensemble`. Attributes: ``members`` (list of
    :class:`~lucyd.train.RestorationModel`), ``info`` (ensemble.json, or a synthetic one for an
    in-memory ensemble), ``path``, ``name`` (network), ``ndim``, ``size_multiple``,
    ``voxel_size``, ``probabilistic``.
    """

    def __init__(self, members: Sequence, info: dict | None = None, path: Path | None = None):
        members = list(members)
        if not members:
            raise InputError("ensemble: needs at least one member")
        ndims = {m.ndim for m in members}
        if len(ndims) != 1:
            raise InputError(f"ensemble: members restore different dimensionalities {sorted(ndims)}")
        self.members = members
        self.path = path
        self.ndim = members[0].ndim
        self.name = members[0].name
        self.size_multiple = max(m.size_multiple for m in members)
        self.voxel_size = members[0].voxel_size
        flags = [_model_is_probabilistic(m) for m in members]
        if any(flags) and not all(flags):
            raise InputError("ensemble: mixes probabilistic and non-probabilistic members")
        self.probabilistic = all(flags)
        self.info = info if info is not None else {
            "format": ENSEMBLE_FORMAT, "format_version": ENSEMBLE_VERSION, "k": len(members),
            "model": self.name, "probabilistic": self.probabilistic,
            "members": [{"name": str(getattr(m, "path", "") or i)} for i, m in enumerate(members)]}

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Ensemble({self.name!r}, k={len(self)}, ndim={self.ndim}, path={str(self.path)!r})"

    def predict(self, array, **kwargs) -> np.ndarray:
        """Mean restoration of the members (float32, the input's shape and intensity scale).

        Keyword arguments are those of :meth:`lucyd.train.RestorationModel.predict`
        (``tile_shape``, ``overlap``, ``device``, ``batch_size``, ``progress``).
        """
        # lazy: lucyd.train.uncertainty imports this module (a cycle)
        from lucyd.train.uncertainty import predict_with_uncertainty  # uncertainty imports this module

        mean, _ = predict_with_uncertainty(self, array, require=False, **kwargs)
        return mean


def _model_is_probabilistic(model) -> bool:
    kwargs = (model.info.get("network", {}) or {}).get("kwargs", {}) or {}
    if kwargs.get("probabilistic"):
        return True
    return bool(getattr(model.net, "probabilistic", False))


def is_ensemble(path: str | Path) -> bool:
    """Whether ``path`` is an ensemble folder (has an ``ensemble.json``)."""
    return (Path(path) / ENSEMBLE_FILE).is_file()


def load_ensemble(path: str | Path, *, weights: str = "best") -> Ensemble:
    """Load an ensemble folder written by :func:`train_ensemble`.

    Parameters
    ----------
    path : str or Path
        The folder with ``ensemble.json`` and the ``member_NN`` model folders.
    weights : {"best", "last"}
        Which checkpoint of each member (see :func:`lucyd.train.load_model`).

    Returns
    -------
    Ensemble

    Raises
    ------
    FileFormatError
        Missing folder or ``ensemble.json``, unknown format or version, a missing or broken
        member, members of different dimensionality.
    """

    root = Path(path)
    if not root.is_dir():
        raise FileFormatError(f"{root}: no such ensemble folder")
    jpath = root / ENSEMBLE_FILE
    info = read_json_description(jpath, "ensemble description", folder_kind="ensemble")
    if info.get("format") != ENSEMBLE_FORMAT:
        raise FileFormatError(f"{jpath}: not a lucyd ensemble description")
    if info.get("format_version") != ENSEMBLE_VERSION:
        raise FileFormatError(f"{jpath}: unknown ensemble format version "
                              f"{info.get('format_version')!r} (this lucyd reads {ENSEMBLE_VERSION})")
    entries = info.get("members")
    if not isinstance(entries, list) or not entries:
        raise FileFormatError(f"{jpath}: lists no members")
    members = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".."):
            raise FileFormatError(f"{jpath}: invalid member entry {entry!r}")
        folder = root / name
        if not folder.is_dir():
            raise FileFormatError(f"{root}: member {name!r} is missing (unfinished training? "
                                  "resume it with train_ensemble(..., resume=True))")
        members.append(load_model(folder, weights=weights))
    try:
        return Ensemble(members, info, root)
    except InputError as exc:
        raise FileFormatError(f"{root}: {exc}") from None


def load_any(path: str | Path, *, weights: str = "best"):
    """A model folder (:func:`lucyd.train.load_model`) or an ensemble folder (:func:`load_ensemble`)."""

    if is_ensemble(path):
        return load_ensemble(path, weights=weights)
    return load_model(path, weights=weights)


_MOVED = {
    "predict_with_uncertainty", "uncertainty_paths", "predict_uncertainty_file",
    "spearman_uncertainty_error", "UNCERTAINTY_KEYS", "UNCERTAINTY_SUFFIXES",
}


def __getattr__(name: str):
    """Uncertainty readouts live in :mod:`lucyd.train.uncertainty` (importable from here too)."""
    if name in _MOVED:
        from lucyd.train import uncertainty  # lazy: it imports this module (a cycle)

        return getattr(uncertainty, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENSEMBLE_FORMAT",
    "ENSEMBLE_VERSION",
    "Ensemble",
    "is_ensemble",
    "is_probabilistic",
    "load_any",
    "load_ensemble",
    "member_name",
    "train_ensemble",
    "with_default_loss",
]
