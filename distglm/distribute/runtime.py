"""What a worker process measures and sets about itself: its memory, and glibc's malloc."""

from __future__ import annotations

import dataclasses
import os

__all__ = [
    "TRIM_THRESHOLD_BYTES",
    "HeapGuard",
    "keep_freed_memory",
    "process_memory",
    "return_freed_memory",
]


def process_memory(reset_peak=False):
    """This process's resident memory now and at its peak, in bytes (Linux ``/proc``).

    ``reset_peak`` restarts the peak from the current resident size (``clear_refs``), so a
    fit can measure its own peak. Returns ``{"rss": int, "peak": int}`` (None where the
    platform does not say).
    """
    if reset_peak:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    out = {"rss": None, "peak": None}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    out["peak"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


#: glibc's mallopt parameters and the values a worker sets (see :func:`keep_freed_memory`)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20
#: free heap glibc keeps (not returned to the system) once :func:`keep_freed_memory` ran
TRIM_THRESHOLD_BYTES = 64 << 20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks of up to 32 MiB instead of returning them to the system.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes
    glibc's mmap threshold at 128 KiB: every large temporary of an XLA kernel is then mapped
    and unmapped on every call, and the kernel ran 1.4-1.7x slower in a worker than in a plain
    process (measured here: 58-64 ms against 38 ms for 65,536 x 50 x 20 x 3). Called once per
    worker when distglm's actor starts; a no-op (False) where glibc's ``mallopt`` is missing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1


def return_freed_memory() -> dict:
    """Collect garbage and hand glibc's free heap back to the system (``malloc_trim``), so a
    worker whose chunks were dropped shrinks; returns :func:`process_memory` afterwards."""
    import gc

    gc.collect()
    _trim_heap()
    return process_memory()


def _trim_heap() -> None:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc


@dataclasses.dataclass(frozen=True)
class HeapGuard:
    """Keeps a worker's resident size near what its budget planned, against glibc's heap.

    With :func:`keep_freed_memory`'s 32 MiB mmap threshold, chunk-sized buffers (a 65,536 x
    64 float32 chunk is 16 MiB) come from the heap, and the holes they leave when freed are
    not returned to the system: streaming 16 MiB chunks grew a worker by ~410 MiB, and a
    1 GiB worker with the default budget was restarted for memory (benchmarks/bench_scale.py
    at 4 GiB as well). :meth:`check`, called as each chunk is dropped, hands the free heap back
    (``malloc_trim``, ~7 ms for such a chunk) only when the resident size is past ``ceiling``:
    below it the freed blocks stay for reuse, which keeps the kernels' speed.

    Attributes
    ----------
    ceiling : int or None
        Resident bytes past which the heap is trimmed: the runtime at start, the cache budget
        and the working allowance. None: never (no memory limit).
    """

    ceiling: int | None

    def check(self) -> bool:
        """Trim the heap if the process is past ``ceiling``; whether it did."""
        if self.ceiling is None:
            return False
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return False
        if rss <= self.ceiling:
            return False
        _trim_heap()
        return True
