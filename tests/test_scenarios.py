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
    with dask_processes(tmp_path, n_workers=1) as (path, sched, _), _client(path, 1) as c:
        address = c.scheduler.address
        with DataSession(c, plan, 3) as session:
            sched.kill()
            sched.wait()
            start = time.monotonic()
            with pytest.raises(SchedulerLost, match=re.escape(address)):
                session.pool.transport.workers()
            seconds = time.monotonic() - start
            print(f"killed scheduler: error after {seconds:.1f} s")
            assert seconds < 35


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
    """SIGKILL the scheduler while a fit runs: the fit ends, in bounded time, in
    SchedulerLost naming the scheduler's address and the calls done."""
    import threading

    with (
        dask.config.set({"distglm.deadline.scheduler": 5.0, "distglm.join_interval": 0.0}),
        dask_processes(tmp_path, n_workers=2) as (path, sched, _),
        _client(path, 2) as c,
    ):
        address = c.scheduler.address
        with DataSession(c, plan, 3) as session:
            outcome = {}

            def run():
                try:
                    _fit(session, solver_kwargs={"tol": 0.0, "maxiter": 100000})
                except Exception as e:
                    outcome["error"] = e

            thread = threading.Thread(target=run, daemon=True)
            passes = session.pool.passes
            thread.start()
            while session.pool.passes < passes + 5 and thread.is_alive():
                time.sleep(0.05)
            sched.kill()
            sched.wait()
            start = time.monotonic()
            thread.join(60)
            seconds = time.monotonic() - start
        assert not thread.is_alive(), "the fit hung after the scheduler died"
        err = outcome.get("error")
        print(f"scheduler killed mid-fit: {type(err).__name__} after {seconds:.1f} s")
        assert isinstance(err, SchedulerLost), err
        assert address in str(err) and "completed calls" in str(err)
        assert seconds < 20
