"""Unit tests of the pure JAX kernels (distglm.kernels) and of the in-memory data term's shapes.

No cluster, no nemos: the oracles are ``jax.grad``, central finite differences and a direct
numpy log-softmax, in float64 where the comparison has to be tight.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.flatten_util import ravel_pytree

from distglm.kernels import (
    apply_mask,
    linear_predictor,
    log_proba,
    nll_sums,
    nll_value_and_grad_sums,
    per_sample_log_likelihood,
)
from distglm.kernels import compiled as compiled_kernels
from distglm.kernels.softmax import DEFAULT_BLOCK_ROWS
from distglm.solve import InMemoryData

SETTINGS = settings(max_examples=20, deadline=None)

# jitted once here, so hypothesis examples reuse compiled executables (one per shape)
_VG = jax.jit(nll_value_and_grad_sums, static_argnames="block_rows")
_V = jax.jit(nll_sums, static_argnames="block_rows")


@pytest.fixture
def x64():
    """Enable float64 in JAX for the test, and restore the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def _problem(n=40, p=4, k=3, c=3, seed=0, dtype=np.float64, per_output_weights=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(dtype)
    coef = (0.7 * rng.standard_normal((p, k, c))).astype(dtype)
    intercept = (0.5 * rng.standard_normal((k, c))).astype(dtype)
    y = rng.integers(0, c, size=(n, k)).astype(np.int32)
    if per_output_weights:
        w = rng.uniform(0.0, 2.0, size=(n, k)).astype(dtype)
        w[rng.random((n, k)) < 0.2] = 0.0  # outputs not recorded on some rows
    else:
        w = rng.uniform(0.0, 2.0, size=n).astype(dtype)
    return (coef, intercept), X, y, w


def _numpy_nll_sums(params, X, y, w):
    """Per-output sums of w * (-log p(y | x)), by a direct float64 log-softmax."""
    coef, intercept = (np.asarray(a, np.float64) for a in params)
    X = np.asarray(X, np.float64)
    eta = np.einsum("np,pkc->nkc", X, coef) + intercept
    m = eta.max(axis=-1, keepdims=True)
    logp = eta - (m + np.log(np.exp(eta - m).sum(axis=-1, keepdims=True)))
    n, k = y.shape
    ll = logp[np.arange(n)[:, None], np.arange(k)[None, :], y]
    w = np.asarray(w, np.float64)
    w = w[:, None] if w.ndim == 1 else w
    return -(w * ll).sum(axis=0)


def _as_jnp(params, X, y, w):
    return (
        tuple(jnp.asarray(a) for a in params),
        jnp.asarray(X),
        jnp.asarray(y),
        jnp.asarray(w),
    )


def _assert_tree_close(a, b, rtol, atol):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ gradient and loss oracles
@pytest.mark.slow
@pytest.mark.parametrize("per_output", [False, True])
def test_gradient_matches_jax_grad_and_finite_differences(x64, per_output):
    params, X, y, w = _as_jnp(*_problem(per_output_weights=per_output))
    assert X.dtype == jnp.float64
    loss, grad = nll_value_and_grad_sums(params, X, y, w, block_rows=None)

    def total(prm):
        return jnp.sum(nll_sums(prm, X, y, w, block_rows=None))

    auto = jax.grad(total)(params)
    _assert_tree_close(grad, auto, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(float(jnp.sum(loss)), float(total(params)), rtol=1e-12)

    # central finite differences on every coordinate (24 + 9 of them)
    flat, unravel = ravel_pytree(params)
    f = jax.jit(lambda v: total(unravel(v)))
    h = 1e-6
    fd = np.array(
        [
            (float(f(flat.at[i].add(h))) - float(f(flat.at[i].add(-h)))) / (2 * h)
            for i in range(flat.size)
        ]
    )
    g_flat = np.asarray(ravel_pytree(grad)[0])
    np.testing.assert_allclose(g_flat, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("per_output", [False, True])
@pytest.mark.parametrize("block_rows", [None, 8])
def test_loss_matches_numpy_log_softmax(x64, per_output, block_rows):
    params, X, y, w = _problem(n=40, per_output_weights=per_output)
    expected = _numpy_nll_sums(params, X, y, w)
    jp = _as_jnp(params, X, y, w)
    np.testing.assert_allclose(np.asarray(_V(*jp, block_rows=block_rows)), expected, rtol=1e-12)
    loss, _ = _VG(*jp, block_rows=block_rows)
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-12)
    # per-sample log-likelihood agrees too (unweighted)
    ll = per_sample_log_likelihood(*jp[0], jp[1], jp[2])
    np.testing.assert_allclose(
        -np.asarray(ll).sum(axis=0), _numpy_nll_sums(params, X, y, np.ones(len(X))), rtol=1e-12
    )


def test_float32_kernel_close_to_float64_reference():
    params, X, y, w = _problem(n=200, dtype=np.float32, per_output_weights=True)
    loss, _ = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(loss), _numpy_nll_sums(params, X, y, w), rtol=1e-5)


def test_per_output_weights_equal_shared_weights_when_columns_equal(x64):
    params, X, y, w = _problem(n=30)
    k = y.shape[1]
    a = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    b = _VG(*_as_jnp(params, X, y, np.repeat(w[:, None], k, 1)), block_rows=None)
    _assert_tree_close(a, b, rtol=1e-12, atol=1e-12)


def test_per_output_weights_select_outputs(x64):
    """Output j's sums only see rows where w[:, j] > 0 (other outputs are untouched)."""
    params, X, y, w = _problem(n=30, per_output_weights=True)
    loss, (gc, gb) = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    for j in range(y.shape[1]):
        rows = w[:, j] > 0
        sub = ((params[0][:, j : j + 1]), params[1][j : j + 1])
        lj, (gcj, gbj) = _VG(
            *_as_jnp(sub, X[rows], y[rows, j : j + 1], w[rows, j]), block_rows=None
        )
        np.testing.assert_allclose(float(loss[j]), float(lj[0]), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(gc[:, j]), np.asarray(gcj[:, 0]), atol=1e-12)
        np.testing.assert_allclose(np.asarray(gb[j]), np.asarray(gbj[0]), atol=1e-12)


@pytest.mark.parametrize("per_output", [False, True])
def test_zero_weight_rows_contribute_nothing(x64, per_output):
    """Padding: appended rows of weight 0 (with arbitrary, even huge, X) change nothing."""
    params, X, y, w = _problem(n=20, per_output_weights=per_output)
    rng = np.random.default_rng(5)
    pad = 12
    Xp = np.concatenate([X, 1e3 * rng.standard_normal((pad, X.shape[1]))])
    yp = np.concatenate([y, rng.integers(0, 3, (pad, y.shape[1]))]).astype(np.int32)
    wp = np.concatenate([w, np.zeros((pad, *w.shape[1:]))])
    a = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    b = _VG(*_as_jnp(params, Xp, yp, wp), block_rows=None)
    _assert_tree_close(a, b, rtol=1e-12, atol=1e-12)
    # the same, blocked: 32 rows in blocks of 8
    c = _VG(*_as_jnp(params, Xp, yp, wp), block_rows=8)
    _assert_tree_close(a, c, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ sums over chunks
@st.composite
def _splits(draw, n=12):
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True))
    return [0, *sorted(cuts), n]


