"""One pass for a Newton step: line-search values, gradient and per-output Hessian blocks.

:func:`newton_pass_sums` is a pure function of ``(params, direction, X, y_codes, weights)``
(plus the trial steps) returning **sums** over the rows it is given, like
:mod:`distglm.kernels.softmax`. It evaluates, in one read of the rows:

- the loss at ``theta + t * d`` for every trial step ``t`` (the line search of the step just
  proposed, every step size in the same pass);
- the loss and gradient at ``theta + t_eval * d``, with ``t_eval`` chosen per output (the step the
  coordinator expects to accept);
- the Hessian blocks of each output at that point, on every ``hess_stride``-th row.

The linear predictor along the line is ``eta(t) = X theta + t X d``: two matrix products give it
for every ``t``, so each extra trial step costs only the softmax work, not a matrix product.

The loss is a sum over outputs, so the Hessian is block-diagonal per output. For output ``k``,
with ``x~ = [x, 1]``, ``H_k = sum_n w_nk (x~ x~') kron (diag(p_nk) - p_nk p_nk')``. It is gathered
as one ``(n_features + 1)^2`` weighted Gram matrix per pair of classes ``a <= b``, with row
weights ``w (delta_ab p_a - p_a p_b)``. Every row of ``diag(p) - p p'`` sums to 0, so the pairs
with the last class are sums of the others, and only ``c (c - 1) / 2`` Grams are gathered (3
instead of 6 for 3 classes). That costs ``(n_features + 1)^2 c (c - 1) / 2`` multiply-adds per
row and output, tens of times a gradient
for 50 features, hence the row stride: the Hessian of a strided subsample of the rows (rows are
not reordered, so every stretch of a recording contributes), normalised by its own weights,
is an unbiased estimate of the mean Hessian. Labels stay integer codes throughout.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .softmax import (
    DEFAULT_BLOCK_ROWS,
    _blocked,
    _class_major,
    _output_weights,
    class_indicator,
    nll_and_proba,
)

__all__ = ["class_pairs", "newton_pass_outputs", "newton_pass_sums"]


def class_pairs(n_classes):
    """The ``(a, b)`` class pairs with ``a <= b < n_classes - 1``, in the order of the Hessian
    sums. The pairs with the last class follow from these: every row of ``diag(p) - p p'``
    sums to 0."""
    return [(a, b) for a in range(n_classes - 1) for b in range(a, n_classes - 1)]


def _block(w_cm, d_cm, b_cm, db_cm, X, y_codes, weights, steps, t_eval, hess_stride):
    n, p = X.shape
    c, k = b_cm.shape
    dt = X.dtype
    is_y = class_indicator(y_codes, (n, c, k))
    held = None
    if weights.ndim == 3:  # (rows, 2, k): the fit's weights, then the held-out ones
        weights, held = weights[:, 0], weights[:, 1].astype(dt)
    w = _output_weights(weights).astype(dt)

    def nll(eta):
        return nll_and_proba(eta, is_y)

    steps = steps.astype(dt)
    t_eval = t_eval.astype(dt)
    if steps.shape[0]:
        # eta(t) = X theta + t X d: two products give every trial step's predictor
        eta0 = jnp.dot(X, w_cm).reshape(n, c, k) + b_cm[None].astype(dt)
        deta = jnp.dot(X, d_cm).reshape(n, c, k) + db_cm[None].astype(dt)
        trial = jnp.stack(
            [
                jnp.sum(w * nll(eta0 + steps[i][None, None, :] * deta)[0], axis=0)
                for i in range(steps.shape[0])
            ]
        )
        eta = eta0 + t_eval[None, None, :] * deta
    else:
        # no trial steps: one product, at the evaluation point theta + t_eval d itself
        t_cm = jnp.tile(t_eval, c)
        eta = jnp.dot(X, w_cm + t_cm[None, :] * d_cm.astype(dt)).reshape(n, c, k) + (
            b_cm + t_eval[None, :] * db_cm
        )[None].astype(dt)
        trial = jnp.zeros((0, k), dt)
    nll_e, prob = nll(eta)
    loss = jnp.sum(w * nll_e, axis=0)
    resid = (w[:, None, :] * (prob - is_y.astype(dt))).reshape(n, c * k)
    g_cm = jnp.dot(X.T, resid)
    gb_cm = jnp.sum(resid, axis=0)
    # Hessian blocks on the strided rows, one weighted Gram matrix per class pair
    xs = X[::hess_stride]
    ps = prob[::hess_stride]
    ws = w[::hess_stride]
    xt = jnp.concatenate([xs, jnp.ones((xs.shape[0], 1), dt)], axis=1)
    grams = []
    for a, b in class_pairs(c):
        v = ws * (ps[:, a] * (1.0 if a == b else 0.0) - ps[:, a] * ps[:, b])  # (m, k)
        z = (v[:, :, None] * xt[:, None, :]).reshape(xt.shape[0], k * (p + 1))
        grams.append(jnp.dot(z.T, xt).reshape(k, p + 1, p + 1))
    hess = jnp.stack(grams)
    out = (trial, loss, g_cm, gb_cm, hess, jnp.broadcast_to(jnp.sum(ws, axis=0), (k,)))
    return out if held is None else (*out, jnp.sum(held * nll_e, axis=0))


def newton_pass_sums(
    params,
    direction,
    X,
    y_codes,
    weights,
    steps,
    t_eval,
    hess_stride=1,
    block_rows=DEFAULT_BLOCK_ROWS,
):
    """Sums for one Newton iteration over a chunk of rows.

    Parameters
    ----------
    params : tuple (coef, intercept)
        The current point: ``coef`` (n_features, n_outputs, n_classes), ``intercept``
        (n_outputs, n_classes).
    direction : tuple (coef, intercept)
        The proposed step ``d``, same shapes.
    X : array of shape (n_samples, n_features)
    y_codes : int array of shape (n_samples, n_outputs)
    weights : array of shape (n_samples,), (n_samples, n_outputs) or (n_samples, 2, n_outputs)
        The last: the fit's weights, then a second set (e.g. a cross-validation fold's
        held-out rows) whose loss sums at the evaluation point are returned as well.
    steps : array of shape (n_trials, n_outputs)
        Trial step sizes, per output (one compile per number of trials).
    t_eval : array of shape (n_outputs,)
        Step size, per output, of the point where loss, gradient and Hessian are taken.
    hess_stride : int
        The Hessian uses rows ``0, s, 2s, ...`` of each block (static).
    block_rows : int or None
        Rows per block, as in :func:`~distglm.kernels.softmax.nll_value_and_grad_sums`.

    Returns
    -------
    trial : array of shape (n_trials, n_outputs)
        Loss sums at ``params + t * direction``.
    loss : array of shape (n_outputs,)
        Loss sums at ``params + t_eval * direction``.
    grad : tuple (grad_coef (n_features, n_outputs, n_classes), grad_intercept (n_outputs,
        n_classes))
        Gradient sums there.
    hess : array of shape (n_pairs, n_outputs, n_features + 1, n_features + 1)
        ``n_pairs = c (c - 1) / 2``.
        For each class pair of :func:`class_pairs`, ``sum_n v_n x~ x~'`` over the strided
        rows (``x~ = [x, 1]``).
    hess_weights : array of shape (n_outputs,)
        Sum of the weights of the strided rows (the Hessian's normaliser).
    held_loss : array of shape (n_outputs,), only for 3-D ``weights``
        Loss sums at ``params + t_eval * direction`` under the second set of weights, in the
        same read of the rows.
    """
    coef, intercept = params
    p, k, c = coef.shape
    w_cm, b_cm = _class_major(coef, intercept)
    d_cm, db_cm = _class_major(*direction)

    def fn(x, y, w):
        return _block(w_cm, d_cm, b_cm, db_cm, x, y, w, steps, t_eval, hess_stride)

    dt = X.dtype
    init = (
        jnp.zeros((steps.shape[0], k), dt),
        jnp.zeros(k, dt),
        jnp.zeros((p, c * k), dt),
        jnp.zeros(c * k, dt),
        jnp.zeros((len(class_pairs(c)), k, p + 1, p + 1), dt),
        jnp.zeros(k, dt),
        *([jnp.zeros(k, dt)] if weights.ndim == 3 else []),
    )
    trial, loss, g_cm, gb_cm, hess, hw, *held = _blocked(fn, X, y_codes, weights, block_rows, init)
    grad_coef = jnp.transpose(g_cm.reshape(p, c, k), (0, 2, 1))
    grad_intercept = jnp.transpose(gb_cm.reshape(c, k))
    return (trial, loss, (grad_coef, grad_intercept), hess, hw, *held)


def newton_pass_outputs(
    params, direction, X, y_codes, weights, outputs, steps, t_eval, hess_stride, block_rows
):
    """:func:`newton_pass_sums` on the label columns ``outputs`` only.

    ``params``, ``direction``, ``steps`` and ``t_eval`` are given for those outputs
    (``n_outputs = len(outputs)``); ``y_codes`` and (2-D or 3-D) ``weights`` hold every
    column. Outputs
    that have converged are left out this way; padding ``outputs`` to a few fixed lengths (by
    repeating an index) bounds the number of compiles.
    """
    y = jnp.take(y_codes, outputs, axis=1)
    w = weights if weights.ndim == 1 else jnp.take(weights, outputs, axis=weights.ndim - 1)
    return newton_pass_sums(params, direction, X, y, w, steps, t_eval, hess_stride, block_rows)


def assemble_hessian(pair_sums, n_classes):
    """Full per-output Hessian blocks from the class-pair sums of :func:`newton_pass_sums`.

    Parameters
    ----------
    pair_sums : array of shape (n_pairs, n_outputs, n_features + 1, n_features + 1)
    n_classes : int

    Returns
    -------
    array of shape (n_outputs, (n_features + 1) * n_classes, (n_features + 1) * n_classes)
        Entries ordered row-major over ``(feature row, class)``, as ``theta[:, k, :].ravel()``.
    """
    c = int(n_classes)
    pair_sums = np.asarray(pair_sums)
    _, k, P1, _ = pair_sums.shape
    full = np.zeros((c, c, k, P1, P1), pair_sums.dtype)
    for i, (a, b) in enumerate(class_pairs(c)):
        full[a, b] = full[b, a] = pair_sums[i]
    last = c - 1
    full[:last, last] = -full[:last, :last].sum(axis=1)
    full[last, :last] = full[:last, last]
    full[last, last] = -full[:last, last].sum(axis=0)
    return np.ascontiguousarray(np.transpose(full, (2, 3, 0, 4, 1))).reshape(k, P1 * c, P1 * c)
