"""The coordinator's per-pass overhead with 2, 8, 16 and 32 workers on loopback.

Tiny data (one 256-row chunk per worker, 8 features, 4 outputs x 3 classes) so a pass's time is
coordination alone: the coordinator sends parameters, each actor runs its kernel on its one
chunk, the coordinator gathers and adds the workers' sums. ``--chunks N`` gives every worker N
chunks of 256 rows instead (what a worker holding many chunks costs the coordinator: each
worker's answer is one buffer of the problem's size, whatever N). Workers run in one process
(``LocalCluster(processes=False, threads_per_worker=1)``): 32 worker processes would each
import JAX and hold ~300 MB on a 2-core machine, and on loopback the messages cross the same
TCP stack either way (the scheduler and the actors still talk over tcp://127.0.0.1).
With ``--processes`` each worker is its own process instead (as on a real cluster; each holds
~300 MB, and on a 2-core machine they share 2 cores). Per worker count: passes, median pass
wall time at the coordinator, median slowest-worker compute, median overhead (wall - compute),
beside the goal 5 ms + 0.25 ms per worker. With ``--processes``, also the coordinator's own CPU
time per pass (``fit_profile_``'s ``coordinator_cpu``: this process's CPU seconds during the
pass), which, unlike the wall overhead, does not count the time the worker processes wait for
one of the machine's cores. A ``LocalCluster`` runs its scheduler in this process, so that CPU
time counts the scheduler's work too (heartbeats, memory monitoring); ``--scheduler-process``
starts the scheduler and the workers as subprocesses (``SubprocessCluster``), so it is the
coordinator's alone. From 12 workers on (``--relay-min-workers``; 0 turns it off) the passes go
through ~sqrt(n) leader workers, each calling its group (``distglm.distribute.relay``), so the
coordinator sends and receives ~sqrt(n) messages a pass instead of n.

With ``--scheduler-process`` the table also accounts for every process's CPU, to show what the
wall overhead can be on this machine: ``workers CPU ms`` is all the worker processes' CPU time
(not their nannies') during the measured fits per pass (the fits run on one open data session,
so they are their passes and a little set-up), ``idle ms/s`` the worker processes' CPU per
second while nothing runs (Dask's own timers: the event loop's tick, the system and memory
monitors, the statistical profiler), and ``busy`` the share of the machine's cores the worker,
scheduler and coordinator processes used during the fits. Where ``busy`` is near 1 the cores
are the limit: a pass cannot take less wall time than the CPU it needs divided by the cores,
whatever the coordinator does. ``--quiet-workers`` starts the workers with those timers slowed
or off (:data:`QUIET_WORKERS`), the configuration the README suggests in "Many worker processes
on few cores" (the scheduler and the nannies start with it too). Below each worker count's
rows, ``Dask's RPC alone`` times the same round of calls (one direct call to every worker,
sending parameters of this problem's size and answering a float64 buffer of its sums' length,
half the bytes of distglm's hi/lo totals) to an actor that does nothing: what any library pays
to call its actors through Dask on this machine, with the worker processes' CPU it takes.
``plain sockets alone`` sends the same messages over TCP sockets to as many plain Python
processes (no Dask, no JAX; started while the Dask workers idle beside them), each answering
at once: what a round of calls costs on this machine without Dask's RPC. ``--markers 1 0``
measures each setting with the dashboard's pass markers (at most one marker task each
``MARK_INTERVAL``, the default) and without them (``distglm.dashboard.markers`` False).

Run: ``python benchmarks/bench_workers.py [--workers 2 8 16 32] [--processes]
[--scheduler-process] [--quiet-workers] [--chunks 1] [--relay-min-workers 0 12] [--markers 1 0]
[--rounds 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
import warnings

import numpy as np

ROWS, P, K, C = 256, 8, 4, 3

#: floats in a pass's sums (losses, then the gradient): the buffer a no-op answers with
SUMS = K + (P + 1) * K * C

#: Dask settings that quieten an idle worker (README, "Many workers on few cores")
QUIET_WORKERS = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "5s",
}


@contextlib.contextmanager
def _quiet(on):
    """Dask's configuration (and, for worker subprocesses, the environment) with
    :data:`QUIET_WORKERS` while the cluster starts."""
    import dask.config

    if not on:
        yield
        return
    env = {
        "DASK_" + k.upper().replace(".", "__").replace("-", "_"): str(v)
        for k, v in QUIET_WORKERS.items()
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with dask.config.set(QUIET_WORKERS):
            yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cpu_seconds(pids):
    """Each process's CPU seconds (user + system) so far."""
    import psutil

    out = {}
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        out[pid] = t.user + t.system
    return out


