"""The coordinator's side of the workers: one actor each, chunk assignment, lost workers.

A :class:`WorkerPool` starts one :class:`~distglm.distribute.worker.ChunkWorker` actor per
worker through a :class:`~distglm.distribute.transport.Transport`, places the plan's chunks with
the pure :class:`~distglm.distribute.assignment.Assignment`, and runs passes: each pass is one
call per worker carrying the parameters, and returns each worker's answer (its totals over its
chunks, and their ids).

The actors are started and called through an :class:`~distglm.distribute.actors.ActorSet`.
Every call has a deadline (:class:`~distglm.distribute.deadline.Deadlines`, from the measured
times of earlier calls): a worker that misses it is dropped from the fit for good, like a lost
one. Workers are disposable: when a worker is lost mid-call, its chunks are reassigned to the
remaining (or new) workers, re-read from their source, and the pass is run again. Because each
chunk's sums are a pure function of (chunk, parameters) and the reduction is compensated
(:mod:`~distglm.distribute.reduce`), the result is the same as without the failure.
"""

from __future__ import annotations

import functools
import logging
import time

import dask.config
import numpy as np

from .actors import ActorSet
from .assignment import Assignment, split_for_workers
from .deadline import Deadlines
from .transport import DaskTransport, SchedulerLost, Transport, WorkerLost

__all__ = ["WorkerLost", "WorkerPool"]

logger = logging.getLogger(__name__)


def _actor_args(plan, dtype, cache_bytes, n_classes, read_limits, workers_on_host) -> tuple:
    """The arguments of the :class:`~distglm.distribute.worker.ChunkWorker` actor of one
    worker: the ``plan``'s shapes, the kernel ``dtype``, the cache budget, the classes
    expected, the read deadline's ``(factor, floor)``, and the workers on its host."""
    return (
        [np.asarray(o) for o in plan.session_outputs],
        plan.chunk_rows,
        plan.block_rows,
        str(dtype),
        cache_bytes,
        workers_on_host,
        plan.n_features,
        max((c.read_nbytes for c in plan.chunks), default=0),
        n_classes,
        read_limits,
    )


