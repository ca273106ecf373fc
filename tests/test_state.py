"""Typed, frozen solver states: every state a solver makes round-trips through plain values.

``state_to_record`` gives JSON-able scalars and numpy arrays (what saving and checkpointing
write); ``state_from_record`` rebuilds an equal state, and a solver continued from the rebuilt
state takes exactly the steps it would have taken.
"""

from __future__ import annotations

import dataclasses
import json
import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from distglm.cli import make_population
from distglm.regularizer import Lasso, Ridge
from distglm.solve import (
    FirstOrderState,
    InMemoryData,
    LBFGSState,
    NewtonState,
    PenalizedObjective,
    Penalty,
    SolverState,
    Status,
    make_solver,
    minimize,
    state_from_record,
    state_to_record,
)


def _identity(x):
    return x


@pytest.fixture(scope="module")
def problem():
    X, y, _, _ = make_population(2000, 4, 3, 3, seed=2)
    return X, y


def _objective(problem, reg, strength):
    X, y = problem
    return PenalizedObjective(InMemoryData(X, y, 3), Penalty(reg, strength, _identity, _identity))


def _equal(a, b):
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        else:
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), f.name


def _through_json(state):
    meta, arrays = state_to_record(state)
    text = json.dumps(meta)  # the metadata is plain JSON (inf as Infinity, as Python writes it)
    return state_from_record(json.loads(text), {k: np.array(v) for k, v in arrays.items()})


@pytest.mark.parametrize(
    ("name", "reg", "strength"),
    [
        ("LBFGS", Ridge(), 1e-2),
        ("GradientDescent", Ridge(), 1e-2),
        ("ProximalGradient", Lasso(), 1e-3),
        ("Newton", Ridge(), 1e-2),
        ("Newton", Lasso(), 1e-3),
    ],
)
def test_every_state_round_trips_and_resumes_identically(problem, name, reg, strength):
    obj = _objective(problem, reg, strength)
    solver = make_solver(name, {"tol": 1e-10, "maxiter": 6})
    theta0 = np.zeros((5, 3, 3))
    ridge = strength if isinstance(reg, Ridge) else 0.0
    first = minimize(solver, obj, theta0, ridge=ridge)
    for record in first.records:
        assert isinstance(record.state, SolverState)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.state.iteration = -1  # type: ignore[misc]
        _equal(record.state, _through_json(record.state))
    # resuming from the rebuilt state of iteration 3 retraces the later iterations exactly
    assert len(first.records) > 3
    mid = first.records[2]
    again = minimize(
        solver,
        _objective(problem, reg, strength),
        mid.theta,
        state=_through_json(mid.state),
        ridge=ridge,
    )
    assert [r.iteration for r in again.records] == [r.iteration for r in first.records[3:]]
    for a, b in zip(again.records, first.records[3:], strict=True):
        assert a.objective == b.objective
        np.testing.assert_array_equal(a.theta, b.theta)


_arrays = st.integers(1, 4).flatmap(
    lambda n: st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n).map(np.array)
)


@settings(max_examples=60, deadline=None)
@given(
    iteration=st.integers(0, 10**6),
    value=st.none() | st.floats(allow_nan=False),
    gap=st.floats(min_value=0.0),
    status=st.sampled_from(list(Status)),
    t=st.floats(0.0, 1e6),
    z=st.none() | _arrays,
)
def test_state_records_round_trip(iteration, value, gap, status, t, z):
    state = FirstOrderState(
        iteration=iteration, value=value, gap=gap, status=status, t=t, z=z, grad=z
    )
    _equal(state, _through_json(state))


def test_records_name_what_is_wrong():
    meta, arrays = state_to_record(LBFGSState(pairs_rho=np.ones(2)))
    with pytest.raises(ValueError, match="Unknown solver state type 'Nope'"):
        state_from_record({**meta, "type": "Nope"}, arrays)
    with pytest.raises(ValueError, match="no field 'gap'"):
        state_from_record({k: v for k, v in meta.items() if k != "gap"}, arrays)
    with pytest.raises(ValueError, match="names array 'pairs_rho' but has none"):
        state_from_record(meta, {})
    with pytest.raises(ValueError):
        state_from_record({**meta, "status": "bored"}, arrays)
    assert NewtonState().status is Status.RUNNING and not NewtonState().done
