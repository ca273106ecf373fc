"""What a pass over the workers returns: the gradient, Newton and fold-count passes, reduced.

Each is one call per worker through a :class:`~distglm.distribute.pool.WorkerPool` (which
deals with lost, late and joining workers). Every worker answers with its compensated totals
over its chunks and the ids of those chunks; here the ids are checked to cover every chunk of
the plan once, and the totals are added (:mod:`~distglm.distribute.reduce`); in a relayed call
(:mod:`~distglm.distribute.relay`) a leader has added its group's totals into its own answer
first (:func:`combine_group`), and the others' come as None. The data terms
(:mod:`~distglm.distribute.term`, :mod:`~distglm.distribute.folds_term`) call these.
"""

from __future__ import annotations

import numpy as np

from .reduce import add_buffers, reduce_worker_buffers
from .wire import check_covered, gradient_shapes, newton_shapes

__all__ = ["add_hessians", "combine_group", "evaluate_pass", "fold_counts", "newton_pass"]

#: the passes a relaying worker adds for its group: every answer holds its compensated buffer
#: at index 1, a Newton pass's its Hessian blocks and their weights at 2 and 3
GROUP_SUMS = frozenset({"value_and_grad", "value", "newton"})


def combine_group(method, results):
    """A relaying worker's group's answers with their sums added into its first worker's.

    Parameters
    ----------
    method : str
        One of :data:`GROUP_SUMS`.
    results : dict worker address -> the worker's answer to ``method``

    Returns
    -------
    dict worker address -> answer
        Every answer as it came but for its sums: the first address's (in sorted order) hold
        the group's totals (the buffers added with compensation in address order, the Hessian
        blocks as :func:`add_hessians` adds them), the others' are None. The passes below
        skip those.
    """
    addrs = sorted(results)
    sums = (1, 2, 3) if method == "newton" else (1,)
    out = {a: [None if i in sums else v for i, v in enumerate(results[a])] for a in addrs}
    first = out[addrs[0]]
    first[1] = add_buffers([results[a][1] for a in addrs])
    if method == "newton":
        parts = {a: (results[a][2], results[a][3]) for a in addrs}
        first[2], first[3] = add_hessians(parts, np.size(results[addrs[0]][3]))
    return {a: tuple(answer) for a, answer in out.items()}


def _buffers(results):
    """The workers' compensated buffers, those added into another's (a relayed group) left out."""
    return {a: r[1] for a, r in results.items() if r[1] is not None}


def fold_counts(pool, rule):
    """Kept rows each fold of ``rule`` (a FoldRule) holds out, per chunk: dict chunk id ->
    int64 array (n_folds, k_s), one column per output of its session. No data is read."""
    out: dict[int, np.ndarray] = {}
    ids: dict[object, list] = {}
    for addr, (cids, counts) in pool.run_all("fold_counts", rule).items():
        ids[addr] = list(cids)
        out.update(zip(cids, counts, strict=True))
    check_covered(pool.plan, ids)
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
    totals : list of float64 arrays
        trial (T, k), loss (k,), grad_coef (p, k, c), grad_intercept (k, c), and with
        ``folds`` the held-out loss (k,), over every chunk, in the order of ``outputs``.
    hess : dict worker address -> (pair sums (n_pairs, k, p + 1, p + 1), weights (k,))
    timing : dict worker address -> (seconds, read seconds)
    """
    outputs = np.asarray(outputs)
    steps = np.asarray(steps)
    results = pool.run_shared(
        "newton",
        np.stack([theta, direction]),
        outputs,
        steps,
        np.asarray(t_eval),
        hess_stride,
        folds,
    )
    check_covered(pool.plan, {a: r[0] for a, r in results.items()})
    shapes = newton_shapes(
        steps.shape[0], outputs.size, pool.plan.n_features, pool.n_classes, folds is not None
    )
    totals = reduce_worker_buffers(_buffers(results), shapes)
    hess = {a: (r[2], r[3]) for a, r in results.items() if r[2] is not None}
    timing = {a: (r[4], r[5]) for a, r in results.items()}
    return totals, hess, timing


def evaluate_pass(pool, theta, with_grad=True):
    """One pass at ``theta``: the loss (and gradient) totals and per-worker compute seconds.

    Parameters
    ----------
    pool : WorkerPool
    theta : float array of shape (n_features + 1, n_outputs, n_classes)

    Returns
    -------
    totals : list of float64 arrays
        loss (n_outputs,), and with the gradient grad_coef (n_features, n_outputs, c) and
        grad_intercept (n_outputs, c): sums over every chunk.
    timing : dict worker address -> (seconds, read seconds)
        The worker's wall time for the pass, and the part of it its reader thread spent
        reading streamed chunks (overlapping compute).
    """
    results = pool.run_shared("value_and_grad" if with_grad else "value", theta)
    check_covered(pool.plan, {a: r[0] for a, r in results.items()})
    plan = pool.plan
    shapes = gradient_shapes(plan.n_features, plan.n_outputs, pool.n_classes, with_grad)
    totals = reduce_worker_buffers(_buffers(results), shapes)
    timing = {a: (r[2], r[3]) for a, r in results.items()}
    return totals, timing


def add_hessians(hess_parts, k):
    """The workers' Hessian class-pair sums added in worker-address order (float64), and their
    weights: ``(hess (n_pairs, k, p + 1, p + 1) or None, weights (k,))``."""
    hess, hw = None, np.zeros(k)
    for addr in sorted(hess_parts):
        h, w = hess_parts[addr]
        hess = np.asarray(h, np.float64) if hess is None else hess + h
        hw += w
    return hess, hw
