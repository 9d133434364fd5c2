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
* ``"slurm"`` or ``"slurm:queue=Q,jobs=N,cores=C,memory=M,walltime=HH:MM:SS,gpus=G,..."``:
  submit dask workers as Slurm jobs with dask-jobqueue (``pip install 'lucyd[slurm]'``);
  options also from ``LUCYD_SLURM_<OPTION>`` environment variables (:func:`slurm_options`).

dask retries a task whose worker died (``retries``, default 2). With a memory budget
(``max_memory``: the working memory of one tile), each LocalCluster / Slurm worker gets a
memory limit of :func:`worker_memory_limit` (the budget × 1.5 plus the runtime's fixed cost),
beyond which the nanny restarts it and the scheduler reruns its task elsewhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator

from lucyd.errors import InputError

#: tasks kept in flight per worker
IN_FLIGHT_PER_WORKER = 2
#: resident memory of a worker process before any tile: Python, numpy, torch, dask (CPU)
WORKER_FIXED_BYTES = 700 * 2**20
#: Slurm options of ``--cluster slurm:...`` and their dask-jobqueue defaults
SLURM_DEFAULTS = {
    "queue": None,  # partition (-p); None: the cluster's default
    "account": None,  # -A
    "jobs": 1,  # Slurm jobs submitted (cluster.scale(jobs=N))
    "processes": 1,  # dask workers per job (one per GPU with gpus)
    "cores": 1,  # CPU cores per job
    "memory": None,  # per job, e.g. 16GB; default from max_memory (worker_memory_limit)
    "walltime": "01:00:00",
    "gpus": 0,  # GPUs per job (--gres=gpu:G); set processes = gpus for one worker per GPU
}


def worker_memory_limit(max_memory: float | None) -> int | None:
    """Memory limit of one dask worker for a per-tile budget: ``1.5 × budget + fixed cost``."""
    if max_memory is None:
        return None
    return int(1.5 * float(max_memory) + WORKER_FIXED_BYTES)


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
    memory_limit : int, optional
        Bytes per LocalCluster worker (:func:`worker_memory_limit`); None: dask's default.
    cluster : object, optional
        A dask cluster object to connect to and close with the executor (Slurm).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int = 2,
        processes: bool = True,
        retries: int = 2,
        client=None,
        memory_limit: int | None = None,
        cluster=None,
    ):
        try:
            from distributed import Client, LocalCluster  # optional extra (lucyd[cluster])
        except ImportError:  # pragma: no cover - depends on the environment
            raise InputError(
                "cluster: dask.distributed is not installed (pip install 'lucyd[cluster]')"
            ) from None
        self.retries = int(retries)
        self._own = client is None
        self._cluster = cluster
        if client is not None:
            self.client = client
        elif cluster is not None:
            self.client = Client(cluster)
        elif address is None:
            self._cluster = LocalCluster(
                n_workers=int(workers),
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
                memory_limit=memory_limit if memory_limit is not None else "auto",
            )
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(address, timeout="20s")
            except OSError as exc:
                raise InputError(f"cluster: cannot reach the scheduler at {address}: {exc}") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})) or int(workers))

    def imap_unordered(self, task, jobs):
        from distributed import wait  # optional extra (lucyd[cluster])

        # the task (PSF, model, parameters) travels once to every worker: a replica on each,
        # so a worker that dies takes none of it away
        [task_future] = self.client.scatter([task], broadcast=True, hash=False)

        def submit(job):
            import warnings

            key, tile, block = job
            # the block travels inside the task (held by the scheduler until it is done), so
            # the task can run again elsewhere when its worker dies; a scattered block would
            # die with the worker that holds it
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sending large graph")
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


def get_executor(spec=None, *, max_memory=None):
    """An executor for ``spec`` (see the module notes); executor objects pass through.

    ``max_memory`` (bytes per tile) sets the memory limit of the workers that lucyd starts
    (``local:N``, ``slurm``).
    """
    if spec is None or spec == "serial":
        return SerialExecutor()
    if hasattr(spec, "imap_unordered"):
        return _Borrowed(spec)
    check_cluster_spec(spec)
    kind, _, arg = spec.partition(":")
    limit = worker_memory_limit(max_memory)
    if kind == "local":
        return DaskExecutor(workers=int(arg), memory_limit=limit)
    if kind == "processes":
        return ProcessExecutor(int(arg))
    if kind == "slurm":
        opts = slurm_options(spec)
        return DaskExecutor(cluster=slurm_cluster(opts, max_memory=max_memory),
                            workers=opts["jobs"] * opts["processes"])
    return DaskExecutor(spec)


_SPEC_HELP = "serial, local:N, processes:N, tcp://HOST:PORT or slurm[:option=value,...]"


