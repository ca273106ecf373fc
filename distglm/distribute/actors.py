"""The fit's worker actors as one set: :class:`ActorSet` starts, calls under deadlines, releases.

An :class:`ActorSet` reaches the :class:`~distglm.distribute.worker.ChunkWorker` actors through
a :class:`~distglm.distribute.transport.Transport`: it starts one per worker, runs calls on them
concurrently, each under its kind's deadline (:class:`~distglm.distribute.deadline.Deadlines`,
from the measured times of earlier calls), drops a worker that misses it for good, notes the
workers their nanny restarted for memory, and clears and releases the actors at the end.

It knows nothing of chunks: which worker holds which, the recovery from lost workers and the
members joining are the :class:`~distglm.distribute.pool.WorkerPool`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..exceptions import WorkerMemoryError
from .budget import memory_restart_message
from .deadline import Deadlines
from .transport import SchedulerLost, Transport

__all__ = ["ActorSet"]

logger = logging.getLogger(__name__)


class ActorSet:
    """The actors of one fit, one per worker, and what their calls showed.

    Parameters
    ----------
    transport : Transport
        How to reach the workers.
    deadlines : Deadlines
        How long a call waits for each worker.
    actor_args : callable of int -> tuple
        The actor's constructor arguments, given the number of workers on its host.

    Attributes
    ----------
    started : set of str
        Workers holding actors.
    dropped : set of str
        Workers dropped for missing a deadline.
    memory_kills : dict of str -> dict
        Workers their nanny restarted for memory: resident size, memory limit and budget.
    passes : int
        Counted calls (see :meth:`call`) completed on every worker so far.
    scheduler_lost : bool
        Whether a call found the scheduler gone (set by the pool, see :meth:`scheduler_gone`).
    """

    def __init__(
        self, transport: Transport, deadlines: Deadlines, actor_args: Callable[[int], tuple]
    ):
        self.transport = transport
        self.deadlines = deadlines
        self.actor_args = actor_args
        self.started: set[str] = set()
        self.dropped: set[str] = set()
        self.memory_kills: dict[str, dict] = {}
        self.passes = 0
        self.scheduler_lost = False

    @property
    def workers(self) -> list:
        """Addresses of the workers holding actors."""
        return sorted(self.started)

    def start(self, addrs):
        """Start one ChunkWorker actor on each of ``addrs`` and wait for them; a worker lost
        meanwhile is left out, one that does not start in time is dropped (logged)."""
        if not addrs:
            return
        hosts = self.transport.hosts()
        per_host = list(hosts.values())
        outcomes = self.transport.start(
            {addr: self.actor_args(per_host.count(hosts.get(addr, addr))) for addr in addrs}
        )
        for addr, (status, value) in outcomes.items():
            if status == "ok":
                self.started.add(addr)
            elif status == "error":
                raise value
            else:
                if status == "late":
                    self.dropped.add(addr)
                logger.warning(
                    "No actor on worker %s (%s: %s); going on without it", addr, status, value
                )

    def call(self, calls, counted=False):
        """Run ``{addr: (method, args)}`` concurrently, each under its kind's deadline;
        return results and lost workers (those late are dropped for good). A ``counted`` call
        that every worker completed adds one to :attr:`passes`."""
        kinds = {m for m, _ in calls.values()}
        limits = [self.deadlines.deadline(k) for k in kinds]
        finite = [limit for limit in limits if limit is not None]
        # the longest of the kinds' deadlines; none where a kind has none (or no call is made)
        timeout = max(finite) if finite and len(finite) == len(limits) else None
        start = time.monotonic()
        outcomes = self.transport.call(calls, timeout=timeout)
        seconds = time.monotonic() - start
        results, lost = {}, []
        for addr, (status, value) in outcomes.items():
            if status == "late":
                logger.warning(
                    "Dropped worker %s from the fit: no answer to %r within its deadline "
                    "(%.3g s); its chunks go to the others",
                    addr,
                    calls[addr][0],
                    timeout,
                )
                self.dropped.add(addr)
                lost.append(addr)
            elif status == "lost":
                logger.warning("Lost worker %s during a pass (%r); recovering", addr, value)
                lost.append(addr)
                self._note_memory_kill(addr)
            elif status == "error":
                raise value
            else:
                results[addr] = value
        if not lost and len(kinds) == 1:
            self.deadlines = self.deadlines.record(kinds.pop(), dict.fromkeys(results, seconds))
        if lost:
            self.deadlines = self.deadlines.forget(lost)
        elif counted:
            self.passes += 1
        return results, lost

    def _note_memory_kill(self, addr):
        """Record ``addr`` if its nanny restarted it for memory; a second such restart in
        this fit raises (the same data would exceed the same limits again)."""
        found = self.transport.memory_restarts([addr])
        if not found:
            return
        self.memory_kills.update(found)
        logger.warning("Worker %s was restarted for memory: %s", addr, found[addr])
        if len(self.memory_kills) >= 2:
            raise self.memory_error()

    def memory_error(self) -> WorkerMemoryError:
        """The error that ends a fit after workers were restarted for memory, with their
        figures."""
        return WorkerMemoryError(memory_restart_message(self.memory_kills, self.passes))

    def scheduler_gone(self, error: SchedulerLost, where: str) -> SchedulerLost:
        """Note that the scheduler was lost (``error``, found ``where`` in the fit) and return
        the error that ends the fit, saying how far it got."""
        self.scheduler_lost = True
        return SchedulerLost(
            f"{error} The fit stopped {where} after {self.passes} completed calls to "
            "its workers; a fit with a checkpoint resumes from it on a new cluster."
        )

    def live_workers(self, lost, wait: float) -> list:
        """The live workers but ``lost`` and those dropped, waiting up to ``wait`` seconds for
        one when there is none."""
        out = set(lost) | self.dropped
        deadline = time.monotonic() + wait
        workers = [w for w in self.transport.workers() if w not in out]
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [w for w in self.transport.workers() if w not in out]
        return workers

    def release(self, addrs):
        """Drop the actors of ``addrs`` (lost workers)."""
        for addr in addrs:
            self.transport.release(addr)
            self.started.discard(addr)

    def close(self):
        """Drop every worker's chunks and hand their memory back to the system, then release
        the actors. The workers get ``deadlines.close`` seconds to answer; one that does not
        is released all the same. After the scheduler was lost nothing is asked of them (a
        call would wait on the client's reconnection): their actors go with their workers."""
        if self.started and self.scheduler_lost:
            logger.info(
                "The scheduler was lost: releasing the actors on %s without clearing them",
                sorted(self.started),
            )
        elif self.started:
            calls = {a: ("clear", ()) for a in self.started}
            try:  # closing: the actors are released in any case
                outcomes = self.transport.call(calls, timeout=self.deadlines.close)
            except Exception as e:
                outcomes = dict.fromkeys(calls, ("error", e))
            silent = {a: value for a, (status, value) in outcomes.items() if status != "ok"}
            if silent:
                logger.warning(
                    "Workers %s did not clear their chunks on close (%r); their actors are "
                    "released all the same",
                    sorted(silent),
                    next(iter(silent.values())),
                )
        for addr in list(self.started):
            self.transport.release(addr)
        self.started.clear()
