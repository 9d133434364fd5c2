"""Loading model folders (:func:`load_model`) and restoring image files (:func:`predict_file`).

See :mod:`lucyd.train.model` for the folder layout and the prediction path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lucyd.errors import FileFormatError, InputError
from lucyd.io import ImageMetadata, open_writer, read_image
from lucyd.io.api import format_from_path
from lucyd.nets import build_network
from lucyd.nets.layers import optimise_for_inference
from lucyd.tiling import open_resumable_zarr
from lucyd.train.card import FORMAT_VERSION, MODEL_FORMAT, ModelCard, read_json_description
from lucyd.train.config import TrainConfig
from lucyd.train.model import RestorationModel, default_tile_shape

# ---------------------------------------------------------------------- loading


def load_model(
    model_dir: str | Path, *, weights: str = "best", fuse_batch_norm: bool = True
) -> RestorationModel:
    """Load a model folder written by :func:`lucyd.train.train`.

    Parameters
    ----------
    model_dir : str or Path
        The folder (``config.json``, ``model.json``, ``best.pt`` / ``last.pt``).
    weights : {"best", "last"}
        Which checkpoint (``best`` falls back to ``last`` when there is no ``best.pt``).
    fuse_batch_norm : bool
        Prepare the network for inference (:func:`lucyd.nets.layers.optimise_for_inference`:
        batch norms folded into the convolutions before them, oneDNN convolutions,
        channels-last weights): same outputs up to float round-off, faster inference. False
        keeps the network trainable as saved.

    Returns
    -------
    RestorationModel

    Raises
    ------
    FileFormatError
        Missing folder or files, an unknown format version, a config and model.json naming
        different networks, corrupt or mismatching weights.

    Warns
    -----
    IncompleteModelWarning
        The model card says the training has not finished (``running``: still training or
        killed; ``interrupted``: stopped early by a time limit or Ctrl-C); resume it.
    """

    path = Path(model_dir)
    if not path.is_dir():
        raise FileFormatError(f"{path}: no such model folder")
    info = read_json_description(path / "model.json", "model description")
    if info.get("format") != MODEL_FORMAT:
        raise FileFormatError(
            f"{path}: model.json is not a lucyd model (format {info.get('format')!r})"
        )
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise FileFormatError(
            f"{path}: unknown model format version {version!r} (this lucyd reads "
            f"version {FORMAT_VERSION}); update lucyd or retrain"
        )
    if not isinstance(info.get("network"), dict) or not isinstance(
        info.get("normalization"), dict
    ):
        raise FileFormatError(f"{path}: model.json lacks the network or normalisation fields")
    card = ModelCard.from_dict(info, path / "model.json")
    name = card.network.name
    try:
        cfg = TrainConfig.load(path / "config.json")
    except InputError as exc:
        raise FileFormatError(str(exc)) from None
    if cfg.model.lower() != name.lower():
        raise FileFormatError(
            f"{path}: config.json says network {cfg.model!r} but model.json says "
            f"{name!r}; the folder is inconsistent"
        )
    if weights not in ("best", "last"):
        raise InputError(f"weights: expected 'best' or 'last', got {weights!r}")
    candidates = ["best.pt", "last.pt"] if weights == "best" else ["last.pt"]
    wpath = next((path / c for c in candidates if (path / c).is_file()), None)
    if wpath is None:
        raise FileFormatError(f"{path}: no weights ({' or '.join(candidates)})")
    try:
        ckpt = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle = corrupt file
        raise FileFormatError(
            f"{wpath}: corrupt or unreadable weights ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise FileFormatError(f"{wpath}: not a lucyd checkpoint")
    if str(ckpt.get("model_name", name)).lower() != name.lower():
        raise FileFormatError(
            f"{wpath}: weights of network {ckpt.get('model_name')!r} but model.json says {name!r}"
        )
    model = model_from_weights(card, ckpt["model"], path, fuse_batch_norm=fuse_batch_norm,
                               weights_name=wpath)
    model.warn_if_incomplete()
    return model


def model_from_weights(
    card: ModelCard,
    state_dict: dict,
    path: Path | None = None,
    *,
    fuse_batch_norm: bool = True,
    weights_name: str | Path | None = None,
) -> RestorationModel:
    """The :class:`RestorationModel` of a model card and the network's state dict.

    The network is rebuilt from the card (name, ndim, keyword arguments), the weights loaded
    and, with ``fuse_batch_norm``, batch norms folded into their convolutions. Used by
    :func:`load_model` and by the bioimage.io package reader (:mod:`lucyd.export.bioimageio`),
    so a model folder and its package restore identically.

    Raises
    ------
    FileFormatError
        The network cannot be rebuilt, or the weights do not fit it.
    """
    name = card.network.name
    try:
        net = build_network(name, ndim=card.network.ndim, **dict(card.network.kwargs))
    except InputError as exc:
        raise FileFormatError(f"{path}: cannot rebuild the network ({exc})") from None
    try:
        net.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = weights_name or path
        raise FileFormatError(f"{where}: weights do not fit network {name!r} ({first})") from None
    if fuse_batch_norm:

        optimise_for_inference(net)
    return RestorationModel(net, card, path)


# ---------------------------------------------------------------------- files


def predict_file(
    model: RestorationModel | str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tile_shape=None,
    overlap=None,
    device: str = "auto",
    batch_size: int = 1,
    progress: bool = True,
    cluster=None,
    max_memory=None,
) -> Path:
    """Restore an image file tile by tile (out of core) into a float32 file.

    The input is opened lazily (:func:`lucyd.io.read_image` with ``lazy=True``; Zarr and TIFF are
    read tile by tile), the output written with :func:`lucyd.io.open_writer` (atomically; Zarr,
    TIFF, ``.npy``) with the input's voxel size. Global percentiles come from the whole input
    (every k-th plane above 16 M voxels). Into OME-Zarr the output is built in
    ``.<name>.partial`` beside it with a record of the finished tiles
    (:func:`lucyd.tiling.open_resumable_zarr`): rerunning the same command after a crash
    computes only the unfinished tiles.

    Parameters
    ----------
    model : RestorationModel or path
        A loaded model or a model folder.
    input_path, output_path : str or Path
        Input image and output file (format from the extension).
    tile_shape : int or tuple, optional
        Default: from ``max_memory`` when given, else about 64×256×256 voxels (clipped to the
        image), the whole image in 2D up to 4096².
    overlap, device, batch_size, progress, cluster, max_memory
        As :meth:`RestorationModel.predict`.

    Returns
    -------
    Path
        ``output_path``.
    """

    if not isinstance(model, RestorationModel):
        model = load_model(model)
    input_path, output_path = Path(input_path), Path(output_path)
    source, meta = read_image(input_path, lazy=True)
    shape = model._check_input(source, name=str(input_path))
    if tile_shape is None and max_memory is None:
        tile_shape = default_tile_shape(shape, model.size_multiple)
    tile_shape = model.tile_shape_for(shape, tile_shape, max_memory)
    out_meta = ImageMetadata(meta.axes, meta.voxel_size, {})
    kwargs = dict(tile_shape=tile_shape, device=device, batch_size=batch_size, progress=progress,
                  cluster=cluster)
    if format_from_path(output_path) == "zarr":
        stat = input_path.stat()
        weights = [p.stat().st_mtime_ns for p in sorted(Path(model.path or ".").glob("*.pt"))]
        job = (f"{input_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:"
               f"{model.path}:{weights}:{tile_shape}")
        with open_resumable_zarr(output_path, shape, np.float32, out_meta, job=job) as out:
            model.predict(source, out=out, **kwargs)
    else:
        with open_writer(output_path, shape, np.float32, out_meta) as out:
            model.predict(source, out=out, **kwargs)
    return output_path
