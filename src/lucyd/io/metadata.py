"""Image metadata (axes, voxel size in micrometres, channels, time interval) and unit conversion.

lucyd's algorithms work on (y, x) and (z, y, x) volumes; files may hold several of them along a
time (T) and a channel (C) axis. :class:`ImageMetadata` records an array's axes (an ordered subset
of "TCZYX" ending in "YX"), the physical size of one voxel in micrometres (spatial axes only), the
channels' names and emission wavelengths and the time interval between time points.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from lucyd.errors import InputError

#: axis strings of one volume, by number of dimensions
AXES_BY_NDIM = {2: "YX", 3: "ZYX"}
#: the canonical order of every axis lucyd knows: time, channel, then the spatial axes
AXES_ORDER = "TCZYX"
#: every axes string ImageMetadata accepts (an ordered subset of AXES_ORDER ending in "YX")
SUPPORTED_AXES = ("YX", "ZYX", "CYX", "CZYX", "TYX", "TZYX", "TCYX", "TCZYX")

# Length units as written by ImageJ/Fiji, OME (UnitsLength) and OME-Zarr (UDUNITS names),
# with their size in micrometres. Keys are lower case.
_UNIT_TO_UM = {
    "um": 1.0,
    "µm": 1.0,  # micro sign U+00B5
    "μm": 1.0,  # greek small letter mu U+03BC
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micrometers": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nanometers": 1e-3,
    "å": 1e-4,
    "angstrom": 1e-4,
    "pm": 1e-6,
    "picometer": 1e-6,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
}


def unit_to_micrometre(unit: str | None) -> float | None:
    """Size of one ``unit`` in micrometres, or ``None`` when the unit is unknown or not a length.

    Parameters
    ----------
    unit : str or None
        A length unit as written by ImageJ ("micron", "um", ``"\\u00B5m"``), OME ("µm", "nm") or
        OME-Zarr ("micrometer", "nanometer"). "pixel", an empty string and ``None`` give ``None``.

    Returns
    -------
    float or None
        Micrometres per ``unit``.

    Examples
    --------
    >>> unit_to_micrometre("nm")
    0.001
    >>> unit_to_micrometre("pixel") is None
    True
    """
    if unit is None:
        return None
    text = str(unit).strip()
    if "\\u" in text:  # ImageJ writes the micro sign as the escape sequence \u00B5
        try:
            text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            pass
    return _UNIT_TO_UM.get(text.lower())


# Time units (OME UnitsTime, ImageJ "tunit", UDUNITS names) in seconds. Keys are lower case.
_TIME_TO_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "µs": 1e-6, "μs": 1e-6, "us": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}


def unit_to_second(unit: str | None) -> float | None:
    """Size of one time ``unit`` in seconds ("s", "sec", "ms", "min", "h", "second", ...), or
    ``None`` when unknown.

    Examples
    --------
    >>> unit_to_second("min")
    60.0
    """
    if unit is None:
        return None
    return _TIME_TO_S.get(str(unit).strip().lower())


def round_significant(value: float, digits: int = 9) -> float:
    """Round ``value`` to ``digits`` significant digits (cleans rational/binary noise: 0.13, not
    0.12999999999)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(round(value, digits - 1 - int(math.floor(math.log10(abs(value))))))


def _clean_voxel_size(voxel_size: Any, ndim: int) -> tuple[float, ...] | None:
    if voxel_size is None:
        return None
    if np.isscalar(voxel_size):
        voxel_size = (voxel_size,) * ndim
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError) as exc:
        raise InputError(f"voxel_size must be numbers in micrometres, got {voxel_size!r}") from exc
    if len(values) != ndim:
        raise InputError(
            f"voxel_size has {len(values)} values but the image has {ndim} spatial axes: {values}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"voxel_size must be finite and positive (micrometres), got {values}")
    return values


def _clean_channel_names(names: Any) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = (names,)
    try:
        values = tuple(str(n) for n in names)
    except TypeError as exc:
        raise InputError(f"channel_names must be a list of strings, got {names!r}") from exc
    return values or None


def _clean_wavelengths(wavelengths: Any) -> tuple[float | None, ...] | None:
    if wavelengths is None:
        return None
    if np.isscalar(wavelengths):
        wavelengths = (wavelengths,)
    values: list[float | None] = []
    for w in wavelengths:
        if w is None:
            values.append(None)
            continue
        try:
            value = float(w)
        except (TypeError, ValueError) as exc:
            raise InputError(f"wavelengths must be numbers in micrometres, got {w!r}") from exc
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"wavelengths must be finite and positive (micrometres), got {w!r}")
        values.append(value)
    return tuple(values) if values and any(v is not None for v in values) else None


