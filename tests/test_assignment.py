"""Chunk assignment and recovery from lost workers, without a cluster.

The pure :class:`~distglm.distribute.Assignment` is checked over hypothesis-generated
sequences of worker losses and arrivals; then the real :class:`~distglm.distribute.WorkerPool`
and fit run on an in-process transport (``fakes.LocalTransport``) that loses workers on cue,
and must reach bitwise the objective of an undisturbed fit.
"""

from __future__ import annotations

import dask
import dask.array as da
import hypothesis.strategies as st
import numpy as np
import pytest
from fakes import LocalTransport
from hypothesis import HealthCheck, given, settings

from distglm import ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.data import plan_data
from distglm.distribute import Assignment, DataSession, WorkerLost

WORKERS = [f"w{i}" for i in range(6)]


# ---------------------------------------------------------------------------- pure logic
def _spread(a: Assignment, workers):
    load = a.load(workers)
    return max(load.values()) - min(load.values())


def _check(a: Assignment, live):
    assert all(owner in live for owner in a.owner), (a.owner, live)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.integers(1, 1000), min_size=1, max_size=40),
    n_workers=st.integers(1, 6),
    events=st.lists(st.tuples(st.sampled_from(["lose", "join"]), st.sampled_from(WORKERS))),
)
def test_assignment_over_losses_and_arrivals(rows, n_workers, events):
    live = WORKERS[:n_workers]
    a = Assignment.initial(rows, live)
    load = a.load(live)
    assert max(load.values()) - min(load.values()) <= max(rows)  # balanced by rows
    _check(a, live)
    for kind, w in events:
        if kind == "join":
            live = sorted({*live, w})
            continue
        if w not in live or len(live) == 1:
            continue
        survivors = [x for x in live if x != w]
        before = a
        spread_before = _spread(a.without([w]), survivors)
        a, loads = a.on_lost([w], survivors)
        # orphans go to the least loaded: the spread grows by at most one chunk
        assert _spread(a, survivors) <= max(spread_before, max(rows))
        # survivors keep what they held; only the lost worker's chunks move, to the loads
        for cid, (old, new) in enumerate(zip(before.owner, a.owner, strict=True)):
            if old != w:
                assert new == old
            else:
                assert new in survivors and cid in loads[new]
        assert sorted(c for cids in loads.values() for c in cids) == before.chunks_of(w)
        live = survivors
        _check(a, live)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.integers(1, 1000), min_size=1, max_size=40),
    n_old=st.integers(1, 4),
    n_new=st.integers(1, 3),
)
def test_joined_workers_take_a_share(rows, n_old, n_new):
    old, new = WORKERS[:n_old], WORKERS[n_old : n_old + n_new]
    before = Assignment.initial(rows, old)
    after, loads = before.on_join(new, old)
    _check(after, old + new)
    for cid, (a, b) in enumerate(zip(before.owner, after.owner, strict=True)):
        if a != b:  # only ever moved to a joined worker, and listed as its load
            assert b in new and cid in loads[b]
    assert sorted(c for cids in loads.values() for c in cids) == [
        c for c in range(len(rows)) if before.owner[c] != after.owner[c]
    ]
    load = after.load(old + new)
    # no move is left that narrows the spread: the joined workers are within one chunk of
    # the most loaded
    assert max(load.values()) - min(load[w] for w in new) <= max(rows)
    assert after.on_join([], old + new) == (after, {})


def test_assignment_is_a_value():
    a = Assignment.initial([3, 1, 2], ["b", "a"])
    assert a.owner == ("a", "b", "b")  # ties to the lowest address, then the least loaded
    assert a == Assignment.initial([3, 1, 2], ["a", "b"])
    with pytest.raises(AttributeError):
        a.owner = ()  # type: ignore[misc]
    with pytest.raises(ValueError, match="No workers"):
        a.without(["a", "b"]).place([])


# ---------------------------------------------------------------------------- the pool
@pytest.fixture(scope="module")
def plan():
    X, y, _, _ = make_population(3000, 4, 3, 3, seed=4)
    return plan_data(da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=(500, -1)))


def _fit(plan, transport):
    with (
        dask.config.set({"distglm.join_interval": 0}),
        DataSession(None, plan, 3, transport=transport) as session,
    ):
        model = ClassifierPopulationGLM(3, regularizer_strength=1e-2)
        model.fit(session)
    return model