def _cluster(n_workers, processes, scheduler_process):
    from distributed import LocalCluster

    if scheduler_process:  # the scheduler and every worker in processes of their own
        from distributed.deploy.subprocess import SubprocessCluster

        return SubprocessCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            dashboard_address=":0",
            worker_kwargs={"nthreads": 1},
        )
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        protocol="tcp",
    )


def _rounds(one_round, pids, rounds):
    """Median wall milliseconds of ``one_round()`` over ``rounds`` calls, and the processes'
    (``pids``) CPU milliseconds a round."""
    before = _cpu_seconds(pids)
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        one_round()
        walls.append(time.perf_counter() - start)
    cpu = sum(_cpu_seconds(pids).values()) - sum(before.values())
    return float(np.median(walls)) * 1e3, cpu / rounds * 1e3


def rpc_alone(client, workers, rounds=30):
    """Median wall time of a round of direct calls to a no-op actor on every worker, and the
    worker processes' CPU a round."""
    from distglm.distribute.relay import call_actors

    class _Noop:  # (defined here, so it travels by value, wherever this module is imported)
        """An actor that answers a pass at once: its sums' buffer, nothing computed."""

        def value_and_grad(self, theta):
            return ("ok", ([0], np.zeros(SUMS), 0.0, 0.0))

    addrs = sorted(client.run(os.getpid))
    actors = {
        a: client.submit(_Noop, actor=True, workers=[a], allow_other_workers=False, pure=False)
        for a in addrs
    }
    theta = np.zeros((P + 1, K, C))
    calls = {a: (client.rpc(a), f.key, "value_and_grad", (theta,)) for a, f in actors.items()}
    try:
        for f in actors.values():
            f.result()
        outs = []
        client.sync(call_actors, calls)
        timed = _rounds(lambda: outs.append(client.sync(call_actors, calls)), workers, rounds)
        assert all(status == "ok" for out in outs for status, _ in out.values()), outs
    finally:
        client.cancel(list(actors.values()))
    return timed


#: a plain Python process answering each message of parameters with a buffer of sums' size
_SOCKET_PEER = """
import socket, struct, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
reply = struct.pack("<Q", int(sys.argv[2])) + bytes(int(sys.argv[2]))
def exactly(n):
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            sys.exit(0)
        buf += part
    return buf
while True:
    (n,) = struct.unpack("<Q", exactly(8))
    if n == 0:
        break
    exactly(n)
    sock.sendall(reply)
"""


def sockets_alone(n_peers, rounds=300):
    """Median wall time of a round of the same messages over plain TCP sockets to ``n_peers``
    processes (no Dask, no JAX: each receives the parameters and answers a buffer of the sums'
    size at once), and those processes' CPU a round: the machine's own floor for a round of
    calls to that many processes."""
    theta = np.zeros((P + 1, K, C)).tobytes()
    reply_bytes = np.zeros(SUMS).nbytes
    message = struct.pack("<Q", len(theta)) + theta
    listener = socket.create_server(("127.0.0.1", 0), backlog=n_peers)
    port = listener.getsockname()[1]
    peers: list[subprocess.Popen] = []
    socks = []
    try:
        for _ in range(n_peers):
            cmd = [sys.executable, "-c", _SOCKET_PEER, str(port), str(reply_bytes)]
            peers.append(subprocess.Popen(cmd))
        listener.settimeout(120)
        for _ in range(n_peers):
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(30)  # a peer that stalls fails the benchmark, not hangs it
            socks.append(conn)

        def one_round():
            for conn in socks:
                conn.sendall(message)
            for conn in socks:
                want = 8 + reply_bytes
                while want:
                    part = conn.recv(want)
                    if not part:
                        raise ConnectionError("a socket peer closed its connection")
                    want -= len(part)

        for _ in range(3):
            one_round()
        timed = _rounds(one_round, [p.pid for p in peers], rounds)
        for conn in socks:
            conn.sendall(struct.pack("<Q", 0))
    finally:
        for conn in socks:
            conn.close()
        listener.close()
        for p in peers:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return timed


