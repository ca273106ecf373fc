"""The wire format between the coordinator and the worker actors.

A worker returns each pass's per-chunk sums as one flat buffer (one serialised frame, not a few
per chunk); the coordinator knows each chunk's session, hence the shapes to cut it back into.
Every actor method returns ``("ok", result)`` or ``("error", exception)``, so an exception
raised by a method is told apart from a lost worker.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "flatten_sums",
    "reported",
    "split_flat",
    "unpack_chunk_sums",
    "unpack_newton_sums",
]


def flatten_sums(parts, dtype):
    """Concatenate per-chunk arrays, raveled, into one flat buffer (empty: ``dtype`` zeros)."""
    return np.concatenate([np.asarray(p).ravel() for p in parts]) if parts else np.zeros(0, dtype)


def reported(method):
    """Wrap an actor method so it returns ``("ok", result)`` or ``("error", exception)``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return ("ok", method(self, *args, **kwargs))
        except Exception as e:  # returned, re-raised at the coordinator
            return ("error", e)

    return wrapper


def unpack_chunk_sums(plan, n_classes, chunk_ids, sums, with_grad=True):
    """Cut a worker's flat buffer of per-chunk sums back into arrays.

    Parameters
    ----------
    plan : DataPlan
    n_classes : int
    chunk_ids : list of int
        As returned by :meth:`ChunkWorker.value_and_grad` / :meth:`ChunkWorker.value`.
    sums : 1-D array
    with_grad : bool

    Returns
    -------
    dict chunk id -> tuple
        ``(loss (k_s,), grad_coef (n_features, k_s, c), grad_intercept (k_s, c))``, or
        ``(loss,)`` without the gradient.
    """
    p, c = plan.n_features, int(n_classes)
    session_of = {spec.chunk_id: spec.session_index for spec in plan.chunks}

    def shapes(cid):
        k = len(plan.session_outputs[session_of[cid]])
        return [(k,), (p, k, c), (k, c)] if with_grad else [(k,)]

    return split_flat(chunk_ids, sums, shapes)


def split_flat(chunk_ids, sums, shapes):
    """Cut a flat buffer into per-chunk arrays: ``shapes(chunk_id)`` lists each chunk's shapes,
    in buffer order. Returns dict chunk id -> tuple of arrays; checks the sizes add up."""
    out, offset = {}, 0
    for cid in chunk_ids:
        parts = []
        for shape in shapes(cid):
            size = int(np.prod(shape))
            parts.append(sums[offset : offset + size].reshape(shape))
            offset += size
        out[cid] = tuple(parts)
    if offset != sums.size:
        raise RuntimeError(f"Got {sums.size} sums for chunks {list(chunk_ids)}; expected {offset}.")
    return out


def unpack_newton_sums(plan, n_classes, outputs, n_trials, results, folds=None):
    """The workers' answers to a Newton pass on ``outputs``, unpacked.

    Parameters
    ----------
    plan : DataPlan
    n_classes : int
    outputs : int array of shape (k,)
        The global outputs of the pass.
    n_trials : int
        Step sizes tried per output.
    results : dict worker address -> (chunk ids, flat sums, pair sums, weights, seconds,
        read seconds)
    folds : FoldRule, optional
        A cross-validation search's pass: ``outputs`` are stacked columns, and every chunk's
        sums end with its held-out losses (k_s',).

    Returns
    -------
    per_chunk : dict chunk id -> (trial (T, k_s'), loss (k_s',), grad_coef (p, k_s', c),
        grad_intercept (k_s', c)) for the outputs of ``outputs`` its session recorded
    hess : dict worker address -> (pair sums, weights)
    timing : dict worker address -> (seconds, read seconds)
    """
    p, c, T = plan.n_features, n_classes, n_trials
    session_of = {spec.chunk_id: spec.session_index for spec in plan.chunks}
    active = set(np.asarray(outputs).tolist())
    session_outputs = plan.session_outputs
    if folds is not None:
        session_outputs = [folds.stacked_outputs(o) for o in session_outputs]
    counts = [sum(int(o) in active for o in outs) for outs in session_outputs]
    per_chunk, hess, timing = {}, {}, {}

    def shapes(cid):
        k = counts[session_of[cid]]
        return [(T, k), (k,), (p, k, c), (k, c), *([(k,)] if folds is not None else [])]

    for addr, (ids, sums, h, hw, seconds, read) in results.items():
        timing[addr] = (seconds, read)
        hess[addr] = (h, hw)
        per_chunk.update(split_flat(ids, sums, shapes))
    return per_chunk, hess, timing
