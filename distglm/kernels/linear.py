"""Linear predictor of the categorical GLM, for an array or a dict of arrays as design."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["apply_mask", "linear_predictor", "log_proba"]


def apply_mask(coef, mask):
    """Multiply each coefficient leaf by its mask leaf (``mask=None`` leaves ``coef`` unchanged).

    Parameters
    ----------
    coef : array or dict of arrays
        Leaves of shape ``(n_features_leaf, n_outputs, n_classes)``.
    mask : same structure as ``coef``, or None
        0/1 leaves of the same shapes.

    Returns
    -------
    Masked coefficients, same structure and shapes as ``coef``.
    """
    if mask is None:
        return coef
    return jax.tree_util.tree_map(lambda w, m: w * m.astype(w.dtype), coef, mask)


def linear_predictor(coef, intercept, X, mask=None):
    """Linear predictor ``eta = X @ coef + intercept`` for every output and class.

    Parameters
    ----------
    coef : array of shape (n_features, n_outputs, n_classes), or a dict of such arrays
        The dict form pairs each key with the same key of ``X``.
    intercept : array of shape (n_outputs, n_classes)
    X : array of shape (n_samples, n_features), or a dict of 2-D arrays with matching keys
    mask : same structure as ``coef``, optional
        Feature mask; masked coefficients do not enter the predictor.

    Returns
    -------
    eta : array of shape (n_samples, n_outputs, n_classes)
    """
    coef = apply_mask(coef, mask)
    x_leaves = jax.tree_util.tree_leaves(X)
    w_leaves = jax.tree_util.tree_leaves(coef)
    if len(x_leaves) != len(w_leaves):
        raise ValueError(
            f"X has {len(x_leaves)} array(s) but coef has {len(w_leaves)}; "
            "they must share one structure."
        )
    k, c = intercept.shape
    eta = intercept.reshape(1, k * c)
    for x, w in zip(x_leaves, w_leaves, strict=True):
        eta = eta + jnp.dot(x, w.reshape(w.shape[0], k * c))
    return eta.reshape(eta.shape[0], k, c)


def log_proba(coef, intercept, X):
    """Log-probability of every class: the log-softmax of :func:`linear_predictor`.

    The one prediction rule, used in memory and by the lazy predictors on each row chunk.

    Parameters
    ----------
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    X : array of shape (n_samples, n_features)

    Returns
    -------
    array of shape (n_samples, n_outputs, n_classes)
    """
    return jax.nn.log_softmax(linear_predictor(coef, intercept, X), axis=-1)
