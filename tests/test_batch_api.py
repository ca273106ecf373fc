"""nemos 0.2.8's batch loop (initialize_solver_and_state, then update) runs on distglm."""

from __future__ import annotations

import nemos as nmo
import numpy as np
import pytest

import distglm

from helpers import softmax_labels

pytestmark = pytest.mark.parity


def _loop(model, X, y, n_updates, nemos_order):
    model.set_classes(y)
    params = model.initialize_params(X, y)
    if nemos_order:
        state = model.initialize_solver_and_state(X, y, params)
    else:
        state = model.initialize_optimizer_and_state(params, X, y)
    for _ in range(n_updates):
        params, state = model.update(params, state, X, y)
    return params


def test_both_initialisers_reach_nemos_batch_loop_params():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = softmax_labels(rng, X, rng.normal(size=(4, 3)), np.zeros(3))
    ref = _loop(nmo.glm.ClassifierGLM(3, solver_name="GradientDescent"), X, y, 60, True)
    new = _loop(distglm.ClassifierGLM(3, solver_name="GradientDescent"), X, y, 60, True)
    seed = _loop(distglm.ClassifierGLM(3, solver_name="GradientDescent"), X, y, 60, False)
    np.testing.assert_array_equal(new[0], seed[0])
    np.testing.assert_array_equal(new[1], seed[1])
    np.testing.assert_allclose(new[0], ref[0], atol=1e-5)
    np.testing.assert_allclose(new[1], ref[1], atol=1e-5)


def _iterates(model, X, y, n_updates):
    model.set_classes(y)
    params = model.initialize_params(X, y)
    state = model.initialize_solver_and_state(X, y, params)
    out = []
    for _ in range(n_updates):
        params, state = model.update(params, state, X, y)
        out.append((np.array(params[0]), np.array(params[1])))
    return out


@pytest.mark.parametrize(
    "solver, regularizer", [("GradientDescent", "Ridge"), ("ProximalGradient", "Lasso")]
)
@pytest.mark.parametrize("acceleration", [True, False])
@pytest.mark.parametrize("population", [False, True])
def test_fixed_step_batch_iterates_are_nemos(solver, regularizer, acceleration, population):
    # With nemos' fixed ``stepsize``, every iterate of the batch loop is nemos': the momentum
    # carries from one update to the next and never restarts, as in nemos' FISTA.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    y = softmax_labels(rng, X, rng.normal(size=(4, 3)), np.zeros(3))
    if population:
        y = np.stack([y, softmax_labels(rng, X, rng.normal(size=(4, 3)), np.zeros(3))], axis=1)
    name = "ClassifierPopulationGLM" if population else "ClassifierGLM"
    kwargs = dict(
        solver_name=solver,
        regularizer=regularizer,
        regularizer_strength=0.01,
        solver_kwargs={"stepsize": 0.5, "acceleration": acceleration},
    )
    ref = _iterates(getattr(nmo.glm, name)(3, **kwargs), X, y, 25)
    new = _iterates(getattr(distglm, name)(3, **kwargs), X, y, 25)
    for i, ((rc, ri), (nc, ni)) in enumerate(zip(ref, new, strict=True)):
        np.testing.assert_allclose(nc, rc, atol=2e-6, err_msg=f"coef after update {i + 1}")
        np.testing.assert_allclose(ni, ri, atol=2e-6, err_msg=f"intercept after update {i + 1}")


def test_initialize_solver_and_state_needs_classes():
    X = np.zeros((4, 2))
    with pytest.raises(Exception, match="initialize_solver_and_state"):
        distglm.ClassifierGLM(2).initialize_solver_and_state(X, np.array([0, 1, 0, 1]), None)