def measure(
    n_workers,
    settings,
    processes=False,
    chunks=1,
    scheduler_process=False,
    rounds=1,
    quiet=False,
):
    """Per setting ``(relay, markers)`` (``distglm.relay.min_workers``,
    ``distglm.dashboard.markers``): fit, passes and the medians
    over ``rounds`` fits of each (run in turn on one cluster and one open data session, after
    one fit that compiles); with ``scheduler_process``, the processes' CPU too."""
    import dask.array as da
    import dask.config
    from distributed import Client

    import distglm
    from distglm.cli import make_population

    X, y, _, _ = make_population(ROWS * n_workers * chunks, P, K, C, seed=0)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(ROWS, P))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(ROWS, K))
    with _quiet(quiet):
        cluster = _cluster(n_workers, processes, scheduler_process)
        client = Client(cluster)
        client.wait_for_workers(n_workers, timeout=300)
    workers = list(client.run(os.getpid).values()) if scheduler_process else []
    others = [client.run_on_scheduler(os.getpid), os.getpid()] if scheduler_process else []

    def fit(data, setting):
        relay, markers = setting
        config = {
            "distglm.relay.min_workers": relay,
            "distglm.dashboard.markers": bool(markers),
        }
        with dask.config.set(config):
            m = distglm.ClassifierPopulationGLM(
                n_classes=C, regularizer="Ridge", regularizer_strength=1e-2
            )
            m.fit(data)
        return m.fit_profile_["passes"]

    try:
        with distglm.open_data(Xd, yd, n_classes=C, client=client) as data:
            for setting in settings:  # the first fits compile
                fit(data, setting)
            before = _cpu_seconds(workers)
            start = time.perf_counter()
            time.sleep(2.0 if workers else 0.0)
            idle = (sum(_cpu_seconds(workers).values()) - sum(before.values())) / (
                time.perf_counter() - start
            )
            passes: dict = {r: [] for r in settings}
            cpu: dict = {r: [0.0, 0.0, 0.0] for r in settings}  # workers', all, wall seconds
            for _ in range(rounds):
                for r in settings:
                    before = _cpu_seconds(workers + others)
                    start = time.perf_counter()
                    passes[r].append(fit(data, r))
                    cpu[r][2] += time.perf_counter() - start
                    after = _cpu_seconds(workers + others)
                    cpu[r][0] += sum(after[p] - before[p] for p in workers)
                    cpu[r][1] += sum(after[p] - before[p] for p in after)
        # the socket floor is taken with the Dask workers still up (idle), as they would be
        alone = (rpc_alone(client, workers), sockets_alone(n_workers)) if workers else None
        out = {}
        for r, fits in passes.items():
            every = [p for ps in fits for p in ps]
            out[r] = {
                "workers_cpu": cpu[r][0] / len(every) * 1e3,
                "busy": cpu[r][1] / (cpu[r][2] * (os.cpu_count() or 1)),
                "idle": idle * 1e3,
                "passes": int(np.median([len(ps) for ps in fits])),
                "pass": float(np.median([p["seconds"] for p in every])) * 1e3,
                "compute": float(np.median([p["compute"] for p in every])) * 1e3,
                "overhead": float(np.median([p["overhead"] for p in every])) * 1e3,
                "cpu": float(np.median([p["coordinator_cpu"] for p in every])) * 1e3,
            }
        return out, alone
    finally:
        client.close()
        cluster.close()


