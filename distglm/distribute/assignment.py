"""Which worker holds which chunk: a pure function of events, tested without a cluster.

The model is ``distributed``'s worker state machine: the pool feeds events (workers started,
workers lost) to these functions and carries out the decisions they return (which chunks each
worker must load); nothing here does I/O (:func:`split_for_workers` reads one Dask
configuration key). Because partial sums are added exactly (:mod:`~distglm.distribute.reduce`),
no placement can change a fit's result, only where the work is done; a split into units changes
the chunks themselves, and so the kernels' float32 sums, by their rounding.

The rule: chunks are handed out in chunk-id order, each to the worker with the fewest rows so
far (ties to the lowest address). A plan split into units (:func:`~distglm.data.plan.split_plan`)
is instead cut into contiguous runs, one per worker (:func:`contiguous_owners`), so the units
of a block stay on one worker except where a run ends, and a block is read once, not once by
every worker holding a unit of it. Chunks of a lost worker go,
in id order, to the least loaded of the workers left; chunks of the others never move on a
loss. Workers that join take chunks from the most loaded, one at a time (its highest chunk id),
while that narrows the spread; chunks never move between two workers that were there before.

:func:`balanced_unit_rows` chooses how finely to split blocks: few large blocks over many
workers leave some workers a block more than others (4 blocks of 65,536 rows over 2 workers:
131,072 rows against 68,928), so a pass waits for the slowest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import dask.config

from ..data.plan import DataPlan, cut_rows, split_plan, whole_blocks

__all__ = ["Assignment", "balanced_unit_rows", "contiguous_owners", "max_load", "split_for_workers"]


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
    def initial(
        cls, rows: Sequence[int], workers: Iterable[str], contiguous: bool = False
    ) -> Assignment:
        """Every chunk placed on ``workers``, balanced by rows in chunk-id order (in
        contiguous runs with ``contiguous``: :func:`contiguous_owners`)."""
        rows = tuple(int(r) for r in rows)
        if not contiguous:
            return cls(rows, (None,) * len(rows)).place(workers)
        workers = sorted(set(workers))
        if not workers:
            raise ValueError("No workers to place chunks on.")
        return cls(rows, tuple(workers[i] for i in contiguous_owners(rows, len(workers))))

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


def contiguous_owners(rows: Sequence[int], n_workers: int) -> list[int]:
    """The worker index of each chunk: contiguous runs in chunk-id order.

    Worker ``j``'s run takes chunks while adding the next one brings its rows nearer to its
    share (the rows not yet placed, over the workers not yet given a run); a run ends early
    where the chunks left are as many as the workers left, so no worker goes without a chunk
    while another holds two.
    """
    owners: list[int] = []
    left, load, w = sum(int(r) for r in rows), 0, 0
    share = left / n_workers
    for i, r in enumerate(rows):
        r = int(r)
        last = w == n_workers - 1
        if load and not last:
            must = len(rows) - i <= n_workers - 1 - w
            if must or abs(load + r - share) > abs(load - share):
                w, load = w + 1, 0
                share = left / (n_workers - w)
        owners.append(w)
        load += r
        left -= r
    return owners


def max_load(rows: Sequence[int], n_workers: int) -> int:
    """The most rows a worker holds under :func:`contiguous_owners`."""
    load = [0] * n_workers
    for r, w in zip(rows, contiguous_owners(rows, n_workers), strict=True):
        load[w] += r
    return max(load)


#: A split is taken only where it lowers the most loaded worker's rows by more than this
#: fraction (each unit costs a kernel call), and ends once within this fraction of even.
SPLIT_GAIN = 0.1


def balanced_unit_rows(
    rows: Sequence[int], n_workers: int, chunk_rows: int, block_rows: int | None
) -> int | None:
    """The unit size that balances ``rows`` (the blocks' rows, in order) over ``n_workers``.

    The candidates halve ``chunk_rows`` (rounded up to whole kernel blocks) down to one
    block. Of those that lower the most loaded worker's rows (units placed in contiguous
    runs) by more than ``SPLIT_GAIN`` against the blocks unsplit (placed greedily), the
    largest that brings it within ``1 + SPLIT_GAIN`` times the even share is taken, or
    failing that the one with the least loaded most loaded worker (the larger on a tie).

    Returns
    -------
    int or None
        The unit rows (a multiple of ``block_rows``), or None: no split (one worker, blocks
        of one kernel block or less, already within ``1 + SPLIT_GAIN`` of the even share, or
        nothing gained).
    """
    if n_workers <= 1 or block_rows is None or chunk_rows <= block_rows:
        return None
    rows = [int(r) for r in rows]
    even = sum(rows) / n_workers
    names = [f"{i:06d}" for i in range(n_workers)]
    unsplit = max(Assignment.initial(rows, names).load(names).values())
    if unsplit <= (1 + SPLIT_GAIN) * even:
        return None
    gains = []  # (most loaded worker's rows, unit), largest unit first
    unit = chunk_rows
    while unit > block_rows:
        unit = whole_blocks(unit // 2, block_rows)
        load = max_load(cut_rows(rows, unit), n_workers)
        if load <= (1 - SPLIT_GAIN) * unsplit:
            gains.append((load, unit))
    for load, unit in gains:
        if load <= (1 + SPLIT_GAIN) * even:
            return unit
    return min(gains, key=lambda g: (g[0], -g[1]))[1] if gains else None


def split_for_workers(plan: DataPlan, n_workers: int, unit_rows: int | str | None = "auto"):
    """``plan`` split into units for ``n_workers`` workers.

    Parameters
    ----------
    plan : DataPlan
        Not split.
    n_workers : int
    unit_rows : "auto", int or None
        "auto": :func:`balanced_unit_rows` of the plan's blocks, unless the Dask
        configuration key ``distglm.balance.split`` is False; an int: that split (the one a
        resumed fit's checkpoint recorded); None: no split.

    Returns
    -------
    DataPlan
    """
    if unit_rows == "auto":
        unit_rows = None
        if dask.config.get("distglm.balance.split", True):
            rows = [b - a for _, a, b in plan.source]
            unit_rows = balanced_unit_rows(rows, n_workers, plan.chunk_rows, plan.block_rows)
    return split_plan(plan, None if unit_rows is None else int(unit_rows))
