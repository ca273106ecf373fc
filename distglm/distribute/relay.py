"""Calls to many actors at once, sent straight to each or relayed through a few of them.

:func:`call_actors` runs ``{worker: request}`` concurrently over Dask's RPC, each to the
worker's ``actor_execute`` handler. The coordinator uses it for every call; a relaying worker
uses it for its group.

With many workers the coordinator's cost of a pass is one message out and one back per worker
(framing, serialisation and the socket writes). :func:`relay_groups` splits the workers into
about ``sqrt(n)`` groups in address order; the coordinator then sends each group's requests in
one message to its first worker (the *leader*), whose actor's ``relay`` method runs
:func:`forward`: it calls every worker of its group, itself included, concurrently, and answers
with each one's outcome. The coordinator sends and receives ``~sqrt(n)`` messages instead of
``n``. Every worker still answers for itself (what a lost or late member means to the pool is
what it means in a direct call), but where the whole group answered, the leader adds its
group's sums (compensated, as the coordinator would) and sends one buffer for the group: the
bytes into the coordinator fall by the group size too. Only calls that read nothing new and change
nothing (:data:`RELAYED`: the passes) are relayed, so a leader lost or late mid-call costs a
second, direct call to its group's other workers, never a lost result. Dask's configuration key
``distglm.relay.min_workers`` (default :data:`RELAY_MIN_WORKERS`) sets from how many workers on
(``0`` never relays).
"""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Sequence

from .passes import GROUP_SUMS, combine_group

__all__ = [
    "RELAYED",
    "RELAY_MIN_WORKERS",
    "call_actors",
    "forward",
    "pack_relay",
    "relay_groups",
    "unpack_relay",
]

#: the actor methods a leader may relay: pure functions of their arguments and the held chunks
RELAYED = GROUP_SUMS

#: from this many workers on, pass calls are relayed (Dask key ``distglm.relay.min_workers``)
RELAY_MIN_WORKERS = 12

#: the part of the coordinator's deadline a leader gives its group (it answers before it)
LEADER_SHARE = 0.9


def relay_groups(workers: Sequence[str], min_workers: int) -> list[list[str]]:
    """The groups of a relayed call, each led by its first worker.

    Parameters
    ----------
    workers : sequence of str
        Worker addresses.
    min_workers : int
        Fewer workers than this (or ``min_workers <= 0``) are not grouped: one group each.

    Returns
    -------
    list of list of str
        A partition of the sorted addresses into consecutive groups of ``ceil(sqrt(n))``
        (the last may be smaller).
    """
    addrs = sorted(workers)
    n = len(addrs)
    if min_workers <= 0 or n < min_workers:
        return [[a] for a in addrs]
    size = math.isqrt(n - 1) + 1 if n > 1 else 1  # ceil(sqrt(n))
    return [addrs[i : i + size] for i in range(0, n, size)]


