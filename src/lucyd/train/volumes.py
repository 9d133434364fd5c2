"""Prediction on time series and multichannel files: a trained model applied to every (t, c) volume."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lucyd.io import read_hyperstack
from lucyd.io.hyperstack import map_volumes
from lucyd.train.loading import load_model
from lucyd.train.model import RestorationModel, default_tile_shape


def predict_volumes_file(
    model: Any,
    input_path: str | Path,
    output_path: str | Path,
    *,
    tile_shape=None,
    overlap=None,
    device: str = "auto",
    batch_size: int = 1,
    progress: Any = True,
    cancel: Any = None,
    cluster: Any = None,
    max_memory: Any = None,
) -> Path:
    """Restore every (t, c) volume of an image file with a trained model into one file.

    Each volume is restored on its own by :meth:`RestorationModel.predict` (its own percentile
    normalisation, tiled), so a volume's result is exactly what predicting that volume alone
    gives. The output keeps the input's axes, voxel size, channel names, emission wavelengths and
    time interval (:func:`lucyd.io.hyperstack.map_volumes`). A model is trained for one PSF and
    one noise level: a model per channel is the honest choice when the channels' optics differ.

    Parameters
    ----------
    model : RestorationModel or path
        A loaded model or a model folder (one for every channel).
    input_path, output_path : str or Path
        Input (any :func:`lucyd.io.read_hyperstack` format) and output (format from the
        extension).
    tile_shape, overlap, device, batch_size
        As :meth:`RestorationModel.predict` (default tile as :func:`predict_file`).
    progress : bool or callable
        Progress over volumes.
    cancel : threading.Event or callable, optional
        Stops at the next volume.
    cluster, max_memory
        As :meth:`RestorationModel.predict`, for each volume.

    Returns
    -------
    Path
        ``output_path``.
    """
    if not isinstance(model, RestorationModel):
        model = load_model(model)
    source, meta = read_hyperstack(input_path, lazy=True)
    volume_shape = tuple(int(n) for n in source.shape[len(source.shape) - meta.spatial_ndim:])
    tiles = tile_shape if tile_shape is not None else default_tile_shape(volume_shape,
                                                                         model.size_multiple)

    def predict_volume(volume, where):
        model._check_input(volume, name=f"{input_path} ({where.label})")
        return model.predict(volume, tile_shape=tiles, overlap=overlap, device=device,
                             batch_size=batch_size, progress=False, cluster=cluster,
                             max_memory=max_memory)

    map_volumes(predict_volume, source, meta, output_path,
                output_metadata=dataclasses.replace(meta, extra={}), progress=progress,
                cancel=cancel, desc="predict (t, c) volumes")
    return Path(output_path)
