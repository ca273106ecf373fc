"""Every cross-validation fold's sums in one pass over a chunk.

A chunk's rows carry a fold index (an integer per row, or per row and output); the training
rows of fold ``f`` are the rows whose index is not ``f`` and its held-out rows those whose index
is ``f``. The fold axis is batched with :func:`jax.vmap`, so one read of the chunk gives every
fold's loss and gradient sums, each at that fold's own parameters. Fold weights are computed
from the index by comparison inside the kernel; no one-hot array of folds or labels is built.
:func:`stacked_fold_columns` lays the folds out instead as extra label columns (the search's
stacked problem), with training and held-out weights for the Newton pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .softmax import DEFAULT_BLOCK_ROWS, nll_sums, nll_value_and_grad_sums

__all__ = ["fold_nll_sums", "fold_value_and_grad_sums", "fold_weights", "stacked_fold_columns"]


def fold_weights(weights, fold_index, fold, held_out=False):
    """The weights of fold ``fold``'s training rows (or, with ``held_out``, held-out rows).

    Parameters
    ----------
    weights : array of shape (n_samples,) or (n_samples, n_outputs)
    fold_index : int array of shape (n_samples,) or (n_samples, n_outputs)
        The fold each row (and output) is held out in; negative for rows in no fold's held-out
        set (they train every fold).
    fold : int
    held_out : bool

    Returns
    -------
    array of shape (n_samples,) or (n_samples, n_outputs), whichever of the two is larger.
    """
    in_fold = fold_index == fold
    keep = in_fold if held_out else jnp.logical_not(in_fold)
    if weights.ndim == 1 and fold_index.ndim == 2:
        weights = weights[:, None]
    if weights.ndim == 2 and fold_index.ndim == 1:
        keep = keep[:, None]
    return jnp.where(keep, weights, jnp.zeros((), weights.dtype))


def _folds(n_folds):
    return jnp.arange(n_folds, dtype=jnp.int32)


def fold_value_and_grad_sums(
    params, X, y_codes, weights, fold_index, held_out=False, block_rows=DEFAULT_BLOCK_ROWS
):
    """Loss and gradient sums of every fold, each at its own parameters, in one pass.

    Parameters
    ----------
    params : tuple (coef, intercept)
        ``coef`` of shape (n_folds, n_features, n_outputs, n_classes), ``intercept`` of shape
        (n_folds, n_outputs, n_classes): one parameter set per fold.
    X : array of shape (n_samples, n_features)
    y_codes : int array of shape (n_samples, n_outputs)
    weights : array of shape (n_samples,) or (n_samples, n_outputs)
    fold_index : int array of shape (n_samples,) or (n_samples, n_outputs)
    held_out : bool
        Sum over the held-out rows of each fold instead of its training rows.
    block_rows : int or None

    Returns
    -------
    loss : array of shape (n_folds, n_outputs)
    grad : tuple of arrays of shapes (n_folds, n_features, n_outputs, n_classes) and
        (n_folds, n_outputs, n_classes)
    """
    n_folds = params[0].shape[0]

    def one(p, f):
        w = fold_weights(weights, fold_index, f, held_out)
        return nll_value_and_grad_sums(p, X, y_codes, w, block_rows)

    return jax.vmap(one)(params, _folds(n_folds))


def fold_nll_sums(params, X, y_codes, weights, fold_index, held_out=True, block_rows=None):
    """Loss sums of every fold at its own parameters (held-out rows by default), one pass.

    Parameters are as in :func:`fold_value_and_grad_sums`.

    Returns
    -------
    loss : array of shape (n_folds, n_outputs)
    count : array of shape (n_folds, n_outputs)
        The weight summed over the same rows (the held-out sample counts).
    """
    n_folds = params[0].shape[0]
    k = y_codes.shape[1]

    def one(p, f):
        w = fold_weights(weights, fold_index, f, held_out)
        wk = jnp.broadcast_to(w[:, None] if w.ndim == 1 else w, (w.shape[0], k))
        return nll_sums(p, X, y_codes, w, block_rows), jnp.sum(wk, axis=0)

    return jax.vmap(one)(params, _folds(n_folds))


def stacked_fold_columns(y_codes, weights, fold_index, n_folds):
    """Every fold's training problem and the full-data one as stacked label columns.

    Column ``f * k + j`` is output ``j`` weighted by fold ``f``'s training rows (for
    ``f = n_folds``: every row), with, as a second set of weights, fold ``f``'s held-out rows
    (every row for ``f = n_folds``): the 3-D weights of
    :func:`~distglm.kernels.newton.newton_pass_sums`. The codes are repeated, not one-hot.

    Parameters
    ----------
    y_codes : int array of shape (n_samples, k)
    weights : array of shape (n_samples,) or (n_samples, k)
    fold_index : int array of shape (n_samples,) or (n_samples, k)
        The fold holding out each row (or each row for each output; negative: none).
    n_folds : int (static)

    Returns
    -------
    codes : int array of shape (n_samples, (n_folds + 1) * k)
    weights : array of shape (n_samples, 2, (n_folds + 1) * k)
    """
    n, k = y_codes.shape
    w = weights[:, None, :] if weights.ndim == 2 else weights[:, None, None]  # (n, 1, k|1)
    blocks = jnp.arange(n_folds + 1, dtype=jnp.int32)
    index = fold_index[:, None, :] if fold_index.ndim == 2 else fold_index[:, None, None]
    out = index == blocks[None, :, None]  # (n, F + 1, k|1): held out of fold f
    full = (blocks == n_folds)[None, :, None]
    train = jnp.where((~out & ~full) | full, 1, 0).astype(w.dtype) * w
    held = jnp.where(out | full, 1, 0).astype(w.dtype) * w
    shape = (n, (n_folds + 1) * k)
    both = jnp.stack(
        [
            jnp.broadcast_to(train, (n, n_folds + 1, k)).reshape(shape),
            jnp.broadcast_to(held, (n, n_folds + 1, k)).reshape(shape),
        ],
        axis=1,
    )
    return jnp.tile(y_codes, (1, n_folds + 1)), both
