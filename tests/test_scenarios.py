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
