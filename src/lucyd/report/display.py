"""Display helpers shared by the figures: contrast, slice choice, scale bars.

These are small pure functions so that the rules a figure follows (one display
range for every panel, which slice is shown, how long the scale bar is) can be
tested without drawing anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lucyd.errors import InputError
from lucyd.validation import as_image, as_voxel_size

#: default percentiles of the reference panel that set the display range
DEFAULT_PERCENTILES: tuple[float, float] = (0.1, 99.9)


def as_panels(panels: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Validate a ``{name: image}`` mapping for a panel figure.

    Parameters
    ----------
    panels : mapping of str to array_like
        Images, all 2D (y, x) or all 3D (z, y, x), all of the same shape, finite.

    Returns
    -------
    dict of str to ndarray
        float32 copies in the same order.

    Raises
    ------
    InputError
        Empty mapping, wrong dimensionality, mismatched shapes or non-finite values.
    """
    if not isinstance(panels, Mapping) or len(panels) == 0:
        raise InputError("panels: expected a non-empty mapping {name: image}")
    out: dict[str, np.ndarray] = {}
    shape = None
    first = None
    for name, image in panels.items():
        arr = as_image(image, name=f"panels[{name!r}]")
        if shape is None:
            shape, first = arr.shape, name
        elif arr.shape != shape:
            raise InputError(
                f"panels[{name!r}]: shape {arr.shape} differs from panels[{first!r}] {shape}; "
                "all panels must show the same field of view"
            )
        out[str(name)] = arr
    return out


def resolve_reference(names: Sequence[str], reference: str | int | None) -> str:
    """Name of the panel whose intensities set the display range.

    Parameters
    ----------
    names : sequence of str
        Panel names in display order.
    reference : str, int or None
        A panel name, a position (negative counts from the end) or None for the
        last panel (by convention the ground truth, or the best restoration).
    """
    names = list(names)
    if reference is None:
        return names[-1]
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        if not -len(names) <= int(reference) < len(names):
            raise InputError(f"reference: index {reference} out of range for {len(names)} panels")
        return names[int(reference)]
    if str(reference) not in names:
        raise InputError(f"reference: {reference!r} is not one of the panels {names}")
    return str(reference)


