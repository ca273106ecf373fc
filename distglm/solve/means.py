"""From sums to means: the normalisation every data term applies once, at the coordinator.

Kernels return sums over rows; a data term divides each output's sums by that output's total
row weight (its sample count, or the weights of a cross-validation fold) here, in float64.
"""

from __future__ import annotations

import numpy as np

from ..kernels.newton import assemble_hessian

__all__ = ["mean_value", "mean_value_and_grad", "newton_means"]


def mean_value(loss, weight_sums):
    """Sum over outputs of each output's mean NLL, from per-output loss sums (k,)."""
    return float(np.sum(np.asarray(loss, np.float64) / weight_sums))


def mean_value_and_grad(loss, grad_coef, grad_intercept, weight_sums):
    """The objective's data part and its gradient from sums (float64).

    Parameters
    ----------
    loss : array of shape (k,)
    grad_coef : array of shape (n_features, k, n_classes)
    grad_intercept : array of shape (k, n_classes)
    weight_sums : array of shape (k,)

    Returns
    -------
    value : float
    grad : array of shape (n_features + 1, k, n_classes)
    """
    inv = 1.0 / np.asarray(weight_sums, np.float64)
    value = float(np.sum(np.asarray(loss, np.float64) * inv))
    grad = (
        np.concatenate(
            [np.asarray(grad_coef, np.float64), np.asarray(grad_intercept, np.float64)[None]],
            axis=0,
        )
        * inv[None, :, None]
    )
    return value, grad


def newton_means(
    trial, loss, grad_coef, grad_intercept, hess_pairs, hess_weights, weight_sums, n_classes
):
    """Normalise the sums of :func:`~distglm.kernels.newton.newton_pass_sums` (float64).

    Loss and gradient sums are divided by each output's sample count ``weight_sums``; the
    Hessian by the weights of the rows it was taken on. Returns ``(trial (T, k), loss (k,),
    grad (n_features + 1, k, c), hess (k, D, D))``.
    """
    inv = 1.0 / np.asarray(weight_sums, np.float64)
    grad = np.concatenate(
        [np.asarray(grad_coef, np.float64), np.asarray(grad_intercept, np.float64)[None]], axis=0
    )
    hw = np.asarray(hess_weights, np.float64)
    if np.any(hw <= 0):
        raise ValueError(
            "The Hessian subsample holds no rows of output(s) "
            f"{np.flatnonzero(hw <= 0).tolist()} (of this pass); lower the Hessian stride "
            "(solver_kwargs hessian_rows)."
        )
    hess = assemble_hessian(np.asarray(hess_pairs, np.float64), n_classes) / hw[:, None, None]
    return (
        np.asarray(trial, np.float64) * inv,
        np.asarray(loss, np.float64) * inv,
        grad * inv[None, :, None],
        hess,
    )
