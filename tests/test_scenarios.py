"""Failure scenarios on a real cluster of `dask scheduler` / `dask worker` processes on
127.0.0.1 (cleaned up by PID): a frozen (SIGSTOPped) worker and a killed scheduler. Deadlines
are shortened through Dask's configuration so each scenario takes seconds."""

from __future__ import annotations

import os
import re
import signal
import time

import dask
import dask.array as da
import pytest

from distglm import ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.data import plan_data
from distglm.distribute import DataSession, SchedulerLost

from helpers import dask_processes

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def plan():
    X, y, _, _ = make_population(4000, 4, 3, 3, seed=7)
    return plan_data(da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=(500, -1)))


def _client(path, n):
    from distributed import Client

    c = Client(scheduler_file=str(path), timeout="30s", set_as_default=False)
    c.wait_for_workers(n, timeout=60)
    return c


def _pid_of(client, proc_pids):
    """Worker address -> its process id (the processes are the workers themselves)."""
    pids = client.run(os.getpid)
    assert sorted(pids.values()) == sorted(proc_pids)
    return pids


def test_a_frozen_worker_is_dropped_at_its_deadline(tmp_path, plan):
    """SIGSTOP one of two workers between fits: the next fit drops it at its deadline
    (derived from the first fit's measured passes), re-reads its chunks on the other worker
    and reaches the same objective."""
    with (
        dask.config.set({"distglm.deadline.floor": 3.0, "distglm.deadline.factor": 10.0}),
        dask_processes(tmp_path) as (path, _, workers),
        _client(path, 2) as c,
    ):
        pids = _pid_of(c, [w.pid for w in workers])
        with DataSession(c, plan, 3) as session:
            first = ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
            frozen = sorted(pids)[0]
            os.kill(pids[frozen], signal.SIGSTOP)
            start = time.monotonic()
            again = ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
            seconds = time.monotonic() - start
            print(f"frozen worker: fit completed in {seconds:.1f} s")
            assert session.pool.dropped == {frozen}
            assert session.pool.workers == [a for a in sorted(pids) if a != frozen]
        assert again.fit_history_[-1]["objective"] == first.fit_history_[-1]["objective"]
        assert again.fit_profile_["dropped_workers"] == [frozen]
        assert seconds < 60


def test_a_killed_scheduler_is_a_clear_error(tmp_path, plan):
    """SIGKILL the scheduler between fits: the pool's next look at the cluster ends in
    SchedulerLost naming the scheduler, after the configured wait; the session then closes
    at once (it asks nothing of the workers, whose calls would wait on the reconnection)."""
    with (
        dask.config.set({"distglm.deadline.scheduler": 5.0, "distglm.join_interval": 0.0}),
        dask_processes(tmp_path, n_workers=1) as (path, sched, _),
        _client(path, 1) as c,
    ):
        address = c.scheduler.address
        with DataSession(c, plan, 3) as session:
            sched.kill()
            sched.wait()
            start = time.monotonic()
            with pytest.raises(SchedulerLost, match=re.escape(address)):
                session.pool.look_at_members()
            seconds = time.monotonic() - start
            print(f"killed scheduler: error after {seconds:.1f} s")
            assert seconds < 10
            closing = time.monotonic()
        closed = time.monotonic() - closing
        print(f"killed scheduler: session closed in {closed:.1f} s")
        assert closed < 3


def _fit(session, **kw):
    return ClassifierPopulationGLM(3, regularizer_strength=1e-2, **kw).fit(session)


def test_a_killed_worker_restarted_by_its_nanny_rejoins(tmp_path, plan):
    """SIGKILL a worker process between fits: its nanny starts a new one. The next fit
    notices the loss before sending a pass (no call waits on the dead connection), re-reads
    its chunks on the survivor, then gives the restarted worker a share at a pass boundary;
    same objective."""
    with (
        dask.config.set({"distglm.join_interval": 0.0}),
        dask_processes(tmp_path, nanny=True) as (path, _, _),
        _client(path, 2) as c,
    ):
        with DataSession(c, plan, 3) as session:
            first = _fit(session)
            before = set(session.pool.workers)
            victim = sorted(before)[0]
            pid = c.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while victim in c.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.1)
            c.wait_for_workers(2, timeout=60)  # the nanny's new worker
            start = time.monotonic()
            again = _fit(session)
            seconds = time.monotonic() - start
            print(f"killed and restarted worker: next fit in {seconds:.1f} s")
            workers = session.pool.workers
            held = {a: session.pool.assignment.chunks_of(a) for a in workers}
        assert victim not in workers and len(workers) == 2, workers
        assert all(held.values()), held  # the newcomer holds chunks
        assert again.fit_history_[-1]["objective"] == first.fit_history_[-1]["objective"]
        assert seconds < 30


