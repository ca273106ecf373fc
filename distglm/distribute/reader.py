"""How a worker reads its chunks: one ahead in a background thread, each read under a
deadline, each chunk compared with the fingerprint the statistics pass took of it. Units of
one split block read one after another share one read of the block: the reader keeps the last
block it read until a unit reaching the block's end is read, another block is read, or a batch
of reads ends.

:class:`ChunkReader` is the worker's only door to the store. A read that stalls (a hung
network file system, a chunk that became a named pipe) ends in
:class:`~distglm.exceptions.ChunkReadTimeout` naming the chunk once it passes
:func:`~distglm.distribute.deadline.read_deadline`; a chunk whose content changed since the
statistics pass ends in :class:`~distglm.exceptions.StoreChangedError`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time

import numpy as np

from ..data.checks import check_fingerprint, chunk_where, read_block
from ..exceptions import ChunkReadTimeout
from .deadline import read_deadline

__all__ = ["ChunkReader"]


class ChunkReader:
    """Reads chunks for one worker, timed and checked.

    Parameters
    ----------
    session_outputs : list of int arrays
        For each session, its outputs (the ``y`` columns a chunk must have).
    dtype : numpy dtype
        The kernels' dtype (finite values beyond its range are refused).
    read_limits : (float, float)
        ``(factor, floor)`` of each read's deadline (see :func:`read_deadline`).

    Attributes
    ----------
    seconds : float
        Seconds spent reading so far.
    count : int
        Block reads made so far (units of a split block taken from the block read for the
        one before are not counted).
    """

    def __init__(self, session_outputs, dtype, read_limits=(10.0, 60.0)):
        self._session_outputs = session_outputs
        self._dtype = np.dtype(dtype)
        self._limits = (float(read_limits[0]), float(read_limits[1]))
        self._times: collections.deque[float] = collections.deque(maxlen=32)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distglm-read")
        self._prints: dict[int, int] = {}  # chunk id -> fingerprint of its first read
        # (block key, X, y) of the last split block read in this batch, while units of it may
        # follow; a read of an earlier batch (its thread abandoned) may not set it
        self._block: tuple | None = None
        self._batch = 0
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.count = 0

    def read(self, spec, check_stored=False):
        """Read one chunk from its source, checked; returns ``(X, y)``, its rows as read."""
        key = (spec.X.name, spec.y.name)
        with self._lock:
            batch, last = self._batch, self._block
        if last is not None and last[0] == key:
            X, y = last[1], last[2]
        else:
            t = time.perf_counter()
            want = len(self._session_outputs[spec.session_index])
            X, y = read_block(spec, want, self._dtype, check_stored)
            seconds = time.perf_counter() - t
            self.seconds += seconds
            self.count += 1
            self._times.append(seconds)
        ends = spec.offset + spec.rows >= spec.source_rows
        with self._lock:
            if self._batch == batch:
                self._block = None if ends else (key, X, y)
        return spec.take(X, y)

    def drop_block(self) -> None:
        """Let go of the split block kept for the units that may follow it; a read still
        running (of a batch given up) will not keep its block."""
        with self._lock:
            self._batch += 1
            self._block = None

    def fingerprint(self, spec, X, y, expected=None) -> int:
        """Record the chunk's fingerprint at its first read, or check it against the recorded
        one (or ``expected``, taken by another worker's statistics pass)."""
        fp = check_fingerprint(spec, expected or self._prints.get(spec.chunk_id), X, y)
        self._prints[spec.chunk_id] = fp
        return fp

    def recorded(self, chunk_id: int) -> bool:
        """Whether a fingerprint of the chunk was recorded (a later read is compared to it)."""
        return chunk_id in self._prints

    def forget(self, chunk_ids=None) -> None:
        """Drop the recorded fingerprints of ``chunk_ids`` (None: all)."""
        if chunk_ids is None:
            self._prints.clear()
        for cid in chunk_ids or ():
            self._prints.pop(cid, None)

    def prefetched(self, items, read):
        """Yield ``read(spec)`` for each spec of ``items``, the next one read in the
        background thread, each waited for under the read deadline."""
        if not items:
            return
        pending = self._pool.submit(read, items[0])
        try:
            for i in range(len(items)):
                result = self._wait(pending, items[i])
                pending = self._pool.submit(read, items[i + 1]) if i + 1 < len(items) else None
                yield result
                del result
        finally:
            if pending is not None:  # a batch given up: its last read is not waited for
                pending.cancel()
            self.drop_block()

    def _wait(self, pending, spec):
        """The result of a background read, or :class:`ChunkReadTimeout` past its deadline
        (the stuck thread is abandoned; later reads get a new one)."""
        limit = read_deadline(list(self._times), *self._limits)
        try:
            return pending.result(timeout=limit)
        except concurrent.futures.TimeoutError:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distglm-read")
            raise ChunkReadTimeout(
                f"Reading {chunk_where(spec)} took more than {limit:.3g} s (the deadline on "
                "one chunk read: the Dask configuration key distglm.deadline.read_floor, or "
                "distglm.deadline.factor x this worker's median read); the store stalled."
            ) from None
