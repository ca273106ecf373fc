"""Which Dask client a fit uses: the one given, else the default one, else an embedded cluster."""

from __future__ import annotations

import contextlib
import logging
import os

from .preload import MODULE as WORKER_PRELOAD

__all__ = ["connect", "local_cluster", "pin_workers_to_cores"]

logger = logging.getLogger("distglm")


def _default_client():
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # no client has been created in this process
        return None


def pin_workers_to_cores(client) -> dict:
    """Pin each worker process of a single-machine cluster to its own CPU core (Linux).

    XLA:CPU sizes its thread pool from the cores a process may use, so without this every
    JAX worker on a small machine spreads over all cores and they slow each other down. Call it
    before the first fit (before JAX's backend starts on the workers; importing JAX, as
    :data:`distglm.WORKER_PRELOAD` does, is fine). Workers beyond the number of
    cores are left alone.

    Returns
    -------
    dict
        worker address -> the cores it is pinned to.
    """
    if not hasattr(os, "sched_setaffinity"):
        return {}
    from .transport import scheduler_workers

    cores = sorted(os.sched_getaffinity(0))
    workers = sorted(scheduler_workers(client))
    if len(workers) > len(cores):
        return {}
    out = {}
    for addr, core in zip(workers, cores, strict=False):

        def pin(core=core):
            os.sched_setaffinity(0, {core})
            return sorted(os.sched_getaffinity(0))

        out[addr] = client.run(pin, workers=[addr])[addr]
    return out


def local_cluster(n_workers, threads_per_worker=1, memory_limit="auto"):
    """The ``LocalCluster`` distglm starts itself (a fit without a client, ``distglm demo``,
    ``distglm fit --workers N``): worker processes started with
    :data:`~distglm.WORKER_PRELOAD`, the dashboard on a free port.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    threads_per_worker : int
        Threads in each.
    memory_limit : str or int
        Each worker's memory limit, as ``LocalCluster`` takes it.

    Returns
    -------
    distributed.LocalCluster
    """
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=True,
        dashboard_address=":0",
        preload=[WORKER_PRELOAD],
    )


@contextlib.contextmanager
def connect(client=None, n_workers=None):
    """Yield the Dask client to fit with.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is. Without one, the current default client (the last one created in this
        process) is used; with none at all, a ``LocalCluster`` of worker processes (one thread
        each, one per core up to 4, pinned to their cores) is started for the call, logged on
        the ``distglm`` logger, and closed when the call ends.
    n_workers : int, optional
        Workers of the embedded cluster.

    Yields
    ------
    distributed.Client
    """
    if client is not None:
        yield client
        return
    found = _default_client()
    if found is not None:
        yield found
        return
    from distributed import Client

    n = n_workers or max(
        1,
        min(
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
            4,
        ),
    )
    logger.info("No Dask client found: starting a LocalCluster with %d worker processes", n)
    cluster = local_cluster(n)
    try:
        with Client(cluster, set_as_default=False) as c:
            pin_workers_to_cores(c)
            yield c
    finally:
        cluster.close()
        logger.info("Closed the LocalCluster started for this fit")