def compute_display_range(
    image: np.ndarray,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> tuple[float, float]:
    """Display range (low, high) of an image from two percentiles of its values.

    Parameters
    ----------
    image : ndarray
        Any finite numeric array; all its values count (the whole volume for 3D,
        not only the slice shown), so every view of a stack shares the range.
    percentiles : (float, float)
        Lower and upper percentiles in [0, 100], lower < upper.

    Returns
    -------
    (float, float)
        ``low < high``. A constant image gives ``(v - 0.5, v + 0.5)`` (or
        ``(0, 1)`` for zeros) so that it is drawn mid-grey instead of failing.
    """
    lo_p, hi_p = (float(p) for p in percentiles)
    if not (0.0 <= lo_p < hi_p <= 100.0):
        raise InputError(f"percentiles: expected 0 <= low < high <= 100, got {percentiles}")
    arr = np.asarray(image, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError("image: display range needs a non-empty array of finite values")
    lo, hi = (float(v) for v in np.percentile(arr, [lo_p, hi_p]))
    if hi <= lo:
        # percentiles collapse (e.g. a sparse image); fall back to the full range
        lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        half = 0.5 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - half, hi + half
    return lo, hi


def shared_display_range(
    panels: Mapping[str, np.ndarray],
    *,
    reference: str | int | None = None,
    display_range: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> tuple[float, float, str | None]:
    """The one display range used for every panel of a figure.

    Parameters
    ----------
    panels : mapping of str to ndarray
        Panels in display order.
    reference : str, int or None
        Panel whose ``percentiles`` set the range (default: the last panel).
    display_range : (float, float) or None
        Explicit (low, high); overrides ``reference`` and ``percentiles``.
    percentiles : (float, float)
        Percentiles of the reference panel.

    Returns
    -------
    (low, high, reference_name)
        ``reference_name`` is None when ``display_range`` was given.
    """
    if display_range is not None:
        try:
            lo, hi = (float(v) for v in display_range)
        except (TypeError, ValueError):
            raise InputError(
                f"display_range: expected (low, high), got {display_range!r}"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError(f"display_range: expected finite low < high, got {display_range!r}")
        return lo, hi, None
    name = resolve_reference(list(panels), reference)
    lo, hi = compute_display_range(panels[name], percentiles)
    return lo, hi, name


def clipped_fractions(image: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Fractions of values below ``low`` and above ``high`` (shown saturated)."""
    arr = np.asarray(image)
    n = max(arr.size, 1)
    return float(np.count_nonzero(arr < low)) / n, float(np.count_nonzero(arr > high)) / n


def brightest_index(image: np.ndarray, axis: int) -> int:
    """Index along ``axis`` of the slice with the largest total intensity.

    Ties (e.g. a constant image) resolve to the middle-most of the tied slices,
    so a featureless stack shows its central slice.
    """
    arr = np.asarray(image, dtype=np.float64)
    other = tuple(a for a in range(arr.ndim) if a != axis % arr.ndim)
    totals = arr.sum(axis=other)
    best = np.flatnonzero(np.isclose(totals, totals.max(), rtol=1e-12, atol=0.0))
    middle = (arr.shape[axis] - 1) / 2.0
    return int(best[np.argmin(np.abs(best - middle))])


def nice_scale_bar_length(width: float, fraction: float = 0.2) -> float:
    """A round scale-bar length (1, 2 or 5 × 10^k) close to ``fraction`` × ``width``.

    The result is the largest such value not exceeding ``fraction * width``, so
    the bar spans between ``fraction / 2.5`` and ``fraction`` of the image.

    Parameters
    ----------
    width : float
        Width of the image in display units (µm, or pixels), > 0.
    fraction : float
        Target fraction of the width, in (0, 1].

    Examples
    --------
    >>> nice_scale_bar_length(25.6)   # 25.6 µm wide image: 5.12 -> 5
    5.0
    >>> nice_scale_bar_length(64)     # 64 px: 12.8 -> 10
    10.0
    """
    if not (math.isfinite(width) and width > 0):
        raise InputError(f"width: expected a positive finite length, got {width!r}")
    if not (0 < fraction <= 1):
        raise InputError(f"fraction: expected a value in (0, 1], got {fraction!r}")
    target = width * fraction
    exponent = math.floor(math.log10(target))
    if 10.0 ** (exponent + 1) <= target * (1 + 1e-9):  # log10 round-off just below a power of 10
        exponent += 1
    base = 10.0**exponent
    for mantissa in (5.0, 2.0, 1.0):
        # small tolerance so that e.g. a target of exactly 5 µm gives 5, not 2
        if mantissa * base <= target * (1 + 1e-9):
            return float(f"{mantissa * base:.12g}")
    return float(f"{base:.12g}")  # pragma: no cover - mantissa 1 always fits


def format_length(length: float, unit: str = "µm") -> str:
    """Label of a scale bar: ``5 µm``, ``200 nm`` (below 1 µm), ``20 px``.

    Number and unit are joined by a no-break space (U+00A0) so that wrapped
    captions never split them.
    """
    if unit == "µm" and length < 1:
        return f"{length * 1000:.4g}\u00a0nm"
    return f"{length:.4g}\u00a0{unit}"


def view_extents(
    shape: tuple[int, ...], voxel_size: Sequence[float] | None
) -> dict[str, tuple[float, float, float, float]]:
    """imshow extents (left, right, bottom, top) of the xy and xz views.

    Parameters
    ----------
    shape : tuple of int
        (y, x) or (z, y, x).
    voxel_size : sequence of float or None
        Voxel size in µm in the same order; None draws in pixels (square voxels).

    Returns
    -------
    dict
        ``{"xy": extent}`` for 2D, plus ``"xz"`` for 3D. Drawing both with
        ``aspect="equal"`` gives the true physical aspect ratio: a z step larger
        than the pixel size makes the xz view taller than its number of rows.
    """
    ndim = len(shape)
    size = as_voxel_size(voxel_size, ndim) if voxel_size is not None else (1.0,) * ndim
    width = shape[-1] * size[-1]
    out = {"xy": (0.0, width, shape[-2] * size[-2], 0.0)}
    if ndim == 3:
        out["xz"] = (0.0, width, shape[0] * size[0], 0.0)
    return out
