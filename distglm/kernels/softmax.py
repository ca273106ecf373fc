"""Categorical (softmax) negative log-likelihood: per-chunk sums of loss and gradient.

Every function here is a pure function of ``(params, X, y_codes, weights)`` returning **sums**
over the rows it is given. Normalisation (per-output means) and penalties are applied once, by
whoever combines the sums. Labels are integer codes; no one-hot array is ever built.

Layout note: the public parameter layout is ``coef (n_features, n_outputs, n_classes)``. Inside
the kernels the class axis is moved before the output axis, so that the softmax over a handful
of classes becomes elementwise work on contiguous ``(rows, n_outputs)`` slabs, which vectorises;
with the class axis last (size 3) the same work was 3x slower here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "class_indicator",
    "nll_and_proba",
    "nll_sums",
    "nll_value_and_grad_sums",
    "per_sample_log_likelihood",
]

#: Rows per block in :func:`nll_value_and_grad_sums`: the softmax work on a block stays in cache
#: between the two matrix products (measured on 200,000 x 50 x 20 x 3: 62 ms with blocks of
#: 10,000 rows against 130 ms unblocked and 45 ms for the two matrix products alone).
DEFAULT_BLOCK_ROWS = 8192


def _class_major(coef, intercept):
    p, k, c = coef.shape
    return jnp.transpose(coef, (0, 2, 1)).reshape(p, c * k), jnp.transpose(intercept)


def _output_weights(weights):
    # (n,) shared by all outputs, or (n, k) per output (0 where an output was not recorded)
    return weights[:, None] if weights.ndim == 1 else weights


def class_indicator(y_codes, shape):
    """``[y == class]`` as booleans of ``shape`` (rows, n_classes, n_outputs), from codes
    (rows, n_outputs): a comparison with an iota, never a one-hot array held in memory."""
    return jax.lax.broadcasted_iota(y_codes.dtype, shape, 1) == y_codes[:, None, :]


def nll_and_proba(eta, is_y):
    """The softmax negative log-likelihood of each (row, output) and the probabilities.

    This is the one definition of the NLL that every kernel uses.

    Parameters
    ----------
    eta : array of shape (rows, n_classes, n_outputs)
        Linear predictor, class axis first (the class-major layout).
    is_y : bool array of the same shape
        :func:`class_indicator` of the labels.

    Returns
    -------
    nll : array of shape (rows, n_outputs)
        ``logsumexp(eta) - eta[y]``, overflow-safe.
    proba : array of the shape of ``eta``
        ``softmax(eta)`` over the class axis (unused results are dropped by XLA).
    """
    # one (rows, n_outputs) slice per class: XLA's CPU fusions vectorise these elementwise
    # chains well, where reductions over the short middle axis cost ~1.4x the time
    # (benchmarks/bench_kernel.py)
    cols = [eta[:, a, :] for a in range(eta.shape[1])]
    m = functools.reduce(jnp.maximum, cols)
    e = [jnp.exp(col - m) for col in cols]
    s = functools.reduce(jnp.add, e)
    inv = 1.0 / s
    eta_y = jnp.sum(jnp.where(is_y, eta, 0.0), axis=1)
    return m + jnp.log(s) - eta_y, jnp.stack([ea * inv for ea in e], axis=1)


def _block_terms(w_cm, b_cm, X, y_codes, weights, with_grad):
    """Loss sums (and gradient sums) of one block in the class-major layout."""
    n = X.shape[0]
    c, k = b_cm.shape
    eta = (jnp.dot(X, w_cm)).reshape(n, c, k) + b_cm[None].astype(X.dtype)
    is_y = class_indicator(y_codes, eta.shape)
    nll, proba = nll_and_proba(eta, is_y)
    w = _output_weights(weights).astype(eta.dtype)
    loss = jnp.sum(w * nll, axis=0)
    if not with_grad:
        return loss
    resid = (w[:, None, :] * (proba - is_y.astype(eta.dtype))).reshape(n, c * k)
    return loss, jnp.dot(X.T, resid), jnp.sum(resid, axis=0)


def _blocked(fn, X, y_codes, weights, block_rows, init):
    """Sum ``fn(X_block, y_block, w_block)`` over row blocks with ``lax.scan``.

    ``n_samples`` must be a multiple of ``block_rows`` (pad with weight-0 rows), or at most one
    block; blocks keep the softmax work in cache between the two matrix products. A block whose
    weights are all 0 is skipped.
    """
    n = X.shape[0]
    if block_rows is None or n <= block_rows:
        return fn(X, y_codes, weights)
    if n % block_rows:
        raise ValueError(
            f"n_samples={n} is not a multiple of block_rows={block_rows}; pad the rows "
            "(with weight 0) to a multiple of it, or pass block_rows=None."
        )
    nb = n // block_rows

    zeros = jax.tree_util.tree_map(jnp.zeros_like, init)

    def body(acc, xs):
        # blocks of padding only (weight 0 everywhere) are skipped, so a short chunk padded to
        # a fixed shape costs at most one block more than its rows
        out = jax.lax.cond(jnp.any(xs[2] != 0), lambda b: fn(*b), lambda b: zeros, xs)
        return jax.tree_util.tree_map(jnp.add, acc, out), None

    xs = (
        X.reshape(nb, block_rows, X.shape[1]),
        y_codes.reshape(nb, block_rows, y_codes.shape[1]),
        weights.reshape(nb, block_rows, *weights.shape[1:]),
    )
    acc, _ = jax.lax.scan(body, init, xs)
    return acc


def nll_sums(params, X, y_codes, weights, block_rows=DEFAULT_BLOCK_ROWS):
    """Weighted sums of the negative log-likelihood, per output.

    Parameters
    ----------
    params : tuple (coef, intercept)
        ``coef`` of shape (n_features, n_outputs, n_classes), ``intercept`` (n_outputs, n_classes).
    X : array of shape (n_samples, n_features)
    y_codes : int array of shape (n_samples, n_outputs)
        Class codes in ``[0, n_classes)``.
    weights : array of shape (n_samples,) or (n_samples, n_outputs)
        0 for padding, dropped rows and outputs not recorded.
    block_rows : int or None
        Rows per block (see :func:`nll_value_and_grad_sums`).

    Returns
    -------
    loss : array of shape (n_outputs,)
        ``sum_n w[n, k] * (-log p(y[n, k] | x[n]))``.
    """
    coef, intercept = params
    w_cm, b_cm = _class_major(coef, intercept)
    fn = lambda x, y, w: _block_terms(w_cm, b_cm, x, y, w, with_grad=False)  # noqa: E731
    init = jnp.zeros(coef.shape[1], X.dtype)
    return _blocked(fn, X, y_codes, weights, block_rows, init)


def nll_value_and_grad_sums(params, X, y_codes, weights, block_rows=DEFAULT_BLOCK_ROWS):
    """Weighted sums of the negative log-likelihood and of its gradient.

    The gradient is written out (``X.T @ (w * (softmax - [y == class]))``), so the softmax work
    is one fused elementwise pass between the two matrix products, done block by block.

    Parameters
    ----------
    params : tuple (coef, intercept)
        ``coef`` of shape (n_features, n_outputs, n_classes), ``intercept`` (n_outputs, n_classes).
    X : array of shape (n_samples, n_features)
    y_codes : int array of shape (n_samples, n_outputs)
    weights : array of shape (n_samples,) or (n_samples, n_outputs)
    block_rows : int or None
        Rows per block; ``n_samples`` must be a multiple of it (or at most one block).

    Returns
    -------
    loss : array of shape (n_outputs,)
        Per-output sums of ``w * nll``.
    grad : tuple (grad_coef, grad_intercept)
        Gradient sums, of shapes (n_features, n_outputs, n_classes) and (n_outputs, n_classes).
    """
    coef, intercept = params
    p, k, c = coef.shape
    w_cm, b_cm = _class_major(coef, intercept)
    fn = lambda x, y, w: _block_terms(w_cm, b_cm, x, y, w, with_grad=True)  # noqa: E731
    init = (jnp.zeros(k, X.dtype), jnp.zeros((p, c * k), X.dtype), jnp.zeros(c * k, X.dtype))
    loss, g_cm, gb_cm = _blocked(fn, X, y_codes, weights, block_rows, init)
    grad_coef = jnp.transpose(g_cm.reshape(p, c, k), (0, 2, 1))
    grad_intercept = jnp.transpose(gb_cm.reshape(c, k))
    return loss, (grad_coef, grad_intercept)


def per_sample_log_likelihood(coef, intercept, X, y_codes):
    """Log-likelihood of every sample and output.

    Parameters
    ----------
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    X : array of shape (n_samples, n_features)
    y_codes : int array of shape (n_samples, n_outputs)

    Returns
    -------
    array of shape (n_samples, n_outputs)
    """
    n = X.shape[0]
    p, k, c = coef.shape
    eta = jnp.dot(X, coef.reshape(p, k * c)).reshape(n, k, c) + intercept[None]
    classes = jax.lax.broadcasted_iota(y_codes.dtype, eta.shape, 2)
    eta_y = jnp.sum(jnp.where(classes == y_codes[..., None], eta, 0.0), axis=-1)
    return eta_y - jax.nn.logsumexp(eta, axis=-1)
