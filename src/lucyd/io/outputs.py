"""Checks on an output path made *before* a job computes anything.

A job that discovers at the end that its output cannot be written has wasted its whole run, and
one whose output is one of its inputs destroys the raw data. :func:`check_output_path` refuses
both up front, with a one-line message that names the user's path (never a temporary file).
:func:`remove_stale_partials` deletes the hidden temporary files that a killed run left beside an
output (see :mod:`lucyd.io.atomic`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from lucyd.errors import FileFormatError, InputError
from lucyd.validation import format_bytes

#: free space kept in reserve on top of the expected output size (file-system metadata, sidecars)
DISK_MARGIN_BYTES = 16 * 2**20


def _resolved(path: Path) -> Path:
    """Absolute path with every link resolved (``strict=False``: the tail may not exist)."""
    return Path(os.path.realpath(path))


def same_or_inside(output: str | Path, other: str | Path) -> bool:
    """True when ``output`` is ``other`` (through links, hard links included) or a folder holding it.

    Writing ``output`` then replaces ``other`` (a folder output such as OME-Zarr replaces the whole
    folder, so an input inside it is lost too).
    """
    out, src = _resolved(Path(output)), _resolved(Path(other))
    if out == src or out in src.parents:
        return True
    try:
        return Path(output).exists() and Path(other).exists() and os.path.samefile(output, other)
    except OSError:
        return False


def _existing_ancestor(path: Path) -> Path:
    current = _resolved(path).parent
    while not current.exists():
        current = current.parent
    return current


def check_output_path(
    output: str | Path,
    inputs: Iterable[str | Path | None] = (),
    *,
    expected_bytes: int | float | None = None,
    name: str = "--output",
    folder: bool | None = None,
) -> Path:
    """Refuse an output that would overwrite an input, cannot be written, or would not fit.

    Call it before any long computation. It checks that

    1. ``output`` is not any of ``inputs`` and does not resolve to one (symbolic or hard links,
       ``..``), and is not a folder that holds one;
    2. the nearest existing folder above ``output`` is a folder in which a file can be created
       (a probe file is created and removed there, so permissions, read-only file systems and
       immutable folders are all caught);
    3. an existing ``output`` is of the expected kind (``folder``; by default a folder for
       ``.zarr`` names and a file otherwise);
    4. with ``expected_bytes``, that the file system has that much free space plus
       :data:`DISK_MARGIN_BYTES` (the output is written beside itself, then renamed).

    Parameters
    ----------
    output : str or Path
        The user's output path.
    inputs : iterable of path or None
        Every file or folder the job reads (None entries are ignored).
    expected_bytes : int, optional
        Size of the output about to be written (e.g. ``4 * voxels`` for float32).
    name : str
        The option's name, used in messages.
    folder : bool, optional
        Whether the output is a folder (a model folder, a data set); default: by extension.

    Returns
    -------
    Path
        ``output`` as a Path.

    Raises
    ------
    InputError
        The output is an input.
    FileFormatError
        The output cannot be created there, or the disk has too little room.
    """
    output = Path(output)
    for source in inputs:
        if source is not None and same_or_inside(output, source):
            raise InputError(
                f"{name}: {output} is the input {source}; writing it would destroy the input — "
                "choose another output path"
            )
    parent = _existing_ancestor(output)
    if not parent.is_dir():
        raise FileFormatError(f"{output}: cannot be created, {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lucyd-write-test-", dir=parent)
    except OSError as exc:
        raise FileFormatError(
            f"{output}: cannot write in {parent} ({exc.strerror or exc}); choose another folder"
        ) from None
    os.close(fd)
    os.unlink(probe)
    if folder is None:
        folder = output.name.lower().rstrip("/").endswith(".zarr")
    if output.exists() and output.is_dir() != folder:
        kind = "a folder; give a file name" if output.is_dir() else "a file; give a folder"
        raise FileFormatError(f"{output}: is {kind}")
    if expected_bytes is not None:
        free = shutil.disk_usage(parent).free
        need = float(expected_bytes) + DISK_MARGIN_BYTES
        if need > free:
            raise FileFormatError(
                f"{output}: needs about {format_bytes(need)} but only {format_bytes(free)} "
                f"is free on that disk"
            )
    return output


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def partial_pattern(path: str | Path) -> tuple[str, str]:
    """(prefix, suffix) of the hidden temporary names :mod:`lucyd.io.atomic` uses for ``path``."""
    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return f".{stem}.partial-", suffix


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Delete temporary siblings of ``path`` left by runs that were killed (their process is gone).

    Temporary names carry the writer's process id (``.<stem>.partial-<pid>-<random><suffix>``);
    a partial whose process is still running is left alone (another job may be writing it).

    Returns
    -------
    list of Path
        The partial files or folders removed.
    """
    path = Path(path)
    prefix, suffix = partial_pattern(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)-[0-9a-f]{{8}}{re.escape(suffix)}")
    with os.scandir(path.parent) as entries:  # cheap prefix test first: folders may be large
        names = [e.name for e in entries if e.name.startswith(prefix)]
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        candidate = path.parent / name
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed
