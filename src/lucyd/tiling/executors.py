"""Executors for :func:`lucyd.tiling.run_tiles`: serial, local processes, dask.distributed.

Every executor has ``imap_unordered(task, jobs)``: ``jobs`` yields ``(key, tile, block)``
and the executor yields ``(key, task(block, tile))`` as tasks finish, in any order, with at
most a few tasks per worker in flight (so the calling process holds a bounded number of
blocks) — and ``close()``.

Specs accepted by :func:`get_executor` (the CLI's ``--cluster``):

* ``None`` or ``"serial"``: in this process, one tile after another.
* ``"processes:N"``: N local worker processes (``concurrent.futures``, spawn).
* ``"local:N"``: a dask.distributed ``LocalCluster`` with N single-threaded worker processes.
* ``"tcp://HOST:PORT"`` (or ``tls://``): join a running dask scheduler
  (``dask scheduler`` / ``dask worker tcp://HOST:PORT`` started on the machines).

dask retries a task whose worker died (``retries``, default 2).
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
from collections.abc import Iterable, Iterator

from lucyd.errors import InputError

#: tasks kept in flight per worker
IN_FLIGHT_PER_WORKER = 2


class SerialExecutor:
    """Run every task in this process, in order."""

    workers = 1

    def imap_unordered(self, task, jobs: Iterable) -> Iterator:
        for key, tile, block in jobs:
            yield key, task(block, tile)

    def close(self) -> None:
        pass


def _bounded(submit, wait_first, jobs, limit):
    """Submit jobs keeping at most ``limit`` in flight; yield (key, result) as they finish."""
    pending = {}
    jobs = iter(jobs)
    for job in itertools.islice(jobs, limit):
        pending[submit(job)] = job[0]
    while pending:
        for fut in wait_first(list(pending)):
            key = pending.pop(fut)
            result = fut.result()
            nxt = next(jobs, None)
            if nxt is not None:
                pending[submit(nxt)] = nxt[0]
            yield key, result


def _call(task, block, tile):
    return task(block, tile)


class ProcessExecutor:
    """Run tasks in ``workers`` local processes (spawned; the task must pickle)."""

    def __init__(self, workers: int):
        import multiprocessing as mp

        self.workers = int(workers)
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))

    def imap_unordered(self, task, jobs):
        def submit(job):
            key, tile, block = job
            return self._pool.submit(_call, task, block, tile)

        def wait_first(futs):
            return cf.wait(futs, return_when=cf.FIRST_COMPLETED).done

        yield from _bounded(submit, wait_first, jobs, IN_FLIGHT_PER_WORKER * self.workers)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


class DaskExecutor:
    """Run tasks on a dask.distributed cluster.

    Parameters
    ----------
    address : str, optional
        Scheduler address (``tcp://host:port``) to join. None: start a ``LocalCluster``.
    workers : int
        Workers of the LocalCluster (one thread each).
    processes : bool
        LocalCluster workers as processes (True) or threads of this process (False; fast to
        start, for tests).
    retries : int
        Times a task is resubmitted when it fails or its worker dies.
    client : distributed.Client, optional
        Use an existing client (not closed by :meth:`close`).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int = 2,
        processes: bool = True,
        retries: int = 2,
        client=None,
    ):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - depends on the environment
            raise InputError(
                "cluster: dask.distributed is not installed (pip install 'lucyd[cluster]')"
            ) from None
        self.retries = int(retries)
        self._own = client is None
        self._cluster = None
        if client is not None:
            self.client = client
        elif address is None:
            self._cluster = LocalCluster(
                n_workers=int(workers),
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout="20s")
            except OSError as exc:
                raise InputError(f"cluster: cannot reach the scheduler at {address}: {exc}") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})) or int(workers))

    def imap_unordered(self, task, jobs):
        from distributed import wait

        # the task (PSF, weights path, parameters) travels once to every worker
        [task_future] = self.client.scatter([task], broadcast=True, hash=False)

        def submit(job):
            key, tile, block = job
            return self.client.submit(
                _call, task_future, block, tile, pure=False, retries=self.retries
            )

        def wait_first(futs):
            return wait(futs, return_when="FIRST_COMPLETED").done

        yield from _bounded(submit, wait_first, jobs, IN_FLIGHT_PER_WORKER * self.workers)

    def close(self) -> None:
        if self._own:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


def get_executor(spec=None):
    """An executor for ``spec`` (see the module notes); executor objects pass through."""
    if spec is None or spec == "serial":
        return SerialExecutor()
    if hasattr(spec, "imap_unordered"):
        return _Borrowed(spec)
    if not isinstance(spec, str):
        raise InputError(f"cluster: expected serial, local:N, processes:N or an address, got {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind in ("local", "processes"):
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"cluster: expected {kind}:N with N >= 1 workers, got {spec!r}")
        return DaskExecutor(workers=n) if kind == "local" else ProcessExecutor(n)
    if "://" in spec:
        return DaskExecutor(spec)
    raise InputError(
        f"cluster: expected serial, local:N, processes:N or tcp://HOST:PORT, got {spec!r}"
    )


def check_cluster_spec(spec) -> None:
    """Validate a ``--cluster`` string without starting anything (one-line InputError)."""
    if spec is None or spec == "serial" or hasattr(spec, "imap_unordered"):
        return
    if isinstance(spec, str):
        kind, _, arg = spec.partition(":")
        if kind in ("local", "processes") and arg.isdigit() and int(arg) >= 1:
            return
        if "://" in spec:
            return
    raise InputError(
        f"cluster: expected serial, local:N, processes:N or tcp://HOST:PORT, got {spec!r}"
    )


class _Borrowed:
    """An executor given by the caller: used, not closed."""

    def __init__(self, inner):
        self.inner = inner
        self.workers = getattr(inner, "workers", 1)

    def imap_unordered(self, task, jobs):
        return self.inner.imap_unordered(task, jobs)

    def close(self) -> None:
        pass