class WorkerPool:
    """Actors holding the chunks of one :class:`~distglm.data.DataPlan`.

    Parameters
    ----------
    client : distributed.Client or None
        The cluster (ignored when ``transport`` is given).
    plan : DataPlan
    dtype : str
        Kernel dtype on the workers.
    max_recoveries : int
        Lost-worker recoveries allowed per call before giving up.
    cache_bytes : None, float, int or str
        Each worker's chunk-cache budget (see
        :func:`~distglm.distribute.budget.resolve_cache_bytes`); chunks past it are streamed.
    transport : Transport, optional
        How to reach the workers; by default a
        :class:`~distglm.distribute.transport.DaskTransport` over ``client`` (``start_timeout``
        and ``scatter_bytes`` are passed to it).
    wait_for_workers : float
        Seconds a recovery waits for a live worker when every one was lost.
    deadlines : Deadlines, optional
        How long a call waits for each worker (by default ``Deadlines.from_config()``: 10x
        the slowest worker's median time for that kind of call, at least 60 s; 300 s more
        for a kind's first call, 3600 s for the very first). A worker that misses it is
        dropped from the fit (logged) and never used again.
    join_interval : float, optional
        Seconds between two looks, at pass boundaries, at the scheduler's list of workers:
        workers that joined take a share of the chunks (the result does not change, since
        sums are added exactly, see :mod:`~distglm.distribute.reduce`), workers it no longer
        lists are recovered from before the pass is sent. By default the Dask configuration key
        ``distglm.join_interval`` (1 s).
    n_classes : int, optional
        The classes the fit expects: a worker whose chunks show more labels fails the
        statistics pass at once, naming the chunk.
    unit_rows : "auto", int or None
        Rows of the units the plan's blocks are cut into, for the workers there at the start
        (see :func:`~distglm.distribute.assignment.split_for_workers`).

    Attributes
    ----------
    plan : DataPlan
        The plan as split into units (``plan`` itself when not split).
    actors : ActorSet
        The workers' actors: how they are reached, their deadlines, and the passes completed
        on every worker so far (statistics pass and encoding included).
    dropped : set of str
        Workers dropped for missing a deadline.
    memory_kills : dict of str -> dict
        Workers their nanny restarted for memory: resident size, memory limit and budget.
        A second one (or one among the losses that end the fit) raises
        :class:`~distglm.exceptions.WorkerMemoryError` with those figures.
    """

    def __init__(
        self,
        client,
        plan,
        dtype="float32",
        max_recoveries=5,
        scatter_bytes=None,
        start_timeout=120,
        cache_bytes=None,
        transport: Transport | None = None,
        wait_for_workers=60.0,
        deadlines: Deadlines | None = None,
        join_interval: float | None = None,
        n_classes: int | None = None,
        unit_rows: int | str | None = "auto",
    ):
        if transport is None:
            kw = {} if scatter_bytes is None else {"scatter_bytes": scatter_bytes}
            transport = DaskTransport(client, start_timeout=start_timeout, **kw)
        workers = transport.workers()
        if not workers:
            raise RuntimeError("The Dask cluster has no workers.")
        self.plan = plan = split_for_workers(plan, len(workers), unit_rows)
        self.dtype = np.dtype(dtype)
        self.max_recoveries = int(max_recoveries)
        self.wait_for_workers = float(wait_for_workers)
        deadlines = Deadlines.from_config() if deadlines is None else deadlines
        args = functools.partial(
            _actor_args, plan, self.dtype, cache_bytes, n_classes, deadlines.read_limits
        )
        self.actors = ActorSet(transport, deadlines, args)
        if join_interval is None:
            join_interval = dask.config.get("distglm.join_interval", 1.0)
        self.join_interval = float(join_interval)
        self._looked = time.monotonic()
        self._specs = {c.chunk_id: c for c in plan.chunks}
        self._classes = None
        self._n_classes = 0
        self._prints: dict[int, int] = {}  # chunk id -> fingerprint of the statistics pass
        #: lost-worker recoveries so far
        self.recoveries = 0
        self.actors.start(workers)
        if not self.actors.started:
            raise WorkerLost(
                f"distglm's actor started on none of the {len(workers)} workers "
                f"({len(self.dropped)} did not start in time)."
            )
        rows = [c.rows for c in plan.chunks]
        self.assignment = Assignment.initial(rows, self.workers, plan.unit_rows is not None)

    # ------------------------------------------------------------------ actors
    @property
    def workers(self) -> list:
        """Addresses of the workers holding actors."""
        return self.actors.workers

    @property
    def transport(self) -> Transport:
        """How the workers are reached (the data term submits its dashboard markers with it)."""
        return self.actors.transport

    @property
    def dropped(self) -> set[str]:
        """Workers dropped for missing a deadline."""
        return self.actors.dropped

    @property
    def memory_kills(self) -> dict[str, dict]:
        """Workers their nanny restarted for memory (see the class's attributes)."""
        return self.actors.memory_kills

    @property
    def scheduler_lost(self) -> bool:
        """Whether a call found the scheduler gone (:class:`SchedulerLost` was raised)."""
        return self.actors.scheduler_lost

    def close(self):
        """Drop every worker's chunks, then release the actors (:meth:`ActorSet.close`)."""
        self.actors.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ lost workers
    def _load_args(self, cids):
        """Arguments of a ``load`` of chunks ``cids`` moved to a worker: their specs and the
        fingerprints the statistics pass took of them."""
        specs = [self._specs[c] for c in cids]
        return (specs, {c: self._prints[c] for c in cids if c in self._prints})

    def _recover(self, lost):
        """Drop lost workers' actors, start actors on new workers, re-load orphaned chunks."""
        self.recoveries += 1
        self.actors.release(lost)
        workers = self.actors.live_workers(set(lost), self.wait_for_workers)
        if not workers:
            if self.memory_kills:
                raise self.actors.memory_error()
            dropped = f" ({len(self.dropped)} dropped for missing a deadline)" * bool(self.dropped)
            raise WorkerLost(
                f"Every worker of the Dask cluster was lost{dropped} and none came back "
                f"within {self.wait_for_workers:g} s ({self.actors.passes} calls done)."
            )
        self.actors.start([w for w in workers if w not in self.actors.started])
        if not self.actors.started:
            raise WorkerLost(
                f"Every worker of the Dask cluster was lost and no new actor started "
                f"({self.actors.passes} calls done)."
            )
        self.assignment, loads = self.assignment.on_lost(lost, self.workers)
        calls = {a: ("load", self._load_args(cids)) for a, cids in loads.items()}
        _, more = self.actors.call(calls)
        if self._classes is not None and not more:
            _, more = self.actors.call({a: ("encode", (self._classes,)) for a in loads})
        n = sum(len(c) for c in loads.values())
        logger.warning("Re-read %d chunks of lost workers on %s", n, sorted(loads))
        return more

    def _run(self, method, args_for):
        """Call ``method`` on every actor; after a lost worker, recover and run it again."""
        try:
            return self._run_once(method, args_for)
        except SchedulerLost as e:
            raise self.actors.scheduler_gone(e, f"in {method!r}") from e

    def _run_once(self, method, args_for):
        while True:
            calls = {a: (method, args_for(a)) for a in self.workers}
            results, lost = self.actors.call(calls, counted=True)
            if not lost:
                return results
            self._recover_all(lost)

    def _recover_all(self, lost):
        while lost:
            if self.recoveries >= self.max_recoveries:
                if self.memory_kills:
                    raise self.actors.memory_error()
                raise WorkerLost(
                    f"Workers kept being lost ({self.recoveries} recoveries); giving up."
                )
            lost = self._recover(lost)

    # ------------------------------------------------------------------ membership
    def look_at_members(self):
        """At a pass boundary: recover from workers the scheduler no longer lists (before a
        call to them waits on a dead connection), and give workers that joined a share of the
        chunks. Looks at most once per ``join_interval`` seconds, and only once the classes
        are known (after the statistics pass and the encoding)."""
        now = time.monotonic()
        if self._classes is None or now - self._looked < self.join_interval:
            return
        self._looked = now
        try:
            live = set(self.actors.transport.workers())
        except SchedulerLost as e:
            raise self.actors.scheduler_gone(e, "between passes") from e
        gone = sorted(self.actors.started - live)
        if gone:
            logger.warning("Workers %s left the cluster between passes; recovering", gone)
            self._recover_all(gone)
        new = sorted(live - self.actors.started - self.dropped)
        if new:
            self._join(new)

    def _join(self, new):
        """Start actors on ``new`` workers and move chunks to them (see
        :meth:`Assignment.on_join`); the previous owners then forget those chunks."""
        self.actors.start(new)
        joined = [w for w in new if w in self.actors.started]
        if not joined:
            return
        before = self.assignment
        self.assignment, loads = before.on_join(joined, self.workers)
        calls = {a: ("load", self._load_args(cids)) for a, cids in loads.items()}
        _, lost = self.actors.call(calls)
        if not lost:
            _, lost = self.actors.call({a: ("encode", (self._classes,)) for a in loads})
        self._recover_all(lost)
        forget: dict[str, list[int]] = {}
        for cid, (old, now) in enumerate(zip(before.owner, self.assignment.owner, strict=True)):
            if old is not None and old != now and old in self.actors.started:
                forget.setdefault(old, []).append(cid)
        if forget:
            _, lost = self.actors.call({a: ("forget", (cids,)) for a, cids in forget.items()})
            self._recover_all(lost)
        n = sum(len(c) for c in loads.values())
        logger.info("Workers %s joined the fit; moved %d chunks to them", joined, n)

    # ------------------------------------------------------------------ the passes
    def statistics(self):
        """The statistics pass: every worker reads its chunks; list of ChunkStats."""
        # the owners are looked up at each call: a recovery mid-pass moves chunks
        specs = self._specs
        results = self._run("load", lambda a: ([specs[c] for c in self.assignment.chunks_of(a)],))
        out = [st for stats in results.values() for st in stats]
        self._prints = {st.chunk_id: st.fingerprint for st in out}
        return out

    def adopt(self, classes, kept):
        """Hand the workers their chunks with statistics already known (a resumed fit): no
        read now, each chunk is read on the first pass and checked against ``kept``.

        Parameters
        ----------
        classes : array of shape (n_classes,)
        kept : int array of shape (n_chunks,)
            Each chunk's kept rows, by chunk id.
        """
        self._classes = np.asarray(classes)
        self._n_classes = self._classes.size

        def args_for(addr):
            cids = self.assignment.chunks_of(addr)
            return ([self._specs[c] for c in cids], self._classes, [int(kept[c]) for c in cids])

        self._run("adopt", args_for)

    def encode(self, classes):
        """Send the shared classes; workers encode their cached labels (no re-read)."""
        self._classes = np.asarray(classes)
        self._n_classes = self._classes.size
        self._run("encode", lambda a: (self._classes,))

    def info(self):
        """Each worker's :meth:`ChunkWorker.info` (cache, streamed chunks, memory)."""
        return self._run("info", lambda a: ())

    def run_shared(self, method, array, *rest):
        """Call ``method(array, *rest)`` on every actor at a pass boundary (workers joined or
        lost are dealt with first), ``array`` sent once per worker (or broadcast, if large);
        returns ``{worker: result}``."""
        self.look_at_members()
        payload, release = self.actors.transport.share(np.asarray(array, self.dtype))
        try:
            return self._run(method, lambda a: (payload, *rest))
        finally:
            release()

    def run_all(self, method, *args):
        """Call ``method(*args)`` on every actor (recovering lost workers): {worker: result}."""
        return self._run(method, lambda a: args)

    @property
    def n_classes(self) -> int:
        """Classes of the shared encoding (0 before it)."""
        return self._n_classes
