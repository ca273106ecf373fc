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

Run: ``python benchmarks/bench_workers.py [--workers 2 8 16 32] [--processes]
[--scheduler-process] [--chunks 1] [--relay-min-workers 0 12] [--rounds 1]``
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

ROWS, P, K, C = 256, 8, 4, 3


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


def measure(n_workers, relays, processes=False, chunks=1, scheduler_process=False, rounds=1):
    """Per relay setting (``distglm.relay.min_workers``): fit, passes and the medians over
    ``rounds`` fits of each (run in turn on one cluster, after one fit that compiles)."""
    import dask.array as da
    import dask.config
    from distributed import Client

    import distglm
    from distglm.cli import make_population

    X, y, _, _ = make_population(ROWS * n_workers * chunks, P, K, C, seed=0)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(ROWS, P))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(ROWS, K))
    cluster = _cluster(n_workers, processes, scheduler_process)
    client = Client(cluster)
    client.wait_for_workers(n_workers, timeout=300)

    def fit(relay):
        with dask.config.set({"distglm.relay.min_workers": relay}):
            m = distglm.ClassifierPopulationGLM(
                n_classes=C, regularizer="Ridge", regularizer_strength=1e-2
            )
            m.fit(Xd, yd, client=client)
        return m.fit_profile_["passes"]

    try:
        fit(relays[0])  # the first fit compiles
        passes: dict = {r: [] for r in relays}
        for _ in range(rounds):
            for r in relays:
                passes[r].append(fit(r))
        out = {}
        for r, fits in passes.items():
            every = [p for ps in fits for p in ps]
            out[r] = {
                "passes": int(np.median([len(ps) for ps in fits])),
                "pass": float(np.median([p["seconds"] for p in every])) * 1e3,
                "compute": float(np.median([p["compute"] for p in every])) * 1e3,
                "overhead": float(np.median([p["overhead"] for p in every])) * 1e3,
                "cpu": float(np.median([p["coordinator_cpu"] for p in every])) * 1e3,
            }
        return out
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
    args = ap.parse_args(argv)
    args.processes = args.processes or args.scheduler_process
    where = "worker processes" if args.processes else "workers in one process"
    if args.scheduler_process:
        where += ", scheduler process"
    print(
        f"per-pass coordination ({where}), {args.chunks} chunk(s) of "
        f"{ROWS} rows x {P} features x {K} outputs x {C} classes a worker; 'relay': passes "
        f"relayed from that many workers on (0: never); medians over {args.rounds} fit(s)"
    )
    cpu_head = f" {'coord CPU ms':>12s} {'CPU/goal':>8s}" if args.processes else ""
    print(
        f"{'workers':>7s} {'relay':>5s} {'passes':>6s} {'pass ms':>8s} {'compute ms':>10s} "
        f"{'overhead ms':>11s} {'goal ms':>8s} {'overhead/goal':>13s}{cpu_head}"
    )
    for n in args.workers:
        rows = measure(
            n,
            tuple(args.relay_min_workers),
            args.processes,
            args.chunks,
            args.scheduler_process,
            args.rounds,
        )
        goal = 5.0 + 0.25 * n
        for relay, r in rows.items():
            cpu = f" {r['cpu']:12.2f} {r['cpu'] / goal:8.2f}" if args.processes else ""
            print(
                f"{n:7d} {relay:5d} {r['passes']:6d} {r['pass']:8.2f} {r['compute']:10.2f} "
                f"{r['overhead']:11.2f} {goal:8.2f} {r['overhead'] / goal:13.2f}{cpu}"
            )


if __name__ == "__main__":
    main()
