"""What a pass over the workers returns: the gradient, Newton and fold-count passes, unpacked.

Each is one call per worker through a :class:`~distglm.distribute.pool.WorkerPool` (which
deals with lost, late and joining workers); here the answers are cut back into per-chunk sums
(:mod:`~distglm.distribute.wire`) and checked to cover every chunk of the plan. The data terms
(:mod:`~distglm.distribute.term`, :mod:`~distglm.distribute.folds_term`) call these.
"""

from __future__ import annotations

import numpy as np

from .wire import unpack_chunk_sums, unpack_newton_sums

__all__ = ["add_hessians", "evaluate_pass", "fold_counts", "newton_pass"]


def fold_counts(pool, rule):
    """Kept rows each fold of ``rule`` (a FoldRule) holds out, per chunk: dict chunk id ->
    int64 array (n_folds, k_s), one column per output of its session. No data is read."""
    out = {}
    for ids, counts in pool.run_all("fold_counts", rule).values():
        out.update(zip(ids, counts, strict=True))
    pool.check_complete(out)
    return out


def newton_pass(pool, theta, direction, outputs, steps, t_eval, hess_stride, folds=None):
    """One Newton pass over every chunk, on the outputs ``outputs``.

    Parameters
    ----------
    pool : WorkerPool
    theta, direction : arrays of shape (n_features + 1, k, n_classes)
        For the ``k`` outputs ``outputs`` (global indices).
    outputs : int array of shape (k,)
    steps : array of shape (n_trials, k)
    t_eval : array of shape (k,)
    hess_stride : int
    folds : FoldRule, optional
        A cross-validation search's stacked outputs (see
        :meth:`~distglm.distribute.worker.ChunkWorker.newton`).

    Returns
    -------
    per_chunk : dict chunk id -> (trial (T, k_s'), loss (k_s',), grad_coef (p, k_s', c),
        grad_intercept (k_s', c)) for the outputs of ``outputs`` its session recorded
        (with ``folds``, the stacked columns, and then the held-out loss (k_s',))
    hess : dict worker address -> (pair sums (n_pairs, k, p + 1, p + 1), weights (k,))
    timing : dict worker address -> (seconds, read seconds)
    """
    outputs = np.asarray(outputs)
    results = pool.run_shared(
        "newton",
        np.stack([theta, direction]),
        outputs,
        np.asarray(steps),
        np.asarray(t_eval),
        hess_stride,
        folds,
    )
    per_chunk, hess, timing = unpack_newton_sums(
        pool.plan, pool.n_classes, outputs, np.asarray(steps).shape[0], results, folds
    )
    pool.check_complete(per_chunk)
    return per_chunk, hess, timing


def evaluate_pass(pool, theta, with_grad=True):
    """One pass at ``theta``: per-chunk sums and per-worker compute seconds.

    Parameters
    ----------
    pool : WorkerPool
    theta : float array of shape (n_features + 1, n_outputs, n_classes)

    Returns
    -------
    per_chunk : dict chunk id -> tuple of arrays
        (loss (k_s,), grad_coef (n_features, k_s, c), grad_intercept (k_s, c)), or
        (loss,) without the gradient.
    timing : dict worker address -> (seconds, read seconds)
        The worker's wall time for the pass, and the part of it its reader thread spent
        reading streamed chunks (overlapping compute).
    """
    results = pool.run_shared("value_and_grad" if with_grad else "value", theta)
    per_chunk, timing = {}, {}
    for addr, (ids, sums, seconds, read) in results.items():
        timing[addr] = (seconds, read)
        per_chunk.update(unpack_chunk_sums(pool.plan, pool.n_classes, ids, sums, with_grad))
    pool.check_complete(per_chunk)
    return per_chunk, timing


def add_hessians(hess_parts, k):
    """The workers' Hessian class-pair sums added in worker-address order (float64), and their
    weights: ``(hess (n_pairs, k, p + 1, p + 1) or None, weights (k,))``."""
    hess, hw = None, np.zeros(k)
    for addr in sorted(hess_parts):
        h, w = hess_parts[addr]
        hess = np.asarray(h, np.float64) if hess is None else hess + h
        hw += w
    return hess, hw
