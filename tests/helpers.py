"""Data helpers shared by the test modules (plain functions, no fixtures)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np


def softmax_labels(rng, X, W, b):
    """Draw labels from a softmax model: ``X`` (n, p), ``W`` (p, [k,] c), ``b`` ([k,] c).

    Returns integer codes of shape (n,) or (n, k).
    """
    eta = np.einsum("np,p...c->n...c", X, W) + b
    p = np.exp(eta - eta.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    u = rng.random((*p.shape[:-1], 1))
    return (np.cumsum(p, -1) < u).sum(-1).clip(0, p.shape[-1] - 1)


class CountingScheduler:
    """A dask scheduler that counts computes and refuses more than ``max_computes``
    (xarray's laziness guard)."""

    def __init__(self, max_computes=0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many computes. Total: {self.total_computes} > max: {self.max_computes}."
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes=0):
    """A context in which more than ``max_computes`` dask computes raise ``RuntimeError``."""
    import dask

    return dask.config.set(scheduler=CountingScheduler(max_computes))


ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _popen(*args):
    return subprocess.Popen(
        [sys.executable, "-m", *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def dask_processes(folder, n_workers=2, nanny=False, memory_limit="1GiB", preload=()):
    """A `dask scheduler` and ``n_workers`` `dask worker` processes on 127.0.0.1 (without a
    nanny unless ``nanny``: the process is then the worker itself), each with
    ``--memory-limit memory_limit`` and a ``--preload`` per module in ``preload``; yields
    (scheduler file, scheduler process, worker processes); every process is ended by its PID
    on exit."""
    path = folder / "scheduler.json"
    sched = _popen(
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dashboard-address",
        ":0",
        "--scheduler-file",
        path,
    )
    procs = [sched]
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert path.exists(), "the scheduler did not write its file"
        workers = [
            _popen(
                "distributed.cli.dask_worker",
                "--scheduler-file",
                path,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--nanny" if nanny else "--no-nanny",
                "--memory-limit",
                memory_limit,
                "--dashboard-address",
                ":0",
                *(a for m in preload for a in ("--preload", m)),
            )
            for _ in range(n_workers)
        ]
        procs += workers
        yield path, sched, workers
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
