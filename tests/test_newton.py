"""Per-output Newton: the one-pass kernel, the solver, output drop-out and ``solver_name="auto"``.

Oracles: ``jax.hessian`` / :func:`~distglm.kernels.softmax.nll_value_and_grad_sums` in float64
for the kernel; for the solver, the reference solvers (L-BFGS for smooth penalties, FISTA for the
others) run to a tight tolerance, both optima compared through the same float64 evaluation of
the penalised objective ``sum_k mean_n nll + regularizer.penalty(coef)``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import distglm
from distglm.cli import make_population
from distglm.kernels.compiled import output_bucket, pad_outputs
from distglm.kernels.newton import (
    assemble_hessian,
    class_pairs,
    newton_pass_outputs,
    newton_pass_sums,
)
from distglm.kernels.softmax import nll_sums, nll_value_and_grad_sums
from distglm.regularizer import GroupLasso, Lasso, Ridge
from distglm.solve import (
    LBFGS,
    InMemoryData,
    PassFacts,
    PenalizedObjective,
    Penalty,
    ProblemFacts,
    ProximalGradient,
    SolverState,
    check_solver_kwargs,
    make_solver,
    minimize,
)
from distglm.solve import memory as memory_module
from distglm.solve.choose import choose_solver
from distglm.solve.newton import Newton, default_hessian_rows, hessian_stride

from helpers import softmax_labels

# jitted once here: one executable per shape (the hypothesis tests keep to a few shapes)
_NEWTON = jax.jit(newton_pass_sums, static_argnames=("hess_stride", "block_rows"))
_NLL = jax.jit(nll_sums, static_argnames="block_rows")
_NLL_VG = jax.jit(nll_value_and_grad_sums, static_argnames="block_rows")

TIGHT = {"tol": 1e-12, "maxiter": 20_000}


@pytest.fixture
def x64():
    """float64 in JAX for the test only (the setting is restored afterwards)."""
    with jax.enable_x64(True):
        yield


def _identity(x):
    return x


# ---------------------------------------------------------------------------- kernel problems
def _kernel_problem(n=64, p=3, k=3, c=3, seed=0, per_output=False, n_trials=3):
    """float64 numpy inputs of :func:`newton_pass_sums` (padding-free, weights in [0, 2])."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    coef = 0.6 * rng.standard_normal((p, k, c))
    intercept = 0.4 * rng.standard_normal((k, c))
    d_coef = 0.5 * rng.standard_normal((p, k, c))
    d_intercept = 0.3 * rng.standard_normal((k, c))
    y = rng.integers(0, c, (n, k)).astype(np.int32)
    if per_output:
        w = rng.uniform(0.0, 2.0, (n, k))
        w[rng.random((n, k)) < 0.2] = 0.0  # outputs not recorded on some rows
    else:
        w = rng.uniform(0.0, 2.0, n)
    steps = rng.uniform(0.05, 1.0, (n_trials, k))
    t_eval = rng.uniform(0.0, 1.0, k)
    return (coef, intercept), (d_coef, d_intercept), X, y, w, steps, t_eval


def _jnp(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def _at(params, direction, t):
    """``params + t * direction`` with one step per output, ``t`` of shape (k,)."""
    t = np.asarray(t, np.float64)
    return params[0] + t[None, :, None] * direction[0], params[1] + t[:, None] * direction[1]


def _run_kernel(prob, hess_stride=1, block_rows=None):
    params, direction, X, y, w, steps, t_eval = prob
    out = _NEWTON(
        _jnp(params),
        _jnp(direction),
        jnp.asarray(X),
        jnp.asarray(y),
        jnp.asarray(w),
        jnp.asarray(steps),
        jnp.asarray(t_eval),
        hess_stride=hess_stride,
        block_rows=block_rows,
    )
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)


def _output_nll(v, X, y1, w1, c):
    """Weighted NLL sum of one output, ``v = theta[:, j, :].ravel()`` (feature rows, intercept)."""
    prm = (v[:-c].reshape(X.shape[1], 1, c), v[-c:].reshape(1, c))
    return nll_sums(prm, X, y1[:, None], w1, None)[0]


@functools.cache
def _output_hessian(c):
    return jax.jit(jax.hessian(functools.partial(_output_nll, c=c)))


def _hessian_reference(params, X, y, w):
    """``jax.hessian`` of each output's weighted NLL sum, ordered as ``theta[:, j, :].ravel()``."""
    coef, intercept = params
    _, k, c = coef.shape
    blocks = []
    for j in range(k):
        wj = w if w.ndim == 1 else w[:, j]
        theta_j = np.concatenate([coef[:, j, :], intercept[j][None]], axis=0).ravel()
        blocks.append(np.asarray(_output_hessian(c)(theta_j, X, y[:, j], wj)))
    return np.stack(blocks)


def _assert_same_sums(a, b, rtol=1e-10, atol=1e-10):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- 1. kernel oracles
def test_class_pairs_order():
    assert class_pairs(2) == [(0, 0)]
    assert class_pairs(3) == [(0, 0), (0, 1), (1, 1)]
    assert len(class_pairs(5)) == 5 * 4 // 2


