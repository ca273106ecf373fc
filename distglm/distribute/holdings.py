"""Where each of a worker's chunks is, and the cache budget they take: :class:`ChunkHoldings`.

A chunk a worker was given is in exactly one place:

- **held**: read by the statistics pass and kept (padded, labels as codes among the chunk's own
  labels) on the host, until the shared classes are known and it is encoded;
- **cached**: encoded, on the worker's JAX device, as ``(session, X, codes, weights)``;
- **streamed**: only its spec is kept; it is read again on every pass;
- **pending**: adopted by a resumed fit: admitted to the cache, read on the first pass, then
  cached.

Beside that, per chunk: its statistics (a repeated load reads nothing), its row range and kept
rows (recorded when it is read: cross-validation folds come from them), the kept rows an adopted
chunk's statistics recorded (checked on its first read), and its fold index on the device.

This is the one home of those rules; :class:`~distglm.distribute.worker.ChunkWorker` reads and
computes, and asks this object where a chunk is. No cluster, device or kernel: tests drive it
directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..inputs import kept_rows
from .budget import CacheLedger

__all__ = ["ChunkHoldings"]


class ChunkHoldings:
    """A worker's chunks by place (held, cached, streamed, pending) and its cache ledger.

    Parameters
    ----------
    budget : int
        Bytes the cache may hold.
    chunk_bytes : callable of int -> int
        Bytes one cached chunk of a session takes (by session index).

    Attributes
    ----------
    held : dict of int -> HeldChunk
        Read, on the host, until encoded.
    cache : dict of int -> (int, X, codes, weights)
        Encoded, on the device.
    streamed, pending : dict of int -> ChunkSpec
    stats : dict of int -> ChunkStats
    expected : dict of int -> int
        Kept rows an adopted chunk's statistics recorded.
    row_ranges : dict of int -> (session, start, stop, kept-row mask)
    ledger : CacheLedger
    """

    def __init__(self, budget: int, chunk_bytes: Callable[[int], int]):
        self.ledger = CacheLedger(int(budget))
        self._chunk_bytes = chunk_bytes
        self.held: dict = {}
        self.cache: dict = {}
        self.streamed: dict = {}
        self.pending: dict = {}
        self.stats: dict = {}
        self.expected: dict = {}
        self.row_ranges: dict = {}
        self._folds: dict = {}  # chunk id -> (FoldRule, fold index per padded row, on the device)

    @property
    def budget(self) -> int:
        return self.ledger.budget

    def ready(self) -> list[int]:
        """The chunks ready for passes (cached, streamed, adopted), sorted."""
        return sorted([*self.cache, *self.streamed, *self.pending])

    def all_ids(self) -> list[int]:
        """Every chunk this worker holds in any place, held ones included, sorted."""
        return sorted([*self.cache, *self.held, *self.streamed, *self.pending])

    def session_of(self, cid: int) -> int:
        """The session index of a chunk ready for passes."""
        if cid in self.cache:
            return self.cache[cid][0]
        return (self.streamed.get(cid) or self.pending[cid]).session_index

    def sessions(self) -> dict[int, int]:
        """Chunk id -> session index, for every chunk ready for passes."""
        return {c: self.session_of(c) for c in [*self.cache, *self.streamed, *self.pending]}

    def admit(self, session_index: int) -> bool:
        """Whether a chunk of this session fits what is left of the cache (taken if so)."""
        cached, self.ledger = self.ledger.admit(self._chunk_bytes(session_index))
        return cached

    def record_read(self, spec, stats, keep) -> bool:
        """Record a chunk the statistics pass read; whether the cache admits it (the caller
        then holds it in :attr:`held`), else it is streamed from now on."""
        cid = spec.chunk_id
        self.row_ranges[cid] = (spec.session_index, spec.start, spec.stop, keep)
        self.stats[cid] = stats
        if self.admit(spec.session_index):
            return True
        self.streamed[cid] = spec
        return False

    def adopt(self, spec, kept: int) -> None:
        """Take a chunk whose statistics are known (not read now); a repeat is ignored."""
        cid = spec.chunk_id
        if cid in self.cache or cid in self.streamed or cid in self.pending:
            return
        (self.pending if self.admit(spec.session_index) else self.streamed)[cid] = spec
        self.expected[cid] = int(kept)

    def streamed_rows(self, spec, X, y, same_content: bool):
        """The kept rows of a chunk a pass read (streamed or adopted), recorded.

        Parameters
        ----------
        spec : ChunkSpec
        X : array of shape (rows read, n_features)
        y : array of shape (rows read, n_session_outputs)
        same_content : bool
            Whether its fingerprint matched one recorded: then, where its rows were recorded,
            they are those; otherwise they are found (:func:`~distglm.inputs.kept_rows`).

        Raises
        ------
        ValueError
            Naming the chunk, where an adopted chunk keeps another number of rows than its
            statistics recorded (the data changed).

        Returns
        -------
        bool array of shape (rows read,)
        """
        cid = spec.chunk_id
        seen = same_content and cid in self.row_ranges
        keep = self.row_ranges[cid][3] if seen else kept_rows(X, y)
        self.row_ranges[cid] = (spec.session_index, spec.start, spec.stop, keep)
        expected = self.expected.get(cid)
        if expected is not None and int(keep.sum()) != expected:
            raise ValueError(
                f"{spec.describe()}: {int(keep.sum())} rows without NaN/Inf, but the statistics "
                f"this fit resumed with counted {expected}: the data changed since they were "
                "gathered. Fit with resume=False to read it afresh."
            )
        return keep

    def to_read(self, ids: Iterable[int]) -> list:
        """The specs of the chunks among ``ids`` that a pass must read (not cached)."""
        return [self.streamed.get(c) or self.pending[c] for c in ids if c not in self.cache]

    def was_read(self, cid: int, entry) -> None:
        """A chunk was read for a pass: an adopted one is cached from now on."""
        if self.pending.pop(cid, None) is not None:
            self.cache[cid] = entry

    def fold_index(self, cid: int, rule, rows: int, to_device: Callable):
        """The fold of each of a chunk's padded rows under ``rule`` (kept, on the device)."""
        held = self._folds.get(cid)
        if held is None or held[0] != rule:
            held = (rule, to_device(rule.kept_index(*self.row_ranges[cid], rows)))
            self._folds[cid] = held
        return held[1]

    def fold_counts(self, rule) -> tuple[list[int], list]:
        """Per chunk ready for passes, its kept rows held out by each fold of ``rule``."""
        ids = self.ready()
        missing = [cid for cid in ids if cid not in self.row_ranges]
        if missing:
            raise ValueError(f"Chunks {missing} have not been read here yet: rows unknown.")
        return ids, [rule.held_counts(*self.row_ranges[cid]) for cid in ids]

    def forget(self, chunk_ids: Iterable[int]) -> list[int]:
        """Drop chunks another worker now holds, freeing their cache space; the chunk ids
        still held here."""
        for cid in chunk_ids:
            for d in (self.stats, self.expected, self.streamed):
                d.pop(cid, None)
            session = None
            if cid in self.cache:
                session = self.cache.pop(cid)[0]
            elif cid in self.held:
                session = self.held.pop(cid).session_index
            elif cid in self.pending:
                session = self.pending.pop(cid).session_index
            if session is not None:
                self.ledger = self.ledger.release(self._chunk_bytes(session))
        return self.all_ids()

    def clear(self) -> None:
        """Drop every chunk and everything recorded about them; the budget stays."""
        for d in (self.held, self.cache, self.streamed, self.pending, self.expected):
            d.clear()
        self.row_ranges.clear()
        self._folds.clear()
        self.stats.clear()
        self.ledger = CacheLedger(self.ledger.budget)

    def cached_nbytes(self) -> int:
        """Bytes of the cached arrays on the device."""
        return sum(int(a.nbytes) for entry in self.cache.values() for a in entry[1:])
