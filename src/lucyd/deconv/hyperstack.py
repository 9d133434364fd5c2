"""Deconvolution of time series and multichannel files: every (t, c) volume with its channel's PSF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lucyd.deconv.api import deconvolve
from lucyd.deconv.config import job_config
from lucyd.deconv.psfprep import prepare_psf
from lucyd.io.hyperstack import map_volumes
from lucyd.psf.channels import open_channel_file_job


def deconvolve_volumes_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    psfs: Sequence[Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    optics: dict | None = None,
    same_psf: bool = False,
    voxel_size: Sequence[float] | None = None,
    psf_voxel_size: Sequence[float] | None = None,
    config: Any = None,
    config_path: str | Path | None = None,
    progress: Any = True,
    cancel: Any = None,
    cluster: Any = None,
    **overrides: Any,
) -> Path:
    """Deconvolve every (t, c) volume of an image file with its channel's PSF into one file.

    Each volume is deconvolved independently by :func:`lucyd.deconv.deconvolve` (Richardson
    1972; Lucy 1974) with the PSF of its channel, so channel c at time t is exactly what
    deconvolving that volume alone with that PSF gives. The output has the input's axes,
    voxel size, channel names, emission wavelengths and time interval
    (:func:`lucyd.io.hyperstack.map_volumes`); the parameters go to ``<output>.deconv.json``.
    A single-volume file works too (one volume; e.g. with a model PSF from ``optics``).

    Parameters
    ----------
    input_path, output_path : str or Path
        Image (any :func:`lucyd.io.read_hyperstack` format) and output (format from the
        extension).
    psfs : sequence of path or array, optional
        One PSF per channel, in channel order (or one with ``same_psf``).
    wavelengths : sequence of float, optional
        Emission wavelengths (µm), one per channel, for model PSFs; default the file's.
    optics : dict, optional
        ``{"na":, "ni":, "model":}``: model PSFs per wavelength instead of ``psfs``.
    same_psf : bool
        Use one PSF (or one wavelength) for every channel.
    voxel_size, psf_voxel_size : sequence of float, optional
        Override the image's / the PSF files' voxel size (µm); PSFs are resampled onto the
        image grid when they differ.
    config_path : path, optional
        Where to save the parameters (default ``<output>.deconv.json``).
    progress : bool or callable
        Progress over volumes (see :func:`lucyd.progress.as_reporter`).
    cancel : threading.Event or callable, optional
        Stops at the next volume.
    config : DeconvConfig, optional
        The deconvolution parameters; ``overrides`` (``iterations``, ``back_projector``,
        ``boundary``, ``max_memory``, ...) update it, validated once as in
        :func:`lucyd.deconv.deconvolve`.
    cluster : str, optional
        As in :func:`lucyd.deconv.deconvolve`, for each volume.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    InputError
        PSF or wavelength count other than the channel count, both or neither of PSFs and
        optics, an output over an input — all before any deconvolution.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    record = Path(config_path or output_path.with_name(output_path.name + ".deconv.json"))
    cfg = job_config(config, overrides)
    voxel_size = voxel_size if voxel_size is not None else cfg.voxel_size
    psf_voxel_size = psf_voxel_size if psf_voxel_size is not None else cfg.psf_voxel_size
    job = open_channel_file_job(input_path, [output_path, record], psfs=psfs, wavelengths=wavelengths,
                                optics=optics, same_psf=same_psf, voxel_size=voxel_size)
    vs, channels, volume_shape = job.voxel_size, job.channels, job.volume_shape
    cfg = cfg.model_copy(update=dict(
        input=str(input_path), psf=", ".join(ch.source for ch in channels), output=str(output_path),
        voxel_size=None if vs is None else tuple(vs),
        psf_voxel_size=None if psf_voxel_size is None else tuple(psf_voxel_size)))
    # each channel's PSF prepared once (not once per time point), and a bad PSF refused before
    # the first volume is written; deconvolve does not prepare a PreparedPSF again
    prepared = [prepare_psf(ch.psf, image_shape=volume_shape, voxel_size=cfg.voxel_size,
                            psf_voxel_size=cfg.psf_voxel_size or ch.voxel_size, centre=cfg.centre_psf,
                            boundary=cfg.boundary, energy=cfg.psf_energy)
                for ch in channels]

    def deconvolve_volume(volume, where):
        return deconvolve(volume, prepared[where.c], cfg, progress=False, cluster=cluster)

    map_volumes(deconvolve_volume, job.image, job.meta, output_path, progress=progress, cancel=cancel,
                desc="deconvolve (t, c) volumes")
    cfg.save(record)
    return output_path