def _padded(X, y, w, a, b, rows):
    """Rows ``a:b`` padded to ``rows`` rows of weight 0: a chunk as the workers hold it."""
    n = b - a
    Xp, yp, wp = (
        np.zeros((rows, X.shape[1]), X.dtype),
        np.zeros((rows, *y.shape[1:]), y.dtype),
        np.zeros((rows, *w.shape[1:]), w.dtype),
    )
    Xp[:n], yp[:n], wp[:n] = X[a:b], y[a:b], w[a:b]
    return Xp, yp, wp


@settings(max_examples=15, deadline=None)
@given(bounds=_splits(), seed=st.integers(0, 2**16), per_output=st.booleans())
def test_chunk_additivity(bounds, seed, per_output):
    """Sums over any split of the rows add up to the sums over all rows. Each part is padded to
    the full row count with weight-0 rows, as chunks are: one shape, one compile per kernel."""
    params, X, y, w = _problem(n=12, seed=seed, dtype=np.float32, per_output_weights=per_output)
    whole = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    parts = [
        _VG(*_as_jnp(params, *_padded(X, y, w, a, b, 12)), block_rows=None)
        for a, b in itertools.pairwise(bounds)
    ]
    total = jax.tree_util.tree_map(lambda *xs: sum(np.asarray(x, np.float64) for x in xs), *parts)
    _assert_tree_close(total, whole, rtol=1e-5, atol=1e-5)
    loss_parts = sum(
        np.asarray(_V(*_as_jnp(params, *_padded(X, y, w, a, b, 12)), block_rows=None), np.float64)
        for a, b in itertools.pairwise(bounds)
    )
    np.testing.assert_allclose(loss_parts, np.asarray(whole[0]), rtol=1e-5, atol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 2**16), per_output=st.booleans())
