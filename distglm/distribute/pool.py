"""The coordinator's side of the workers: one actor per worker, chunk assignment, lost workers.

A :class:`WorkerPool` starts one :class:`~distglm.distribute.worker.ChunkWorker` actor per Dask
worker, assigns the plan's chunks to them (balanced by rows, in chunk-id order), and runs
passes: each pass is one direct actor call per worker carrying the parameters (scattered once
and fetched by key when large), and returns the per-chunk partial sums keyed by chunk id.

Workers are disposable: when a worker is lost mid-call, its chunks are reassigned to the
remaining (or restarted) workers, re-read from their source, and the pass is run again. Because
each chunk's sums are a pure function of (chunk, parameters) and the reduction is in chunk-id
order, the result is the same as without the failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import numpy as np

from .worker import ChunkWorker, split_flat, unpack_chunk_sums

__all__ = ["WorkerLost", "WorkerPool"]

logger = logging.getLogger("distglm")

#: parameters larger than this are scattered to the workers once per pass, not sent per call
SCATTER_BYTES = 1 << 20


async def _call_actors(calls):
    """Run ``{addr: (rpc, actor key, method, args)}`` concurrently on the workers' actors.

    Returns ``{addr: (True, result) or (False, exception)}``, False when the worker could not
    be reached or was lost during the call. The calls go straight to each worker's
    ``actor_execute`` handler: dask's Actor proxy, on a lost connection, waits for the actor's
    task to be rescheduled, which for an actor pinned to a dead worker never happens.
    """
    from distributed.protocol import to_serialize

    async def one(rpc, key, method, args):
        try:
            reply = await rpc.actor_execute(
                function=method, actor=key, args=[to_serialize(a) for a in args], kwargs={}
            )
        except (OSError, asyncio.CancelledError) as e:
            return False, e
        if reply["status"] == "OK":
            return True, reply["result"]
        return True, ("error", reply.get("exception", RuntimeError(str(reply))))

    addrs = list(calls)
    outs = await asyncio.gather(*(one(*calls[a]) for a in addrs))
    return dict(zip(addrs, outs, strict=True))


class WorkerLost(RuntimeError):
    """Raised when the pool cannot recover from lost workers."""


class WorkerPool:
    """Actors on a Dask cluster holding the chunks of one :class:`~distglm.data.DataPlan`.

    Parameters
    ----------
    client : distributed.Client
    plan : DataPlan
    dtype : str
        Kernel dtype on the workers.
    max_recoveries : int
        Lost-worker recoveries allowed per call before giving up.
    scatter_bytes : int
        Parameters of more bytes than this are scattered (broadcast) once per pass.
    start_timeout : float
        Seconds to wait for the actors to start.
    cache_bytes : None, float, int or str
        Each worker's chunk-cache budget (see
        :func:`~distglm.distribute.worker.resolve_cache_bytes`); chunks past it are streamed.
    """

    def __init__(
        self,
        client,
        plan,
        dtype="float32",
        max_recoveries=5,
        scatter_bytes=SCATTER_BYTES,
        start_timeout=120,
        cache_bytes=None,
    ):
        self.client = client
        self.plan = plan
        self.dtype = np.dtype(dtype)
        self.max_recoveries = int(max_recoveries)
        self.scatter_bytes = int(scatter_bytes)
        self.start_timeout = start_timeout
        self.cache_bytes = cache_bytes
        self._actors = {}  # worker address -> (the actor's future, address)
        self._assign = {}  # chunk id -> worker address
        self._specs = {c.chunk_id: c for c in plan.chunks}
        self._classes = None
        self._direct = {}  # worker address -> whether the client reaches it directly
        self._tag = uuid.uuid4().hex[:8]
        #: lost-worker recoveries so far
        self.recoveries = 0
        workers = self._live_workers()
        if not workers:
            raise RuntimeError("The Dask cluster has no workers.")
        self._start(workers)
        self._assign_chunks(list(self._specs), workers)

    # ------------------------------------------------------------------ actors
    def _live_workers(self):
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def _start(self, addrs):
        """Start one ChunkWorker actor on each of ``addrs`` (concurrently) and wait for them."""
        p = self.plan
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        hosts = [info.get(a, {}).get("host", a) for a in info]
        futures = {
            addr: self.client.submit(
                ChunkWorker,
                [np.asarray(o) for o in p.session_outputs],
                p.chunk_rows,
                p.block_rows,
                str(self.dtype),
                self.cache_bytes,
                hosts.count(info.get(addr, {}).get("host", addr)),
                actor=True,
                workers=[addr],
                allow_other_workers=False,
                pure=False,
                key=f"distglm-chunkworker-{self._tag}-{addr}",
            )
            for addr in addrs
        }
        # the actors exist once their futures finish; calls then go to them by key. (Each
        # future waits through its own client: distributed.wait would use the default one.)
        for addr, fut in futures.items():
            try:
                fut.result(timeout=self.start_timeout)
            except TimeoutError as e:
                raise WorkerLost(
                    f"distglm's actor did not start on worker {addr} within "
                    f"{self.start_timeout} s (status {fut.status!r})."
                ) from e
            self._actors[addr] = (fut, addr)

    def _assign_chunks(self, chunk_ids, workers):
        """Give each chunk (in id order) to the worker with the fewest rows so far."""
        load = {a: 0 for a in workers}
        for cid, a in self._assign.items():
            if a in load:
                load[a] += self._specs[cid].rows
        for cid in sorted(chunk_ids):
            a = min(workers, key=lambda w: (load[w], w))
            self._assign[cid] = a
            load[a] += self._specs[cid].rows

    @property
    def workers(self) -> list:
        """Addresses of the workers holding actors."""
        return sorted(self._actors)

    def close(self):
        """Release the actors (their cached chunks are freed with them)."""
        for fut, _ in self._actors.values():
            fut.release()
        self._actors.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ calls
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

    def _call(self, calls):
        """Run ``{addr: (method, args)}`` concurrently; return results and lost workers."""
        requests = {
            addr: (self._rpc(addr), self._actors[addr][0].key, method, args)
            for addr, (method, args) in calls.items()
        }
        outcomes = self.client.sync(_call_actors, requests)  # one hop to the event loop
        results, lost = {}, []
        for addr, (ok, value) in outcomes.items():
            if not ok:
                logger.warning("Lost worker %s during a pass (%r); recovering", addr, value)
                lost.append(addr)
                continue
            status, value = value
            if status == "error":
                raise value
            results[addr] = value
        return results, lost

    def _recover(self, lost):
        """Drop lost workers' actors, start actors on new workers, re-load orphaned chunks."""
        self.recoveries += 1
        for addr in lost:
            fut, _ = self._actors.pop(addr, (None, None))
            if fut is not None:
                fut.release()
        deadline = time.monotonic() + 60
        workers = [w for w in self._live_workers() if w not in lost]
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [w for w in self._live_workers() if w not in lost]
        if not workers:
            raise WorkerLost("Every worker of the Dask cluster was lost and none came back.")
        self._start([w for w in workers if w not in self._actors])
        orphans = [cid for cid, a in self._assign.items() if a not in self._actors]
        for cid in orphans:
            del self._assign[cid]
        self._assign_chunks(orphans, self.workers)
        by_worker = {}
        for cid in orphans:
            by_worker.setdefault(self._assign[cid], []).append(self._specs[cid])
        calls = {a: ("load", (specs,)) for a, specs in by_worker.items()}
        _, more = self._call(calls)
        if self._classes is not None and not more:
            _, more = self._call({a: ("encode", (self._classes,)) for a in by_worker})
        logger.warning("Re-read %d chunks of lost workers on %s", len(orphans), sorted(by_worker))
        return more

    def _run(self, method, args_for):
        """Call ``method`` on every actor; after a lost worker, recover and run it again."""
        while True:
            calls = {a: (method, args_for(a)) for a in self.workers}
            results, lost = self._call(calls)
            if not lost:
                return results
            while lost:
                if self.recoveries >= self.max_recoveries:
                    raise WorkerLost(
                        f"Workers kept being lost ({self.recoveries} recoveries); giving up."
                    )
                lost = self._recover(lost)

    # ------------------------------------------------------------------ the passes
    def statistics(self):
        """The statistics pass: every worker reads its chunks; list of ChunkStats."""

        def args_for(addr):
            specs = [self._specs[c] for c, a in sorted(self._assign.items()) if a == addr]
            return (specs,)

        results = self._run("load", args_for)
        return [st for stats in results.values() for st in stats]

    def encode(self, classes):
        """Send the shared classes; workers encode their cached labels (no re-read)."""
        self._classes = np.asarray(classes)
        self._n_classes = self._classes.size
        self._run("encode", lambda a: (self._classes,))

    def _payload(self, array):
        """``array`` as sent to the workers: itself, or the key of its scattered copy."""
        array = np.asarray(array, self.dtype)
        if array.nbytes > self.scatter_bytes:
            future = self.client.scatter(array, broadcast=True, hash=False)
            return ("scattered", future.key), future
        return array, None

    def info(self):
        """Each worker's :meth:`ChunkWorker.info` (cache, streamed chunks, memory)."""
        return self._run("info", lambda a: ())

    def newton(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """One Newton pass over every chunk, on the outputs ``outputs``.

        Parameters
        ----------
        theta, direction : arrays of shape (n_features + 1, k, n_classes)
            For the ``k`` outputs ``outputs`` (global indices).
        outputs : int array of shape (k,)
        steps : array of shape (n_trials, k)
        t_eval : array of shape (k,)
        hess_stride : int

        Returns
        -------
        per_chunk : dict chunk id -> (trial (T, k_s'), loss (k_s',), grad_coef (p, k_s', c),
            grad_intercept (k_s', c)) for the outputs of ``outputs`` its session recorded
        hess : dict worker address -> (pair sums (n_pairs, k, p + 1, p + 1), weights (k,))
        timing : dict worker address -> (seconds, read seconds)
        """
        payload, future = self._payload(np.stack([theta, direction]))
        args = (payload, np.asarray(outputs), np.asarray(steps), np.asarray(t_eval), hess_stride)
        try:
            results = self._run("newton", lambda a: args)
        finally:
            if future is not None:
                future.release()
        outputs = np.asarray(outputs)
        T = np.asarray(steps).shape[0]
        p, c = self.plan.n_features, self._n_classes
        session_of = {spec.chunk_id: spec.session_index for spec in self.plan.chunks}
        active = set(outputs.tolist())
        counts = [sum(int(o) in active for o in outs) for outs in self.plan.session_outputs]
        per_chunk, hess, timing = {}, {}, {}

        def shapes(cid):
            k = counts[session_of[cid]]
            return [(T, k), (k,), (p, k, c), (k, c)]

        for addr, (ids, sums, h, hw, seconds, read) in results.items():
            timing[addr] = (seconds, read)
            hess[addr] = (h, hw)
            per_chunk.update(split_flat(ids, sums, shapes))
        missing = sorted(set(self._specs) - set(per_chunk))
        if missing:
            raise RuntimeError(f"Chunks {missing} returned no sums in this pass.")
        return per_chunk, hess, timing

    def evaluate(self, theta, with_grad=True):
        """One pass at ``theta``: per-chunk sums and per-worker compute seconds.

        Parameters
        ----------
        theta : float array of shape (n_features + 1, n_outputs, n_classes)

        Returns
        -------
        per_chunk : dict chunk id -> tuple of arrays
            (loss (k_s,), grad_coef (n_features, k_s, c), grad_intercept (k_s, c)), or
            (loss,) without the gradient.
        timing : dict worker address -> (seconds, read seconds)
            The worker's wall time for the pass, and the part of it its reader thread spent
            reading streamed chunks (overlapping compute).
        """
        payload, future = self._payload(theta)
        try:
            results = self._run("value_and_grad" if with_grad else "value", lambda a: (payload,))
        finally:
            if future is not None:
                future.release()
        per_chunk, timing = {}, {}
        for addr, (ids, sums, seconds, read) in results.items():
            timing[addr] = (seconds, read)
            per_chunk.update(unpack_chunk_sums(self.plan, self._n_classes, ids, sums, with_grad))
        missing = sorted(set(self._specs) - set(per_chunk))
        if missing:
            raise RuntimeError(f"Chunks {missing} returned no sums in this pass.")
        return per_chunk, timing