def _clean_time_interval(interval: Any) -> float | None:
    if interval is None:
        return None
    try:
        value = float(interval)
    except (TypeError, ValueError) as exc:
        raise InputError(f"time_interval must be a number of seconds, got {interval!r}") from exc
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"time_interval must be finite and positive (seconds), got {interval!r}")
    return value


@dataclass
class ImageMetadata:
    """Axes, voxel size and channel of one (y, x) or (z, y, x) volume.

    :class:`HyperstackMetadata` (a subclass, the same fields) describes time series and
    several channels: axes ``"TCZYX"``, ``"CZYX"``, ``"TYX"``, ... in lucyd's canonical order
    (readers transpose files stored in another order, e.g. ImageJ's TZCYX; writers store each
    format's own order).

    Parameters
    ----------
    axes : str
        ``"YX"`` or ``"ZYX"`` (lower case is accepted and upper-cased); for
        :class:`HyperstackMetadata` an ordered subset of ``"TCZYX"`` ending in ``"YX"`` (see
        :data:`SUPPORTED_AXES`).
    voxel_size : tuple of float or None
        Size of one voxel in micrometres for the *spatial* axes only, in their order (e.g.
        ``(dz, dy, dx)``); ``None`` when unknown. A single number means the same size on every
        spatial axis.
    extra : dict
        Anything else worth keeping (free-form, JSON-serialisable where possible). Readers put
        format details here (e.g. ``"format"``, ``"source_axes"``); OME-Zarr and ``.npy``
        writers store it, TIFF writers do not.
    channel_names : tuple of str or None
        One name per channel (the length of the C axis, or one when there is no C axis).
    wavelengths : tuple of float or None
        Emission wavelength of each channel in micrometres (``None`` entries: unknown); the
        input of per-channel PSF models. ``None`` when none is known.
    time_interval : float or None
        Seconds between consecutive time points (``None``: unknown).

    Raises
    ------
    InputError
        Unsupported axes, or a voxel size of the wrong length, non-finite or not positive, or
        a non-positive wavelength or time interval.

    Examples
    --------
    >>> ImageMetadata("ZYX", (0.3, 0.13, 0.13)).ndim
    3
    """

    #: the axes strings this class accepts
    allowed_axes: ClassVar[tuple[str, ...]] = tuple(AXES_BY_NDIM.values())

    axes: str
    voxel_size: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict)
    channel_names: tuple[str, ...] | None = None
    wavelengths: tuple[float | None, ...] | None = None
    time_interval: float | None = None

    def __post_init__(self) -> None:
        axes = str(self.axes).upper()
        if axes not in self.allowed_axes:
            if axes in SUPPORTED_AXES:
                raise InputError(
                    f"axes must be 'YX' or 'ZYX' for one volume, got {self.axes!r}; "
                    "HyperstackMetadata describes time points and channels"
                )
            raise InputError(
                f"axes must be 'YX' or 'ZYX', optionally after 'T' (time) and/or 'C' (channel) "
                f"in that order (e.g. 'TCZYX'), got {self.axes!r}"
            )
        self.axes = axes
        self.voxel_size = _clean_voxel_size(self.voxel_size, self.spatial_ndim)
        if self.extra is None:
            self.extra = {}
        elif not isinstance(self.extra, dict):
            raise InputError(f"extra must be a dict, got {type(self.extra).__name__}")
        self.channel_names = _clean_channel_names(self.channel_names)
        self.wavelengths = _clean_wavelengths(self.wavelengths)
        self.time_interval = _clean_time_interval(self.time_interval)
        for name in ("channel_names", "wavelengths"):
            values = getattr(self, name)
            if values is not None and "C" not in axes and len(values) != 1:
                raise InputError(
                    f"{name}: {len(values)} entries but axes {axes!r} have no channel axis"
                )
        if (self.channel_names is not None and self.wavelengths is not None
                and len(self.channel_names) != len(self.wavelengths)):
            raise InputError(
                f"channel_names ({len(self.channel_names)}) and wavelengths "
                f"({len(self.wavelengths)}) differ in length"
            )

    @property
    def ndim(self) -> int:
        """Number of array dimensions (``len(axes)``; 2 or 3 for one volume)."""
        return len(self.axes)

    @property
    def spatial_axes(self) -> str:
        """``"YX"`` or ``"ZYX"``: the axes of one volume."""
        return self.axes.lstrip("TC")

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spatial_axes)

    @property
    def is_volume(self) -> bool:
        """True when the image is one volume (no T or C axis)."""
        return self.axes == self.spatial_axes

    @property
    def channel_axis(self) -> int | None:
        """Index of the C axis (napari's ``channel_axis``), or None."""
        return self.axes.index("C") if "C" in self.axes else None

    @property
    def time_axis(self) -> int | None:
        """Index of the T axis, or None."""
        return self.axes.index("T") if "T" in self.axes else None

    @property
    def scale(self) -> tuple[float, ...]:
        """Physical size of one step along every axis: T in seconds (``time_interval``, 1 when
        unknown), C 1, spatial axes in micrometres (1 when unknown). napari's layer ``scale``
        is this without the channel axis (:meth:`layer_scale`)."""
        spatial = self.voxel_size or (1.0,) * self.spatial_ndim
        lead = {"T": self.time_interval or 1.0, "C": 1.0}
        return tuple(lead[a] for a in self.axes[: -self.spatial_ndim]) + tuple(spatial)

    def layer_scale(self) -> tuple[float, ...]:
        """:attr:`scale` without the channel axis: the ``scale`` of each napari layer when the
        image is split with ``channel_axis``."""
        return tuple(s for a, s in zip(self.axes, self.scale, strict=True) if a != "C")

    def layer_kwargs(self) -> dict:
        """Keyword arguments for napari's ``viewer.add_image(data, **meta.layer_kwargs())``:
        ``channel_axis`` (when there is one), ``scale`` (:meth:`layer_scale`), ``axis_labels``,
        ``units`` (second, micrometre; "pixel" when unknown) and ``name`` (the channel names)."""
        kept = [a for a in self.axes if a != "C"]
        units = {"T": "second" if self.time_interval else "pixel"}
        units.update({a: "micrometer" if self.voxel_size else "pixel" for a in self.spatial_axes})
        out: dict = {"scale": self.layer_scale(), "axis_labels": tuple(a.lower() for a in kept),
                     "units": tuple(units[a] for a in kept)}
        if self.channel_axis is not None:
            out["channel_axis"] = self.channel_axis
        if self.channel_names is not None:
            names = list(self.channel_names)
            out["name"] = names if self.channel_axis is not None else names[0]
        return out

    def volume(self) -> ImageMetadata:
        """Metadata of one (t, c) volume: spatial axes and voxel size only."""
        return ImageMetadata(self.spatial_axes, self.voxel_size, dict(self.extra))

    def with_axes(self, axes: str) -> ImageMetadata:
        """A copy with other axes (same voxel size, channels and time interval); drops channel
        and time information that the new axes cannot hold. The class follows the axes (one
        volume: ImageMetadata, else HyperstackMetadata)."""
        axes = str(axes).upper()
        names, waves = self.channel_names, self.wavelengths
        if "C" not in axes:
            names = names if names is not None and len(names) == 1 else None
            waves = waves if waves is not None and len(waves) == 1 else None
        return make_metadata(axes, self.voxel_size, dict(self.extra), channel_names=names,
                             wavelengths=waves,
                             time_interval=self.time_interval if "T" in axes else None)

    @classmethod
    def for_array(
        cls, array: Any, voxel_size: Any = None, extra: dict | None = None
    ) -> ImageMetadata:
        """Metadata for an array: axes from its dimensionality ("YX" for 2D, "ZYX" for 3D).

        Parameters
        ----------
        array : array-like
            Anything with ``.ndim`` or ``.shape``.
        voxel_size : sequence of float, float or None
            Voxel size in micrometres (same order as the axes), or ``None``.
        extra : dict, optional
            Free-form extra metadata.

        Raises
        ------
        InputError
            The array is not 2D or 3D.
        """
        ndim = getattr(array, "ndim", None)
        if ndim is None:
            ndim = len(np.shape(array))
        if ndim not in AXES_BY_NDIM:
            raise InputError(f"image must be 2D (y, x) or 3D (z, y, x), got {ndim} dimensions")
        return cls(AXES_BY_NDIM[ndim], voxel_size, dict(extra or {}))

    def check_array(self, array: Any, name: str = "image") -> None:
        """Raise :class:`InputError` when ``array``'s dimensionality does not match ``axes``, or
        its channel axis does not match the channel names / wavelengths."""
        shape = tuple(np.shape(array)) if not hasattr(array, "shape") else tuple(array.shape)
        if len(shape) != self.ndim:
            raise InputError(
                f"{name} has {len(shape)} dimensions but the metadata says axes {self.axes!r}"
            )
        channels = shape[self.channel_axis] if self.channel_axis is not None else 1
        for what in ("channel_names", "wavelengths"):
            values = getattr(self, what)
            if values is not None and len(values) != channels:
                raise InputError(
                    f"{name} has {channels} channel(s) but the metadata gives {len(values)} {what}"
                )

    def to_dict(self) -> dict:
        """JSON-ready dictionary (``axes``, ``voxel_size`` as a list or None, ``extra``; and
        ``channel_names``, ``wavelengths``, ``time_interval`` when known)."""
        out: dict = {
            "axes": self.axes,
            "voxel_size": list(self.voxel_size) if self.voxel_size is not None else None,
            "extra": jsonable(self.extra),
        }
        if self.channel_names is not None:
            out["channel_names"] = list(self.channel_names)
        if self.wavelengths is not None:
            out["wavelengths"] = list(self.wavelengths)
        if self.time_interval is not None:
            out["time_interval"] = self.time_interval
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ImageMetadata:
        """Inverse of :meth:`to_dict` (a :class:`HyperstackMetadata` when the axes hold time or
        channels)."""
        if not isinstance(data, dict) or "axes" not in data:
            raise InputError(f"metadata must be a dict with 'axes', got {data!r}")
        if str(data["axes"]).upper() not in cls.allowed_axes:
            cls = HyperstackMetadata
        return cls(data["axes"], data.get("voxel_size"), dict(data.get("extra") or {}),
                   channel_names=data.get("channel_names"), wavelengths=data.get("wavelengths"),
                   time_interval=data.get("time_interval"))


