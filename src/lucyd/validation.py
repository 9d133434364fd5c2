"""Input checks shared by every part of lucyd.

Each function either returns a clean array or raises :class:`lucyd.errors.InputError`
with a message that names the offending argument and the problem, so that bad input
never reaches numerical code (where it would surface as a deep traceback or, worse,
as a silently wrong answer).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from collections.abc import Sequence

import numpy as np

from lucyd.errors import InputError

#: relative tolerance below which negative PSF values are treated as round-off
PSF_NEGATIVE_TOLERANCE = 1e-6


def _as_numeric(array, name: str) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor
        array = array.detach().cpu().numpy()
    try:
        arr = np.asarray(array)
    except Exception as exc:  # e.g. ragged nested lists
        raise InputError(f"{name}: cannot be converted to an array ({exc})") from None
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"{name}: expected a numeric (integer or float) array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{name}: array is empty (shape {arr.shape})")
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or Inf, saying how many."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputError(f"{name}: contains {int(bad.sum())} non-finite value(s) (NaN or Inf)")


def as_image(
    array,
    *,
    name: str = "image",
    ndim: Sequence[int] = (2, 3),
    dtype=np.float32,
) -> np.ndarray:
    """Validate an image and return it as a ``dtype`` array (float32 by default).

    Parameters
    ----------
    array : array_like
        Numeric image, (y, x) or (z, y, x).
    name : str
        Used in error messages.
    ndim : sequence of int
        Accepted numbers of dimensions.
    dtype : numpy dtype or None
        Output dtype; ``None`` keeps the input dtype.
    """
    arr = _as_numeric(array, name)
    if arr.ndim not in tuple(ndim):
        allowed = " or ".join(f"{d}D" for d in ndim)
        raise InputError(f"{name}: expected a {allowed} array, got {arr.ndim}D with shape {arr.shape}")
    check_finite(arr, name)
    return arr if dtype is None else np.asarray(arr, dtype=dtype)


def as_psf(array, *, image_ndim: int | None = None, name: str = "psf", normalize: bool = True) -> np.ndarray:
    """Validate a point-spread function and return it as float32 (summing to 1).

    Raises for non-numeric, non-finite, negative (beyond round-off), all-zero PSFs and
    for a PSF whose dimensionality differs from the image's.
    """
    arr = as_image(array, name=name, ndim=(1, 2, 3), dtype=np.float64)
    if image_ndim is not None and arr.ndim != image_ndim:
        raise InputError(
            f"{name}: has {arr.ndim} dimensions but the image has {image_ndim}; "
            "give a PSF with the same dimensionality as the image"
        )
    peak = float(np.abs(arr).max())
    if peak == 0.0:
        raise InputError(f"{name}: is all zeros")
    if arr.min() < -PSF_NEGATIVE_TOLERANCE * peak:
        raise InputError(
            f"{name}: has negative values (min {arr.min():.3g}, max {arr.max():.3g}); "
            "subtract background and clip, e.g. with lucyd.psf.from_beads"
        )
    arr = np.clip(arr, 0.0, None)
    total = arr.sum()
    if total <= 0:
        raise InputError(f"{name}: sums to zero")
    if normalize:
        arr = arr / total
    return arr.astype(np.float32)


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> None:
    """Raise if two arrays differ in shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise InputError(f"{names[0]} and {names[1]} have different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")