def test_a_stalled_chunk_read_ends_the_fit_with_its_name(tmp_path):
    """A streamed chunk replaced by a named pipe mid-session: its read stalls for ever; the
    fit ends at the read deadline with an error naming the session, rows and path."""
    import xarray as xr

    from distglm import open_sessions
    from distglm.exceptions import ChunkReadTimeout

    X, y, _, _ = make_population(2000, 4, 3, 3, seed=3)
    store = str(tmp_path / "s.zarr")
    ds = xr.Dataset(
        {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
        coords={"output": [f"u{j}" for j in range(y.shape[1])]},
    )
    ds.chunk({"sample": 500}).to_zarr(store, group="s0", zarr_format=3)
    with (
        dask.config.set({"distglm.deadline.read_floor": 2.0}),
        dask_processes(tmp_path, n_workers=1) as (path, _, _),
        _client(path, 1) as c,
    ):
        plan = plan_data(open_sessions(store))
        with DataSession(c, plan, 3, cache_bytes=0) as session:
            _fit(session)
            fifo = os.path.join(store, "s0", "X", "c", "1", "0")
            os.remove(fifo)
            os.mkfifo(fifo)
            start = time.monotonic()
            try:
                with pytest.raises(ChunkReadTimeout, match=r"rows 500-1000 .*s0/X"):
                    _fit(session)
                seconds = time.monotonic() - start
            finally:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the reader
        print(f"stalled read: error after {seconds:.1f} s")
        assert seconds < 30


def test_the_scheduler_killed_mid_fit_is_a_clear_error(tmp_path, plan):
    """SIGKILL the scheduler during a fit (from its callback, at its third iteration): the
    fit ends, in bounded time, in SchedulerLost naming the scheduler's address and the calls
    done."""
    with (
        dask.config.set({"distglm.deadline.scheduler": 5.0, "distglm.join_interval": 0.0}),
        dask_processes(tmp_path, n_workers=2) as (path, sched, _),
        _client(path, 2) as c,
    ):
        address = c.scheduler.address
        killed = []

        def kill_at_third(record):
            if not killed and record.iteration >= 3:
                sched.kill()
                sched.wait()
                killed.append(time.monotonic())

        with DataSession(c, plan, 3) as session:
            with pytest.raises(SchedulerLost) as err:
                model = ClassifierPopulationGLM(
                    3, regularizer_strength=1e-2, solver_kwargs={"tol": 0.0}
                )
                model.fit(session, callback=kill_at_third)
            seconds = time.monotonic() - killed[0]
            closing = time.monotonic()
        closed = time.monotonic() - closing
        print(
            f"scheduler killed mid-fit: SchedulerLost after {seconds:.1f} s, "
            f"closed in {closed:.1f} s"
        )
        assert address in str(err.value) and "completed calls" in str(err.value)
        assert seconds < 20
        assert closed < 3


def test_650mib_workers_fit_a_store_past_their_budgets_with_the_default_budget(tmp_path):
    """Two `dask worker --nthreads 1 --memory-limit 650MiB` processes with their nannies, a
    string-labelled store ~3x their default budgets together: the fit streams, completes with
    no restart, each worker's peak (its own VmHWM) stays below the nanny's 95%, and the
    budget is the default (the limit up to the pause fraction less the runtime)."""
    import numpy as np
    import xarray as xr

    from distglm import open_sessions
    from distglm.distribute.runtime import process_memory

    rng = np.random.default_rng(0)
    labels = np.array(["left", "nogo", "right"])
    for s in range(3):
        X = rng.standard_normal((200_000, 48)).astype("float32")
        y = labels[rng.integers(0, 3, (200_000, 4))]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"output": [f"u{j}" for j in range(4)]},
        )
        ds.chunk({"sample": 16_384}).to_zarr(
            tmp_path / "s.zarr", group=f"s{s}", mode="a" if s else "w"
        )
    limit = 650 * 2**20
    with (
        dask_processes(tmp_path, nanny=True, memory_limit="650MiB") as (path, _, _),
        _client(path, 2) as c,
    ):
        pids = c.run(os.getpid)
        start = time.monotonic()
        model = ClassifierPopulationGLM(3, regularizer_strength=1e-2)
        model.fit(open_sessions(str(tmp_path / "s.zarr")), client=c)
        print(f"650 MiB workers: fit in {time.monotonic() - start:.1f} s")
        assert c.run(os.getpid) == pids  # no worker restarted
        assert not c.get_events("worker-restart-memory")
        # the fit has ended: its chunks are dropped and the heap trimmed
        after = {a: m["rss"] for a, m in c.run(process_memory).items()}
    prof = model.fit_profile_
    assert prof["streamed"]
    for addr, info in prof["cache"].items():
        assert info["memory_limit"] == limit
        assert 0 < info["cache_bytes"] < 0.8 * limit - info["memory_start"]["rss"]
        assert info["memory_end"]["peak"] < 0.95 * limit, info
        print(
            f"{addr}: budget {info['cache_bytes'] >> 20} MiB, start "
            f"{info['memory_start']['rss'] >> 20} MiB, peak {info['memory_end']['peak'] >> 20} "
            f"MiB, after the fit {after[addr] >> 20} MiB"
        )
        assert after[addr] < info["memory_end"]["rss"] - info["cached_nbytes"] // 2