def check_cluster_spec(spec) -> None:
    """Validate a ``--cluster`` string without starting anything (one-line InputError)."""
    if spec is None or spec == "serial" or hasattr(spec, "imap_unordered"):
        return
    if isinstance(spec, str):
        kind, _, arg = spec.partition(":")
        if kind in ("local", "processes") and arg.isdigit() and int(arg) >= 1:
            return
        if kind == "slurm":
            slurm_options(spec)
            _require_jobqueue()
            return
        if "://" in spec:
            return
    raise InputError(f"cluster: expected {_SPEC_HELP}, got {spec!r}")


def check_cluster(cluster, max_memory, names: tuple[str, str] = ("cluster", "max_memory")) -> None:
    """The one check of a cluster request: a valid spec (:func:`check_cluster_spec`) and a memory
    budget beside it (the tile size and the workers' memory limit follow from it).

    Called before any work by every command and library entry point that takes a cluster;
    ``names``: how the caller spells the two options (``("--cluster", "--max-memory")`` on the
    command line).
    """
    if cluster is None:
        return
    check_cluster_spec(cluster)
    if max_memory is None:
        raise InputError(f"{names[0]}: needs {names[1]} (the memory of one tile, per worker)")


def slurm_options(spec: str = "slurm", environ=None) -> dict:
    """Options of a ``slurm[:key=value,...]`` spec over ``LUCYD_SLURM_<KEY>`` variables and
    :data:`SLURM_DEFAULTS` (one-line InputError for an unknown key or a bad number)."""
    environ = os.environ if environ is None else environ
    opts = dict(SLURM_DEFAULTS)
    for key in SLURM_DEFAULTS:
        value = environ.get(f"LUCYD_SLURM_{key.upper()}")
        if value:
            opts[key] = value
    _, _, rest = spec.partition(":")
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in SLURM_DEFAULTS:
            raise InputError(
                f"cluster: unknown Slurm option {item!r} in {spec!r}; use "
                + ", ".join(f"{k}=..." for k in SLURM_DEFAULTS)
            )
        opts[key] = value.strip()
    for key in ("jobs", "processes", "cores", "gpus"):
        try:
            opts[key] = int(opts[key])
        except (TypeError, ValueError):
            raise InputError(f"cluster: Slurm option {key} must be an integer, got "
                             f"{opts[key]!r}") from None
        if opts[key] < (0 if key == "gpus" else 1):
            raise InputError(f"cluster: Slurm option {key} must be >= "
                             f"{0 if key == 'gpus' else 1}, got {opts[key]}")
    return opts


def _require_jobqueue():
    """The dask_jobqueue module, or a one-line InputError saying how to install it."""
    try:
        import dask_jobqueue  # optional extra (lucyd[slurm])
    except ImportError:
        raise InputError(
            "cluster: slurm needs dask-jobqueue (pip install 'lucyd[slurm]')"
        ) from None
    return dask_jobqueue


def slurm_cluster(opts: dict, *, max_memory=None):
    """A dask-jobqueue ``SLURMCluster`` for :func:`slurm_options`, scaled to ``jobs`` jobs.

    Each job runs ``processes`` single-threaded dask workers on ``cores`` cores; its memory is
    ``memory`` or, from the per-tile budget, ``processes ×`` :func:`worker_memory_limit`.
    ``gpus=G`` requests ``--gres=gpu:G`` per job; with ``processes=G`` each worker uses one
    GPU (:func:`lucyd.tiling.tasks.worker_device`).
    """
    SLURMCluster = _require_jobqueue().SLURMCluster
    memory = opts["memory"]
    if memory is None:
        limit = worker_memory_limit(max_memory) or 4 * 2**30
        memory = f"{-(-opts['processes'] * limit // 2**30)}GiB"
    extra = []
    if opts["gpus"]:
        extra.append(f"--gres=gpu:{opts['gpus']}")
    kwargs = dict(
        cores=opts["cores"],
        processes=opts["processes"],
        memory=memory,
        walltime=opts["walltime"],
        job_extra_directives=extra,
    )
    if opts["queue"]:
        kwargs["queue"] = opts["queue"]
    if opts["account"]:
        kwargs["account"] = opts["account"]
    cluster = SLURMCluster(**kwargs)
    cluster.scale(jobs=opts["jobs"])
    return cluster


class _Borrowed:
    """An executor given by the caller: used, not closed."""

    def __init__(self, inner):
        self.inner = inner
        self.workers = getattr(inner, "workers", 1)

    def imap_unordered(self, task, jobs):
        return self.inner.imap_unordered(task, jobs)

    def close(self) -> None:
        pass