@pytest.mark.slow
@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_pass_matches_jax_oracles(x64, n_classes, per_output):
    """Trials, loss, gradient and the assembled Hessian blocks against float64 autodiff."""
    prob = _kernel_problem(c=n_classes, per_output=per_output, seed=n_classes)
    params, direction, X, y, w, steps, t_eval = prob
    trial, loss, (gc, gb), pairs, hw = _run_kernel(prob)
    k, c = y.shape[1], n_classes
    assert trial.shape == steps.shape and loss.shape == (k,)
    assert pairs.shape == (len(class_pairs(c)), k, X.shape[1] + 1, X.shape[1] + 1)
    assert pairs.dtype == np.float64

    # trial losses: the NLL sums at each output's own trial step
    for i in range(steps.shape[0]):
        expected = np.asarray(_NLL(_jnp(_at(params, direction, steps[i])), X, y, w, None))
        np.testing.assert_allclose(trial[i], expected, rtol=1e-11)
    # loss and gradient at params + t_eval * direction
    point = _at(params, direction, t_eval)
    ref_loss, (ref_gc, ref_gb) = _NLL_VG(_jnp(point), X, y, w, None)
    np.testing.assert_allclose(loss, np.asarray(ref_loss), rtol=1e-12)
    np.testing.assert_allclose(gc, np.asarray(ref_gc), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, np.asarray(ref_gb), rtol=1e-10, atol=1e-12)
    # Hessian blocks at the same point, row-major over (feature row incl. intercept, class)
    H = assemble_hessian(pairs, c)
    assert H.shape == (k, (X.shape[1] + 1) * c, (X.shape[1] + 1) * c)
    H_ref = _hessian_reference(point, X, y, w)
    np.testing.assert_allclose(H, H_ref, rtol=1e-10, atol=1e-10 * np.abs(H_ref).max())
    np.testing.assert_allclose(H, np.transpose(H, (0, 2, 1)), atol=1e-12)
    np.testing.assert_allclose(hw, np.broadcast_to(w.sum(axis=0), (k,)), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_blocked_pass_equals_unblocked(x64, n_classes, per_output):
    prob = _kernel_problem(n=64, c=n_classes, per_output=per_output, seed=11)
    _assert_same_sums(_run_kernel(prob, block_rows=16), _run_kernel(prob, block_rows=None))


@pytest.mark.slow
@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize(
    ("stride", "block_rows"), [(2, None), (4, None), (2, 16), (4, 16), (4, 32)]
)
def test_hessian_stride_uses_every_sth_row(x64, stride, block_rows, per_output):
    """The Hessian on stride ``s`` equals the Hessian of rows ``X[::s]``; the rest is unchanged."""
    prob = _kernel_problem(n=64, c=3, per_output=per_output, seed=5)
    params, direction, X, y, w, steps, t_eval = prob
    trial, loss, grad, pairs, hw = _run_kernel(prob, hess_stride=stride, block_rows=block_rows)
    full = _run_kernel(prob, hess_stride=1, block_rows=None)
    sub = _run_kernel(
        (params, direction, X[::stride], y[::stride], w[::stride], steps, t_eval), block_rows=None
    )
    # loss, trials and gradient still use every row
    _assert_same_sums((trial, loss, grad), full[:3])
    np.testing.assert_allclose(pairs, sub[3], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hw, sub[4], rtol=1e-12)
    np.testing.assert_allclose(hw, np.broadcast_to(w[::stride].sum(axis=0), hw.shape), rtol=1e-12)
    assert not np.allclose(pairs, full[3])  # the stride did leave rows out


# ---------------------------------------------------------------------------- 2. properties
@st.composite
def _chunked(draw, n=12):
    """A Hessian stride and cut points that are multiples of it."""
    stride = draw(st.sampled_from([1, 2, 3]))
    cuts = draw(st.lists(st.sampled_from(range(stride, n, stride)), max_size=4, unique=True))
    return stride, [0, *sorted(cuts), n]


def _padded_to(prob, n):
    """The rows of ``prob`` followed by weight-0 rows up to ``n`` (one compiled shape)."""
    params, direction, X, y, w, steps, t_eval = prob
    pad = n - X.shape[0]
    return (
        params,
        direction,
        np.concatenate([X, np.zeros((pad, X.shape[1]))]),
        np.concatenate([y, np.zeros((pad, y.shape[1]), y.dtype)]),
        np.concatenate([w, np.zeros((pad, *w.shape[1:]))]),
        steps,
        t_eval,
    )


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(split=_chunked(), seed=st.integers(0, 2**16), per_output=st.booleans())
def test_sums_add_over_chunks(split, seed, per_output):
    """Every output of the pass is a sum over rows: chunks add up to the whole (float64).

    Each chunk is evaluated on its own, its rows first (so its Hessian rows are its own rows
    0, s, 2s, ...), padded with weight-0 rows to one shape.
    """
    stride, bounds = split
    n = bounds[-1]
    with jax.enable_x64(True):
        prob = _kernel_problem(n=n, p=2, k=2, c=3, seed=seed, per_output=per_output, n_trials=2)
        params, direction, X, y, w, steps, t_eval = prob
        whole = _run_kernel(prob, hess_stride=stride)
        parts = [
            _run_kernel(
                _padded_to((params, direction, X[a:b], y[a:b], w[a:b], steps, t_eval), n),
                hess_stride=stride,
            )
            for a, b in itertools.pairwise(bounds)
        ]
    total = jax.tree_util.tree_map(lambda *xs: sum(xs), *parts)
    _assert_same_sums(total, whole, rtol=1e-10, atol=1e-12)


_NEWTON_OUTPUTS = jax.jit(newton_pass_outputs, static_argnames=("hess_stride", "block_rows"))


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(
    outputs=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
    per_output=st.booleans(),
    stride=st.sampled_from([1, 2]),
)
def test_pass_on_output_subset_equals_columns_of_full(outputs, seed, per_output, stride):
    """``newton_pass_outputs`` on label columns ``outputs`` (any order, repeats allowed, as
    the padding of output buckets makes them) equals those columns of the full pass."""
    with jax.enable_x64(True):
        prob = _kernel_problem(n=16, p=2, k=4, c=3, seed=seed, per_output=per_output, n_trials=2)
        params, direction, X, y, w, steps, t_eval = prob
        full = _run_kernel(prob, hess_stride=stride)
        idx = np.asarray(outputs)
        sub = _NEWTON_OUTPUTS(
            _jnp((params[0][:, idx], params[1][idx])),
            _jnp((direction[0][:, idx], direction[1][idx])),
            jnp.asarray(X),
            jnp.asarray(y),
            jnp.asarray(w),
            jnp.asarray(idx),
            jnp.asarray(steps[:, idx]),
            jnp.asarray(t_eval[idx]),
            hess_stride=stride,
            block_rows=None,
        )
        sub = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), sub)
    trial, loss, (gc, gb), pairs, hw = full
    expected = (trial[:, idx], loss[idx], (gc[:, idx], gb[idx]), pairs[:, idx], hw[idx])
    _assert_same_sums(sub, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- 3. padding
@pytest.mark.slow
@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_weight_padding_and_padding_blocks(x64, per_output, stride):
    """Rows of weight 0 change nothing; blocks of padding only are skipped, not computed.

    The rows padding the last real block hold huge values; the blocks made of padding only
    hold NaN, which would poison the sums if those blocks were evaluated.
    """
    prob = _kernel_problem(n=20, c=3, per_output=per_output, seed=3)
    params, direction, X, y, w, steps, t_eval = prob
    rng = np.random.default_rng(9)
    n, block, total = 20, 16, 64
    Xp = np.full((total, X.shape[1]), np.nan)
    Xp[:n] = X
    Xp[n:32] = 1e3 * rng.standard_normal((32 - n, X.shape[1]))
    yp = rng.integers(0, 3, (total, y.shape[1])).astype(np.int32)
    yp[:n] = y
    wp = np.zeros((total, *w.shape[1:]))
    wp[:n] = w
    padded = (params, direction, Xp, yp, wp, steps, t_eval)
    expected = _run_kernel(prob, hess_stride=stride, block_rows=None)
    _assert_same_sums(_run_kernel(padded, hess_stride=stride, block_rows=block), expected)
    # the same padding, unblocked, on the finite part (rows 20..31)
    finite = (params, direction, Xp[:32], yp[:32], wp[:32], steps, t_eval)
    _assert_same_sums(_run_kernel(finite, hess_stride=stride, block_rows=None), expected)


# ---------------------------------------------------------------------------- objective's pass
@pytest.mark.slow
@pytest.mark.parametrize("outputs", [[0, 1, 2], [0, 2], [1]])
def test_objective_newton_pass_matches_autodiff(x64, outputs):
    """``PenalizedObjective.newton_pass`` (padded rows, output buckets, per-output means, Ridge
    curvature, mask projection) against ``jax.hessian`` of each output's objective."""
    rng = np.random.default_rng(4)
    n, p, k, c = 200, 3, 3, 3
    X = rng.standard_normal((n, p))
    y = rng.integers(0, c, (n, k))
    w = rng.uniform(0.5, 1.5, (n, k))
    strength = rng.uniform(0.01, 0.5, (p, k, c))
    mask = np.ones((p, k, c))
    mask[1, 0] = 0.0
    mask[2, 2, 1] = 0.0
    data = InMemoryData(X, y, c, weights=w, dtype=np.float64, block_rows=64)  # pads to 256
    obj = PenalizedObjective(data, Penalty(Ridge(), strength, _identity, _identity, mask=mask))
    theta = 0.3 * rng.standard_normal((p + 1, k, c))
    theta[:-1] *= mask
    direction = 0.2 * rng.standard_normal((p + 1, k, c))
    direction[:-1] *= mask
    idx = np.asarray(outputs)
    steps = rng.uniform(0.1, 1.0, (2, idx.size))
    t_eval = rng.uniform(0.0, 1.0, idx.size)
    trial, value, grad, hess = obj.newton_pass(theta, direction, idx, steps, t_eval, 1)
    assert obj.n_passes == 1
    assert trial.shape == (2, idx.size) and value.shape == (idx.size,)
    assert grad.shape == (p + 1, idx.size, c) and hess.shape == (idx.size, (p + 1) * c, (p + 1) * c)

    def output_objective(v, yj, wj, sj):
        th = v.reshape(p + 1, c)
        prm = (th[:-1][:, None, :], th[-1][None, :])
        data_sum = nll_sums(prm, jnp.asarray(X), yj[:, None], wj)
        return data_sum[0] / jnp.sum(wj) + 0.5 * jnp.sum(sj * th[:-1] ** 2)

    value_of = jax.jit(output_objective)
    grad_of = jax.jit(jax.grad(output_objective))
    hessian_of = jax.jit(jax.hessian(output_objective))

    for i, j in enumerate(idx):
        col = (y[:, j], w[:, j], strength[:, j])
        for s in range(2):
            v = (theta[:, j] + steps[s, i] * direction[:, j]).ravel()
            np.testing.assert_allclose(trial[s, i], float(value_of(v, *col)), rtol=1e-12)
        v = (theta[:, j] + t_eval[i] * direction[:, j]).ravel()
        np.testing.assert_allclose(value[i], float(value_of(v, *col)), rtol=1e-12)
        g = np.array(grad_of(v, *col)).reshape(p + 1, c)
        g[:-1] *= mask[:, j]  # the gradient is projected onto the mask
        np.testing.assert_allclose(grad[:, i], g, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hess[i], np.asarray(hessian_of(v, *col)), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- 4. solver optimum
P, K, C = 4, 3, 3


@pytest.fixture(scope="module")
def population():
    X, y, _, _ = make_population(5000, P, K, C, seed=0)
    return X, y


def _within_output_groups():
    """Two feature groups per output, each within one output (all classes)."""
    mask = np.zeros((2 * K, P, K, C))
    for j in range(K):
        mask[2 * j, :2, j] = 1
        mask[2 * j + 1, 2:, j] = 1
    return GroupLasso(mask=mask), np.tile([1e-2, 5e-2], K)


def _across_output_groups():
    """Two feature groups spanning every output, as in tests/test_estimator.py."""
    mask = np.zeros((2, P, K, C))
    mask[0, :2] = 1
    mask[1, 2:] = 1
    return GroupLasso(mask=mask), np.array([1e-2, 5e-2])


def _feature_mask():
    mask = np.ones((P, K, C))
    mask[1, 0] = 0
    mask[3, 2, 1] = 0
    mask[0, 1] = 0
    return mask


def _penalised(model, X, y, params=None):
    """``sum_k mean_n nll + penalty`` at the model's coefficients (or ``params``), in float64."""
    coef, b = (model.coef_, model.intercept_) if params is None else params
    with jax.enable_x64(True):
        pen = model.regularizer.penalty(jnp.asarray(coef, jnp.float64), model.regularizer_strength)
    coef, b, y = np.asarray(coef, np.float64), np.asarray(b, np.float64), np.asarray(y)
    if coef.ndim == 2:  # ClassifierGLM
        coef, b, y = coef[:, None], b[None], y[:, None]
    eta = np.einsum("np,pkc->nkc", np.asarray(X, np.float64), coef) + b
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    nll = lse - np.take_along_axis(eta, y[..., None], axis=-1)[..., 0]
    return float(nll.mean(axis=0).sum()) + float(pen)


def _fit(X, y, regularizer, strength, solver, kwargs=None, mask=None, strict=True):
    model = distglm.ClassifierPopulationGLM(
        C,
        regularizer=regularizer,
        regularizer_strength=strength,
        solver_name=solver,
        solver_kwargs=kwargs,
        feature_mask=mask,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # GroupLasso without a mask
        if strict:
            warnings.simplefilter("error", RuntimeWarning)  # "did not converge"
        return model.fit(X, y)


SOLVER_CASES = {
    "UnRegularized": ("UnRegularized", None, None),
    "Ridge-1": ("Ridge", 1.0, None),
    "Ridge-1e-3": ("Ridge", 1e-3, None),
    "Ridge-per-coefficient": ("Ridge", np.linspace(1e-3, 0.3, P * K * C).reshape(P, K, C), None),
    "Lasso": ("Lasso", 1e-2, None),
    "ElasticNet": ("ElasticNet", (1e-2, 0.5), None),
    "GroupLasso-within-outputs": (*_within_output_groups(), None),
    "GroupLasso-default-groups": ("GroupLasso", 1e-2, None),
    "UnRegularized-masked": ("UnRegularized", None, _feature_mask()),
    "Ridge-masked": ("Ridge", 1e-2, _feature_mask()),
    "Lasso-masked": ("Lasso", 1e-2, _feature_mask()),
    "GroupLasso-masked": (*_within_output_groups(), _feature_mask()),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SOLVER_CASES))
def test_newton_reaches_reference_optimum(population, case):
    X, y = population
    reg, strength, mask = SOLVER_CASES[case]
    smooth = reg in ("UnRegularized", "Ridge")
    ref_name = "LBFGS" if smooth else "ProximalGradient"
    ref = _fit(X, y, reg, strength, ref_name, TIGHT, mask, strict=False)
    model = _fit(X, y, reg, strength, "Newton", None, mask)
    assert model.solver_ == "Newton" and ref.solver_ == ref_name
    f_ref, f_newton = _penalised(ref, X, y), _penalised(model, X, y)
    assert abs(f_newton - f_ref) <= 1e-6 * abs(f_ref), (case, f_newton, f_ref, model.n_passes_)
    # the fit's own record is the objective at the returned coefficients (float32 sums)
    np.testing.assert_allclose(model.fit_history_[-1]["objective"], f_newton, rtol=1e-5)
    assert model.n_passes_ == model.fit_history_[-1]["passes"] == len(model.fit_history_)
    assert {"objective", "gap", "passes", "seconds"} <= set(model.fit_history_[0])
    if mask is not None:
        assert np.all(np.asarray(model.coef_)[mask == 0] == 0.0)
        assert np.all(np.asarray(model.coef_)[mask == 1] != 0.0) or not smooth


@pytest.mark.parametrize(
    ("regularizer", "tol"), [("Ridge", 1e-8), ("Ridge", 1e-9), ("Lasso", 1e-9)]
)
def test_float32_newton_reaches_tol_below_the_rounding_of_its_sums(regularizer, tol):
    """A float32 fit ends within ``tol`` of the float64 optimum even where a step's decrease is
    below the rounding of the float32 sums (their precision here is ~1e-6 of the objective):
    such a step is taken on the approximate Wolfe conditions read from the gradient. Before,
    Armijo on the rounded value refused it and the output dropped out: 1.2e-8 to 1.4e-8 above
    the optimum on this problem at every tol."""
    X, y, _, _ = make_population(20000, 20, 6, 3, seed=5)

    def fit(tol):
        return _fit(X, y, regularizer, 1e-3, "Newton", {"tol": tol})

    with jax.enable_x64(True):
        f_star = _penalised(fit(1e-13), X, y)
    model = fit(tol)
    assert np.asarray(model.coef_).dtype == np.float32
    gap = (_penalised(model, X, y) - f_star) / abs(f_star)
    assert gap <= tol, (gap, model.n_passes_)


def test_group_lasso_groups_spanning_outputs(population):
    """GroupLasso groups may span outputs (one norm over several outputs' coefficients), as the
    user-facing mask allows. The penalty is then no sum over outputs: Newton, which steps each
    output on its own, refuses it with a clear error, and "auto" (which would pick Newton on
    this many rows) picks ProximalGradient and reaches the optimum."""
    X, y, _, _ = make_population(16 * default_hessian_rows((P + 1) * C), P, K, C, seed=0)
    reg, strength = _across_output_groups()
    with pytest.raises(ValueError, match=r"sum over outputs.*GroupLasso.*span outputs"):
        _fit(X, y, reg, strength, "Newton")
    ref = _fit(X, y, reg, strength, "ProximalGradient", TIGHT, strict=False)
    model = _fit(X, y, reg, strength, "auto", strict=False)
    assert model.solver_ == "ProximalGradient"
    f_ref, f_auto = _penalised(ref, X, y), _penalised(model, X, y)
    assert abs(f_auto - f_ref) <= 1e-6 * abs(f_ref), (model.solver_, f_auto, f_ref)
    # separable GroupLasso (groups within one output) still goes to Newton
    facts = ProblemFacts(
        smooth=False, n_features=P, n_classes=C, n_outputs=K, passes=PassFacts(read_seconds=1.0)
    )
    assert choose_solver(facts) == "Newton"
    assert choose_solver(dataclasses.replace(facts, separable=False)) == "ProximalGradient"


def test_classifier_glm_single_output(population):
    X, y = population
    y1 = y[:, 0]
    kw = {"regularizer": "Ridge", "regularizer_strength": 1e-2}
    ref = distglm.ClassifierGLM(C, **kw, solver_name="LBFGS", solver_kwargs=TIGHT).fit(X, y1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = distglm.ClassifierGLM(C, **kw, solver_name="Newton").fit(X, y1)
    assert model.coef_.shape == (P, C) and model.intercept_.shape == (C,)
    f_ref, f_newton = _penalised(ref, X, y1), _penalised(model, X, y1)
    assert abs(f_newton - f_ref) <= 1e-6 * abs(f_ref)
    # float32 fits: the optimum's parameters are resolved to about 1e-4
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=5e-3)


# ---------------------------------------------------------------------------- 5. few passes
@pytest.fixture(scope="module")
def well_conditioned():
    X, y, _, _ = make_population(20_000, 10, 5, 3, seed=0)
    return X, y


@pytest.mark.slow
@pytest.mark.parametrize("strength", [1e-3, 1.0])
def test_newton_converges_in_few_passes(well_conditioned, strength):
    X, y = well_conditioned
    model = distglm.ClassifierPopulationGLM(
        3, regularizer="Ridge", regularizer_strength=strength, solver_name="Newton"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(X, y)
    assert model.solver_state_.converged
    assert model.n_passes_ <= 10, model.n_passes_
    # 20,000 rows, D = 33: the Hessian is estimated on every other row (8,192 rows at least)
    codes = np.searchsorted(model.classes_, y)
    obj = PenalizedObjective(
        InMemoryData(X, codes, 3), Penalty(Ridge(), strength, _identity, _identity)
    )
    assert Newton().prepare(obj, np.zeros((X.shape[1] + 1, y.shape[1], 3))).stride == 2
    ref = distglm.ClassifierPopulationGLM(
        3,
        regularizer="Ridge",
        regularizer_strength=strength,
        solver_name="LBFGS",
        solver_kwargs=TIGHT,
    ).fit(X, y)
    f_ref, f_newton = _penalised(ref, X, y), _penalised(model, X, y)
    assert f_newton - f_ref <= 1e-6 * abs(f_ref), (f_newton, f_ref)


@pytest.mark.parametrize("regularizer", [Lasso(), GroupLasso()])
def test_proximal_newton_converges_in_few_passes(x64, population, regularizer):
    """With exact Hessians (5,000 rows: stride 1) and float64 sums, proximal Newton converges
    superlinearly near the optimum: a handful of passes, as for the smooth penalties."""
    X, y = population
    obj = PenalizedObjective(
        InMemoryData(X, y, C, dtype=np.float64), Penalty(regularizer, 1e-2, _identity, _identity)
    )
    theta0 = np.zeros((P + 1, K, C))
    res = minimize(Newton(tol=1e-10), obj, theta0)
    assert res.converged
    assert obj.n_passes <= 8, [f"{e['gap']:.1e}" for e in res.history]
    ref_obj = PenalizedObjective(
        InMemoryData(X, y, C, dtype=np.float64), Penalty(regularizer, 1e-2, _identity, _identity)
    )
    ref = minimize(ProximalGradient(tol=1e-14, maxiter=50_000), ref_obj, theta0)
    f_ref = ref_obj.value(ref.theta) + ref_obj.nonsmooth(ref.theta)
    f_newton = obj.value(res.theta) + obj.nonsmooth(res.theta)
    assert abs(f_newton - f_ref) <= 1e-9 * abs(f_ref)


def test_step_leaves_the_previous_state_untouched(population):
    """Explicit state: a step returns a new state and does not write into the one it was given
    (the coordinator may keep it, resume from it, or compare with it)."""
    X, y = population
    obj = PenalizedObjective(InMemoryData(X, y, C), Penalty(Ridge(), 1e-2, _identity, _identity))
    solver = Newton()
    theta = np.zeros((P + 1, K, C))
    context = solver.prepare(obj, theta)
    state = solver.init(context, theta)
    theta, state = solver.step(obj, context, theta, state)
    fields = [f.name for f in dataclasses.fields(state)]
    snapshot = {
        k: getattr(state, k).copy() for k in fields if isinstance(getattr(state, k), np.ndarray)
    }
    solver.step(obj, context, theta, state)
    changed = [k for k, v in snapshot.items() if not np.array_equal(getattr(state, k), v)]
    assert changed == [], f"step wrote into the previous state's arrays {changed}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.iteration = 0


# ---------------------------------------------------------------------------- 6. drop-out
def test_output_bucket_sizes():
    for n in range(1, 70):
        sizes = [n]
        while sizes[-1] > 1:
            sizes.append(-(-sizes[-1] // 4))
        assert sizes[1:2] in ([], [math.ceil(n / 4)])
        for active in range(1, n + 1):
            size = output_bucket(active, n)
            assert size in sizes and size >= active
            smaller = [s for s in sizes if s < size]
            # the smallest bucket that holds every active output
            assert not smaller or max(smaller) < active
    assert output_bucket(20, 20) == 20
    assert output_bucket(6, 20) == 20
    assert output_bucket(5, 20) == 5
    assert output_bucket(2, 20) == 2
    assert output_bucket(1, 20) == 1
    assert output_bucket(1, 1) == 1


def test_pad_outputs_repeats_last_index():
    np.testing.assert_array_equal(pad_outputs([1, 4, 7], 8), [1, 4, 7, 7, 7, 7, 7, 7])
    np.testing.assert_array_equal(pad_outputs([3, 5], 8), [3, 5])
    np.testing.assert_array_equal(pad_outputs([6], 8), [6])
    np.testing.assert_array_equal(pad_outputs(np.arange(20), 20), np.arange(20))
    out = pad_outputs([0, 2, 9, 11, 12, 13], 20)
    assert out.dtype == np.int32 and out.size == 20
    np.testing.assert_array_equal(out[:6], [0, 2, 9, 11, 12, 13])
    np.testing.assert_array_equal(out[6:], 13)


@pytest.fixture(scope="module")
def uneven():
    """8 outputs: 6 with labels unrelated to X and a strong Ridge (quick to converge), 2 with
    strong effects and a weak Ridge (slow)."""
    rng = np.random.default_rng(0)
    n, p, k, c = 4000, 4, 8, 3
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = np.zeros((p, k, c))
    W[:, 6:] = 2.5 * rng.standard_normal((p, 2, c))
    y = softmax_labels(rng, X, W, np.zeros((k, c)))
    strength = np.full((p, k, c), 1.0)
    strength[:, 6:] = 1e-4
    return X, y, strength


@pytest.mark.slow
def test_converged_outputs_drop_out_of_passes(uneven, monkeypatch):
    X, y, strength = uneven
    k = y.shape[1]
    passes, compiled = [], []
    newton_pass = PenalizedObjective.newton_pass

    def recording_pass(self, theta, direction, outputs, *args):
        passes.append(np.asarray(outputs).copy())
        return newton_pass(self, theta, direction, outputs, *args)

    kernel = memory_module.NEWTON_PASS

    def recording_kernel(*args, **kwargs):
        compiled.append(int(args[5].shape[0]))  # the padded output indices
        return kernel(*args, **kwargs)

    monkeypatch.setattr(PenalizedObjective, "newton_pass", recording_pass)
    monkeypatch.setattr(memory_module, "NEWTON_PASS", recording_kernel)
    obj = PenalizedObjective(
        InMemoryData(X, y, 3), Penalty(Ridge(), strength, _identity, _identity)
    )
    res = minimize(Newton(), obj, np.zeros((5, k, 3)))
    assert res.converged
    sizes = [a.size for a in passes]
    assert sizes[0] == k and sizes == sorted(sizes, reverse=True), sizes
    assert sizes[-1] <= 2, sizes  # the six quick outputs left, the passes go on without them
    assert set(passes[-1]) <= {6, 7}
    assert not res.state.active[:6].any()
    for active, size in zip(passes, compiled, strict=True):
        assert size == output_bucket(active.size, k)
    assert compiled[-1] == 2  # a quarter of the outputs (rounded up) or fewer: a cheaper pass
    # and the optimum is still reached, for every output
    ref_obj = PenalizedObjective(
        InMemoryData(X, y, 3), Penalty(Ridge(), strength, _identity, _identity)
    )
    ref = minimize(LBFGS(**TIGHT), ref_obj, np.zeros((5, k, 3)), ridge=0.0)
    with jax.enable_x64(True):
        exact = PenalizedObjective(
            InMemoryData(X, y, 3, dtype=np.float64),
            Penalty(Ridge(), strength, _identity, _identity),
        )
        f_newton, f_ref = exact.value(res.theta), exact.value(ref.theta)
    assert f_newton - f_ref <= 1e-6 * abs(f_ref), (f_newton, f_ref)


def test_per_output_weights(population):
    """2-D weights (rows where an output was not recorded have weight 0), as sessions give."""
    X, y = population
    rng = np.random.default_rng(8)
    w = rng.uniform(0.5, 1.5, y.shape)
    w[rng.random(y.shape) < 0.3] = 0.0
    w[:, 2] = 0.0
    w[:1000, 2] = 1.0  # one output recorded on a fifth of the rows

    def objective(dtype=np.float32):
        data = InMemoryData(X, y, C, weights=w, dtype=dtype)
        return PenalizedObjective(data, Penalty(Ridge(), 1e-2, _identity, _identity))

    theta0 = np.zeros((P + 1, K, C))
    res = minimize(Newton(), objective(), theta0)
    ref = minimize(LBFGS(**TIGHT), objective(), theta0, ridge=1e-2)
    assert res.converged
    with jax.enable_x64(True):
        exact = objective(np.float64)
        f_newton, f_ref = exact.value(res.theta), exact.value(ref.theta)
    assert f_newton - f_ref <= 1e-6 * abs(f_ref), (f_newton, f_ref)


def test_empty_hessian_sample_raises(population):
    """An output recorded only on rows the Hessian stride skips cannot be given a Hessian."""
    X, y = population
    w = np.ones(y.shape)
    w[::2, 1] = 0.0  # output 1: odd rows only; a stride of 2 keeps the even rows
    obj = PenalizedObjective(
        InMemoryData(X, y, C, weights=w), Penalty(Ridge(), 1e-2, _identity, _identity)
    )
    solver = Newton(hessian_rows=2000)
    assert solver.prepare(obj, np.zeros((P + 1, K, C))).stride == 2
    with pytest.raises(ValueError, match=r"Hessian subsample holds no rows of output\(s\) \[1\]"):
        minimize(solver, obj, np.zeros((P + 1, K, C)))


def test_stopping_rule_of_a_converged_fit(uneven):
    """A fit reported converged has met ``tol`` (summed gap estimate), has every output dropped
    out, or has stalled: its objective stopped moving (change <= 1e-7 relative) at the float32
    precision floor. It does not stop while the last pass still moved the objective."""
    X, y, strength = uneven
    k = y.shape[1]
    obj = PenalizedObjective(
        InMemoryData(X, y, 3), Penalty(Ridge(), strength, _identity, _identity)
    )
    solver = Newton()
    res = minimize(solver, obj, np.zeros((5, k, 3)))
    assert res.converged
    last, before = res.history[-1], res.history[-2]
    scale = max(1.0, abs(last["objective"]))
    met_tol = last["gap"] <= solver.tol * scale
    all_out = not res.state.active.any()
    stalled = abs(last["objective"] - before["objective"]) <= 1e-7 * scale
    assert met_tol or all_out or stalled, (last, before)


# ---------------------------------------------------------------------------- 7. auto, kwargs
def test_make_solver_auto():
    check_solver_kwargs("auto", {"tol": 1e-6, "maxiter": 7})  # kwargs checked only
    with pytest.raises(ValueError, match="facts"):
        make_solver("auto", {"tol": 1e-6, "maxiter": 7})  # never None: it needs the facts
    # 10 features, 3 classes: Newton; 1,000 features: Hessian blocks of D = 3,003 cost more
    # than L-BFGS's extra passes (see tests/test_costs.py for the model itself)
    auto = ProblemFacts(smooth=True, n_features=10, n_classes=3, n_outputs=5, n_rows=10**6)
    solver = make_solver("auto", {"tol": 1e-6, "maxiter": 7}, facts=auto)
    assert isinstance(solver, Newton) and solver.tol == 1e-6 and solver.maxiter == 7
    big = make_solver("auto", {"tol": 1e-6}, facts=dataclasses.replace(auto, n_features=1000))
    assert isinstance(big, LBFGS) and big.tol == 1e-6
    prox = make_solver("auto", None, facts=dataclasses.replace(auto, smooth=False, n_features=1000))
    assert isinstance(prox, ProximalGradient)
    with pytest.raises(ValueError, match="hessian_rows"):
        check_solver_kwargs("auto", {"hessian_rows": 1})
    with pytest.raises(ValueError, match="hessian_rows"):
        make_solver("auto", {"hessian_rows": 1}, facts=auto)
    with pytest.raises(ValueError, match="hessian_rows"):
        distglm.ClassifierPopulationGLM(3, solver_name="auto", solver_kwargs={"hessian_rows": 1})
    newton = make_solver(
        "Newton", {"hessian_rows": 0, "trial_steps": (0.5,), "inner_maxiter": 20, "tol": 1e-9}
    )
    assert newton.hessian_rows == 0 and newton.trial_steps == (0.5,)
    assert newton.inner_maxiter == 20 and newton.tol == 1e-9
    with pytest.raises(ValueError, match="history_size"):
        make_solver("Newton", {"history_size": 3})


@pytest.mark.parametrize("steps", [(1.5,), (0.5, 1.0), (0.0,), (-0.1, 0.5)])
def test_newton_trial_steps_must_lie_in_unit_interval(steps):
    with pytest.raises(ValueError, match="trial_steps"):
        Newton(trial_steps=steps)
    with pytest.raises(ValueError):
        make_solver("Newton", {"trial_steps": steps})


@pytest.mark.slow
@pytest.mark.parametrize("regularizer", ["Ridge", "Lasso"])
def test_auto_fits_with_the_solver_its_cost_model_prices_lowest(regularizer):
    """In memory, the fit runs the solver :func:`choose_solver` picks for its facts (this
    problem and device), keeps ``solver_name`` as given, and reaches the optimum the other
    candidate reaches."""
    n_rows = 16 * default_hessian_rows(9)
    X, y, _, _ = make_population(n_rows, 2, 2, 3, seed=2)
    kw = {"regularizer": regularizer, "regularizer_strength": 1e-2, "solver_name": "auto"}
    model = distglm.ClassifierPopulationGLM(3, **kw)
    assert model.solver_name == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.fit(X, y)
    facts = ProblemFacts(
        smooth=regularizer == "Ridge",
        n_features=2,
        n_classes=3,
        n_outputs=2,
        n_rows=n_rows,
        block_rows=8192,
        passes=InMemoryData(X[:10], np.zeros((10, 2), np.int32), 3).pass_facts,
    )
    assert model.solver_ == choose_solver(facts)
    assert model.solver_name == "auto"  # the parameter stays as given
    first_order = "LBFGS" if regularizer == "Ridge" else "ProximalGradient"
    other = first_order if model.solver_ == "Newton" else "Newton"
    ref = distglm.ClassifierPopulationGLM(3, **{**kw, "solver_name": other}).fit(X, y)
    f_auto, f_ref = _penalised(model, X, y), _penalised(ref, X, y)
    assert abs(f_auto - f_ref) <= 1e-6 * abs(f_ref), (model.solver_, other, f_auto, f_ref)


@pytest.mark.parametrize(
    ("n_rows", "block_rows", "target", "expected"),
    [
        (5000, None, 8192, 1),  # fewer rows than the target: every row
        (20_000, 8192, 8192, 2),
        (100_000, 8192, 1000, 64),
        (10**7, 8192, 10, 8192),  # never beyond one block
        (5000, None, 100, 32),
        (10**6, 1000, 1000, 8),  # the stride divides the block size
    ],
)
def test_hessian_stride(n_rows, block_rows, target, expected):
    stride = hessian_stride(n_rows, block_rows, target)
    assert stride == expected
    assert stride & (stride - 1) == 0 and n_rows / stride >= min(target, n_rows)
    if block_rows:
        assert block_rows % stride == 0, "the stride must divide the kernel's block size"


def test_hessian_rows_zero_uses_every_row(well_conditioned):
    X, y = well_conditioned
    obj = PenalizedObjective(InMemoryData(X, y, 3), Penalty(Ridge(), 1.0, _identity, _identity))
    theta = np.zeros((11, 5, 3))
    assert Newton(hessian_rows=0).prepare(obj, theta).stride == 1
    assert Newton().prepare(obj, theta).stride == 2
    assert Newton(hessian_rows=1000).prepare(obj, theta).stride == 16


# ---------------------------------------------------------------------------- 8. update
@pytest.mark.parametrize(
    ("regularizer", "reference"), [("Ridge", "LBFGS"), ("Lasso", "ProximalGradient")]
)
def test_update_steps_towards_the_optimum(population, regularizer, reference):
    """``update`` on the same full batch: each call one Newton iteration (two passes)."""
    X, y = population
    kw = {"regularizer": regularizer, "regularizer_strength": 1e-2}
    fitted = distglm.ClassifierPopulationGLM(C, **kw, solver_name=reference, solver_kwargs=TIGHT)
    f_opt = _penalised(fitted.fit(X, y), X, y)
    model = distglm.ClassifierPopulationGLM(C, **kw, solver_name="Newton")
    model.set_classes(y)
    params = model.initialize_params(X, y)
    state = model.initialize_optimizer_and_state(params, X, y)
    assert isinstance(state, SolverState)

    values = [_penalised(model, X, y, params)]
    for _ in range(5):
        params, state = model.update(params, state, X, y)
        values.append(_penalised(model, X, y, params))
        assert model.solver_state_ is state
    assert all(b <= a + 1e-7 * abs(a) for a, b in itertools.pairwise(values)), values
    assert values[1] < values[0] - 1e-3
    assert values[-1] - f_opt <= 1e-6 * abs(f_opt), (values, f_opt)
    np.testing.assert_allclose(model.coef_, params[0])