def test_a_vanished_client_releases_its_actors(tmp_path, plan):
    """A client process holding a data session is SIGKILLed: the scheduler forgets its keys
    and the workers drop its actors (and their chunks) within seconds."""
    import pickle
    import subprocess
    import sys

    def _actors(dask_worker):  # defined here: the workers cannot import this module
        return len(dask_worker.state.actors)

    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(plan))
    with dask_processes(tmp_path) as (path, _, _), _client(path, 2) as c:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import pickle, sys, time\n"
                "from distributed import Client\n"
                "from distglm.distribute import DataSession\n"
                f"c = Client(scheduler_file={str(path)!r})\n"
                f"plan = pickle.load(open({str(tmp_path / 'plan.pkl')!r}, 'rb'))\n"
                "s = DataSession(c, plan, 3)\n"
                "print('open', flush=True)\n"
                "time.sleep(600)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "open"
            assert sum(c.run(_actors).values()) == 2
            child.kill()
            child.wait()
            start = time.monotonic()
            while sum(c.run(_actors).values()) and time.monotonic() - start < 30:
                time.sleep(0.2)
            seconds = time.monotonic() - start
            print(f"vanished client: actors released after {seconds:.1f} s")
            assert sum(c.run(_actors).values()) == 0
        finally:
            child.kill()


def test_a_worker_killed_for_memory_is_reported_with_its_limit_and_budget(tmp_path):
    """400 MiB nanny workers told to cache 2 GiB each, over a ~390 MiB store: the nannies
    restart them for memory in the statistics pass, and the fit ends in WorkerMemoryError
    giving the resident size, the limit and the budget (not a generic WorkerLost)."""
    import numpy as np
    import xarray as xr

    from distglm import WorkerMemoryError, open_sessions

    rng = np.random.default_rng(0)
    labels = np.array(["left", "nogo", "right"])
    for s in range(5):
        X = rng.standard_normal((300_000, 48)).astype("float32")
        y = labels[rng.integers(0, 3, (300_000, 4))]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"output": [f"u{j}" for j in range(4)]},
        )
        ds.chunk({"sample": 16_384}).to_zarr(
            tmp_path / "s.zarr", group=f"s{s}", mode="a" if s else "w"
        )
    with (
        dask_processes(tmp_path, nanny=True, memory_limit="400MiB") as (path, _, _),
        _client(path, 2) as c,
    ):
        start = time.monotonic()
        model = ClassifierPopulationGLM(3, regularizer_strength=1e-2)
        with pytest.raises(WorkerMemoryError) as err:
            model.fit(open_sessions(str(tmp_path / "s.zarr")), client=c, cache_bytes="2GiB")
        seconds = time.monotonic() - start
        print(f"killed for memory: {type(err.value).__name__} after {seconds:.1f} s: {err.value}")
    msg = str(err.value)
    assert "restarted worker tcp://127.0.0.1:" in msg
    assert "memory limit 400 MiB" in msg and "chunk-cache budget 2,048 MiB" in msg
    assert re.search(r"at [\d,]+ MiB resident", msg)
