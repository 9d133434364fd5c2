"""Long work off the GUI thread: a napari thread worker with lucyd's progress and cancel.

:class:`JobRunner` runs ``work(reporter)`` in a napari thread worker
(:func:`napari.qt.threading.create_worker`). Inside it a :class:`lucyd.progress.Reporter` is
active (:func:`lucyd.progress.reporting`), so every lucyd loop (RL iterations, blocks, tiles,
training steps) reports its steps; they cross to the GUI thread through a Qt signal and drive
a napari progress bar and the widget's status line. The Cancel button sets a
``threading.Event``; the next step raises :class:`lucyd.progress.Cancelled` in the worker,
which ends as "cancelled" without touching the viewer. lucyd's one-line errors (bad input,
bad file) end as a notification, never a traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from lucyd.errors import LucydError
from lucyd.progress import Cancelled, Reporter, reporting

__all__ = ["JobRunner"]

_DONE, _CANCELLED, _FAILED = "done", "cancelled", "failed"


class JobRunner(QObject):
    """Runs one job at a time for a widget; emits :attr:`finished` with its outcome.

    Parameters
    ----------
    status : callable, optional
        ``status(text)``: shows a line of text in the widget (progress, outcome, error).

    Attributes
    ----------
    worker : the running napari worker (None when idle)
    outcome : "done", "cancelled" or "failed" after a job; ``last_steps`` the last progress
        ``(done, total, desc)`` seen in the GUI thread.
    """

    stepped = Signal(int, int, str)  # done, total (-1 unknown), description
    finished = Signal(str)  # outcome

    def __init__(self, status: Callable[[str], Any] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._status = status or (lambda text: None)
        self.worker = None
        self.outcome: str | None = None
        self.last_steps: tuple[int, int, str] | None = None
        self._cancel = threading.Event()
        self._bar: napari_progress | None = None
        self.stepped.connect(self._on_step)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, work: Callable[[Reporter], Any], on_result: Callable[[Any], Any], label: str) -> None:
        """Run ``work(reporter)`` in a thread; ``on_result(value)`` in the GUI thread when it ends.

        Raises
        ------
        RuntimeError
            A job of this runner is still running.
        """
        if self.worker is not None:
            raise RuntimeError("a job is already running")
        self._cancel = threading.Event()
        reporter = Reporter(self._emit, cancel=self._cancel)

        def run() -> tuple[str, Any]:
            try:
                with reporting(reporter):
                    return _DONE, work(reporter)
            except Cancelled:
                return _CANCELLED, None
            except LucydError as exc:  # one line for the user, not a traceback
                return _FAILED, str(exc)

        self.outcome = None
        self.last_steps = None
        self._bar = napari_progress(total=0, desc=label)
        self._status(f"{label}: running…")
        worker = create_worker(run, _start_thread=False)
        worker.returned.connect(lambda value: self._on_returned(value, on_result, label))
        worker.errored.connect(lambda exc: self._end(_FAILED, f"{label}: {type(exc).__name__}: {exc}"))
        self.worker = worker
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.worker is not None:
            self._cancel.set()
            self._status("cancelling…")

    # -- worker thread
    def _emit(self, done: int, total: int | None, desc: str) -> None:
        self.stepped.emit(int(done), -1 if total is None else int(total), desc or "")

    # -- GUI thread
    def _on_step(self, done: int, total: int, desc: str) -> None:
        self.last_steps = (done, total, desc)
        if self.worker is None:  # a step delivered after the end
            return
        self._status(f"{desc or 'working'}: {done}/{total if total > 0 else '?'}")
        bar = self._bar  # a local, and the status first: the bar's refresh processes events, so
        if bar is not None:  # the job may end (and close the bar) inside it
            if total > 0 and bar.total != total:
                bar.total = total
            bar.n = min(done, total) if total > 0 else done
            bar.set_description(desc or "lucyd")
            bar.refresh()

    def _on_returned(self, value: tuple[str, Any], on_result, label: str) -> None:
        outcome, payload = value
        if outcome == _DONE:
            try:
                on_result(payload)
            except LucydError as exc:
                self._end(_FAILED, f"{label}: {exc}")
                return
            self._end(_DONE, f"{label}: done")
        elif outcome == _CANCELLED:
            self._end(_CANCELLED, f"{label}: cancelled")
        else:
            self._end(_FAILED, payload)

    def _end(self, outcome: str, message: str) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
        self.worker = None
        self.outcome = outcome
        self._status(message)
        if outcome == _FAILED:
            show_error(message)
        elif outcome == _CANCELLED:
            show_info(message)
        self.finished.emit(outcome)
