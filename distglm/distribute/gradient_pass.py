"""A worker's loss (and gradient) pass over its chunks: its compensated totals in one buffer.

Pure functions of the worker's chunks and the parameters, as :mod:`.newton_pass` is for the
Newton pass; :class:`~distglm.distribute.worker.ChunkWorker` only hands them its chunks.
"""

from __future__ import annotations

import numpy as np

from ..kernels.compiled import VALUE_AND_GRAD_FLAT, VALUE_FLAT
from .reduce import CompensatedTotals
from .wire import GRADIENT_AXES, gradient_shapes

__all__ = ["gradient_chunk_sums", "resolve_shared"]


def resolve_shared(payload):
    """The array a pass was sent: itself, or the worker's copy of a scattered one (a
    ``("scattered", key)`` pair, see :meth:`~distglm.distribute.transport.DaskTransport.share`)."""
    if isinstance(payload, tuple) and len(payload) == 2 and payload[0] == "scattered":
        from distributed import Future, get_client, get_worker

        key = payload[1]
        data = get_worker().data
        if key in data:
            return data[key]
        return get_client().gather(Future(key))
    return payload


def gradient_chunk_sums(chunks, session_outputs, theta, with_grad, block_rows, dtype):
    """The worker's loss (and gradient) totals at ``theta`` over ``chunks``.

    Parameters
    ----------
    chunks : iterable of (chunk id, session index, X, codes, weights), in chunk-id order
    session_outputs : list of int arrays
        Each session's global output indices.
    theta : array of shape (n_features + 1, n_outputs, n_classes)
    with_grad : bool
    block_rows : int or None
    dtype : numpy dtype

    Returns
    -------
    chunk_ids : list of int
        The chunks added, in the order given.
    buffer : 1-D float64 array
        :meth:`~distglm.distribute.reduce.CompensatedTotals.buffer` of the totals of
        :func:`~distglm.distribute.wire.gradient_shapes`: loss sums (n_outputs,) and, with the
        gradient, coefficient sums (n_features, n_outputs, n_classes) and intercept sums
        (n_outputs, n_classes), each chunk's added at its session's outputs.
    """
    fn = VALUE_AND_GRAD_FLAT if with_grad else VALUE_FLAT
    P1, K, c = theta.shape
    shapes = gradient_shapes(P1 - 1, K, c, with_grad)
    totals = CompensatedTotals(shapes)
    axes = GRADIENT_AXES[: len(shapes)]
    # per session met: its parameters as one numpy array, and where its sums land. The jitted
    # kernel takes the numpy array as it is (on a 256-row chunk on the CPU: 107 us a call,
    # against 190 us after a jnp.asarray of it; on a GPU its ~12 KB go over once a chunk, small
    # beside a chunk's kernel), and its sums come back as one flat array
    sessions: dict = {}
    ids = []
    # each chunk's sums are pulled to the host and added before the next chunk is computed, so
    # a streamed chunk's arrays are freed as soon as it is done
    for cid, s, X, y, w in chunks:
        if s not in sessions:
            outs = session_outputs[s]
            sessions[s] = (np.asarray(theta[:, outs, :], dtype), totals.positions(axes, outs))
        params, where = sessions[s]
        part = np.asarray(fn(params, X, y, w, block_rows=block_rows))
        ids.append(cid)
        totals.add_flat(part, where)
    return ids, totals.buffer()
