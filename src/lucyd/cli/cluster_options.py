"""The ``--cluster`` / ``--max-memory`` options shared by the long commands (deconvolve,
predict, restore, isotropic): help texts and one validation, so the commands stay thin."""

from __future__ import annotations

CLUSTER_HELP = (
    "Run tiles on local:N (dask LocalCluster, N worker processes), processes:N, "
    "tcp://HOST:PORT (a running dask scheduler) or slurm[:queue=Q,jobs=N,cores=C,memory=M,"
    "walltime=HH:MM:SS,gpus=G,processes=P,account=A] (dask-jobqueue, pip install "
    "'lucyd[slurm]'; also LUCYD_SLURM_<OPTION> variables). Same result as without. "
    "Needs --max-memory (the memory of one tile, per worker)."
)
MAX_MEMORY_HELP = (
    "Memory budget of one tile, per worker, e.g. 2GB: sets the tile shape, and the memory "
    "limit of the dask workers lucyd starts (1.5 x budget + 0.7 GB)."
)


def cluster_settings(cluster: str | None, max_memory):
    """Validated ``(cluster, max_memory in bytes)`` of the CLI options (one-line errors, from
    :func:`lucyd.tiling.executors.check_cluster`, the one check of a cluster request)."""
    from lucyd.deconv import parse_memory
    from lucyd.tiling.executors import check_cluster

    budget = parse_memory(max_memory) if max_memory is not None else None
    check_cluster(cluster, budget, ("--cluster", "--max-memory"))
    return cluster, budget
