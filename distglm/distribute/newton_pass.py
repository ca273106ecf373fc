"""A worker's Newton pass over its chunks: trial losses, gradients and Hessian blocks.

Split from :mod:`~distglm.distribute.worker` (which calls it with its chunks in chunk-id
order), so the actor stays about its cache.
"""

from __future__ import annotations

import numpy as np

from ..kernels.compiled import NEWTON_PASS, STACKED_FOLDS, pad_outputs
from ..kernels.newton import class_pairs
from .reduce import CompensatedTotals
from .wire import NEWTON_AXES, newton_shapes

__all__ = ["newton_chunk_sums"]


def newton_chunk_sums(
    chunks, held, session_outputs, payload, trial, hess_stride, block_rows, dtype, folds=None
):
    """One Newton pass (see :func:`~distglm.kernels.newton.newton_pass_sums`) over ``chunks``.

    Parameters
    ----------
    chunks : callable
        ``chunks(sessions)``: the chunks of those sessions as (chunk id, session index, X,
        codes, weights), in chunk-id order. Chunks of sessions none of whose outputs are
        evaluated (they have all converged) are not asked for, so a streamed one is not
        read; they are listed first among the chunk ids, adding nothing.
    held : dict of chunk id -> session index
        Every chunk the worker holds.
    session_outputs : list of int arrays
        Each session's global output indices.
    payload : array of shape (2, n_features + 1, k, n_classes)
        The point and the direction, for the ``k`` outputs evaluated.
    trial : tuple (outputs (k,), steps (n_trials, k), t_eval (k,))
        Global indices of the outputs evaluated, the trial steps and where to evaluate.
    hess_stride : int
    block_rows : int or None
    dtype : numpy dtype
    folds : (FoldRule, callable), optional
        A cross-validation search's stacked columns (``session_outputs`` are then the stacked
        ones): each chunk's codes repeated per fold and weighted by the fold index the callable
        gives for its chunk id; every chunk's sums end with its held-out losses (k_s',).

    Returns
    -------
    chunk_ids : list of int
        Every chunk the worker holds.
    buffer : 1-D float64 array
        :meth:`~distglm.distribute.reduce.CompensatedTotals.buffer` of the totals of
        :func:`~distglm.distribute.wire.newton_shapes` over the ``k`` outputs evaluated, in the
        order of ``outputs``: trial losses (n_trials, k), loss (k,), gradient sums
        (n_features, k, c) and (k, c) (and, with ``folds``, held-out losses (k,)).
    hess : array of shape (n_pairs, k, p + 1, p + 1) in ``dtype``
    hess_weights : array of shape (k,)
    """
    outputs, steps, t_eval = trial
    p1, k, c = payload.shape[1:]
    position = {int(o): i for i, o in enumerate(outputs)}
    shapes = newton_shapes(steps.shape[0], k, p1 - 1, c, folds is not None)
    totals = CompensatedTotals(shapes)
    axes = NEWTON_AXES[: len(shapes)]
    per_session = {}
    for s, outs in enumerate(session_outputs):
        local = [i for i, o in enumerate(outs) if int(o) in position]
        if not local:
            continue
        pos = np.array([position[int(outs[i])] for i in local])
        idx = pad_outputs(local, len(outs))
        sel = np.concatenate([pos, np.full(idx.size - pos.size, pos[-1])])
        th = payload[:, :, sel].astype(dtype)
        # numpy to the jitted kernel as it is: with a jnp.asarray of its seven arrays first, a
        # 256-row chunk's pass took 944 us in process, against 459 (bench_worker_pass.txt)
        per_session[s] = (
            pos,
            totals.positions(axes, pos),  # where its sums land, found once a pass
            idx,
            (th[0, :-1], th[0, -1]),
            (th[1, :-1], th[1, -1]),
            np.asarray(steps[:, sel], dtype),
            np.asarray(t_eval[sel], dtype),
        )
    hess = np.zeros((len(class_pairs(c)), k, p1, p1))
    hw = np.zeros(k)
    ids = sorted(cid for cid, s in held.items() if s not in per_session)
    for cid, s, X, y, w in chunks(set(per_session)):
        pos, where, idx, th, d, st, te = per_session[s]
        if folds is not None:
            rule, fold_index = folds
            y, w = STACKED_FOLDS(y, w, fold_index(cid), n_folds=rule.n_folds)
        tl, loss, (gc, gb), h, hws, *held_out = NEWTON_PASS(
            th, d, X, y, w, idx, st, te, hess_stride=int(hess_stride), block_rows=block_rows
        )
        m = pos.size
        ids.append(cid)
        parts = [
            np.asarray(tl)[:, :m],
            np.asarray(loss)[:m],
            np.asarray(gc)[:, :m],
            np.asarray(gb)[:m],
            *(np.asarray(a)[:m] for a in held_out),
        ]
        totals.add_flat(np.concatenate([a.ravel() for a in parts]), where)
        hess[:, pos] += np.asarray(h)[:, :m]
        hw[pos] += np.asarray(hws)[:m]
    return ids, totals.buffer(), hess.astype(dtype), hw
