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


class CountingScheduler:
    """A dask scheduler that counts computes and refuses more than ``max_computes``
    (xarray's laziness guard)."""

    def __init__(self, max_computes=0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many computes. Total: {self.total_computes} > max: {self.max_computes}."
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes=0):
    """A context in which more than ``max_computes`` dask computes raise ``RuntimeError``."""
    import dask

    return dask.config.set(scheduler=CountingScheduler(max_computes))
