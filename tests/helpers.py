"""Data helpers shared by the test modules (plain functions, no fixtures)."""

from __future__ import annotations

import numpy as np


def softmax_labels(rng, X, W, b):
    """Draw labels from a softmax model: ``X`` (n, p), ``W`` (p, [k,] c), ``b`` ([k,] c).

    Returns integer codes of shape (n,) or (n, k).
    """
    eta = np.einsum("np,p...c->n...c", X, W) + b
    p = np.exp(eta - eta.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    u = rng.random((*p.shape[:-1], 1))
    return (np.cumsum(p, -1) < u).sum(-1).clip(0, p.shape[-1] - 1)