@dataclass
class HyperstackMetadata(ImageMetadata):
    """:class:`ImageMetadata` of an image with time points and/or channels (axes ``"TCZYX"``,
    ``"CZYX"``, ``"TZYX"``, ``"CYX"``, ...; a single ``"ZYX"`` / ``"YX"`` volume too).

    What :func:`lucyd.io.read_hyperstack` returns. Maps onto napari directly:
    ``viewer.add_image(data, channel_axis=meta.channel_axis, scale=meta.layer_scale(),
    name=meta.channel_names)``.

    Examples
    --------
    >>> meta = HyperstackMetadata("TCZYX", (0.3, 0.1, 0.1), channel_names=("DAPI", "GFP"),
    ...                           wavelengths=(0.46, 0.52), time_interval=30.0)
    >>> meta.spatial_axes, meta.channel_axis, meta.scale
    ('ZYX', 1, (30.0, 1.0, 0.3, 0.1, 0.1))
    >>> meta.layer_scale()
    (30.0, 0.3, 0.1, 0.1)
    """

    allowed_axes: ClassVar[tuple[str, ...]] = SUPPORTED_AXES


def make_metadata(axes: str, *args: Any, **kwargs: Any) -> ImageMetadata:
    """:class:`ImageMetadata` for one volume's axes, :class:`HyperstackMetadata` otherwise."""
    cls = ImageMetadata if str(axes).upper() in ImageMetadata.allowed_axes else HyperstackMetadata
    return cls(axes, *args, **kwargs)


def as_hyperstack(meta: ImageMetadata) -> HyperstackMetadata:
    """The same metadata as a :class:`HyperstackMetadata` (what :func:`read_hyperstack` gives
    for a single volume)."""
    if isinstance(meta, HyperstackMetadata):
        return meta
    return HyperstackMetadata(**{f.name: getattr(meta, f.name) for f in fields(meta)})


def jsonable(value: Any) -> Any:
    """Convert ``value`` into something :func:`json.dumps` accepts (numpy → Python, rest → str)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):  # NaN / inf
        return str(value)
    return str(value)
