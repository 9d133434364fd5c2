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

:func:`predict_with_uncertainty` combines the members (see its docstring for the formulas);
:func:`predict_uncertainty_file` writes the mean restoration and the uncertainty maps, which is
what ``lucyd predict --uncertainty`` does.

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

from lucyd.errors import FileFormatError, InputError

#: ``format`` field of ensemble.json
ENSEMBLE_FORMAT = "lucyd-ensemble"
#: version of the ensemble folder layout this code writes and reads
ENSEMBLE_VERSION = 1
#: name of the ensemble description file
ENSEMBLE_FILE = "ensemble.json"
#: keys of the uncertainty dictionary, in the order files are written
UNCERTAINTY_KEYS = ("total", "laplace_scale", "disagreement")
#: file-name suffix of each uncertainty map written next to the restoration
UNCERTAINTY_SUFFIXES = {"total": "_uncertainty", "laplace_scale": "_laplace_scale",
                        "disagreement": "_disagreement"}
#: recognised image extensions, longest first (for naming the uncertainty files)
_IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy")


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
    from lucyd.errors import LucydError
    from lucyd.train.card import ModelCard

    try:
        return ModelCard.read(folder).complete
    except LucydError:
        return False


def _write_json(path: Path, data: dict) -> None:
    from lucyd.io.atomic import atomic_path

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
    from lucyd.train.config import TrainConfig
    from lucyd.train.trainer import train

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
    import lucyd

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
    from lucyd.train.model import load_model, read_json_description

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
    from lucyd.train.model import load_model

    if is_ensemble(path):
        return load_ensemble(path, weights=weights)
    return load_model(path, weights=weights)


# ---------------------------------------------------------------------------- prediction

def _members(model) -> list:
    if isinstance(model, Ensemble):
        return model.members
    if isinstance(model, (list, tuple)):
        return list(Ensemble(model).members)
    if hasattr(model, "predict") and hasattr(model, "net"):
        return [model]
    raise InputError(f"model: expected a RestorationModel, an Ensemble or a list of models, "
                     f"got {type(model).__name__}")


