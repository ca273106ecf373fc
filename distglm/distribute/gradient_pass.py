"""A worker's loss (and gradient) pass over its chunks: per-chunk sums in one flat buffer.

Pure functions of the worker's chunks and the parameters, as :mod:`.newton_pass` is for the
Newton pass; :class:`~distglm.distribute.worker.ChunkWorker` only hands them its chunks.
"""

from __future__ import annotations

import numpy as np

from ..kernels.compiled import VALUE, VALUE_AND_GRAD
from .wire import flatten_sums

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
    """Per-chunk loss (and gradient) sums at ``theta``.

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
    sums : 1-D array
        For each chunk in turn: loss sums (k_s,) and, with the gradient, coefficient sums
        (n_features, k_s, c) and intercept sums (k_s, c), flattened and concatenated.
    """
    import jax.numpy as jnp

    params = {}
    for s, outs in enumerate(session_outputs):
        th = np.asarray(theta[:, outs, :], dtype)
        params[s] = (jnp.asarray(th[:-1]), jnp.asarray(th[-1]))
    fn = VALUE_AND_GRAD if with_grad else VALUE
    ids, flat = [], []
    # one flat buffer for all chunks (one serialised frame, not 3 per chunk); the coordinator
    # knows each chunk's session and so the sizes to cut it back into. Each chunk's sums are
    # pulled to the host before the next chunk is computed, so a streamed chunk's arrays are
    # freed as soon as it is done.
    for cid, s, X, y, w in chunks:
        r = fn(params[s], X, y, w, block_rows=block_rows)
        ids.append(cid)
        if with_grad:
            loss, (gc, gb) = r
            flat += [np.asarray(loss).ravel(), np.asarray(gc).ravel(), np.asarray(gb).ravel()]
        else:
            flat.append(np.asarray(r).ravel())
    return ids, flatten_sums(flat, dtype)