def test_order_independence(seed, per_output):
    params, X, y, w = _problem(n=48, seed=seed, dtype=np.float32, per_output_weights=per_output)
    perm = np.random.default_rng(seed).permutation(len(X))
    a = _VG(*_as_jnp(params, X, y, w), block_rows=None)
    b = _VG(*_as_jnp(params, X[perm], y[perm], w[perm]), block_rows=None)
    c = _VG(*_as_jnp(params, X[perm], y[perm], w[perm]), block_rows=16)
    _assert_tree_close(a, b, rtol=1e-5, atol=1e-5)
    _assert_tree_close(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(block=st.sampled_from([1, 3, 8]), seed=st.integers(0, 2**16), per_output=st.booleans())
def test_blocked_equals_unblocked(block, seed, per_output):
    """One row count (24, a multiple of every block size): a compile per block size only."""
    params, X, y, w = _problem(n=24, seed=seed, dtype=np.float32, per_output_weights=per_output)
    jp = _as_jnp(params, X, y, w)
    _assert_tree_close(_VG(*jp, block_rows=block), _VG(*jp, block_rows=None), 1e-5, 1e-5)
    _assert_tree_close(_V(*jp, block_rows=block), _V(*jp, block_rows=None), 1e-5, 1e-5)


@pytest.mark.parametrize("fn", [nll_value_and_grad_sums, nll_sums])
def test_block_rows_must_divide_n(fn):
    params, X, y, w = _as_jnp(*_problem(n=10, dtype=np.float32))
    with pytest.raises(ValueError, match="not a multiple of block_rows=4"):
        fn(params, X, y, w, block_rows=4)
    fn(params, X, y, w, block_rows=10)  # a single block is fine
    fn(params, X, y, w, block_rows=64)  # so is fewer rows than one block


# ------------------------------------------------------------------ linear predictor, log-proba
def test_linear_predictor_array_and_mask():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 4)).astype(np.float32)
    coef = rng.standard_normal((4, 2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 3)).astype(np.float32)
    mask = (rng.random((4, 2, 3)) > 0.4).astype(np.float32)
    expected = np.einsum("np,pkc->nkc", X, coef) + b
    np.testing.assert_allclose(np.asarray(linear_predictor(coef, b, X)), expected, rtol=1e-5)
    expected_m = np.einsum("np,pkc->nkc", X, coef * mask) + b
    got = linear_predictor(coef, b, X, mask=mask)
    np.testing.assert_allclose(np.asarray(got), expected_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(apply_mask(coef, None)), coef)


def test_linear_predictor_dict():
    rng = np.random.default_rng(2)
    X = {"a": rng.standard_normal((6, 2)), "b": rng.standard_normal((6, 3))}
    coef = {"a": rng.standard_normal((2, 4, 3)), "b": rng.standard_normal((3, 4, 3))}
    mask = {"a": np.array([1.0, 0.0])[:, None, None] * np.ones((2, 4, 3)), "b": np.ones((3, 4, 3))}
    b = rng.standard_normal((4, 3))
    expected = sum(np.einsum("np,pkc->nkc", X[key], coef[key] * mask[key]) for key in X) + b
    got = linear_predictor(coef, b, X, mask=mask)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # the same as stacking the dict into one design
    stacked = linear_predictor(
        np.concatenate([coef["a"] * mask["a"], coef["b"]]), b, np.hstack([X["a"], X["b"]])
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(stacked), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="share one structure"):
        linear_predictor({"a": coef["a"]}, b, X)


def test_log_proba_rows_normalised():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 6)).astype(np.float32)
    coef = 30 * rng.standard_normal((6, 4, 5)).astype(np.float32)  # large: overflow-safe
    intercept = rng.standard_normal((4, 5)).astype(np.float32)
    lp = np.asarray(log_proba(jnp.asarray(coef), jnp.asarray(intercept), X), np.float64)
    assert lp.shape == (50, 4, 5) and np.all(lp <= 0)
    np.testing.assert_allclose(np.log(np.exp(lp).sum(axis=-1)), 0.0, atol=1e-5)


