"""In-process stand-ins for the cluster, so the pool's recovery logic runs without one."""

from __future__ import annotations

from distglm.distribute import ChunkWorker, SchedulerLost


class LocalTransport:
    """A :class:`~distglm.distribute.Transport` whose workers are ChunkWorker objects in this
    process, lost or added on cue.

    Parameters
    ----------
    workers : list of str
        Addresses of the workers alive at the start.
    script : dict of int -> list of (str, str), optional
        Before the n-th call (counted from 1), events ``("lose", address)`` (the worker dies:
        its actor and cached chunks are gone, calls to it are lost) or ``("join", address)``
        (a new worker comes up; it holds no actor until the pool starts one) or
        ``("freeze", address)`` (the worker stops answering but stays listed, like a
        SIGSTOPped process: a call to it with a deadline comes back late, one without a
        deadline would hang and fails the test instead) or ``("oom", address)`` (lost as its
        nanny restarts it for memory, which :meth:`memory_restarts` then reports).

    Setting ``scheduler_gone`` makes :meth:`workers` raise :class:`SchedulerLost`, as the Dask
    transport does once the scheduler stops answering.
    """

    def __init__(self, workers, script=None):
        self.live = list(workers)
        self.actors = {}
        self.script = dict(script or {})
        self.frozen = set()
        self.oom = {}  # worker -> what memory_restarts reports for it
        self.calls = 0
        self.timeouts = []  # the deadline of each call
        self.log = []  # (call number, {worker: method})
        self.starts = []  # the workers of each start
        self.doomed = set()  # workers that die while their actor starts
        self.scheduler_gone = False

    def workers(self):
        if self.scheduler_gone:
            raise SchedulerLost("The Dask scheduler at tcp://fake gave no answer.")
        return sorted(self.live)

    def hosts(self):
        return dict.fromkeys(self.live, "localhost")

    def start(self, args):
        self.starts.append(sorted(args))
        out = {}
        for addr, a in args.items():
            if addr in self.doomed and addr in self.live:
                self.live.remove(addr)
            if addr in self.frozen:
                out[addr] = ("late", TimeoutError(f"no actor started on frozen {addr}"))
            elif addr not in self.live:
                out[addr] = ("lost", ConnectionResetError(f"worker {addr} is gone"))
            else:
                self.actors[addr] = ChunkWorker(*a)
                out[addr] = ("ok", None)
        return out

    def _events(self):
        for kind, addr in self.script.get(self.calls, []):
            if kind == "lose" and addr in self.live:
                self.live.remove(addr)
                self.actors.pop(addr, None)
            elif kind == "join" and addr not in self.live:
                self.live.append(addr)
            elif kind == "freeze" and addr in self.live:
                self.frozen.add(addr)
            elif kind == "oom" and addr in self.live:
                actor = self.actors.pop(addr, None)
                self.live.remove(addr)
                budget = None if actor is None else actor.cache_bytes
                self.oom[addr] = {
                    "rss": 590 << 20,
                    "memory_limit": 600 << 20,
                    "cache_bytes": budget,
                }

    def call(self, calls, timeout=None):
        self.calls += 1
        self._events()
        self.timeouts.append(timeout)
        self.log.append((self.calls, {a: m for a, (m, _) in calls.items()}))
        out = {}
        for addr, (method, args) in calls.items():
            actor = self.actors.get(addr)
            if addr in self.frozen:
                if timeout is None:
                    raise AssertionError(f"a call to frozen {addr} without a deadline hangs")
                out[addr] = ("late", TimeoutError(f"{addr} gave no answer in {timeout} s"))
            elif actor is None:
                out[addr] = ("lost", ConnectionResetError(f"{addr} is gone"))
            else:
                out[addr] = getattr(actor, method)(*args)
        return out

    def release(self, worker):
        self.actors.pop(worker, None)

    def share(self, array):
        return array, lambda: None

    def memory_restarts(self, workers):
        return {a: self.oom[a] for a in workers if a in self.oom}
