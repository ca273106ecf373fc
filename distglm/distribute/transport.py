"""The only I/O between the coordinator and its workers: starting actors and calling them.

:class:`DaskTransport` starts one :class:`~distglm.distribute.worker.ChunkWorker` actor per Dask
worker and calls its methods directly (one RPC per worker per pass; with many workers, a pass
goes through a few of them: :mod:`.relay`). The pool sees only the
:class:`Transport` interface, so its recovery logic runs in tests on an in-process transport
whose workers can be lost on cue.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ..exceptions import SchedulerLost, WorkerLost
from .relay import RELAY_MIN_WORKERS, RELAYED, call_actors, pack_relay, relay_groups
from .worker import BUDGET_EVENT, ChunkWorker

__all__ = [
    "SCATTER_BYTES",
    "DaskTransport",
    "Outcome",
    "SchedulerLost",
    "Transport",
    "WorkerLost",
    "scheduler_workers",
]

#: parameters larger than this are scattered to the workers once per pass, not sent per call
SCATTER_BYTES = 1 << 20

#: the event a Dask nanny logs when it restarts its worker for memory
MEMORY_RESTART_EVENT = "worker-restart-memory"

#: ``("ok", result)``, ``("error", exception raised by the method)``, ``("lost", reason)`` or
#: ``("late", TimeoutError)`` (no answer before the call's deadline)
Outcome = tuple[str, Any]


#: seconds to wait for the scheduler's list of workers, unless the Dask configuration key
#: ``distglm.deadline.scheduler`` says otherwise
SCHEDULER_TIMEOUT = 30.0


def scheduler_workers(client, timeout=None) -> dict[str, dict]:
    """``{address: worker info}`` as the scheduler sees it now, asked of it directly.

    Parameters
    ----------
    client : distributed.Client
    timeout : float, optional
        Seconds to wait for the answer; by default the Dask configuration key
        ``distglm.deadline.scheduler`` (30 s).

    Raises
    ------
    SchedulerLost
        The scheduler gave no answer within ``timeout`` seconds (naming its address).
    """
    import dask.config

    if timeout is None:
        timeout = float(dask.config.get("distglm.deadline.scheduler", SCHEDULER_TIMEOUT))
    addr = getattr(client.scheduler, "address", None) or "(unknown address)"

    async def ask():
        return await asyncio.wait_for(client.scheduler.identity(n_workers=-1), timeout)

    try:
        info = client.sync(ask)
    except (OSError, TimeoutError, asyncio.CancelledError) as e:
        raise SchedulerLost(
            f"The Dask scheduler at {addr} gave no answer ({type(e).__name__}: {e})."
        ) from e
    return dict(info.get("workers", {}))


class Transport(Protocol):
    """What the pool needs from a cluster."""

    def workers(self) -> list[str]:
        """Addresses of the live workers, sorted."""
        ...

    def hosts(self) -> dict[str, str]:
        """The host of each live worker."""
        ...

    def start(self, args: Mapping[str, tuple]) -> dict[str, Outcome]:
        """Start one actor per worker with these constructor arguments; the outcome for each
        worker: ``("ok", None)``, ``("lost", reason)`` (the worker went away), ``("late",
        TimeoutError)`` (not started in time) or ``("error", exception)`` (the constructor
        raised)."""
        ...

    def call(
        self, calls: Mapping[str, tuple[str, tuple]], timeout: float | None = None
    ) -> dict[str, Outcome]:
        """Run ``{worker: (method, args)}`` concurrently on the actors; a worker with no
        answer after ``timeout`` seconds is ``("late", TimeoutError)``."""
        ...

    def release(self, worker: str) -> None:
        """Drop the actor of ``worker`` (its cached chunks are freed with it)."""
        ...

    def share(self, array: np.ndarray) -> tuple[Any, Callable[[], None]]:
        """``array`` as sent to every worker (itself, or the key of one broadcast copy), and
        the function that releases the copy after the pass."""
        ...

    def memory_restarts(self, workers: list[str]) -> dict[str, dict]:
        """Those of ``workers`` their nanny restarted for memory: ``{worker: {"rss": bytes,
        "memory_limit": bytes or None, "cache_bytes": distglm's budget there or None}}``."""
        ...


class DaskTransport:
    """Actors on a Dask cluster, called directly (or through the scheduler where the client
    cannot reach a worker).

    Parameters
    ----------
    client : distributed.Client
    start_timeout : float
        Seconds to wait for an actor to start.
    scatter_bytes : int
        Arrays of more bytes than this are broadcast once per pass by :meth:`share`.
    poll : float
        Seconds between checks, during a call, that its workers are still the scheduler's.
    relay_min_workers : int, optional
        From this many workers on, pass calls go through a few of them (:mod:`.relay`); by
        default Dask's configuration key ``distglm.relay.min_workers`` (12; 0: never).
    """

    def __init__(
        self,
        client,
        start_timeout=120,
        scatter_bytes=SCATTER_BYTES,
        poll=1.0,
        relay_min_workers=None,
    ):
        import dask.config

        if relay_min_workers is None:
            relay_min_workers = dask.config.get("distglm.relay.min_workers", RELAY_MIN_WORKERS)
        self.relay_min_workers = int(relay_min_workers)
        #: the last call's groups: leader address -> the addresses it called (itself first)
        self.routes: dict[str, tuple[str, ...]] = {}
        self.client = client
        self.poll = float(poll)
        self.start_timeout = start_timeout
        self.scatter_bytes = int(scatter_bytes)
        self._actors: dict[str, Any] = {}  # worker address -> the actor's future
        self._direct: dict[str, bool] = {}  # worker address -> reachable from this process
        self._tag = uuid.uuid4().hex[:8]

    def _info(self):
        """The scheduler's workers, asked of the scheduler itself (the client's cached
        ``scheduler_info()`` can come back without them on a healthy cluster)."""
        return scheduler_workers(self.client)

    def workers(self):
        return sorted(self._info())

    def hosts(self):
        return {addr: w.get("host", addr) for addr, w in self._info().items()}

    @property
    def actors(self) -> dict[str, Any]:
        """Worker address -> the future of its actor."""
        return dict(self._actors)

    def start(self, args):
        futures = {
            addr: self.client.submit(
                ChunkWorker,
                *a,
                actor=True,
                workers=[addr],
                allow_other_workers=False,
                pure=False,
                key=f"distglm-chunkworker-{self._tag}-{addr}",
            )
            for addr, a in args.items()
        }
        # the actors exist once their futures finish; calls then go to them by key. A worker
        # the scheduler no longer lists is given up at once (its actor task would wait for it
        # for ever), one that does not start its actor in time is late. (Each future waits
        # through its own client: distributed.wait would use the default one.)
        out: dict[str, Outcome] = {}
        pending = dict(futures)
        deadline = time.monotonic() + self.start_timeout
        checked = time.monotonic()
        while pending:
            addr, fut = next(iter(pending.items()))
            try:
                fut.result(timeout=min(self.poll, max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                pass
            except Exception as e:  # the actor's constructor raised: the caller decides
                out[addr] = ("error", e)
                del pending[addr]
            for a, f in list(pending.items()):
                if f.status == "finished":
                    out[a] = ("ok", None)
                    self._actors[a] = f
                    del pending[a]
            if not pending:
                break
            now = time.monotonic()
            if now >= deadline:
                for a, f in pending.items():
                    f.cancel()
                    out[a] = (
                        "late",
                        TimeoutError(
                            f"distglm's actor did not start on worker {a} within "
                            f"{self.start_timeout} s (status {f.status!r})"
                        ),
                    )
                break
            if now - checked >= self.poll:
                checked = now
                live = set(self._info())
                for a in [a for a in pending if a not in live]:
                    pending.pop(a).cancel()
                    out[a] = ("lost", ConnectionError(f"the scheduler removed worker {a}"))
        return {a: out[a] for a in args}

    def release(self, worker):
        fut = self._actors.pop(worker, None)
        if fut is not None:
            fut.release()

    def _rpc(self, addr):
        if self._direct.get(addr) is None:
            self._direct[addr] = self._can_reach(addr)
        if self._direct[addr]:
            return self.client.rpc(addr)
        from distributed.actor import ProxyRPC  # through the scheduler

        return ProxyRPC(self.client.scheduler, addr)

    def _can_reach(self, addr):
        """Whether this process can open a connection to the worker (else go through the
        scheduler, one hop more per pass)."""

        async def probe():
            try:
                await asyncio.wait_for(self.client.rpc(addr).identity(), 5)
                return True
            except (TimeoutError, OSError):
                return False

        return self.client.sync(probe)

    def reaches_directly(self, worker: str) -> bool:
        """Whether calls to ``worker`` go straight to it (not through the scheduler)."""
        if self._direct.get(worker) is None:
            self._direct[worker] = self._can_reach(worker)
        return self._direct[worker]

    def force_proxy(self, worker: str) -> None:
        """Route calls to ``worker`` through the scheduler (for tests of that path)."""
        self._direct[worker] = False

    def call(self, calls, timeout=None):
        client = self.client

        async def members():
            return (await client.scheduler.identity(n_workers=-1)).get("workers", {})

        relayed = all(method in RELAYED for method, _ in calls.values())
        groups = relay_groups(calls, self.relay_min_workers if relayed else 0)
        self.routes = {g[0]: tuple(g) for g in groups if len(g) > 1}
        if not self.routes:
            return self._direct_call(calls, timeout, members)
        leaders = {}
        for g in groups:
            group = {a: (self._actors[a].key, *calls[a]) for a in g}
            one = ("relay", (pack_relay(group, timeout, self.poll),))
            leaders[g[0]] = (
                self._rpc(g[0]),
                self._actors[g[0]].key,
                *(one if g[1:] else calls[g[0]]),
            )
        answers = self.client.sync(call_actors, leaders, timeout, members, self.poll)
        out: dict[str, Outcome] = {}
        again = {}
        for g in groups:
            status, value = answers[g[0]]
            if not g[1:]:
                out[g[0]] = (status, value)
            elif status == "ok":
                out.update(value)
            else:  # the leader's own outcome; its group's others are asked directly
                out[g[0]] = (status, value)
                again.update({a: calls[a] for a in g[1:]})
        if again:
            out.update(self._direct_call(again, timeout, members))
        return {a: out[a] for a in calls}

    def _direct_call(self, calls, timeout, members):
        requests = {
            addr: (self._rpc(addr), self._actors[addr].key, method, args)
            for addr, (method, args) in calls.items()
        }
        # one hop to the event loop
        return self.client.sync(call_actors, requests, timeout, members, self.poll)

    def memory_restarts(self, workers, wait=2.0):
        """See :meth:`Transport.memory_restarts`: from the nannies' restart events and the
        budgets the actors logged as they started. The nanny's event may reach the scheduler
        a moment after the worker's connection drops, so this waits up to ``wait`` seconds."""
        import time

        workers = set(workers)
        deadline = time.monotonic() + wait
        while True:
            try:
                kills = {
                    msg.get("worker"): msg
                    for _, msg in self.client.get_events(MEMORY_RESTART_EVENT)
                    if msg.get("worker") in workers
                }
                budgets = {
                    msg.get("worker"): msg for _, msg in self.client.get_events(BUDGET_EVENT)
                }
            except (OSError, TimeoutError):
                return {}
            if kills or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return {
            addr: {
                "rss": int(msg.get("rss") or 0),
                "memory_limit": budgets.get(addr, {}).get("memory_limit"),
                "cache_bytes": budgets.get(addr, {}).get("cache_bytes"),
            }
            for addr, msg in kills.items()
        }

    def share(self, array):
        if array.nbytes > self.scatter_bytes:
            future = self.client.scatter(array, broadcast=True, hash=False)
            return ("scattered", future.key), future.release
        return array, lambda: None