def test_the_flat_kernels_give_the_tuple_kernels_sums():
    """The workers' kernels (parameters stacked, sums raveled into one array) compute the sums
    of VALUE_AND_GRAD and VALUE, in buffer order (loss, coefficient, intercept gradient): to
    float32 rounding (XLA may fuse the two programs differently; on this CPU they agree bit for
    bit)."""
    rng = np.random.default_rng(5)
    n, p, k, c = 128, 5, 3, 4
    X = rng.standard_normal((n, p)).astype(np.float32)
    y = rng.integers(0, c, (n, k)).astype(np.int8)
    w = rng.uniform(0, 2, (n, k)).astype(np.float32)
    theta = rng.standard_normal((p + 1, k, c)).astype(np.float32)
    params = (jnp.asarray(theta[:-1]), jnp.asarray(theta[-1]))
    loss, (gc, gb) = compiled_kernels.VALUE_AND_GRAD(params, X, y, w, block_rows=64)
    flat = np.asarray(compiled_kernels.VALUE_AND_GRAD_FLAT(theta, X, y, w, block_rows=64))
    want = np.concatenate([np.asarray(a).ravel() for a in (loss, gc, gb)])
    assert flat.shape == (k + p * k * c + k * c,)
    np.testing.assert_allclose(flat, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    value = compiled_kernels.VALUE_FLAT(theta, X, y, w, block_rows=64)
    want_value = compiled_kernels.VALUE(params, X, y, w, block_rows=64)
    assert np.shape(value) == (k,)
    np.testing.assert_allclose(np.asarray(value), np.asarray(want_value), rtol=1e-6)


# ------------------------------------------------------------------ fixed shapes, one compile
def test_fixed_shapes_compile_once():
    """The jitted kernel the objective uses keeps one executable for one problem shape."""
    fn = compiled_kernels.VALUE_AND_GRAD
    assert hasattr(fn, "_cache_size"), "jax no longer exposes _cache_size on jitted functions"
    rng = np.random.default_rng(0)
    n, p, k, c = 3 * 64 + 5, 4, 3, 3
    X = rng.standard_normal((n, p)).astype(np.float32)
    y = rng.integers(0, c, (n, k))
    data = InMemoryData(X, y, c, block_rows=64)
    theta = np.zeros((p + 1, k, c))
    data.value_and_grad(theta)  # may compile (first use of this shape)
    size = fn._cache_size()
    values = []
    for i in range(5):
        v, g = data.value_and_grad(rng.standard_normal(theta.shape) * 0.1 * (i + 1))
        values.append(v)
        assert g.shape == theta.shape and g.dtype == np.float64
    assert fn._cache_size() == size, "value_and_grad recompiled for new parameter values"
    assert len(set(values)) == 5  # it did evaluate at different parameters
    # a second data set of another row count but the same padded shape reuses the executable
    InMemoryData(X[:-3], y[:-3], c, block_rows=64).value_and_grad(theta)
    assert fn._cache_size() == size


@pytest.mark.parametrize(
    ("n", "block_rows", "padded", "block"),
    [
        (10, 64, 10, None),  # at most one block: no padding, unblocked
        (64, 64, 64, None),
        (65, 64, 128, 64),
        (200, 64, 256, 64),
        (DEFAULT_BLOCK_ROWS + 1, DEFAULT_BLOCK_ROWS, 2 * DEFAULT_BLOCK_ROWS, DEFAULT_BLOCK_ROWS),
    ],
)
def test_inmemory_pads_rows_to_block_multiple(n, block_rows, padded, block):
    rng = np.random.default_rng(0)
    p, k, c = 3, 2, 3
    X = rng.standard_normal((n, p)).astype(np.float32)
    y = rng.integers(0, c, (n, k))
    w = rng.uniform(0.5, 1.5, (n, k)).astype(np.float32)
    data = InMemoryData(X, y, c, weights=w, block_rows=block_rows)
    X_dev, y_dev, w_dev = data.arrays
    assert X_dev.shape[0] == padded and y_dev.shape[0] == padded and w_dev.shape[0] == padded
    assert data.block_rows == block
    if block is not None:
        assert padded % block == 0
    np.testing.assert_array_equal(np.asarray(w_dev[n:]), 0.0)
    np.testing.assert_allclose(data.weight_sums, w.astype(np.float64).sum(axis=0), rtol=1e-6)
    # the padded, blocked value equals the numpy mean NLL over the real rows
    theta = 0.2 * rng.standard_normal((p + 1, k, c))
    expected = np.sum(_numpy_nll_sums((theta[:-1], theta[-1]), X, y, w) / w.sum(axis=0))
    v, _ = data.value_and_grad(theta)
    np.testing.assert_allclose(v, expected, rtol=1e-5)
    np.testing.assert_allclose(data.value(theta), expected, rtol=1e-5)
