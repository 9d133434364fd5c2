"""Progress bars for long work (tqdm on stderr).

Set the environment variable ``LUCYD_NO_PROGRESS=1`` to silence them (tests do).
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(iterable=None, *, total: int | None = None, desc: str = "", disable: bool | None = None, **kwargs):
    """Wrap ``iterable`` (or a manual counter when None) in a tqdm progress bar."""
    if disable is None:
        disable = os.environ.get("LUCYD_NO_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
