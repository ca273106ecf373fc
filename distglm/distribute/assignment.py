"""Which worker holds which chunk: a pure function of events, tested without a cluster.

The model is ``distributed``'s worker state machine: the pool feeds events (workers started,
workers lost) to these functions and carries out the decisions they return (which chunks each
worker must load); nothing here does I/O. Because partial sums are added exactly
(:mod:`~distglm.distribute.reduce`), no decision here can change a fit's result, only where the
work is done.

The rule: chunks are handed out in chunk-id order, each to the worker with the fewest rows so
far (ties to the lowest address). Chunks of a lost worker go, in id order, to the least loaded
of the workers left; chunks of the others never move on a loss. Workers that join take chunks
from the most loaded, one at a time (its highest chunk id), while that narrows the spread;
chunks never move between two workers that were there before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Assignment"]


@dataclasses.dataclass(frozen=True)
class Assignment:
    """The owner of every chunk.

    Attributes
    ----------
    rows : tuple of int
        Rows of each chunk, indexed by chunk id (``0 .. n_chunks - 1``).
    owner : tuple of str or None
        The worker holding each chunk (None: not held, to be placed).
    """

    rows: tuple[int, ...]
    owner: tuple[str | None, ...]

    @classmethod
    def initial(cls, rows: Sequence[int], workers: Iterable[str]) -> Assignment:
        """Every chunk placed on ``workers``, balanced by rows in chunk-id order."""
        empty = cls(tuple(int(r) for r in rows), (None,) * len(rows))
        return empty.place(workers)

    # ------------------------------------------------------------------ queries
    @property
    def workers(self) -> tuple[str, ...]:
        """Workers holding at least one chunk, sorted."""
        return tuple(sorted({a for a in self.owner if a is not None}))

    def chunks_of(self, worker: str) -> list[int]:
        """Chunk ids held by ``worker``, in increasing order."""
        return [cid for cid, a in enumerate(self.owner) if a == worker]

    def load(self, workers: Iterable[str] = ()) -> dict[str, int]:
        """Rows held by each worker (``workers`` listed with 0 where they hold none)."""
        out = dict.fromkeys(workers, 0)
        for cid, a in enumerate(self.owner):
            if a is not None:
                out[a] = out.get(a, 0) + self.rows[cid]
        return out

    def orphans(self) -> list[int]:
        """Chunks no worker holds."""
        return [cid for cid, a in enumerate(self.owner) if a is None]

    # ------------------------------------------------------------------ events
    def place(self, workers: Iterable[str]) -> Assignment:
        """Give every orphan, in chunk-id order, to the least loaded of ``workers``."""
        workers = sorted(set(workers))
        if not workers:
            raise ValueError("No workers to place chunks on.")
        load = self.load(workers)
        owner = list(self.owner)
        for cid in self.orphans():
            a = min(workers, key=lambda w: (load[w], w))
            owner[cid] = a
            load[a] += self.rows[cid]
        return Assignment(self.rows, tuple(owner))

    def without(self, lost: Iterable[str]) -> Assignment:
        """The chunks of ``lost`` workers become orphans."""
        gone = set(lost)
        return Assignment(self.rows, tuple(None if a in gone else a for a in self.owner))

    def on_lost(self, lost: Iterable[str], live: Iterable[str]) -> tuple[Assignment, dict]:
        """Workers ``lost``; ``live`` are the workers left (and any new ones).

        Returns
        -------
        Assignment
        loads : dict of worker -> list of chunk ids
            The chunks each worker must now read (the lost workers' chunks).
        """
        lost = set(lost)
        after = self.without(lost).place([w for w in live if w not in lost])
        return after, after.moved_from(self)

    def on_join(self, joined: Iterable[str], live: Iterable[str]) -> tuple[Assignment, dict]:
        """Workers ``joined`` (holding nothing yet) among the ``live`` ones.

        The least loaded of ``joined`` takes the highest-id chunk of the most loaded live
        worker, as long as it ends with fewer rows than that worker had; repeated until no
        move narrows the spread. Every step lowers the sum of squared loads, so it ends.

        Returns
        -------
        Assignment
        loads : dict of worker -> list of chunk ids
            The chunks each joined worker must now read.
        """
        new = sorted(set(joined))
        live = sorted(set(live) | set(new))
        if not new:
            return self, {}
        owner = list(self.owner)
        load = self.load(live)
        while True:
            dst = min(new, key=lambda w: (load[w], w))
            src = max(live, key=lambda w: (load[w], w))
            held = [cid for cid, a in enumerate(owner) if a == src]
            if src == dst or not held:
                break
            cid = held[-1]
            if load[dst] + self.rows[cid] >= load[src]:
                break
            owner[cid] = dst
            load[src] -= self.rows[cid]
            load[dst] += self.rows[cid]
        after = Assignment(self.rows, tuple(owner))
        return after, after.moved_from(self)

    def moved_from(self, before: Assignment) -> dict[str, list[int]]:
        """Chunks whose owner differs from ``before``'s, per new owner (what they must read)."""
        out: dict[str, list[int]] = {}
        for cid, (old, new) in enumerate(zip(before.owner, self.owner, strict=True)):
            if new is not None and new != old:
                out.setdefault(new, []).append(cid)
        return out

    def as_mapping(self) -> Mapping[int, str | None]:
        """``{chunk id: owner}``."""
        return dict(enumerate(self.owner))
