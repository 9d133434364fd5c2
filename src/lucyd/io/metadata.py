"""Image metadata (axes, voxel size in micrometres) and unit conversion.

lucyd works on (y, x) and (z, y, x) arrays only; :class:`ImageMetadata` records which of the two an
array is and, when known, the physical size of one voxel in micrometres in the same axis order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lucyd.errors import InputError

#: axis strings lucyd supports, by number of dimensions
AXES_BY_NDIM = {2: "YX", 3: "ZYX"}

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


@dataclass
class ImageMetadata:
    """Axes and physical voxel size of a (y, x) or (z, y, x) image.

    Parameters
    ----------
    axes : str
        ``"YX"`` or ``"ZYX"`` (lower case is accepted and upper-cased).
    voxel_size : tuple of float or None
        Size of one voxel in micrometres, in the order of ``axes`` (e.g. ``(dz, dy, dx)``);
        ``None`` when unknown. A single number means the same size on every axis.
    extra : dict
        Anything else worth keeping (free-form, JSON-serialisable where possible). Readers put
        format details here (e.g. ``"format"``, ``"source_axes"``); OME-Zarr and ``.npy``
        writers store it, TIFF writers do not.

    Raises
    ------
    InputError
        Unsupported axes, or a voxel size of the wrong length, non-finite or not positive.

    Examples
    --------
    >>> ImageMetadata("ZYX", (0.3, 0.13, 0.13)).ndim
    3
    """

    axes: str
    voxel_size: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        axes = str(self.axes).upper()
        if axes not in AXES_BY_NDIM.values():
            raise InputError(f"axes must be 'YX' or 'ZYX', got {self.axes!r}")
        self.axes = axes
        self.voxel_size = _clean_voxel_size(self.voxel_size, len(axes))
        if self.extra is None:
            self.extra = {}
        elif not isinstance(self.extra, dict):
            raise InputError(f"extra must be a dict, got {type(self.extra).__name__}")

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.axes)

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
        """Raise :class:`InputError` when ``array``'s dimensionality does not match ``axes``."""
        ndim = len(np.shape(array)) if not hasattr(array, "shape") else len(array.shape)
        if ndim != self.ndim:
            raise InputError(
                f"{name} has {ndim} dimensions but the metadata says axes {self.axes!r}"
            )

    def to_dict(self) -> dict:
        """JSON-ready dictionary (``axes``, ``voxel_size`` as a list or None, ``extra``)."""
        return {
            "axes": self.axes,
            "voxel_size": list(self.voxel_size) if self.voxel_size is not None else None,
            "extra": jsonable(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ImageMetadata:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "axes" not in data:
            raise InputError(f"metadata must be a dict with 'axes', got {data!r}")
        return cls(data["axes"], data.get("voxel_size"), dict(data.get("extra") or {}))


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
