"""What a worker's actor knows about its own memory: the Dask worker's limit, the budget event
it logs, and the up-front check of the statistics pass's second moments.

A worker caches decoded chunks up to its budget (``cache_bytes``; by default its memory limit
up to Dask's pause/terminate fraction, less the runtime measured when the actor starts and the
chunks in flight: :func:`~distglm.distribute.budget.default_cache_bytes`). Cached labels are
int8/int16 codes (:mod:`~distglm.distribute.chunks`), and each chunk's host copy is released as
it is encoded. Chunks past the budget are streamed: re-read from their source on every pass,
the next one read in a background thread while the current one is computed (Zarr decoding and
XLA both release the GIL), and copied to the device as they come. At most two streamed chunks
are alive at once, so a worker's memory is its cache plus a few chunks plus the runtime,
whatever the size of the data.
"""

from __future__ import annotations

import dataclasses

from ..data.sizes import check_needs, worker_stats_need
from .budget import CACHE_FOOTPRINT, resolve_cache_bytes, working_bytes

__all__ = [
    "BUDGET_EVENT",
    "MemoryPlan",
    "check_stats_size",
    "dask_memory_limit",
    "log_budget",
    "plan_memory",
]

#: the event each actor logs as it starts (its worker, memory limit and cache budget), so a
#: worker its nanny restarts for memory is reported with them
BUDGET_EVENT = "distglm-budget"


def dask_memory_limit() -> int | None:
    """This Dask worker's memory limit in bytes (None outside a worker or without a limit)."""
    try:
        from distributed import get_worker

        return getattr(get_worker().memory_manager, "memory_limit", None) or None
    except (ImportError, ValueError, AttributeError):
        return None  # not on a Dask worker (tests drive the actor class directly)


def log_budget(memory_limit: int | None, cache_bytes: int, runtime: int | None) -> None:
    """Log :data:`BUDGET_EVENT` on this Dask worker (nothing outside one)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(
        BUDGET_EVENT,
        {
            "worker": worker.address,
            "memory_limit": memory_limit,
            "cache_bytes": cache_bytes,
            "runtime": runtime,
        },
    )


def check_stats_size(limit, runtime, n_chunks, n_features, rows) -> None:
    """Refuse, before reading, a statistics pass whose per-chunk second moments exceed the
    worker's memory ``limit`` (up to Dask's pause fraction, less the ``runtime`` bytes)."""
    if not limit:
        return
    from .budget import MemoryCeiling

    available = int(MemoryCeiling.from_config().fraction * limit) - int(runtime or 0)
    need = worker_stats_need(n_chunks, n_features, rows)
    check_needs([need], available, f"a worker with a {limit / 2**20:,.0f} MiB memory limit")


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """A worker actor's memory, planned as it starts.

    Attributes
    ----------
    memory_limit : int or None
        The Dask worker's limit (None: no limit, or not on a worker).
    runtime : int or None
        The process's resident bytes when the actor started (None: unknown).
    working : int
        Bytes allowed beyond the cache: chunks in flight, XLA's and the heap's working memory.
    cache_bytes : int
        The chunk cache's budget.
    """

    memory_limit: int | None
    runtime: int | None
    working: int
    cache_bytes: int

    @property
    def planned(self) -> int | None:
        """Resident bytes the plan expects at most (a cached byte counted at
        ``CACHE_FOOTPRINT``), or None without a memory limit."""
        if self.memory_limit is None:
            return None
        cache = int(CACHE_FOOTPRINT * self.cache_bytes)
        return (self.runtime or 0) + cache + self.working


def plan_memory(limit, cache_bytes, workers_on_host, runtime, read_bytes, held_bytes) -> MemoryPlan:
    """Plan an actor's memory and log its budget (:data:`BUDGET_EVENT`).

    Parameters
    ----------
    limit : int or None
        The Dask worker's memory limit (:func:`dask_memory_limit`).
    cache_bytes : None, float, int or str
        What the fit asked for (see :func:`~distglm.distribute.budget.resolve_cache_bytes`).
    workers_on_host : int
    runtime : int or None
        Resident bytes now.
    read_bytes, held_bytes : int
        The largest chunk as read and as cached.

    Returns
    -------
    MemoryPlan
    """
    working = working_bytes(read_bytes, held_bytes)
    budget = resolve_cache_bytes(
        cache_bytes,
        limit,
        workers_on_host=workers_on_host,
        runtime_bytes=runtime or 0,
        working=working,
    )
    log_budget(limit, budget, runtime)
    return MemoryPlan(limit, runtime, working, budget)