def main(argv=None):
    from distglm.distribute.relay import RELAY_MIN_WORKERS

    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 8, 16, 32])
    ap.add_argument("--processes", action="store_true", help="one process per worker")
    ap.add_argument("--chunks", type=int, default=1, help="chunks of 256 rows per worker")
    ap.add_argument(
        "--scheduler-process",
        action="store_true",
        help="the scheduler in a process of its own too (implies --processes)",
    )
    ap.add_argument(
        "--relay-min-workers",
        type=int,
        nargs="+",
        default=[RELAY_MIN_WORKERS],
        help="relay pass calls from this many workers on (0: never); several values are "
        "measured in turn on each cluster",
    )
    ap.add_argument("--rounds", type=int, default=1, help="measured fits of each setting")
    ap.add_argument(
        "--quiet-workers",
        action="store_true",
        help="start the workers with Dask's timers slowed or off (QUIET_WORKERS)",
    )
    ap.add_argument(
        "--markers",
        type=int,
        nargs="+",
        default=[1],
        help="the dashboard's pass markers on (1: at most one each 0.1 s) or off (0: "
        "distglm.dashboard.markers False); several values are measured in turn on each cluster",
    )
    args = ap.parse_args(argv)
    args.processes = args.processes or args.scheduler_process
    where = "worker processes" if args.processes else "workers in one process"
    if args.scheduler_process:
        where += ", scheduler process"
    if args.quiet_workers:
        where += ", quiet workers"
    print(
        f"per-pass coordination ({where}), {args.chunks} chunk(s) of "
        f"{ROWS} rows x {P} features x {K} outputs x {C} classes a worker; 'relay': passes "
        "relayed from that many workers on (0: never); 'markers': the dashboard's marker tasks "
        f"on (1) or off (0); medians over {args.rounds} fit(s)"
    )
    cpu_head = f" {'coord CPU ms':>12s} {'CPU/goal':>8s}" if args.processes else ""
    if args.scheduler_process:
        cpu_head += f" {'workers CPU ms':>14s} {'idle ms/s':>9s} {'busy':>5s}"
    print(
        f"{'workers':>7s} {'relay':>5s} {'markers':>7s} {'passes':>6s} "
        f"{'pass ms':>8s} {'compute ms':>10s} {'overhead ms':>11s} {'goal ms':>8s} "
        f"{'overhead/goal':>13s}{cpu_head}"
    )
    settings = [(r, m) for r in args.relay_min_workers for m in args.markers]
    for n in args.workers:
        rows, alone = measure(
            n,
            settings,
            args.processes,
            args.chunks,
            args.scheduler_process,
            args.rounds,
            args.quiet_workers,
        )
        goal = 5.0 + 0.25 * n
        for (relay, markers), r in rows.items():
            cpu = f" {r['cpu']:12.2f} {r['cpu'] / goal:8.2f}" if args.processes else ""
            if args.scheduler_process:
                cpu += f" {r['workers_cpu']:14.1f} {r['idle']:9.0f} {r['busy']:5.2f}"
            print(
                f"{n:7d} {relay:5d} {markers:7d} {r['passes']:6d} {r['pass']:8.2f} "
                f"{r['compute']:10.2f} {r['overhead']:11.2f} {goal:8.2f} "
                f"{r['overhead'] / goal:13.2f}{cpu}"
            )
        if alone is not None:
            (rpc, rpc_cpu), (sock, sock_cpu) = alone
            print(
                f"{n:7d} Dask's RPC alone (a no-op actor, direct calls): {rpc:.2f} ms a "
                f"round, the workers' CPU {rpc_cpu:.1f} ms a round"
            )
            print(
                f"{n:7d} plain sockets alone ({n} Python processes, no Dask): {sock:.2f} ms a "
                f"round, their CPU {sock_cpu:.1f} ms a round"
            )


if __name__ == "__main__":
    main()
