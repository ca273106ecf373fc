"""The chunks a worker's passes run over, as read: :class:`PassChunks`.

- The statistics pass (:meth:`PassChunks.read_statistics`): each chunk is read from its source
  (one ahead in the background), fingerprinted, its statistics and labels recorded, and kept on
  the host while the cache budget allows.
- The encoding (:meth:`PassChunks.encode`): once the classes are merged, each held chunk's
  labels as codes among them, padded and cached on the JAX device.
- Every later pass (:meth:`PassChunks.chunks`): the chunks in chunk-id order, cached ones from
  the cache, the streamed (and adopted, not yet read) ones read one ahead, checked against what
  the statistics recorded, encoded, padded and placed on the JAX device.
- Each pass's timing (:meth:`PassChunks.timed`): its seconds, and of them the reads'.

The heap is checked as each chunk read is dropped. Where each chunk is stays the
:class:`~distglm.distribute.holdings.ChunkHoldings`'s, the reads themselves the
:class:`~distglm.distribute.reader.ChunkReader`'s; the
:class:`~distglm.distribute.worker.ChunkWorker` lends both and runs the kernels.
"""

from __future__ import annotations

import dataclasses
import time

from ..data.stats import chunk_stats
from ..kernels.buffers import on_device
from .chunks import LabelSet, encode_held, encode_read, hold_chunk

__all__ = ["PassChunks"]


class PassChunks:
    """A worker's reads of its chunks, for the statistics pass and for every pass after it.

    Parameters
    ----------
    holdings : ChunkHoldings
        Where each of the worker's chunks is.
    reader : ChunkReader
        The worker's reader.
    heap : HeapGuard
        Checked as each chunk read is dropped.
    rows : int
        Rows every chunk is padded to.
    dtype : numpy dtype
        Kernel dtype.
    n_classes : int, optional
        The classes the fit expects (see :class:`~distglm.distribute.chunks.LabelSet`).

    Attributes
    ----------
    labels : LabelSet
        The distinct labels the chunks read so far showed.
    """

    def __init__(self, holdings, reader, heap, rows, dtype, n_classes=None):
        self.holdings = holdings
        self.reader = reader
        self.heap = heap
        self.rows = rows
        self.dtype = dtype
        self.labels = LabelSet(n_classes)

    def read_statistics(self, specs, fingerprints):
        """Read ``specs`` (one ahead), record each one's statistics (with its fingerprint,
        checked against ``fingerprints``: dict of chunk id -> int) and labels, and keep it held
        while the cache budget allows."""
        h = self.holdings
        chunks = self.reader.prefetched(specs, self._read_checked)
        for spec, (X, y) in zip(specs, chunks, strict=True):
            fp = self.reader.fingerprint(spec, X, y, fingerprints.get(spec.chunk_id))
            stats, keep = chunk_stats(spec.chunk_id, X, y)
            stats = dataclasses.replace(stats, fingerprint=fp)
            self.labels = self.labels.add(stats.labels, spec)
            if h.record_read(spec, stats, keep):
                h.held[spec.chunk_id] = hold_chunk(
                    spec.session_index, X, y, keep, stats.labels, self.rows, self.dtype
                )
            del X, y
            self.heap.check()

    def encode(self, classes):
        """Encode every held chunk's labels among ``classes``, pad, and cache it on the device,
        one chunk at a time, its host copy dropped before the next (holding every raw chunk
        while making the encoded copies took a process from 303 to 1,490 MiB, issue 11)."""
        h = self.holdings
        for cid in sorted(h.held):
            held = h.held.pop(cid)
            try:
                arrays = encode_held(held, classes, self.rows, self.dtype)
            except ValueError as e:
                raise ValueError(f"Chunk {cid}: {e}") from None
            h.cache[cid] = (held.session_index, *on_device(*arrays))
            del held, arrays
            self.heap.check()

    def _read_checked(self, spec):
        return self.reader.read(spec, check_stored=True)

    def _read_encoded(self, spec, classes):
        """A streamed chunk: read, drop non-finite rows, encode, pad, copy to the device."""
        X, y = self.reader.read(spec, check_stored=spec.chunk_id in self.holdings.pending)
        recorded = self.reader.recorded(spec.chunk_id)
        self.reader.fingerprint(spec, X, y)  # raises unless the content is the one recorded
        keep = self.holdings.streamed_rows(spec, X, y, same_content=recorded)
        try:
            arrays = encode_read(X, y, keep, classes, self.rows, self.dtype)
        except ValueError as e:
            raise ValueError(f"{spec.describe()}: {e}") from None
        return spec.chunk_id, spec.session_index, on_device(*arrays)

    def chunks(self, classes, sessions=None):
        """Every chunk in chunk-id order as (id, session, X, codes, weights): cached ones from
        the cache, streamed (and adopted, not yet read) ones read one ahead in the background
        and encoded among ``classes``; an adopted chunk is cached once read. With
        ``sessions``, only the chunks of those sessions (the others are not read)."""
        h = self.holdings
        ids = h.ready()
        if sessions is not None:
            ids = [c for c in ids if h.session_of(c) in sessions]
        stream = self.reader.prefetched(h.to_read(ids), lambda s: self._read_encoded(s, classes))
        for cid in ids:
            read = cid not in h.cache
            if read:
                got, s, (X, y, w) = next(stream)
                assert got == cid, (got, cid)
                h.was_read(cid, (s, X, y, w))
            else:
                s, X, y, w = h.cache[cid]
            yield cid, s, X, y, w
            del X, y, w
            if read:  # a cached chunk's arrays stay: nothing was freed (the check reads /proc)
                self.heap.check()

    def timed(self, run):
        """``run()``'s results, then the seconds it took and, of them, the seconds spent
        reading chunks (in the background too)."""
        start = time.perf_counter()
        read_before = self.reader.seconds
        out = run()
        return (*out, time.perf_counter() - start, self.reader.seconds - read_before)
