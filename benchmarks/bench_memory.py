"""Memory within budget: a fit on `dask worker --memory-limit` processes over a store several
times their memory, with the default cache budget, and the workers' measured peak memory.

The driver writes a multi-session Zarr store (string labels, as the issue measured: ``<U5``,
20 bytes each as read) session by session, then starts a ``dask scheduler`` and ``--workers``
``dask worker --nthreads 1 --memory-limit LIMIT`` processes (with their nannies, which restart
a worker past 95% of its limit) on 127.0.0.1, and fits ``ClassifierPopulationGLM`` over all
sessions from this (client) process with ``cache_bytes`` left at its default. A thread polls
every worker process's resident size (psutil, every 50 ms) for its peak; a restart shows as a
new worker PID under a nanny, or as the nanny's ``worker-restart-memory`` event.

Printed: the store (rows, decoded and on-disk size, against the workers' total memory), then
one row per worker: memory limit, distglm's budget, resident size when its actor started,
peak RSS polled, restarts; and the fit's time, passes and objective.

Usage: ``python benchmarks/bench_memory.py [--memory-limit 600MiB] [--workers 2]
[--sessions 6] [--rows 700000] [--features 48] [--outputs 4] [--chunk-rows 16384]
[--dir DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MIB = 2**20


def write_store(path, n_sessions, rows, p, k, c, chunk_rows, seed=0):
    """Write ``n_sessions`` sessions of ``rows`` rows each (X float32, y strings); returns
    (rows, decoded bytes, bytes on disk)."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    labels = np.array(["left", "nogo", "right", "other", "wait"][:c])
    coef = rng.normal(0.0, 0.3, (p, k, c))
    total = decoded = 0
    for s in range(n_sessions):
        X = rng.standard_normal((rows, p)).astype(np.float32)
        eta = np.einsum("np,pkc->nkc", X, coef)
        y = labels[np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"feature": [f"f{i}" for i in range(p)], "output": [f"u{j}" for j in range(k)]},
        ).chunk({"sample": chunk_rows})
        ds.to_zarr(path, group=f"session{s}", mode="a" if s else "w")
        total += rows
        decoded += X.nbytes + y.nbytes
        del X, y, eta, ds
    disk = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )
    return total, decoded, disk


def _popen(module, *args, log):
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)], stdout=log, stderr=subprocess.STDOUT
    )