def predict_with_uncertainty(model, array, *, tile_shape=None, overlap=None,
                             device: str = "auto", batch_size: int = 1, progress: bool = False,
                             require: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean restoration and per-voxel uncertainty maps of a model or an ensemble.

    With members ``i = 1..K`` predicting means ``μ_i`` and, when probabilistic, Laplace scales
    ``σ_i`` (Weigert et al., Nature Methods 2018), per voxel:

    * ``mean = (1/K) Σ μ_i`` — the restoration;
    * ``laplace_scale = (1/K) Σ σ_i`` — the members' average Laplace scale (probabilistic
      members only). A Laplace distribution of scale σ has standard deviation ``√2 · σ``;
    * ``disagreement = sqrt((1/K) Σ (μ_i − mean)²)`` — the population standard deviation of the
      members' means (K ≥ 2 only; Lakshminarayanan et al., NeurIPS 2017);
    * ``total = sqrt((1/K) Σ 2 σ_i² + disagreement²)`` — the standard deviation of the
      ensemble's predictive mixture ``(1/K) Σ Laplace(μ_i, σ_i)`` (law of total variance);
      without scales it equals ``disagreement``, with one member it is ``√2 · σ``.

    All maps are float32 in the input's intensity units (each member maps its output back with
    the input's percentiles). They estimate the restoration's error, they do not bound it; do not
    use restorations or these maps for intensity quantification (CARE paper's warning).

    Parameters
    ----------
    model : RestorationModel, Ensemble or list of RestorationModel
        A single probabilistic model, or several models (any kind) used as an ensemble.
    array : array_like
        (y, x) or (z, y, x) image of the models' dimensionality (held in memory).
    tile_shape, overlap, device, batch_size, progress
        As :meth:`lucyd.train.RestorationModel.predict`.
    require : bool
        Raise when no uncertainty can be computed (a single non-probabilistic model); with
        ``False`` the dictionary is then empty.

    Returns
    -------
    mean : numpy.ndarray
        float32, the input's shape.
    uncertainty : dict of str to numpy.ndarray
        ``total`` always (when any uncertainty exists), ``laplace_scale`` for probabilistic
        members, ``disagreement`` for K ≥ 2; each float32 of the input's shape, ≥ 0.

    Raises
    ------
    InputError
        A single non-probabilistic model (with ``require``), wrong dimensionality, non-finite
        input.
    """
    members = _members(model)
    k = len(members)
    flags = [_model_is_probabilistic(m) for m in members]
    if any(flags) and not all(flags):
        raise InputError("model: mixes probabilistic and non-probabilistic members")
    prob = all(flags)
    if require and k == 1 and not prob:
        raise InputError("model: a single non-probabilistic network has no uncertainty; train "
                         "an ensemble (--ensemble K) or a probabilistic CARE "
                         "(net_kwargs probabilistic=True, loss laplace_nll)")
    arr = array if not isinstance(array, (list, tuple)) else np.asarray(array)
    mean = m2 = scale_sum = var_sum = None
    for i, member in enumerate(members):
        out = member.predict(arr, tile_shape=tile_shape, overlap=overlap, device=device,
                             batch_size=batch_size, all_channels=True, progress=progress)
        mu = np.asarray(out[0], dtype=np.float32)
        if mean is None:
            mean = np.zeros_like(mu)
            m2 = np.zeros_like(mu)
        # Welford's running mean and sum of squared deviations (stable in float32)
        delta = mu - mean
        mean += delta / np.float32(i + 1)
        m2 += delta * (mu - mean)
        if prob:
            if out.shape[0] < 2:
                raise InputError(f"model: member {i} is marked probabilistic but gives "
                                 f"{out.shape[0]} output channel")
            sigma = np.clip(np.asarray(out[1], dtype=np.float32), 0.0, None)
            if scale_sum is None:
                scale_sum = np.zeros_like(mu)
                var_sum = np.zeros_like(mu)
            scale_sum += sigma
            var_sum += np.float32(2.0) * sigma * sigma
        del out
    unc: dict[str, np.ndarray] = {}
    disagreement = np.sqrt(np.clip(m2 / np.float32(k), 0.0, None)) if k >= 2 else None
    if prob:
        unc["laplace_scale"] = (scale_sum / np.float32(k)).astype(np.float32)
        total_var = var_sum / np.float32(k)
        if disagreement is not None:
            total_var = total_var + disagreement * disagreement
        unc["total"] = np.sqrt(total_var).astype(np.float32)
    elif disagreement is not None:
        unc["total"] = disagreement.astype(np.float32, copy=True)
    if disagreement is not None:
        unc["disagreement"] = disagreement.astype(np.float32)
    ordered = {key: unc[key] for key in UNCERTAINTY_KEYS if key in unc}
    return mean.astype(np.float32, copy=False), ordered


def uncertainty_paths(output_path: str | Path, keys: Sequence[str] = UNCERTAINTY_KEYS
                      ) -> dict[str, Path]:
    """File names of the uncertainty maps written beside ``output_path``.

    ``restored.tif`` → ``restored_uncertainty.tif`` (total), ``restored_laplace_scale.tif``,
    ``restored_disagreement.tif``; double extensions (``.ome.tif``, ``.ome.zarr``) are kept.
    """
    p = Path(output_path)
    name = p.name
    low = name.lower()
    ext = next((s for s in _IMAGE_SUFFIXES if low.endswith(s) and len(name) > len(s)), p.suffix)
    stem = name[: len(name) - len(ext)] if ext else name
    return {key: p.with_name(f"{stem}{UNCERTAINTY_SUFFIXES[key]}{name[len(stem):]}")
            for key in keys}


def predict_uncertainty_file(model, input_path: str | Path, output_path: str | Path, *,
                             uncertainty: bool = True, tile_shape=None, overlap=None,
                             device: str = "auto", batch_size: int = 1,
                             progress: bool = True) -> dict[str, Path]:
    """Restore an image file with a model or ensemble and write the uncertainty maps beside it.

    Writes ``output_path`` (the mean restoration) and, with ``uncertainty``, one file per map of
    :func:`predict_with_uncertainty` named by :func:`uncertainty_paths`
    (``OUTPUT_uncertainty.EXT`` = ``total``, ``OUTPUT_laplace_scale.EXT``,
    ``OUTPUT_disagreement.EXT``), all float32 with the input's voxel size, atomically. The image
    is held in memory (use :func:`lucyd.train.predict_file` for out-of-core single models).

    Parameters
    ----------
    model : RestorationModel, Ensemble, or path of a model / ensemble folder
    input_path, output_path : str or Path
    uncertainty : bool
        Write the uncertainty maps (else only the mean restoration).
    tile_shape, overlap, device, batch_size, progress
        As :meth:`lucyd.train.RestorationModel.predict`.

    Returns
    -------
    dict of str to Path
        ``{"restoration": output_path, "total": ..., ...}`` of the files written.
    """
    from lucyd.io import ImageMetadata, read_image, write_image

    if isinstance(model, (str, Path)):
        model = load_any(model)
    image, meta = read_image(input_path)
    image = np.asarray(image)
    if image.ndim != getattr(model, "ndim", image.ndim):
        raise InputError(f"{input_path}: the model restores {model.ndim}D images but the input is "
                         f"{image.ndim}D with shape {image.shape}")
    if tile_shape is None:
        from lucyd.train.model import default_tile_shape

        tile_shape = default_tile_shape(image.shape, getattr(model, "size_multiple", 1))
    mean, unc = predict_with_uncertainty(model, image, tile_shape=tile_shape, overlap=overlap,
                                         device=device, batch_size=batch_size,
                                         progress=progress, require=uncertainty)
    out_meta = ImageMetadata(meta.axes, meta.voxel_size, {})
    written = {"restoration": Path(output_path)}
    write_image(output_path, mean, out_meta)
    if uncertainty:
        paths = uncertainty_paths(output_path, list(unc))
        for key, arr in unc.items():
            write_image(paths[key], arr, out_meta)
            written[key] = paths[key]
    return written


# ---------------------------------------------------------------------------- evaluation

def spearman_uncertainty_error(uncertainty, error, *, patch: int | Sequence[int] | None = None
                               ) -> float:
    """Spearman rank correlation between an uncertainty map and the absolute error.

    Parameters
    ----------
    uncertainty, error : array_like
        Same shape; ``error`` is taken in absolute value.
    patch : int or tuple of int, optional
        Average both over non-overlapping patches of this size first (the trailing partial
        patches are dropped), which compares *regions* rather than single noisy voxels.

    Returns
    -------
    float
        ``scipy.stats.spearmanr`` correlation (NaN when either input is constant).
    """
    from scipy.stats import spearmanr

    u = np.asarray(uncertainty, dtype=np.float64)
    e = np.abs(np.asarray(error, dtype=np.float64))
    if u.shape != e.shape:
        raise InputError(f"uncertainty and error: shapes differ, {u.shape} vs {e.shape}")
    if patch is not None:
        p = (int(patch),) * u.ndim if np.isscalar(patch) else tuple(int(v) for v in patch)
        if len(p) != u.ndim or any(v < 1 for v in p):
            raise InputError(f"patch: expected {u.ndim} positive sizes, got {patch!r}")
        u, e = _block_mean(u, p), _block_mean(e, p)
    if u.size < 3:
        raise InputError("uncertainty: fewer than 3 values (or patches) to rank")
    res = spearmanr(u.ravel(), e.ravel())
    return float(getattr(res, "statistic", res[0]))


def _block_mean(a: np.ndarray, p: tuple[int, ...]) -> np.ndarray:
    n = tuple(s // q for s, q in zip(a.shape, p, strict=True))
    if any(v == 0 for v in n):
        raise InputError(f"patch: {p} is larger than the image {a.shape}")
    a = a[tuple(slice(0, v * q) for v, q in zip(n, p, strict=True))]
    shape = [x for v, q in zip(n, p, strict=True) for x in (v, q)]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * len(p), 2)))


__all__ = [
    "ENSEMBLE_FORMAT",
    "ENSEMBLE_VERSION",
    "Ensemble",
    "is_ensemble",
    "is_probabilistic",
    "load_any",
    "load_ensemble",
    "member_name",
    "predict_uncertainty_file",
    "predict_with_uncertainty",
    "spearman_uncertainty_error",
    "train_ensemble",
    "uncertainty_paths",
    "with_default_loss",
]
