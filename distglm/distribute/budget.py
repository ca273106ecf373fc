"""A worker's chunk-cache budget, and which chunks it keeps: pure functions of sizes.

A worker caches decoded chunks while they fit its budget and streams the rest (re-reads them on
every pass). The budget comes from the worker's memory limit (:func:`resolve_cache_bytes`);
the admission rule (:class:`CacheLedger`) is a pure function of the chunk sizes in chunk order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["DEFAULT_CACHE_FRACTION", "CacheLedger", "resolve_cache_bytes"]

#: Share of a worker's memory limit its chunk cache may take when no budget is given.
DEFAULT_CACHE_FRACTION = 0.5


def resolve_cache_bytes(cache_bytes, memory_limit, total_memory=None, workers_on_host=1):
    """The chunk-cache budget in bytes.

    Parameters
    ----------
    cache_bytes : None, int, float or str
        ``None``: :data:`DEFAULT_CACHE_FRACTION` of the memory limit. A float in (0, 1]: that
        fraction of it. An int (bytes) or a string such as ``"2 GiB"``: that many bytes.
    memory_limit : int or None
        The worker's memory limit (None or 0 when it has none: then the machine's memory
        ``total_memory`` shared by the ``workers_on_host`` workers stands for it).
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
        return int(DEFAULT_CACHE_FRACTION * limit)
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
