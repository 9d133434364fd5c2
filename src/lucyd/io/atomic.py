"""Atomic output: write to a temporary name beside the target, then rename.

An interrupted job therefore never leaves a half-written file under the final
name: either the old file (or nothing) is there, or the complete new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lucyd.errors import FileFormatError, LucydError
from lucyd.io.outputs import partial_pattern, remove_stale_partials


def temporary_sibling(path: str | Path) -> Path:
    """A unique hidden name in the same folder that keeps ``path``'s suffixes.

    Keeping the suffix lets format writers that dispatch on the extension
    (``.ome.tif``, ``.zarr``) work on the temporary name.
    """
    path = Path(path)
    prefix, suffix = partial_pattern(path)
    return path.with_name(f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def commit(tmp: Path, path: Path) -> None:
    """Move a finished temporary file or folder onto ``path`` (replacing it)."""
    if tmp.is_dir():
        if path.exists():
            # A folder cannot be renamed over a non-empty one: move the old aside first.
            old = temporary_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    else:
        os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it onto ``path`` on success.

    On any exception (also ``KeyboardInterrupt`` and the ``SystemExit`` that lucyd's CLI raises on
    SIGTERM) the temporary file (or folder) is removed and the exception propagates; ``path``
    itself is untouched. Partials of ``path`` left by killed runs (SIGKILL, power loss) are
    removed first (:func:`lucyd.io.outputs.remove_stale_partials`). An operating-system error while
    writing becomes a :class:`~lucyd.errors.FileFormatError` that names ``path``, not the
    temporary name.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    remove_stale_partials(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        commit(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, LucydError):
            raise FileFormatError(f"{path}: could not be written ({exc.strerror or exc})") from exc
        raise