def as_voxel_size(voxel_size, ndim: int, name: str = "voxel_size") -> tuple[float, ...] | None:
    """Return ``voxel_size`` as a tuple of ``ndim`` positive floats (µm), or None.

    A scalar is broadcast; a 3-tuple for a 2D image keeps its last two entries.
    """
    if voxel_size is None:
        return None
    values = np.atleast_1d(np.asarray(voxel_size, dtype=float))
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size == 3 and ndim == 2:
        values = values[1:]
    if values.size != ndim:
        raise InputError(f"{name}: expected {ndim} values, got {values.size}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(f"{name}: values must be positive and finite, got {tuple(values)}")
    return tuple(float(v) for v in values)


#: relative difference of voxel sizes (per axis) above which lucyd warns that they disagree
VOXEL_SIZE_TOLERANCE = 0.1


def voxel_size_mismatch(expected, actual, *, expected_name: str, actual_name: str,
                        tolerance: float = VOXEL_SIZE_TOLERANCE) -> str | None:
    """A one-line warning when two voxel sizes (µm) differ by more than ``tolerance`` (relative,
    on any axis) or only one of them is known; None when they agree or neither is known.

    Examples
    --------
    >>> voxel_size_mismatch((0.3, 0.13, 0.13), (0.3, 0.13, 0.135), expected_name="model",
    ...                     actual_name="image") is None
    True
    """
    if expected is None and actual is None:
        return None
    if expected is None or actual is None:
        known, name = (expected, expected_name) if actual is None else (actual, actual_name)
        missing = actual_name if actual is None else expected_name
        return (f"{name} has voxel size {tuple(float(v) for v in known)} µm but {missing} has none; "
                "assuming they match — give the voxel size (e.g. --voxel-size) to be sure")
    a = np.asarray(expected, dtype=float)[-len(actual):]
    b = np.asarray(actual, dtype=float)[-len(a):]
    worst = float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1e-12)))
    if worst <= tolerance:
        return None
    return (f"{actual_name} voxel size {tuple(float(v) for v in b)} µm differs from {expected_name} "
            f"{tuple(float(v) for v in a)} µm by up to {100 * worst:.0f} % (tolerance "
            f"{100 * tolerance:.0f} %); results may be wrong — resample the image first")


def format_bytes(n: float) -> str:
    """``1.5 GB``-style size (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def available_memory() -> int | None:
    """Bytes of memory the system can give a new allocation now (Linux ``MemAvailable``), or the
    physical memory elsewhere; None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


#: allocations above this size get their own memory mapping (returned to the system when freed)
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory() -> bool:
    """Make the C allocator give large freed blocks back to the system at once (glibc only).

    glibc raises its mmap threshold dynamically up to 32 MB after a large block is freed, so
    later blocks of that size come from the heap and stay resident after they are freed: a
    job that runs block after block then grows by one block's arrays each time (measured: a
    deconvolution tile modelled at 213 MB peaked at 187 MB once and at 400 MB by the third
    tile). Fixing the threshold (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``) stops this; the cost
    is one ``mmap`` per large allocation. Returns True when the setting was applied.
    """

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD_BYTES))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def check_memory(need: float, what: str, hint: str = "") -> None:
    """InputError when ``need`` bytes exceed :func:`available_memory`, naming both amounts.

    Called before a large allocation so that a job that cannot fit is refused in a second
    instead of being killed by the operating system minutes later.
    """
    free = available_memory()
    if free is not None and need > free:
        raise InputError(
            f"{what}: needs about {format_bytes(need)} of memory but only {format_bytes(free)} "
            f"is available{'; ' + hint if hint else ''}"
        )


def as_number(value, name: str, *, minimum: float | None = None, strict: bool = False,
              requirement: str | None = None) -> float:
    """A finite float, at least ``minimum`` (above it with ``strict``), or InputError naming ``name``.

    ``requirement`` replaces the generated wording of the error ("finite and >= 1").
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or (minimum is not None and (v < minimum or (strict and v == minimum))):
        if requirement is None:
            bound = "" if minimum is None else f" and {'>' if strict else '>='} {minimum:g}"
            requirement = f"finite{bound}"
        raise InputError(f"{name}: must be {requirement}, got {value!r}")
    return v


def positive(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite positive (or, with ``allow_zero``, non-negative) float, or InputError."""
    what = "non-negative" if allow_zero else "positive"
    return as_number(value, name, minimum=0.0, strict=not allow_zero, requirement=f"finite and {what}")


def parse_int_tuple(text: str, name: str) -> tuple[int, ...]:
    """Parse '33,65,65' into (33, 65, 65) with a clear error."""
    try:
        values = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{name}: expected positive integers, got {text!r}")
    return values


def parse_float_tuple(text: str, name: str) -> tuple[float, ...]:
    """Parse '0.3,0.13,0.13' into floats with a clear error."""
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise InputError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(np.isfinite(values)) or any(v <= 0 for v in values):
        raise InputError(f"{name}: expected positive numbers, got {text!r}")
    return values
