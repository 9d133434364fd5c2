"""Per-voxel uncertainty of a restoration: Laplace scale, ensemble disagreement, their total.

Readouts of a probabilistic network (``care`` with ``probabilistic=True``, Weigert et al., Nature
Methods 15:1090, 2018) and of deep ensembles (Lakshminarayanan, Pritzel & Blundell, NeurIPS
2017) written by :func:`lucyd.train.ensemble.train_ensemble`; see :mod:`lucyd.train.ensemble`.
Restored images and these maps must not be used for intensity quantification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from lucyd.errors import InputError
from lucyd.io import ImageMetadata, open_writer, read_image
from lucyd.tiling import StackedOutputs, plan_partition, run_tiles
from lucyd.tiling.tasks import EnsembleTask, NetworkTask
from lucyd.train.ensemble import Ensemble, _model_is_probabilistic, load_any
from lucyd.train.model import _bytes, default_tile_shape
from lucyd.validation import check_finite

#: keys of the uncertainty dictionary, in the order files are written
UNCERTAINTY_KEYS = ("total", "laplace_scale", "disagreement")
#: file-name suffix of each uncertainty map written next to the restoration
UNCERTAINTY_SUFFIXES = {"total": "_uncertainty", "laplace_scale": "_laplace_scale",
                        "disagreement": "_disagreement"}
#: recognised image extensions, longest first (for naming the uncertainty files)
_IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy")


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
                             require: bool = True, cluster=None, max_memory=None
                             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
        (y, x) or (z, y, x) image of the models' dimensionality: numpy, or a lazy array-like
        (zarr, memmap) read tile by tile.
    tile_shape, overlap, device, batch_size, progress, cluster, max_memory
        As :meth:`lucyd.train.RestorationModel.predict` (``max_memory``: per tile of all members).
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

    Notes
    -----
    Every tile runs all members (:class:`lucyd.tiling.tasks.EnsembleTask`) and combines them
    voxel by voxel, so only the maps are stored (:func:`predict_uncertainty_file` writes them
    tile by tile, out of core); the plan takes the largest halo and the common size multiple
    of the members.

    Raises
    ------
    InputError
        A single non-probabilistic model (with ``require``), wrong dimensionality, non-finite
        input.
    """
    task, plan, arr, squeeze = ensemble_job(model, array, tile_shape=tile_shape, device=device,
                                            require=require, max_memory=max_memory)
    maps = run_tiles(plan, task, arr, channels=len(task.channels), executor=cluster,
                     progress=progress, desc="predict ensemble", max_memory=_bytes(max_memory))
    if squeeze:
        maps = maps[:, 0]
    named = dict(zip(task.channels, maps, strict=True))
    mean = named.pop("mean")
    ordered = {key: named[key] for key in UNCERTAINTY_KEYS if key in named}
    return mean, ordered


def ensemble_job(model, array, *, tile_shape=None, device="auto", require=True, max_memory=None,
                 chunks=None):
    """The tile task, plan and input of :func:`predict_with_uncertainty`.

    Returns ``(task, plan, array, squeeze)``: a 2D image given to 3D models becomes a
    single-plane volume (``squeeze`` True: drop the z axis of the result).
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
    arr = array if hasattr(array, "shape") else np.asarray(array)
    first = members[0]
    squeeze = first.ndim == 3 and len(arr.shape) == 2
    if squeeze:
        arr = np.asarray(arr)[None]
        tile_shape = None if tile_shape is None else (1, *np.broadcast_to(tile_shape, 2))
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind not in "biuf" or arr.dtype == bool:
            raise InputError(f"image: expected a numeric array, got dtype {arr.dtype}")
        check_finite(arr, "image")
    shape = first._check_input(arr)
    for m in members:
        m.warn_if_incomplete()
    task = EnsembleTask(
        tuple(NetworkTask.for_model(m, arr, device=device, all_channels=True) for m in members),
        prob,
    )
    tile = first.tile_shape_for(shape, tile_shape, max_memory, members=k)
    halo = tuple(max(h) for h in zip(*(m.halo for m in members), strict=True))
    multiple = math.lcm(*(m.size_multiple for m in members))
    plan = plan_partition(shape, tile, halo, multiple=multiple, chunks=chunks)
    return task, plan, arr, squeeze


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
                             progress: bool = True, cluster=None, max_memory=None
                             ) -> dict[str, Path]:
    """Restore an image file with a model or ensemble and write the uncertainty maps beside it.

    Writes ``output_path`` (the mean restoration) and, with ``uncertainty``, one file per map of
    :func:`predict_with_uncertainty` named by :func:`uncertainty_paths`
    (``OUTPUT_uncertainty.EXT`` = ``total``, ``OUTPUT_laplace_scale.EXT``,
    ``OUTPUT_disagreement.EXT``), all float32 with the input's voxel size, atomically. The input
    is read and every map written tile by tile (out of core): each tile runs all members and
    combines them.

    Parameters
    ----------
    model : RestorationModel, Ensemble, or path of a model / ensemble folder
    input_path, output_path : str or Path
    uncertainty : bool
        Write the uncertainty maps (else only the mean restoration).
    tile_shape, overlap, device, batch_size, progress, cluster, max_memory
        As :meth:`lucyd.train.RestorationModel.predict`; default tiles about 64×256×256.

    Returns
    -------
    dict of str to Path
        ``{"restoration": output_path, "total": ..., ...}`` of the files written.
    """
    if isinstance(model, (str, Path)):
        model = load_any(model)
    source, meta = read_image(input_path, lazy=True)
    ndim = getattr(model, "ndim", len(source.shape))
    if len(source.shape) != ndim:
        raise InputError(f"{input_path}: the model restores {ndim}D images but the input is "
                         f"{len(source.shape)}D with shape {tuple(source.shape)}")
    if tile_shape is None and max_memory is None:
        tile_shape = default_tile_shape(source.shape, getattr(model, "size_multiple", 1))
    task, plan, arr, _ = ensemble_job(model, source, tile_shape=tile_shape, device=device,
                                      require=uncertainty, max_memory=max_memory)
    paths = {"mean": Path(output_path)}
    if uncertainty:
        paths.update(uncertainty_paths(output_path, [c for c in task.channels if c != "mean"]))
    out_meta = ImageMetadata(meta.axes, meta.voxel_size, {})
    with ExitStack() as stack:
        writers = [
            stack.enter_context(open_writer(paths[name], plan.shape, np.float32, out_meta))
            if name in paths else None
            for name in task.channels
        ]
        run_tiles(plan, task, arr, StackedOutputs(writers, plan.shape), executor=cluster,
                  progress=progress, desc="predict ensemble", max_memory=_bytes(max_memory))
    written = {"restoration": paths.pop("mean")}
    written.update(paths)
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