@pytest.fixture(scope="module")
def undisturbed(plan):
    return _fit(plan, LocalTransport(["w0", "w1", "w2"]))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(
        st.tuples(
            st.integers(1, 12),
            st.sampled_from(["lose", "join", "freeze"]),
            st.sampled_from(WORKERS),
        ),
        max_size=4,
    )
)
def test_fit_survives_any_sequence_of_losses(plan, undisturbed, events):
    """Workers lost, frozen (listed but silent: dropped at their deadline, or when their actor
    does not start) or new ones arriving (taking a share of the chunks at the next pass) at
    any call, statistics pass and encoding included: the fit reaches bitwise the undisturbed
    objective, while one answering worker is left, and no call goes without a deadline."""
    script = {}
    alive = {"w0", "w1", "w2"}
    frozen = set()
    for call, kind, w in sorted(events):
        if kind != "join" and len(alive) == 1 and w in alive:
            continue  # keep one worker: losing every worker is tested below
        if w in frozen:
            continue  # a frozen worker stays frozen
        alive = alive | {w} if kind == "join" else alive - {w}
        frozen |= {w} if kind == "freeze" else set()
        script.setdefault(call, []).append((kind, w))
    transport = LocalTransport(["w0", "w1", "w2"], script)
    model = _fit(plan, transport)
    assert model.fit_history_[-1]["objective"] == undisturbed.fit_history_[-1]["objective"]
    np.testing.assert_array_equal(model.coef_, undisturbed.coef_)
    lost = sum(kind != "join" for calls in script.values() for kind, _ in calls)
    assert model.fit_profile_["recoveries"] <= lost
    assert set(model.fit_profile_["dropped_workers"]) <= frozen
    assert None not in transport.timeouts


def test_losing_every_worker_is_a_clear_error(plan):
    for call in (1, 2, 5):  # in the statistics pass, while encoding, mid-fit
        transport = LocalTransport(["w0", "w1"], {call: [("lose", "w0"), ("lose", "w1")]})
        with pytest.raises(WorkerLost, match="Every worker"):
            with DataSession(None, plan, 3, transport=transport, wait_for_workers=0.2) as s:
                ClassifierPopulationGLM(3).fit(s)


def test_a_joined_worker_takes_chunks_at_the_next_pass(plan, undisturbed):
    """A worker arriving mid-fit is given chunks at the next pass boundary; the workers they
    came from forget them; the fit is bitwise the undisturbed one."""
    transport = LocalTransport(["w0", "w1", "w2"], {6: [("join", "w3")]})
    with (
        dask.config.set({"distglm.join_interval": 0}),
        DataSession(None, plan, 3, transport=transport) as session,
    ):
        model = ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
        held = {a: session.pool.assignment.chunks_of(a) for a in session.pool.workers}
        info = session.pool.info()
    assert held["w3"], held
    for a, cids in held.items():  # each worker holds exactly what the assignment says
        assert info[a]["chunks"] == cids
    assert ["w3"] in transport.starts
    assert any("w3" in calls for n, calls in transport.log if n > 6)
    assert model.fit_history_[-1]["objective"] == undisturbed.fit_history_[-1]["objective"]
    np.testing.assert_array_equal(model.coef_, undisturbed.coef_)
    assert model.fit_profile_["recoveries"] == 0


def test_a_worker_gone_between_passes_is_never_called(plan, undisturbed):
    """A worker that left between two fits is recovered from before the next pass is sent,
    not discovered by a call to it."""
    transport = LocalTransport(["w0", "w1", "w2"])
    with (
        dask.config.set({"distglm.join_interval": 0}),
        DataSession(None, plan, 3, transport=transport) as session,
    ):
        ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
        transport.live.remove("w1")
        transport.actors.pop("w1")
        n = transport.calls
        model = ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(session)
        assert session.pool.workers == ["w0", "w2"]
    assert all("w1" not in calls for k, calls in transport.log if k > n)
    assert model.fit_history_[-1]["objective"] == undisturbed.fit_history_[-1]["objective"]


def test_a_worker_frozen_before_its_actor_starts_is_dropped(plan, undisturbed):
    transport = LocalTransport(["w0", "w1", "w2"])
    transport.frozen.add("w1")
    model = _fit(plan, transport)
    assert model.fit_profile_["dropped_workers"] == ["w1"]
    assert model.fit_history_[-1]["objective"] == undisturbed.fit_history_[-1]["objective"]


def test_a_worker_dying_while_its_actor_starts_is_left_out(plan, undisturbed):
    """A worker that joins and dies while its actor starts is left out; the fit goes on."""
    transport = LocalTransport(["w0", "w1"], {5: [("join", "w3")]})
    transport.doomed.add("w3")
    model = _fit(plan, transport)
    assert ["w3"] in transport.starts
    assert all("w3" not in calls for _, calls in transport.log)
    assert model.fit_profile_["dropped_workers"] == []
    assert model.fit_history_[-1]["objective"] == undisturbed.fit_history_[-1]["objective"]
