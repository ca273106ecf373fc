"""Second moment of the design: the curvature model's input, from the same rows as the loss."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["second_moment"]


def second_moment(X, weights):
    """Weighted second moment of ``[X, 1]``, normalised by the total weight.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    weights : array of shape (n_samples,) or (n_samples, n_outputs)
        Row weights (0 for padding); per-output weights are averaged over outputs.

    Returns
    -------
    array of shape (n_features + 1, n_features + 1)
    """
    w = weights if weights.ndim == 1 else jnp.mean(weights, axis=1)
    xw = X * w[:, None]
    s_xx = jnp.dot(xw.T, X)
    s_x = jnp.sum(xw, axis=0)
    total = jnp.sum(w)
    top = jnp.concatenate([s_xx, s_x[:, None]], axis=1)
    bottom = jnp.concatenate([s_x, total[None]])[None]
    return jnp.concatenate([top, bottom], axis=0) / total