async def call_actors(calls, timeout=None, members=None, poll=1.0):
    """Run ``{addr: (rpc, actor key, method, args)}`` concurrently on the workers' actors,
    each given ``timeout`` seconds (None: no limit). With ``members`` (a coroutine function
    returning the scheduler's worker addresses), every ``poll`` seconds a worker still
    running that the scheduler no longer lists is given up as lost.

    Returns ``{addr: outcome}``: ``("ok" | "error", value)`` as the actor answered, ``("lost",
    exception)`` or ``("late", TimeoutError)``. The calls go straight to each worker's
    ``actor_execute`` handler: dask's Actor proxy, on a lost connection, waits for the actor's
    task to be rescheduled, which for an actor pinned to a dead worker never happens.
    """
    from distributed.protocol import to_serialize

    async def one(rpc, key, method, args):
        # (bytes go as they are: a packed relay request, see pack_relay)
        wire = [a if isinstance(a, bytes) else to_serialize(a) for a in args]
        try:
            reply = await rpc.actor_execute(function=method, actor=key, args=wire, kwargs={})
        except (OSError, asyncio.CancelledError) as e:
            return ("lost", e)
        if reply["status"] == "OK":
            return tuple(reply["result"])  # the actor's ("ok" | "error", value)
        return ("error", reply.get("exception", RuntimeError(str(reply))))

    async def timed(addr):
        if timeout is None:
            return await one(*calls[addr])
        task = asyncio.ensure_future(one(*calls[addr]))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return task.result()
        task.cancel()  # (``one`` reads its own cancellation as a lost worker)
        return ("late", TimeoutError(f"worker {addr} gave no answer within {timeout:.3g} s"))

    addrs = list(calls)
    if members is None:
        outs = await asyncio.gather(*(timed(a) for a in addrs))
        return dict(zip(addrs, outs, strict=True))
    tasks = {a: asyncio.ensure_future(timed(a)) for a in addrs}
    out = {}
    while True:
        pending = [t for t in tasks.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=poll)
        waiting = [a for a, t in tasks.items() if not t.done()]
        if not waiting:
            break
        try:  # a worker the scheduler removed is lost now, not at its deadline
            live = await asyncio.wait_for(members(), poll)
        except (OSError, TimeoutError):
            continue
        for a in waiting:
            if a not in live:
                tasks[a].cancel()
                out[a] = ("lost", ConnectionError(f"the scheduler removed worker {a}"))
    for a, t in tasks.items():
        if a not in out:
            out[a] = t.result()
    return {a: out[a] for a in addrs}


def pack_relay(requests, timeout, poll) -> bytes:
    """A leader's request, pickled by the coordinator in one piece.

    Dask's serialisation of a nested dict of tuples and arrays walks it and frames every
    element (18 frames and ~330 us for a group of 6; 1 frame and ~16 us pickled whole), and
    the coordinator pays it once per leader per pass.

    Parameters
    ----------
    requests : dict
        ``{address: (actor key, method, args)}`` for every worker of the group.
    timeout : float or None
    poll : float
        As :func:`forward` takes them.
    """
    return pickle.dumps((requests, timeout, poll), protocol=5)


def unpack_relay(blob) -> tuple:
    """``(requests, timeout, poll)`` from :func:`pack_relay`'s bytes."""
    return pickle.loads(blob)


async def forward(worker, requests, timeout, poll=1.0):
    """A leader's side of a relayed call: run its group's requests and answer for each.

    Parameters
    ----------
    worker : distributed.Worker
        The leader's worker (its RPC pool reaches the group, itself included).
    requests : dict
        ``{address: (actor key, method, args)}`` for every worker of the group.
    timeout : float or None
        The coordinator's deadline for this call; each member gets :data:`LEADER_SHARE` of it.
    poll : float
        Seconds between checks, while members are still running, that the scheduler still
        lists them (one it removed is lost then, not at the deadline: a connection to a dead
        worker is retried for Dask's connect timeout).

    Returns
    -------
    dict
        ``{address: outcome}`` as :func:`call_actors` gives it; where every member answered a
        pass, its sums added into the leader's answer
        (:func:`~distglm.distribute.passes.combine_group`).
    """
    limit = None if timeout is None else timeout * LEADER_SHARE
    calls = {a: (worker.rpc(a), key, m, args) for a, (key, m, args) in requests.items()}

    async def members():
        return (await worker.scheduler.identity(n_workers=-1)).get("workers", {})

    out = await call_actors(calls, limit, members, poll)
    methods = {m for _, m, _ in requests.values()}
    if len(methods) == 1 and all(status == "ok" for status, _ in out.values()):
        (method,) = methods
        if method in GROUP_SUMS:  # one buffer of sums for the group, not one a worker
            sums = combine_group(method, {a: value for a, (_, value) in out.items()})
            out = {a: ("ok", sums[a]) for a in out}
    return out
