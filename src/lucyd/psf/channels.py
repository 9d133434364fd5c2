"""One PSF per channel: PSF files given in channel order, or models per emission wavelength.

A multichannel image needs each channel's own PSF: the PSF's width scales with the emission
wavelength (lateral FWHM ≈ 0.51 λ / NA, axial ≈ 0.88 λ / (n - sqrt(n² - NA²)); Born & Wolf,
*Principles of Optics*), so one PSF for every channel deconvolves all but one channel with the
wrong kernel. :func:`channel_psfs` therefore refuses a single PSF for several channels unless
the caller says it is meant (``same_psf=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lucyd.errors import InputError
from lucyd.io import read_hyperstack, read_image
from lucyd.io.hyperstack import channel_count, per_channel
from lucyd.io.outputs import check_output_path
from lucyd.psf import make_psf


def psf_from_optics(shape: Sequence[int], voxel_size: Sequence[float], *, na: float, wavelength: float,
                    ni: float, model: str = "born-wolf") -> np.ndarray:
    """A model PSF sized for an image: ±6 lateral FWHM, ±3 axial FWHM (at most the image).

    Parameters
    ----------
    shape, voxel_size : sequence
        The image's shape and voxel size (µm), (z, y, x) or (y, x).
    na, wavelength, ni : float
        Numerical aperture, emission wavelength (µm), immersion refractive index.
    model : str
        A :func:`lucyd.psf.make_psf` model name.
    """
    if voxel_size is None:
        raise InputError("voxel_size: a PSF from --na/--wavelength needs the image's voxel size "
                         "(in the file, or --voxel-size)")
    lateral_fwhm = 0.51 * wavelength / na
    axial_fwhm = 0.88 * wavelength / (ni - math.sqrt(max(ni**2 - na**2, 0.0)))
    halves = []
    for axis, (n, d) in enumerate(zip(shape, voxel_size, strict=True)):
        fwhm = axial_fwhm if (len(shape) == 3 and axis == 0) else lateral_fwhm
        reach = 3 if (len(shape) == 3 and axis == 0) else 6
        halves.append(int(min(max(2, math.ceil(reach * fwhm / d)), max(1, n - 1))))
    psf_shape = tuple(2 * h + 1 for h in halves)
    return make_psf(model, psf_shape, tuple(voxel_size), na=na, wavelength=wavelength, ni=ni)


@dataclass(frozen=True)
class ChannelPSF:
    """The PSF of one channel: ``psf`` array, its ``voxel_size`` (µm, None when the file has
    none: the image's is assumed) and ``source`` (file name or ``"born-wolf 0.52 µm"``)."""

    psf: np.ndarray
    voxel_size: tuple[float, ...] | None
    source: str


def parse_wavelengths(text: str | None) -> list[float] | None:
    """Emission wavelengths in µm from ``"0.52,0.61"`` (None stays None).

    Raises
    ------
    InputError
        Not numbers, or not between 0.2 and 2 µm (a wavelength in nm given as µm).
    """
    if text is None:
        return None
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(
            f"--wavelength: expected emission wavelengths in µm separated by commas, e.g. "
            f"0.52,0.61; got {text!r}"
        ) from None
    bad = [v for v in values if not 0.2 <= v <= 2.0]
    if not values or bad:
        raise InputError(
            f"--wavelength: emission wavelengths are in micrometres (0.2-2), got {text!r}"
        )
    return values


def channel_psfs(
    n_channels: int,
    *,
    psfs: Sequence[Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    file_wavelengths: Sequence[float | None] | None = None,
    optics: dict | None = None,
    volume_shape: Sequence[int] | None = None,
    voxel_size: Sequence[float] | None = None,
    same_psf: bool = False,
    image_name: str = "image",
) -> list[ChannelPSF]:
    """The PSF of every channel, checked before any work.

    Parameters
    ----------
    n_channels : int
        Channels of the image (1 without a channel axis).
    psfs : sequence of path or array, optional
        PSF files or arrays, one per channel in channel order (one for all with ``same_psf``).
    wavelengths : sequence of float, optional
        Emission wavelengths in µm, one per channel, for model PSFs (``optics``); default the
        image file's (``file_wavelengths``).
    file_wavelengths : sequence of float or None, optional
        The emission wavelengths recorded in the image file.
    optics : dict, optional
        ``{"na":, "ni":, "model":}`` for model PSFs (:func:`psf_from_optics`).
    volume_shape, voxel_size : sequence, optional
        One volume's shape and voxel size (µm): the model PSFs' grid.
    same_psf : bool
        Use one PSF (or wavelength) for every channel.
    image_name : str
        For messages.

    Returns
    -------
    list of ChannelPSF
        ``n_channels`` entries.

    Raises
    ------
    InputError
        Neither or both of PSF files and optics; a count that does not match the channels;
        no wavelength known for a model PSF; no voxel size for a model PSF.
    """
    psfs = list(psfs or [])
    if psfs and optics is not None:
        raise InputError("psf: give PSF files (--psf) or a PSF model (--na, --wavelength), not both")
    if not psfs and optics is None:
        raise InputError("psf: give --psf (one per channel), or a model PSF with --na and --wavelength")
    if psfs:
        if len(psfs) == 1 and n_channels > 1 and not same_psf:
            raise InputError(
                f"{image_name}: {n_channels} channels, more axes than supported by one PSF: give "
                "one --psf per channel (in channel order), --wavelength per channel with --na, or "
                "--same-psf to use this PSF for every channel"
            )
        chosen = per_channel(psfs, n_channels, "--psf", shared=same_psf)
        loaded: dict[int, ChannelPSF] = {}
        out = []
        for item in chosen:
            if id(item) not in loaded:
                loaded[id(item)] = _load(item)
            out.append(loaded[id(item)])
        return out
    waves = list(wavelengths) if wavelengths else None
    if waves is None and file_wavelengths is not None and all(w is not None for w in file_wavelengths):
        waves = list(file_wavelengths)
    if not waves:
        raise InputError(
            f"--wavelength: {image_name} records no emission wavelengths; give one per channel "
            "in µm, e.g. --wavelength 0.52,0.61"
        )
    if len(waves) == 1 and n_channels > 1 and not same_psf:
        raise InputError(
            f"--wavelength: 1 given for an image with {n_channels} channels; give one per "
            "channel, in channel order (or --same-psf to use it for every channel)"
        )
    waves = per_channel(waves, n_channels, "--wavelength", shared=same_psf)
    if volume_shape is None:
        raise InputError("psf: a model PSF needs the image's shape")
    models: dict[float, ChannelPSF] = {}
    for w in waves:
        if w not in models:
            array = psf_from_optics(tuple(volume_shape), voxel_size, wavelength=float(w),
                                    **{k: v for k, v in optics.items() if k != "wavelength"})
            models[w] = ChannelPSF(array, tuple(voxel_size), f"{optics.get('model', 'born-wolf')} "
                                   f"{w:g} µm")
    return [models[w] for w in waves]



@dataclass(frozen=True)
class ChannelFileJob:
    """A (t, c) file job opened and checked by :func:`open_channel_file_job`: the lazy ``image``
    (T, C, Z, Y, X or a subset), its ``meta``, the image ``voxel_size`` (µm) and one PSF per
    channel."""

    image: Any
    meta: Any
    voxel_size: tuple[float, ...] | None
    channels: list[ChannelPSF]

    @property
    def volume_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.image.shape[self.image.ndim - self.meta.spatial_ndim:])


def open_channel_file_job(
    input_path: Path,
    outputs: Sequence[Path],
    *,
    psfs: Sequence[Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    optics: dict | None = None,
    same_psf: bool = False,
    voxel_size: Sequence[float] | None = None,
) -> ChannelFileJob:
    """Open a per-channel file job and refuse what would fail later, before any work.

    Reads ``input_path`` lazily (:func:`lucyd.io.read_hyperstack`), refuses PSF files that do
    not exist and outputs that would overwrite an input or do not fit on disk
    (:func:`lucyd.io.outputs.check_output_path`; ``outputs[0]`` is the float32 image, the
    others are records), and makes one PSF per channel (:func:`channel_psfs`). ``voxel_size``
    overrides the file's. Shared by the deconvolve and restore paths of time series and
    multichannel files.
    """
    image, meta = read_hyperstack(input_path, lazy=True)
    shape = tuple(int(n) for n in image.shape)
    psf_paths = [Path(p) for p in (psfs or []) if isinstance(p, (str, Path))]
    for path in psf_paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    for i, path in enumerate(outputs):
        check_output_path(path, [input_path, *psf_paths], expected_bytes=4 * math.prod(shape) if i == 0 else None)
    vs = tuple(voxel_size) if voxel_size is not None else meta.voxel_size
    channels = channel_psfs(
        channel_count(shape, meta), psfs=psfs, wavelengths=wavelengths,
        file_wavelengths=meta.wavelengths, optics=optics,
        volume_shape=shape[len(shape) - meta.spatial_ndim:], voxel_size=vs, same_psf=same_psf,
        image_name=str(input_path),
    )
    return ChannelFileJob(image=image, meta=meta, voxel_size=vs, channels=channels)

def _load(item: Any) -> ChannelPSF:
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        array, meta = read_image(path)
        return ChannelPSF(np.asarray(array, np.float32), meta.voxel_size, str(path))
    return ChannelPSF(np.asarray(item, np.float32), None, "array")