@contextlib.contextmanager
def dask_cluster(folder, n_workers, memory_limit):
    """A scheduler and ``n_workers`` nanny-managed workers; yields (scheduler file, nanny
    processes); every process is ended by its PID on exit."""
    path = os.path.join(folder, "scheduler.json")
    log = open(os.path.join(folder, "cluster.log"), "w")
    procs = [
        _popen(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            ":0",
            "--scheduler-file",
            path,
            log=log,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        nannies = [
            _popen(
                "distributed.cli.dask_worker",
                "--scheduler-file",
                path,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--nanny",
                "--memory-limit",
                memory_limit,
                "--dashboard-address",
                ":0",
                log=log,
            )
            for _ in range(n_workers)
        ]
        procs += nannies
        yield path, nannies
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


class PeakPoller:
    """Polls the resident size of every worker process (the nannies' children)."""

    def __init__(self, nannies, interval=0.05):
        import psutil

        self._nannies = [psutil.Process(n.pid) for n in nannies]
        self.interval = interval
        self.peak: dict[int, dict[int, int]] = {n.pid: {} for n in self._nannies}  # nanny->pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            for nanny in self._nannies:
                with contextlib.suppress(psutil.Error):
                    for child in nanny.children():
                        with contextlib.suppress(psutil.Error):
                            rss = child.memory_info().rss
                            seen = self.peak[nanny.pid]
                            seen[child.pid] = max(seen.get(child.pid, 0), rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-limit", default="600MiB")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--rows", type=int, default=700_000, help="rows per session")
    ap.add_argument("--features", type=int, default=48)
    ap.add_argument("--outputs", type=int, default=4)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--chunk-rows", type=int, default=16_384)
    ap.add_argument("--strength", type=float, default=1e-3)
    ap.add_argument("--maxiter", type=int, default=50)
    ap.add_argument("--dir", default=None, help="where to write the store (a temp dir)")
    ap.add_argument("--quick", action="store_true", help="2 sessions of 150,000 rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.sessions, args.rows = 2, 150_000

    import jax
    from dask.utils import parse_bytes
    from distributed import Client

    import distglm

    limit = parse_bytes(args.memory_limit)
    tmp = tempfile.mkdtemp(prefix="distglm-mem-", dir=args.dir)
    try:
        print(
            f"bench_memory: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__};"
            f" {args.workers} x `dask worker --nthreads 1 --memory-limit {args.memory_limit}`"
            " (with nannies), default cache budget"
        )
        t = time.perf_counter()
        store = os.path.join(tmp, "sessions.zarr")
        n, decoded, disk = write_store(
            store,
            args.sessions,
            args.rows,
            args.features,
            args.outputs,
            args.classes,
            args.chunk_rows,
        )
        print(
            f"store: {args.sessions} sessions, {n:,} rows x {args.features} features, "
            f"{args.outputs} outputs x {args.classes} string classes (<U5), chunks of "
            f"{args.chunk_rows:,} rows; {decoded / MIB:,.0f} MiB decoded ({disk / MIB:,.0f} MiB "
            f"on disk) = {decoded / (args.workers * limit):.1f}x the workers' total memory; "
            f"written in {time.perf_counter() - t:.1f} s"
        )
        with dask_cluster(tmp, args.workers, args.memory_limit) as (path, nannies):
            client = Client(scheduler_file=path, timeout="60s", set_as_default=False)
            client.wait_for_workers(args.workers, timeout=120)
            address_of = {pid: addr for addr, pid in client.run(os.getpid).items()}
            model = distglm.ClassifierPopulationGLM(
                args.classes,
                regularizer_strength=args.strength,
                solver_kwargs={"maxiter": args.maxiter},
            )
            error = None
            with PeakPoller(nannies) as poller:
                t = time.perf_counter()
                try:
                    model.fit(distglm.open_sessions(store), client=client)
                except Exception as e:  # reported in the table
                    error = e
                seconds = time.perf_counter() - t
            kills = client.get_events("worker-restart-memory")
            client.close()
        prof = getattr(model, "fit_profile_", {})
        cache = prof.get("cache", {})
        print()
        print(
            f"{'worker':<22} {'limit MiB':>9} {'budget MiB':>10} {'start MiB':>9} "
            f"{'peak RSS MiB':>12} {'peak/limit':>10} {'restarts':>8}"
        )
        for seen in poller.peak.values():
            # a nanny's children: its worker process (a new PID after each restart) and
            # multiprocessing's small helpers; a restarted worker is a big one not seen before
            addr = next((address_of[pid] for pid in seen if pid in address_of), "?")
            info = cache.get(addr, {})
            peak = max(seen.values(), default=0)
            restarts = sum(pid not in address_of and rss > 150 * MIB for pid, rss in seen.items())
            budget = info.get("cache_bytes")
            start = (info.get("memory_start") or {}).get("rss")
            print(
                f"{addr:<22} {limit / MIB:>9,.0f} "
                f"{'-' if budget is None else f'{budget / MIB:,.0f}':>10} "
                f"{'-' if start is None else f'{start / MIB:,.0f}':>9} {peak / MIB:>12,.0f} "
                f"{peak / limit:>10.2f} {restarts:>8}"
            )
        print(f"nanny memory restarts (events): {len(kills)}")
        if error is not None:
            print(f"fit FAILED after {seconds:.1f} s: {type(error).__name__}: {error}")
            return 1
        passes = model.n_passes_
        print(
            f"fit: {seconds:.1f} s, {len(model.fit_history_)} iterations, {passes} passes, "
            f"objective {model.fit_history_[-1]['objective']:.6f}, streamed "
            f"{prof.get('streamed')}, solver {model.solver_}"
        )
        within = all(max(s.values(), default=0) < 0.95 * limit for s in poller.peak.values())
        print(f"{'PASS' if within and not kills else 'FAIL'}: no restart, peak < 95% of limit")
        return 0 if within and not kills else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
