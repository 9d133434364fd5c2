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


def temporary_sibling(path: str | Path) -> Path:
    """A unique hidden name in the same folder that keeps ``path``'s suffixes.

    Keeping the suffix lets format writers that dispatch on the extension
    (``.ome.tif``, ``.zarr``) work on the temporary name.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


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

    On any exception the temporary file (or folder) is removed and the exception
    propagates; ``path`` itself is untouched.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        commit(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
