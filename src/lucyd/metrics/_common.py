"""Input handling shared by the metrics: validate, convert to float64."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lucyd.errors import InputError
from lucyd.validation import as_image, check_same_shape

#: every number of dimensions the point-wise metrics accept
ANY_NDIM = (1, 2, 3, 4, 5)


def as_float64(array, name: str, ndim: Sequence[int] = ANY_NDIM) -> np.ndarray:
    """Validate ``array`` (numpy or torch) and return it as a float64 numpy array.

    Raises :class:`lucyd.errors.InputError` for non-numeric, empty, non-finite input
    or a number of dimensions outside ``ndim``.
    """
    return as_image(array, name=name, ndim=tuple(ndim), dtype=np.float64)


def as_float64_pair(
    pred, gt, ndim: Sequence[int] = ANY_NDIM, names: tuple[str, str] = ("pred", "gt")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction / reference pair: same shape, finite, float64."""
    a = as_float64(pred, names[0], ndim)
    b = as_float64(gt, names[1], ndim)
    check_same_shape(a, b, names)
    return a, b


def resolve_data_range(data_range, gt: np.ndarray) -> float:
    """``data_range`` as a positive float; default ``gt.max() - gt.min()``."""
    if data_range is None:
        value = float(gt.max() - gt.min())
        if value <= 0:
            raise InputError(
                "data_range: the ground truth is constant, so its range (max - min) is 0; "
                "pass data_range explicitly"
            )
        return value
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise InputError(f"data_range: expected a positive number, got {data_range!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"data_range: expected a positive finite number, got {data_range!r}")
    return value
