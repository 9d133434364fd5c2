"""Time series and channels: one function applied to every (t, c) volume of an image file.

lucyd's algorithms restore one (z, y, x) or (y, x) volume at a time. :func:`map_volumes` is the
one loop that `lucyd deconvolve`, `lucyd restore` and `lucyd predict` (and their library
functions) use for files with time points and channels: it reads each (t, c) volume lazily,
hands it to the command's function with its channel index (to pick that channel's PSF), and
writes the results into one output file with the input's axes, voxel size, channel names,
wavelengths and time interval (through :func:`lucyd.io.open_writer`: atomic, volume by volume,
so a long time series never has to fit in memory twice). Each volume is processed independently,
so the result for channel c at time t is exactly what processing that volume alone gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lucyd.errors import InputError
from lucyd.io.api import open_writer
from lucyd.io.metadata import ImageMetadata
from lucyd.progress import as_reporter, reporting
from lucyd.progress import progress as progress_bar

T = TypeVar("T")


@dataclass(frozen=True)
class Volume:
    """Where one volume sits in a hyperstack: time index ``t`` and channel index ``c`` (0 when
    the image has no such axis), and the ``key`` that indexes it (``image[key]``)."""

    t: int
    c: int
    key: tuple

    @property
    def label(self) -> str:
        """``"t=2 c=1"``, for progress and messages."""
        return f"t={self.t} c={self.c}"


def volumes(shape: Sequence[int], metadata: ImageMetadata) -> list[Volume]:
    """Every (t, c) volume of an image of ``shape`` with ``metadata.axes``, time-major.

    Examples
    --------
    >>> from lucyd.io.metadata import HyperstackMetadata
    >>> [v.key for v in volumes((2, 3, 4, 4), HyperstackMetadata("TCYX"))][:2]
    [(0, 0), (0, 1)]
    """
    metadata.check_array(_Shaped(shape))
    sizes = dict(zip(metadata.axes, shape, strict=True))
    out = []
    for t in range(int(sizes.get("T", 1))):
        for c in range(int(sizes.get("C", 1))):
            key = tuple(i for ax, i in (("T", t), ("C", c)) if ax in metadata.axes)
            out.append(Volume(t, c, key))
    return out


class _Shaped:
    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(n) for n in shape)


def channel_count(shape: Sequence[int], metadata: ImageMetadata) -> int:
    """Length of the channel axis (1 without one)."""
    axis = metadata.channel_axis
    return int(shape[axis]) if axis is not None else 1


def per_channel(items: Sequence[T], n_channels: int, what: str, *, shared: bool = False) -> list[T]:
    """One item per channel: ``items`` itself, or one item repeated when ``shared``.

    Parameters
    ----------
    items : sequence
        PSFs, wavelengths, models, ... given in channel order.
    n_channels : int
        Channels of the image.
    what : str
        The option or argument, for the message (``"--psf"``).
    shared : bool
        Allow one item for every channel.

    Raises
    ------
    InputError
        A count other than ``n_channels`` (or 1 with ``shared``), in one line, before any work.
    """
    items = list(items)
    if len(items) == n_channels:
        return items
    if len(items) == 1 and shared:
        return items * n_channels
    raise InputError(
        f"{what}: {len(items)} given for an image with {n_channels} channel(s); give one per "
        "channel, in channel order"
    )


def map_volumes(
    function: Callable[[np.ndarray, Volume], np.ndarray],
    image: Any,
    metadata: ImageMetadata,
    output: str | Path,
    *,
    output_metadata: ImageMetadata | None = None,
    dtype: Any = np.float32,
    progress: Any = True,
    cancel: Any = None,
    desc: str = "volumes",
) -> Path:
    """Apply ``function`` to every (t, c) volume of ``image`` and write one output file.

    Parameters
    ----------
    function : callable
        ``function(volume, where) -> restored`` with ``volume`` a (z, y, x) or (y, x) numpy
        array and ``where`` its :class:`Volume` (``where.c`` picks the channel's PSF); it must
        return an array of the same shape.
    image : array-like
        The image (numpy or lazy, e.g. from ``read_hyperstack(path, lazy=True)``), axes
        ``metadata.axes``.
    metadata : ImageMetadata
        Its axes, voxel size, channels, time interval (a HyperstackMetadata or, for one volume,
        ImageMetadata).
    output : str or Path
        Output file; the format from its extension (:func:`lucyd.io.write_image`). Written
        atomically: it appears only when every volume is done.
    output_metadata : ImageMetadata, optional
        Metadata to write (default ``metadata``).
    dtype : numpy dtype
        Output dtype (float32).
    progress : bool or callable
        Step a :func:`lucyd.progress.progress` bar once per volume (a callable
        ``callback(done, total, desc)`` or Reporter receives the steps; see
        :func:`lucyd.progress.as_reporter`).
    cancel : threading.Event or callable, optional
        A set cancel request stops at the next volume (``lucyd.progress.Cancelled``); the
        output is then not written.
    desc : str
        The bar's label.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    InputError
        ``function`` returned a volume of another shape.
    """
    shape = tuple(int(n) for n in image.shape)
    todo = volumes(shape, metadata)
    volume_shape = shape[len(shape) - metadata.spatial_ndim:]
    reporter = as_reporter(progress, cancel)
    with reporting(reporter), open_writer(output, shape, dtype, output_metadata or metadata) as out:
        for where in progress_bar(todo, total=len(todo), desc=desc,
                                  disable=None if reporter is not None else True):
            volume = np.asarray(image[where.key] if where.key else image[...])
            result = np.asarray(function(volume, where))
            if result.shape != volume_shape:
                raise InputError(
                    f"volume {where.label}: the result has shape {result.shape}, expected "
                    f"{volume_shape}"
                )
            if where.key:
                out[where.key] = result
            else:
                out[...] = result
    return Path(output)
