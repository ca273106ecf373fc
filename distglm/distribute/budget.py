"""A worker's chunk-cache budget, and which chunks it keeps: pure functions of sizes.

A worker caches decoded chunks while they fit its budget and streams the rest (re-reads them on
every pass). The budget comes from the worker's memory limit (:func:`resolve_cache_bytes`);
the admission rule (:class:`CacheLedger`) is a pure function of the chunk sizes in chunk order.

The default budget is what is left of the memory limit, up to the first of Dask's ``pause``
and ``terminate`` fractions (:class:`MemoryCeiling`), once the process's measured runtime (its
resident size after JAX has started: ~250-300 MiB on a CPU worker) and the working memory of
the chunks in flight (:func:`working_bytes`: a few chunks as read and as encoded, XLA's compile
and temporaries, and the free heap glibc keeps) are set aside. Measured on 600 MiB workers
(``benchmarks/bench_memory.py``) without that last term, peaks went to 91% of the limit:
the 64 MiB glibc keeps was the difference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .runtime import TRIM_THRESHOLD_BYTES

__all__ = [
    "CACHE_FOOTPRINT",
    "IN_FLIGHT_CHUNKS",
    "XLA_RESERVE_BYTES",
    "CacheLedger",
    "MemoryCeiling",
    "default_cache_bytes",
    "memory_restart_message",
    "resolve_cache_bytes",
    "working_bytes",
]

#: Chunks alive at once besides the cache, at most: the one computed (as read, padded and on
#: the device), the one read ahead, the temporaries of the statistics pass (its float64 copy is
#: twice its X) and of the kernels on a whole chunk. Measured on 65,536 x 64 float32 chunks
#: (16 MiB), 12 outputs x 3 classes, a worker's peak was 350-400 MiB above its runtime and its
#: cache (benchmarks/bench_scale.py's store at 1 and 2 GiB limits), and 4 chunks here had a
#: 1 GiB and a 4 GiB worker restarted for memory; 12 chunks and the reserve below make 364 MiB.
IN_FLIGHT_CHUNKS = 12
#: Memory XLA takes beyond the runtime at start: compiled kernels and their temporaries.
XLA_RESERVE_BYTES = 96 << 20
#: Resident bytes a worker takes per byte of cached chunks. Measured with 16 MiB chunks
#: (runtime, cache, peak in MiB): 250 + 178 -> 826, 250 + 1,034 -> 1,911, and 275 + 2,638 past
#: 3,890 (restarted): the peak less the runtime fits 360 + 1.26 x the cache.
CACHE_FOOTPRINT = 1.3


@dataclasses.dataclass(frozen=True)
class MemoryCeiling:
    """Fractions of a worker's memory limit its process must stay below.

    Attributes
    ----------
    pause, terminate : float or None
        Dask's ``distributed.worker.memory.pause`` (the worker stops taking work) and
        ``distributed.worker.memory.terminate`` (the nanny restarts it); None when disabled.
    """

    pause: float | None = 0.8
    terminate: float | None = 0.95

    @classmethod
    def from_config(cls) -> MemoryCeiling:
        """The fractions in this process's Dask configuration (a worker's own)."""
        import dask

        def get(name):
            v = dask.config.get(f"distributed.worker.memory.{name}", None)
            return None if v is False or v is None else float(v)

        return cls(get("pause"), get("terminate"))

    @property
    def fraction(self) -> float:
        """The lowest enabled fraction (1 when both are disabled)."""
        return min([f for f in (self.pause, self.terminate) if f is not None], default=1.0)


def working_bytes(read_bytes: int, held_bytes: int) -> int:
    """Memory a worker needs beyond its cache and its runtime while reading and computing.

    Parameters
    ----------
    read_bytes : int
        The largest chunk as read (X and labels decoded, before encoding).
    held_bytes : int
        The largest chunk as cached (padded X, codes, weights).
    """
    chunks = IN_FLIGHT_CHUNKS * max(int(read_bytes), int(held_bytes))
    return chunks + XLA_RESERVE_BYTES + TRIM_THRESHOLD_BYTES


def default_cache_bytes(
    limit: int, runtime_bytes: int, working: int, ceiling: MemoryCeiling | None = None
) -> int:
    """The default budget: the limit up to ``ceiling`` less the runtime and working memory,
    divided by :data:`CACHE_FOOTPRINT` (what a cached byte costs the process).

    Parameters
    ----------
    limit : int
        The worker's memory limit (bytes).
    runtime_bytes : int
        The process's measured resident size before any chunk is read.
    working : int
        See :func:`working_bytes`.
    ceiling : MemoryCeiling, optional
        Dask's pause/terminate fractions (by default this process's configuration).

    Returns
    -------
    int
        At least 0 (every chunk then streamed).
    """
    ceiling = MemoryCeiling.from_config() if ceiling is None else ceiling
    free = int(ceiling.fraction * limit) - int(runtime_bytes) - int(working)
    return max(0, int(free / CACHE_FOOTPRINT))


def resolve_cache_bytes(
    cache_bytes,
    memory_limit,
    total_memory=None,
    workers_on_host=1,
    runtime_bytes=0,
    working=0,
    ceiling: MemoryCeiling | None = None,
):
    """The chunk-cache budget in bytes.

    Parameters
    ----------
    cache_bytes : None, int, float or str
        ``None``: :func:`default_cache_bytes` (the limit up to Dask's pause/terminate
        fraction, less ``runtime_bytes`` and ``working``). A float in [0, 1]: that fraction of
        the limit. An int (bytes) or a string such as ``"2 GiB"``: that many bytes.
    memory_limit : int or None
        The worker's memory limit (None or 0 when it has none: then the machine's memory
        ``total_memory`` shared by the ``workers_on_host`` workers stands for it).
    runtime_bytes, working : int
        The measured runtime and the working memory (see :func:`default_cache_bytes`).
    ceiling : MemoryCeiling, optional
    """
    from dask.utils import parse_bytes

    if isinstance(cache_bytes, bool):
        raise TypeError(f"cache_bytes must be a number of bytes or a fraction; got {cache_bytes}.")
    limit = memory_limit or None
    if limit is None:
        if total_memory is None:
            import psutil

            total_memory = psutil.virtual_memory().total
        limit = total_memory // max(1, int(workers_on_host))
    if cache_bytes is None:
        return default_cache_bytes(limit, runtime_bytes, working, ceiling)
    if isinstance(cache_bytes, str):
        try:
            return int(parse_bytes(cache_bytes))
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"cache_bytes={cache_bytes!r} is not a size (e.g. '512 MiB', '2GB')."
            ) from e
    if isinstance(cache_bytes, float):
        if not 0.0 <= cache_bytes <= 1.0:
            raise ValueError(
                f"cache_bytes={cache_bytes!r}: a float is a fraction of the worker's memory "
                "limit and must lie in [0, 1]; give bytes as an int or a string."
            )
        return int(cache_bytes * limit)
    if isinstance(cache_bytes, (int, np.integer)) and cache_bytes >= 0:
        return int(cache_bytes)
    raise ValueError(
        f"cache_bytes must be None, a fraction in [0, 1], a non-negative number of bytes or a "
        f"size string; got {cache_bytes!r}."
    )


@dataclasses.dataclass(frozen=True)
class CacheLedger:
    """Bytes a worker's cache may hold and holds.

    A chunk is cached when it fits what is left of the budget, whatever came before it (a
    later, smaller chunk may still fit); otherwise it is streamed.

    Attributes
    ----------
    budget : int
    used : int
    """

    budget: int
    used: int = 0

    def admit(self, size: int) -> tuple[bool, CacheLedger]:
        """Whether a chunk of ``size`` bytes is cached, and the ledger after it."""
        if self.used + size <= self.budget:
            return True, CacheLedger(self.budget, self.used + size)
        return False, self

    def release(self, size: int) -> CacheLedger:
        """The ledger after a cached chunk of ``size`` bytes left the cache."""
        if not 0 <= size <= self.used:
            raise ValueError(f"Cannot release {size} bytes from a cache holding {self.used}.")
        return CacheLedger(self.budget, self.used - size)


def memory_restart_message(kills: dict, passes: int) -> str:
    """The error for workers their nanny restarted for memory.

    Parameters
    ----------
    kills : dict of str -> dict
        Per worker: ``rss``, ``memory_limit`` and ``cache_bytes`` (bytes, or None unknown).
    passes : int
        Calls completed on every worker before (0: in the statistics pass).
    """

    def size(b):
        return "unknown" if b is None else f"{b / 2**20:,.0f} MiB"

    parts = [
        f"worker {addr} at {size(k['rss'])} resident (memory limit {size(k['memory_limit'])}, "
        f"distglm's chunk-cache budget {size(k['cache_bytes'])})"
        for addr, k in sorted(kills.items())
    ]
    when = f"after {passes} completed calls" if passes else "in the statistics pass"
    return (
        f"Dask's nanny restarted {'; '.join(parts)} for exceeding its memory limit, {when}. "
        "Give cache_bytes a lower budget (0 streams every chunk), store smaller chunks, or "
        "give the workers more memory."
    )
