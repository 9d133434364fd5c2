"""Progress reporting and cancellation for long work: one abstraction, three kinds of sink.

A long loop (RL iterations, blocks, tiles, training steps, synthetic volumes) asks
:func:`progress` for a bar and steps it. What the steps turn into is chosen by whoever
started the work, with :func:`reporting`:

* nothing active (the default): a tqdm bar on stderr, silenced by ``LUCYD_NO_PROGRESS=1``
  (tests set it) or by the caller's ``disable=True``;
* a :class:`Reporter` made from a plain callback ``callback(done, total, desc)`` (a GUI such as
  napari wraps its own progress widget in such a callback), optionally with the tqdm bars too;
* a cancel request (a ``threading.Event`` or any ``() -> bool``): the next step of any bar
  raises :class:`Cancelled`, so a loop stops at its next iteration / block / tile / step
  without the loop knowing about cancellation.

The active reporter is held in a :mod:`contextvars` variable, so it reaches the loops inside
:func:`lucyd.deconv.deconvolve` (iterations and blocks), :func:`lucyd.tiling.tiled_apply`
(tiles) and the trainer (steps) without a parameter on every function in between. A loop
started with ``disable=True`` (an inner loop whose outer loop already reports, e.g. the
iterations inside one block) stays silent.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from lucyd.errors import LucydError

__all__ = ["Cancelled", "JobProgress", "Reporter", "as_reporter", "progress", "reporting"]

#: ``callback(done, total, desc)``: ``total`` is None when unknown
ProgressCallback = Callable[[int, "int | None", str], Any]

_ACTIVE: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("lucyd_reporter",
                                                                          default=None)


class Cancelled(LucydError):
    """Raised inside a long loop when its cancel request is set (see :func:`reporting`)."""


def _bars_silenced() -> bool:
    return os.environ.get("LUCYD_NO_PROGRESS", "") not in ("", "0")


class Reporter:
    """Where the steps of every bar go while it is active (:func:`reporting`).

    Parameters
    ----------
    callback : callable, optional
        ``callback(done, total, desc)`` after every step of every bar (``done`` counts from
        the bar's ``initial``).
    bars : bool
        Also show tqdm bars (still silenced by ``LUCYD_NO_PROGRESS=1``).
    cancel : threading.Event or callable, optional
        Checked before every step; when set (``is_set()``) or true (``cancel()``), the step
        raises :class:`Cancelled`.
    """

    def __init__(self, callback: ProgressCallback | None = None, *, bars: bool = False,
                 cancel: Any = None):
        if callback is not None and not callable(callback):
            raise TypeError(f"progress callback must be callable, got {type(callback).__name__}")
        if cancel is not None and not (callable(cancel) or hasattr(cancel, "is_set")):
            raise TypeError("cancel must be a threading.Event or a callable returning bool")
        self.callback = callback
        self.bars = bars
        self.cancel = cancel

    def cancelled(self) -> bool:
        """True when the cancel request is set."""
        if self.cancel is None:
            return False
        if hasattr(self.cancel, "is_set"):
            return bool(self.cancel.is_set())
        return bool(self.cancel())

    def check(self) -> None:
        """Raise :class:`Cancelled` when the cancel request is set."""
        if self.cancelled():
            raise Cancelled("cancelled")

    def bar(self, iterable=None, *, total: int | None = None, desc: str = "", **kwargs) -> _Bar:
        """A bar reporting to this reporter (same interface as the tqdm bars used in lucyd)."""
        return _Bar(self, iterable, total=total, desc=desc, **kwargs)


class _Bar:
    """tqdm's interface as lucyd's loops use it (iterate, ``update``, ``set_postfix``,
    ``close``), forwarding every step to a :class:`Reporter`."""

    def __init__(self, reporter: Reporter, iterable=None, *, total=None, desc="", **kwargs):
        self.reporter = reporter
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.desc = desc
        self.n = int(kwargs.get("initial", 0) or 0)
        self.postfix = ""
        self._tqdm = (tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, **kwargs)
                      if reporter.bars and not _bars_silenced() else None)
        reporter.check()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            self.reporter.check()
            yield item
            self.update(1)

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        if self.reporter.callback is not None:
            desc = f"{self.desc} [{self.postfix}]" if self.postfix else self.desc
            self.reporter.callback(self.n, self.total, desc)
        self.reporter.check()

    def set_postfix(self, *args, **kwargs) -> None:
        items = dict(args[0]) if args and isinstance(args[0], dict) else {}
        items.update(kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix(*args, **kwargs)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def as_reporter(progress: Any = None, cancel: Any = None) -> Reporter | None:
    """Turn the ``progress`` / ``cancel`` arguments of a public function into a reporter.

    ``progress`` may be None or False (silent), True (tqdm bars), a callable
    ``callback(done, total, desc)`` or a :class:`Reporter`. Returns None for "silent and not
    cancellable" (the caller then disables its bars).
    """
    if isinstance(progress, Reporter):
        if cancel is not None:
            return Reporter(progress.callback, bars=progress.bars, cancel=cancel)
        return progress
    if progress is None or progress is False:
        return Reporter(cancel=cancel) if cancel is not None else None
    if progress is True:
        return Reporter(bars=True, cancel=cancel)
    if callable(progress):
        return Reporter(progress, cancel=cancel)
    raise TypeError("progress must be None, a bool, a callable (done, total, desc) or a Reporter")


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Make ``reporter`` receive the steps of every :func:`progress` bar in this context.

    ``None`` leaves the current one (if any) in place.
    """
    if reporter is None:
        yield _ACTIVE.get()
        return
    token = _ACTIVE.set(reporter)
    try:
        yield reporter
    finally:
        _ACTIVE.reset(token)


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
             disable: bool | None = None, **kwargs):
    """A progress bar over ``iterable`` (or a manual counter when None).

    Inside :func:`reporting`, the active :class:`Reporter` gets the steps (callbacks,
    cancellation) unless ``disable`` is True. Otherwise a tqdm bar on stderr, silenced by
    ``LUCYD_NO_PROGRESS=1`` when ``disable`` is None.
    """
    active = _ACTIVE.get()
    if active is not None and disable is not True:
        return active.bar(iterable, total=total, desc=desc, **kwargs)
    if disable is None:
        disable = _bars_silenced()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False,
                **kwargs)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class JobProgress:
    """Progress of a whole tiled job: tiles done / total, throughput and time left.

    Steps one :func:`progress` bar per finished tile (so reporters, GUIs and cancellation see
    it) and sets its postfix to the throughput in voxels per second and the estimated time
    left, from the tiles finished in this run (tiles already done by a resumed run count as
    done but not towards the rate).

    Parameters
    ----------
    total : int
        Tiles in the job.
    done : int
        Tiles already finished (resume).
    desc : str
        Label.
    disable : bool or None
        As :func:`progress`.
    """

    def __init__(self, total: int, *, done: int = 0, desc: str = "tiles",
                 disable: bool | None = None):
        self.total = int(total)
        self.done = int(done)
        self._start_done = self.done
        self.voxels = 0
        self._clock = time.perf_counter
        self._t0 = self._clock()
        self.bar = progress(total=self.total, desc=desc, disable=disable, initial=self.done,
                            unit="tile")

    def status(self) -> dict:
        """``done``, ``total``, ``tiles_per_s``, ``voxels_per_s``, ``eta_s`` (None if unknown)."""
        elapsed = max(self._clock() - self._t0, 1e-9)
        ran = self.done - self._start_done
        rate = ran / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return {"done": self.done, "total": self.total, "tiles_per_s": rate,
                "voxels_per_s": self.voxels / elapsed, "eta_s": eta}

    def advance(self, voxels: int = 0) -> None:
        """One more tile finished, of ``voxels`` output voxels."""
        self.done += 1
        self.voxels += int(voxels)
        st = self.status()
        eta = "?" if st["eta_s"] is None else _duration(st["eta_s"])
        self.bar.set_postfix(vox_s=f"{st['voxels_per_s']:.3g}", left=eta)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
