"""The stacked search's parts: held-out sums in the Newton pass, the state carried along the
path, and the pass count of the whole search."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distglm
from distglm.cli import make_population
from distglm.cv_search import HeldOutData, newton_search, solver_search, stack_folds
from distglm.folds import plan_folds
from distglm.kernels.newton import newton_pass_sums
from distglm.kernels.softmax import nll_sums
from distglm.path import default_strengths
from distglm.solve import PenalizedObjective, minimize
from distglm.solve.carry import carry_newton_state
from distglm.solve.choose import make_solver

from helpers import softmax_labels


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _data(n=300, p=4, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    W = rng.normal(size=(p, k, 3))
    return X, softmax_labels(rng, X, W, np.zeros((k, 3)))


def test_newton_pass_with_two_weight_sets_adds_the_held_out_loss(x64):
    X, y = _data()
    rng = np.random.default_rng(1)
    coef, b = rng.normal(size=(4, 2, 3)), rng.normal(size=(2, 3))
    dc, db = rng.normal(size=(4, 2, 3)), rng.normal(size=(2, 3))
    w = rng.random((300, 2))
    held = (rng.random((300, 2)) < 0.3).astype(float)
    steps, t_eval = np.array([[0.5, 0.25]]), np.array([0.7, 0.0])
    args = ((coef, b), (dc, db), X, y)
    one = newton_pass_sums(*args, w, steps, t_eval, 1, None)
    both = newton_pass_sums(*args, jnp.stack([w, held], axis=1), steps, t_eval, 1, None)
    assert len(one) == 5 and len(both) == 6
    for a, c in zip(
        jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(both[:5]), strict=True
    ):
        np.testing.assert_allclose(a, c, rtol=1e-12)
    at = (coef + t_eval[None, :, None] * dc, b + t_eval[:, None] * db)
    np.testing.assert_allclose(both[5], nll_sums(at, X, y, held, None), rtol=1e-12)


def _problem(X, y, folds=3):
    model = distglm.ClassifierPopulationGLM(3)
    index = plan_folds([len(X)], folds).index
    return model, stack_folds(model, X, y, index, folds)


def _objective(model, problem, value, data):
    step = model.__sklearn_clone__()
    step.regularizer_strength = value
    spec = step._spec(problem.layout, problem.codes.shape[1])
    return PenalizedObjective(data, spec.penalty), spec


def test_held_out_sums_come_from_the_passes_and_equal_a_separate_pass(x64):
    X, y = _data()
    model, problem = _problem(X, y)
    data = HeldOutData(
        problem.X, problem.codes, 3, problem.train, problem.held, np.dtype(np.float64)
    )
    objective, _ = _objective(model, problem, 0.05, data)
    solver = make_solver("Newton", {"tol": 1e-10})
    theta0 = np.zeros((5, problem.codes.shape[1], 3))
    result = minimize(solver, objective, theta0)
    sums, found = data.evaluated.at(result.theta)
    assert np.all(found) and len(data.evaluated) == 0
    np.testing.assert_allclose(sums, data.held_sums(result.theta), rtol=1e-10)
    # parameters no pass evaluated are not found
    minimize(solver, objective, result.theta)
    _, found = data.evaluated.at(result.theta + 1e-3)
    assert not np.any(found)


def test_carried_state_equals_the_derivatives_of_a_fresh_pass(x64):
    X, y = _data()
    model, problem = _problem(X, y)
    data = HeldOutData(
        problem.X, problem.codes, 3, problem.train, problem.held, np.dtype(np.float64)
    )
    solver = make_solver("Newton", {"tol": 1e-12})
    old, old_spec = _objective(model, problem, 0.3, data)
    theta0 = np.zeros((5, problem.codes.shape[1], 3))
    first = minimize(solver, old, theta0)
    new, _ = _objective(model, problem, 0.03, data)
    context = solver.prepare(new, first.theta)
    carried = carry_newton_state(solver, new, context, first.theta, first.state, old_spec.penalty)
    fresh = solver.step(new, context, first.theta, solver.init(context, first.theta))[1]
    np.testing.assert_allclose(carried.F, fresh.F, rtol=1e-10)
    np.testing.assert_allclose(carried.grad, fresh.grad, atol=1e-10)
    np.testing.assert_allclose(carried.hess, fresh.hess, atol=1e-10)
    np.testing.assert_allclose(carried.direction, fresh.direction, atol=1e-8)
    # and the fit from it reaches the cold fit's optimum, in fewer passes
    warm = minimize(solver, new, first.theta, state=carried, context=context)
    passes = new.n_passes
    cold_objective, _ = _objective(model, problem, 0.03, data)
    cold = minimize(solver, cold_objective, theta0)
    np.testing.assert_allclose(warm.theta, cold.theta, atol=1e-6)
    assert passes < cold_objective.n_passes


def test_newton_and_lbfgs_searches_give_the_same_scores(x64):
    X, y = _data()
    strengths = np.array([0.3, 0.03, 0.003])
    tight = distglm.ClassifierPopulationGLM(3, solver_name="LBFGS", solver_kwargs={"tol": 1e-14})
    index = plan_folds([len(X)], 3).index
    by_lbfgs = solver_search(tight, stack_folds(tight, X, y, index, 3), strengths)
    exact = distglm.ClassifierPopulationGLM(3, solver_name="Newton", solver_kwargs={"tol": 1e-14})
    by_newton = newton_search(exact, stack_folds(exact, X, y, index, 3), strengths)
    np.testing.assert_allclose(by_newton.score, by_lbfgs.score, rtol=1e-6)
    np.testing.assert_allclose(by_newton.path["coef"], by_lbfgs.path["coef"], atol=1e-5)
    assert by_newton.n_passes < by_lbfgs.n_passes


def test_the_whole_search_costs_at_most_three_cold_fits():
    X, y, _, _ = make_population(3000, 20, 4, 3, seed=0)
    X, y = np.asarray(X), np.asarray(y)
    strengths = default_strengths(distglm.ClassifierPopulationGLM(3), X, y)
    cold = distglm.ClassifierPopulationGLM(
        3, regularizer_strength=float(strengths[-1]), solver_kwargs={"tol": 1e-6}
    ).fit(X, y)
    search = distglm.ClassifierPopulationGLMCV(3, strengths=strengths, cv=5).fit(X, y)
    assert search.n_passes_ <= 3 * cold.n_passes_, (search.n_passes_, cold.n_passes_)
    # the refit starts at the path's optimum: one pass confirms it
    assert search.best_estimator_.n_passes_ <= 2
