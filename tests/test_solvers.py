"""Solvers against the Objective protocol, the preconditioner and the curvature bound.

The oracle for the optimum is scipy's L-BFGS-B on the same objective written in float64 numpy:
``sum_k mean_n[-log p(y_nk | x_n)] + penalty(coef)``, the intercept unpenalised.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from distglm.cli import make_population
from distglm.regularizer import Lasso, Ridge
from distglm.solve import (
    LBFGS,
    AcceleratedGradient,
    BlockPreconditioner,
    InMemoryData,
    PenalizedObjective,
    Penalty,
    ProximalGradient,
    lipschitz_bound,
    make_solver,
    minimize,
)
from distglm.solve.precondition import model_matrix


def _identity(x):
    return x


def _objective(X, y, n_classes, regularizer, strength, mask=None, dtype=np.float32):
    data = InMemoryData(X, y, n_classes, dtype=dtype)
    penalty = Penalty(regularizer, strength, _identity, _identity, mask=mask)
    return PenalizedObjective(data, penalty)


def _np_smooth(theta, X, y):
    """Float64 numpy: sum over outputs of the mean NLL, and its gradient (theta layout)."""
    coef, b = theta[:-1], theta[-1]
    n, _k = y.shape
    c = theta.shape[2]
    X = np.asarray(X, np.float64)
    eta = np.einsum("np,pkc->nkc", X, coef) + b
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    eta_y = np.take_along_axis(eta, y[..., None], axis=-1)[..., 0]
    value = float(np.sum(np.mean(lse - eta_y, axis=0)))
    resid = np.exp(eta - lse[..., None]) - np.eye(c)[y]
    grad = np.concatenate([np.einsum("np,nkc->pkc", X, resid), resid.sum(0)[None]]) / n
    return value, grad


def _np_ridge(theta, X, y, strength):
    v, g = _np_smooth(theta, X, y)
    coef = theta[:-1]
    g = g.copy()
    g[:-1] += strength * coef
    return v + 0.5 * strength * float(np.sum(coef**2)), g


def _scipy_ridge(X, y, n_classes, strength):
    shape = (X.shape[1] + 1, y.shape[1], n_classes)

    def fun(v):
        f, g = _np_ridge(v.reshape(shape), X, y, strength)
        return f, g.ravel()

    res = scipy.optimize.minimize(
        fun,
        np.zeros(np.prod(shape)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 20},
    )
    return res.x.reshape(shape), float(res.fun)


def _centred(theta):
    """Intercepts are defined up to a constant per output (the loss is flat along it)."""
    out = theta.copy()
    out[-1] -= out[-1].mean(axis=-1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def small():
    X, y, _, _ = make_population(600, 5, 3, 3, seed=1)
    return X, y


SOLVER_CASES = [
    ("LBFGS", {"tol": 1e-10}),
    ("GradientDescent", {"tol": 1e-10, "maxiter": 3000}),
    ("ProximalGradient", {"tol": 1e-10, "maxiter": 3000}),
]


# ------------------------------------------------------------------ optimum vs scipy
@pytest.mark.parametrize(("name", "kwargs"), SOLVER_CASES)
@pytest.mark.parametrize("strength", [0.1, 1e-3])
def test_ridge_optimum_matches_scipy(small, name, kwargs, strength):
    X, y = small
    theta_ref, f_ref = _scipy_ridge(X, y, 3, strength)
    obj = _objective(X, y, 3, Ridge(), strength)
    solver = make_solver(name, kwargs)
    assert isinstance(
        solver,
        {
            "LBFGS": LBFGS,
            "GradientDescent": AcceleratedGradient,
            "ProximalGradient": ProximalGradient,
        }[name],
    )
    res = minimize(solver, obj, np.zeros_like(theta_ref), ridge=strength)
    f_np, _ = _np_ridge(res.theta, X, y, strength)
    assert abs(f_np - f_ref) <= 1e-6 * abs(f_ref), (f_np, f_ref, res.n_iter)
    # the solver's own record of the objective is the float32 kernel's value at its optimum
    assert abs(res.history[-1]["objective"] - f_ref) <= 1e-5 * abs(f_ref)
    np.testing.assert_allclose(_centred(res.theta), _centred(theta_ref), atol=2e-3)


def test_ridge_optimum_matches_scipy_float64_kernels(small):
    """With x64 kernels the parameters agree far more tightly than with float32 sums."""
    X, y = small
    strength = 1e-2
    theta_ref, f_ref = _scipy_ridge(X, y, 3, strength)
    with jax.enable_x64(True):
        obj = _objective(X, y, 3, Ridge(), strength, dtype=np.float64)
        res = minimize(LBFGS(tol=1e-14), obj, np.zeros_like(theta_ref), ridge=strength)
    f_np, _ = _np_ridge(res.theta, X, y, strength)
    # the precision floor follows the kernel dtype: float64 sums resolve far smaller gaps
    assert abs(f_np - f_ref) <= 1e-11 * abs(f_ref)
    np.testing.assert_allclose(_centred(res.theta), _centred(theta_ref), atol=2e-5)


def test_fista_lasso_optimality_conditions(small):
    X, y = small
    strength = 0.02
    obj = _objective(X, y, 3, Lasso(), strength)
    theta0 = np.zeros((X.shape[1] + 1, y.shape[1], 3))
    res = minimize(ProximalGradient(tol=1e-12, maxiter=4000), obj, theta0)
    _, g = _np_smooth(res.theta, X, y)
    coef, gc = res.theta[:-1], g[:-1]
    nz = coef != 0
    assert 0 < nz.sum() < nz.size, "the test needs some zero and some non-zero coefficients"
    tol = 2e-4  # float32 sums
    # non-zero coefficients: grad + s * sign(w) = 0; zeros: |grad| <= s
    np.testing.assert_allclose(gc[nz] + strength * np.sign(coef[nz]), 0.0, atol=tol)
    assert np.all(np.abs(gc[~nz]) <= strength + tol)
    np.testing.assert_allclose(g[-1], 0.0, atol=tol)  # intercept: unpenalised


# ------------------------------------------------------------------ preconditioner
def _gram(n=300, p=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + 0.5
    Xa = np.hstack([X, np.ones((n, 1))])
    return Xa.T @ Xa / n


@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("ridge_kind", ["zero", "scalar", "per_coefficient"])
def test_block_preconditioner_matches_dense_solve(with_mask, ridge_kind, per_output):
    rng = np.random.default_rng(3)
    p, k, c = 4, 3, 3
    # one second moment for all outputs, or one per output (sessions recording other outputs)
    gram = np.stack([_gram(p=p, seed=j) for j in range(k)]) if per_output else _gram(p=p)
    ridge = {
        "zero": 0.0,
        "scalar": 0.3,
        "per_coefficient": rng.uniform(0.0, 1.0, (p, k, c)),
    }[ridge_kind]
    mask = (rng.random((p, k, c)) > 0.3).astype(float) if with_mask else None
    pre = BlockPreconditioner(gram, c, (p + 1, k, c), ridge=ridge, mask=mask)
    g = rng.standard_normal((p + 1, k, c))
    if mask is not None:
        g[:-1] *= mask  # gradients are projected onto the mask before they get here
    got = pre.solve(g)
    # the explicit matrix of each output, as documented by precondition.model_matrix
    # (entries row-major over (feature row, class), i.e. theta[:, j, :].ravel())
    ridge_full = np.broadcast_to(np.asarray(ridge, float), (p, k, c))
    for j in range(k):
        gram_j = gram[j] if per_output else gram
        M = model_matrix(gram_j, c, ridge_full[:, j, :], None if mask is None else mask[:, j, :])
        np.testing.assert_allclose(M, M.T, atol=1e-12)
        assert np.linalg.eigvalsh(M)[0] > 0
        expected = np.linalg.solve(M, g[:, j, :].ravel()).reshape(p + 1, c)
        np.testing.assert_allclose(got[:, j, :], expected, rtol=1e-8, atol=1e-10)
    if mask is not None:
        assert np.all(got[:-1][mask == 0] == 0.0), "masked zeros must stay exactly 0"


def test_class_diagonal_fallback_uses_each_outputs_gram(monkeypatch):
    # above the block budget the per-class model is used; with per-output second moments each
    # output's columns must use its own, as if it were preconditioned alone
    from distglm.solve import precondition

    monkeypatch.setattr(precondition, "_MAX_BLOCK_BYTES", 0)
    rng = np.random.default_rng(5)
    p, k, c = 4, 3, 3
    grams = np.stack([_gram(p=p, seed=10 + j) for j in range(k)])
    ridge = rng.uniform(0.1, 1.0, (p, k, c))
    g = rng.standard_normal((p + 1, k, c))
    got = BlockPreconditioner(grams, c, (p + 1, k, c), ridge=ridge).solve(g)
    assert BlockPreconditioner(grams, c, (p + 1, k, c), ridge=ridge)._columns is not None
    for j in range(k):
        alone = BlockPreconditioner(grams[j], c, (p + 1, 1, c), ridge=ridge[:, j : j + 1])
        np.testing.assert_allclose(got[:, j : j + 1], alone.solve(g[:, j : j + 1]), rtol=1e-10)


def test_lipschitz_bound_takes_the_largest_per_output_gram():
    gram = _gram(seed=0)
    grams = np.stack([gram, 4.0 * gram, 0.5 * gram])
    assert lipschitz_bound(grams) == pytest.approx(lipschitz_bound(grams[1]))


# ------------------------------------------------------------------ curvature bound
@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("ridge", [0.0, 0.25])
def test_lipschitz_bound_bounds_hessian(n_classes, ridge):
    X, y, _, _ = make_population(80, 3, 2, n_classes, seed=4)
    X = X * np.array([1.0, 3.0, 0.5], np.float32) + 0.7  # anisotropic and off-centre
    data = InMemoryData(X, y, n_classes)
    gram = data.gram()
    Xa = np.hstack([X.astype(np.float64), np.ones((len(X), 1))])
    np.testing.assert_allclose(gram, Xa.T @ Xa / len(X), rtol=1e-5, atol=1e-5)
    L = lipschitz_bound(gram, ridge)
    shape = (4, 2, n_classes)

    def f(v):
        theta = v.reshape(shape)
        coef, b = theta[:-1], theta[-1]
        eta = jnp.einsum("np,pkc->nkc", jnp.asarray(X, jnp.float64), coef) + b[None]
        lp = jax.nn.log_softmax(eta, axis=-1)
        nll = -jnp.take_along_axis(lp, jnp.asarray(y)[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.mean(nll, axis=0)) + 0.5 * ridge * jnp.sum(coef**2)

    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        hess = jax.jit(jax.hessian(f))
        top = []
        for scale in [0.0, 0.3, 1.0, 3.0]:
            v = jnp.asarray(scale * rng.standard_normal(int(np.prod(shape))))
            H = np.asarray(hess(v))
            top.append(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    assert max(top) <= L * (1 + 1e-6), (top, L)
    if n_classes == 2 and ridge == 0:  # Böhning's bound is attained at 0 with two classes
        np.testing.assert_allclose(top[0], L, rtol=1e-5)


# ------------------------------------------------------------------ history, passes
@pytest.mark.parametrize(("name", "kwargs"), SOLVER_CASES)
def test_history_and_pass_counting(small, name, kwargs):
    X, y = small
    obj = _objective(X, y, 3, Ridge(), 0.1)
    solver = make_solver(name, {**kwargs, "tol": 1e-6})
    seen = []
    res = minimize(solver, obj, np.zeros((6, 3, 3)), ridge=0.1, callback=seen.append)
    h = res.history
    assert [r.as_dict() for r in seen] == h and len(h) == res.n_iter == res.state.iteration > 0
    assert res.converged and res.state.converged
    assert [e["iteration"] for e in h] == list(range(1, len(h) + 1))
    assert set(h[0]) == {"iteration", "objective", "grad_norm", "gap", "seconds", "passes"}
    passes = [e["passes"] for e in h]
    seconds = [e["seconds"] for e in h]
    assert passes == sorted(passes) and seconds == sorted(seconds)
    assert passes[-1] == obj.n_passes
    assert obj.data.stat_passes == 1  # the second moment, computed once
    assert h[-1]["gap"] <= 1e-6 * max(1.0, abs(h[-1]["objective"]))
    if name == "LBFGS":
        # one pass before the first step, then at least one per step (line-search trials)
        assert passes[-1] >= len(h) + 1
        objs = [e["objective"] for e in h]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(objs))
    else:
        assert passes == list(range(1, len(h) + 1))  # one gradient per step, no line search


def test_preconditioned_lbfgs_converges_in_few_passes():
    X, y, _, _ = make_population(20_000, 20, 4, 3, seed=7)
    for strength in [1.0, 1e-3]:
        obj = _objective(X, y, 3, Ridge(), strength)
        res = minimize(LBFGS(tol=1e-6), obj, np.zeros((21, 4, 3)), ridge=strength)
        assert res.converged, res.history[-1]
        assert obj.n_passes <= 15, (strength, obj.n_passes)
        _theta_ref, f_ref = _scipy_ridge(X, y, 3, strength)
        f_np, _ = _np_ridge(res.theta, X, y, strength)
        assert (f_np - f_ref) <= 2e-6 * abs(f_ref)


# ------------------------------------------------------------------ failures and resuming
class _NaNAfter:
    """Wraps an objective; its value and gradient become NaN after ``good`` passes."""

    def __init__(self, inner, good):
        self.inner, self.good = inner, good
        self.precision, self.smooth = inner.precision, inner.smooth

    @property
    def n_passes(self):
        return self.inner.n_passes

    def value_and_grad(self, theta):
        v, g = self.inner.value_and_grad(theta)
        if self.inner.n_passes > self.good:
            return float("nan"), np.full_like(g, np.nan)
        return v, g

    def value(self, theta):
        return self.inner.value(theta)

    def nonsmooth(self, theta):
        return self.inner.nonsmooth(theta)

    def prox(self, theta, step):
        return self.inner.prox(theta, step)

    def gram(self):
        return self.inner.gram()


@pytest.mark.parametrize(("name", "kwargs"), SOLVER_CASES)
@pytest.mark.parametrize("good", [0, 3])  # NaN from the first pass / after 3 good passes
def test_nan_objective_raises(small, name, kwargs, good):
    X, y = small
    obj = _NaNAfter(_objective(X, y, 3, Ridge(), 0.1), good)
    with pytest.raises(ValueError, match="non-finite"):
        minimize(make_solver(name, kwargs), obj, np.zeros((6, 3, 3)), ridge=0.1)


@pytest.mark.parametrize(("name", "kwargs"), SOLVER_CASES)
def test_minimize_resumes_from_state(small, name, kwargs):
    X, y = small
    theta0 = np.zeros((6, 3, 3))
    full_obj = _objective(X, y, 3, Ridge(), 1e-3)
    full = minimize(make_solver(name, {**kwargs, "maxiter": 40}), full_obj, theta0, ridge=1e-3)
    assert full.n_iter > 3
    obj = _objective(X, y, 3, Ridge(), 1e-3)
    first = minimize(make_solver(name, {**kwargs, "maxiter": 3}), obj, theta0, ridge=1e-3)
    assert first.n_iter == 3 and not first.converged
    second = minimize(
        make_solver(name, {**kwargs, "maxiter": 40}),
        obj,
        first.theta,
        state=first.state,
        ridge=1e-3,  # the context (preconditioner, step bound) is rebuilt from the problem
    )
    # the resumed run continues the same sequence of iterates: same count, same end point
    assert [e["iteration"] for e in second.history] == list(range(4, full.n_iter + 1))
    assert second.n_iter == full.n_iter and second.converged == full.converged
    np.testing.assert_allclose(second.theta, full.theta, rtol=1e-10, atol=1e-12)
    assert obj.n_passes == full_obj.n_passes


@pytest.mark.parametrize("name", ["LBFGS", "GradientDescent", "Newton"])
def test_estimator_in_float64_mode_reaches_tol_against_scipy(small, name):
    """With jax_enable_x64 on (as nemos' tests run), the fit's kernels are float64 and the
    float32 stopping floor does not apply: a tol of 1e-10 is reached."""
    from distglm import ClassifierPopulationGLM

    X, y = small
    strength = 1e-2
    theta_ref, f_ref = _scipy_ridge(X, y, 3, strength)
    with jax.enable_x64(True):
        model = ClassifierPopulationGLM(
            3,
            regularizer="Ridge",
            regularizer_strength=strength,
            solver_name=name,
            solver_kwargs={"tol": 1e-10, "maxiter": 20000},
        ).fit(X, y)
        assert np.asarray(model.coef_).dtype == np.float64
    theta = np.concatenate([model.coef_, np.asarray(model.intercept_)[None]])
    f_np, _ = _np_ridge(theta, X, y, strength)
    assert f_np - f_ref <= 1e-10 * abs(f_ref), (f_np - f_ref, name)
    np.testing.assert_allclose(_centred(theta), _centred(theta_ref), atol=1e-5)


class _RoundedQuadratic:
    """``0.5 (x - x*)' A (x - x*) + 10`` whose value is rounded to 1e-6 of itself (as float32
    sums round a loss) while its gradient is exact: a stand-in for a float32 objective near
    its optimum, where the decrease left is far below the value's rounding."""

    precision = 8 * float(np.finfo(np.float32).eps)
    smooth = True

    def __init__(self, shape, seed=0):
        rng = np.random.default_rng(seed)
        self.n_passes = 0
        n = int(np.prod(shape))
        Q = rng.standard_normal((n, n))
        self.A = Q @ Q.T / n + np.diag(np.linspace(0.1, 3.0, n))
        self.x_star = rng.standard_normal(shape)

    def _exact(self, theta):
        e = (theta - self.x_star).ravel()
        return 0.5 * float(e @ self.A @ e) + 10.0, (self.A @ e).reshape(theta.shape)

    def value_and_grad(self, theta):
        self.n_passes += 1
        f, g = self._exact(theta)
        return float(np.round(f, 5)), g

    def value(self, theta):
        return self.value_and_grad(theta)[0]

    def nonsmooth(self, theta):
        return 0.0

    def prox(self, theta, step):
        return theta

    def gram(self):
        raise AssertionError("not preconditioned")


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_lbfgs_stops_on_two_successive_estimates_within_tol(small, tol):
    # One estimate of the gap can understate it 3x, so L-BFGS stops only once the estimates
    # before and after a step are both within tol: the last two iterates' are, and the fit
    # went on past the first iterate whose estimate was (before, it stopped there).
    X, y = small
    obj = _objective(X, y, 3, Ridge(), 0.1)
    res = minimize(make_solver("LBFGS", {"tol": tol}), obj, np.zeros((6, 3, 3)), ridge=0.1)
    h = res.history
    within = [e["gap"] <= tol * max(1.0, abs(e["objective"])) for e in h]
    assert res.converged and len(h) >= 2 and within[-2:] == [True, True], h
    assert not any(a and b for a, b in itertools.pairwise(within[:-1])), within


@pytest.mark.parametrize("tol", [1e-9, 1e-12])
def test_lbfgs_reaches_tol_below_the_rounding_of_the_objective(tol):
    # The true gap at the end is within tol although the value's rounding (1e-5 absolute, 1e-6
    # relative) is far above it: the line search and the stopping rule read the decrease from
    # the exact gradient. Armijo on the rounded value alone stalled near a 1e-6 gap.
    shape = (4, 3, 2)
    obj = _RoundedQuadratic(shape)
    result = minimize(LBFGS(tol=tol, precondition=False, maxiter=500), obj, np.zeros(shape))
    assert result.state.converged, result.state
    true_gap = obj._exact(result.theta)[0] - 10.0
    assert true_gap <= tol * 10.0, (true_gap, result.state.gap)
