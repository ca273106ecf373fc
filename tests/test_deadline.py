"""The deadline policy, without a cluster: derived from measured times, never below its floor,
dropping a frozen worker in bounded time."""

from __future__ import annotations

import statistics

import dask
import dask.array as da
import hypothesis.strategies as st
import pytest
from fakes import LocalTransport
from hypothesis import given, settings

from distglm import ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.data import plan_data
from distglm.distribute import DataSession, Deadlines, SchedulerLost

KINDS = ["load", "encode", "value_and_grad"]
WORKERS = ["w0", "w1", "w2"]

calls = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.dictionaries(st.sampled_from(WORKERS), st.floats(0, 1e4), min_size=1),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(calls=calls, factor=st.floats(1, 100), floor=st.floats(0.01, 100))
def test_deadline_is_factor_times_slowest_median(calls, factor, floor):
    d = Deadlines(factor=factor, floor=floor, initial=None, window=5)
    assert d.deadline("load") is None  # nothing timed: the initial deadline
    seen = {}
    for kind, seconds in calls:
        d = d.record(kind, seconds)
        for w, s in seconds.items():
            seen.setdefault((kind, w), []).append(s)
    for kind in KINDS:
        per = {w: v[-5:] for (k, w), v in seen.items() if k == kind}
        if per:
            slowest = max(statistics.median(v) for v in per.values())
            assert d.deadline(kind) == max(floor, factor * slowest)
            assert d.deadline(kind) >= floor
        elif seen:  # a kind not timed yet: the longest deadline of those timed
            timed = {k for k, _ in seen}
            assert d.deadline(kind) == max(d.deadline(k) for k in timed) + d.first_call
    assert len(d.times) <= 5 * len(KINDS) * len(WORKERS)


@given(calls=calls)
def test_forgetting_a_worker_drops_only_its_times(calls):
    d = Deadlines(initial=10.0, floor=1.0)
    for kind, seconds in calls:
        d = d.record(kind, seconds)
    f = d.forget(["w0"])
    assert all(w != "w0" for _, w, _ in f.times)
    assert [t for t in d.times if t[1] != "w0"] == list(f.times)


def test_a_frozen_worker_cannot_raise_the_deadline_it_missed():
    """A slow pass raises the next deadline only through the median, so one stall (a worker
    that answered late once) does not lift it much, and it is bounded by what was measured."""
    d = Deadlines(factor=10, floor=1, initial=5)
    assert d.deadline("value") == 5
    for _ in range(4):
        d = d.record("value", {"w0": 0.2, "w1": 0.3})
    d = d.record("value", {"w0": 50.0, "w1": 0.3})
    assert d.deadline("value") == pytest.approx(3.0)


def test_bad_settings_and_config():
    bad = (
        {"factor": 0.5},
        {"floor": 0},
        {"floor": 10, "initial": 1},
        {"window": 0},
        {"close": 0},
    )
    for kw in (*bad, {"first_call": -1}):
        with pytest.raises(ValueError, match=r"Deadline|Initial"):
            Deadlines(**kw)
    with dask.config.set({"distglm.deadline.floor": 2, "distglm.deadline.initial": 7}):
        d = Deadlines.from_config()
    assert (d.floor, d.initial, d.factor, d.close) == (2.0, 7.0, 10.0, 10.0)
    with dask.config.set({"distglm.deadline.close": 0.5}):
        assert Deadlines.from_config().close == 0.5
    with dask.config.set({"distglm.deadline.initial": None}):
        assert Deadlines.from_config().initial is None


# ------------------------------------------------------------------ closing a data session
@pytest.fixture(scope="module")
def plan():
    X, y, _, _ = make_population(2000, 4, 3, 3, seed=5)
    return plan_data(da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=(500, -1)))


def test_closing_waits_for_a_frozen_worker_only_its_close_deadline(plan):
    """A worker frozen after a fit (a stopped process) does not hold the session's close: the
    clear call gets the close deadline, and every actor is released all the same."""
    transport = LocalTransport(["w0", "w1"])
    with dask.config.set({"distglm.deadline.close": 0.25}):
        session = DataSession(None, plan, 3, transport=transport)
    ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
    transport.frozen.add("w1")
    n = transport.calls
    session.close()  # a call without a deadline to the frozen worker fails the fake
    assert transport.calls == n + 1 and transport.timeouts[-1] == 0.25
    assert transport.log[-1][1] == {"w0": "clear", "w1": "clear"}
    assert transport.actors == {}
    assert session.pool.dropped == set()  # closing drops no worker from a fit


def test_after_the_scheduler_is_lost_closing_asks_nothing_of_the_workers(plan):
    """Once a fit ended in SchedulerLost, the close releases the actors without a call (which
    would wait on the client's reconnection to the dead scheduler)."""
    transport = LocalTransport(["w0", "w1"])
    with dask.config.set({"distglm.join_interval": 0}):
        session = DataSession(None, plan, 3, transport=transport)
        ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
        transport.scheduler_gone = True
        with pytest.raises(SchedulerLost, match="stopped between passes"):
            ClassifierPopulationGLM(3, regularizer_strength=1e-1).fit(session)
    assert session.pool.scheduler_lost
    n = transport.calls
    session.close()
    assert transport.calls == n and transport.actors == {}
