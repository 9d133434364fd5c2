"""`lucyd restore` on time series and multichannel files: every (t, c) volume with its channel's PSF."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lucyd.io.atomic import atomic_path
from lucyd.io.hyperstack import map_volumes
from lucyd.psf.channels import open_channel_file_job
from lucyd.restore.pipeline import RestoreConfig, restore


def restore_volumes_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    psfs: Sequence[Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    optics: dict | None = None,
    same_psf: bool = False,
    config: RestoreConfig | None = None,
    voxel_size: Sequence[float] | None = None,
    progress: Any = True,
    cancel: Any = None,
    cluster: Any = None,
    max_memory: Any = None,
) -> Path:
    """Restore every (t, c) volume of an image file (:func:`lucyd.restore.restore`) into one file.

    Each channel has its own PSF (files in channel order, or a model per emission wavelength)
    and so its own model: the first time point of a channel is calibrated and its model trained
    (or taken from the cache); later time points of that channel reuse the model, as
    :func:`lucyd.restore.files.restore_files` does for a series of files, while each volume's
    own noise calibration, discrepancy-principle RL and physics check are its own. The output
    keeps the input's axes, voxel size, channel names, wavelengths and time interval; the
    record of every volume goes to ``<output>.restore.json``.

    Parameters
    ----------
    input_path, output_path : str or Path
        Raw image (any :func:`lucyd.io.read_hyperstack` format) and output file.
    psfs, wavelengths, optics, same_psf
        The channels' PSFs, as :func:`lucyd.psf.channels.channel_psfs` (``optics``:
        ``{"na":, "ni":, "model":}``).
    config : RestoreConfig, optional
        Job parameters.
    voxel_size : sequence of float, optional
        Overrides the file's voxel size (µm).
    progress : bool or callable
        Progress over volumes.
    cancel : threading.Event or callable, optional
        Stops at the next volume.
    cluster, max_memory
        As :func:`lucyd.restore.restore` (its prediction stage), for each volume.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    InputError
        PSF or wavelength counts that do not match the channels, an output over an input —
        before any training.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    record_path = output_path.with_name(output_path.name + ".restore.json")
    job = open_channel_file_job(input_path, [output_path, record_path], psfs=psfs, wavelengths=wavelengths,
                                optics=optics, same_psf=same_psf, voxel_size=voxel_size)
    image, meta, vs, channels = job.image, job.meta, job.voxel_size, job.channels
    cfg = config or RestoreConfig()
    calibrations: dict[int, Any] = {}  # per channel: the first time point's, for its model
    records: list[dict] = []

    def restore_volume(volume, where):
        channel = channels[where.c]
        result = restore(volume, channel.psf, config=cfg, voxel_size=vs,
                         psf_voxel_size=channel.voxel_size, progress=False,
                         model_calibration=calibrations.get(where.c), cluster=cluster,
                         max_memory=max_memory)
        calibrations.setdefault(where.c, result.model_calibration)
        records.append({"t": where.t, "c": where.c, "psf": channel.source, **result.record})
        return result.image

    out_meta = dataclasses.replace(meta, voxel_size=vs, extra={})
    map_volumes(restore_volume, image, meta, output_path, output_metadata=out_meta,
                progress=progress, cancel=cancel, desc="restore (t, c) volumes")
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps({"input": str(input_path), "output": str(output_path),
                                   "axes": meta.axes, "volumes": records}, indent=2, default=str))
    return output_path
