"""The arithmetic of the statistics pass on one chunk: label counts and the design's Gram matrix.

Both are vectorised over outputs. Integer labels spanning a small range are counted with one
``np.bincount`` over ``(label - min) + range * output`` (no sort); any other labels go through
``np.unique``. The Gram matrix is formed in float64 from float32 (or narrower) features, where
every product is exact, so the only rounding is float64 accumulation.
"""

from __future__ import annotations

import numpy as np

from ..encoding import INT_SPAN

__all__ = ["design_gram", "label_counts"]


def label_counts(chunk_id: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct labels of ``y`` and how often each occurs in each column.

    Parameters
    ----------
    chunk_id : int
        Named in the error for labels that cannot be sorted.
    y : array of shape (rows, n_outputs)

    Returns
    -------
    labels : array of shape (n_labels,), sorted
    counts : int64 array of shape (n_labels, n_outputs)
    """
    rows, k = y.shape
    if y.dtype.kind in "iub" and y.size:
        lo, hi = int(y.min()), int(y.max())
        span = hi - lo + 1
        if span <= INT_SPAN:
            offset = y.astype(np.int64) - lo
            offset += np.arange(k, dtype=np.int64) * span
            counts = np.bincount(offset.ravel(), minlength=span * k).reshape(k, span).T
            present = np.flatnonzero(counts.sum(axis=1))
            labels = (present + lo).astype(y.dtype)
            return labels, np.ascontiguousarray(counts[present])
    try:
        labels, inverse = np.unique(y, return_inverse=True)
    except TypeError as err:
        raise TypeError(
            f"Chunk {chunk_id}: class labels of dtype {y.dtype} cannot be sorted ({err})."
        ) from err
    inverse = inverse.reshape(rows, k) + np.arange(k) * labels.size
    counts = np.bincount(inverse.ravel(), minlength=labels.size * k).reshape(k, labels.size).T
    return labels, np.ascontiguousarray(counts.astype(np.int64))


def design_gram(X: np.ndarray) -> np.ndarray:
    """``[X, 1]' [X, 1]`` in float64.

    Parameters
    ----------
    X : array of shape (rows, n_features)

    Returns
    -------
    float64 array of shape (n_features + 1, n_features + 1)
    """
    X64 = np.asarray(X, np.float64)
    p = X64.shape[1]
    out = np.empty((p + 1, p + 1))
    out[:p, :p] = X64.T @ X64
    s = X64.sum(axis=0)
    out[:p, p] = s
    out[p, :p] = s
    out[p, p] = X64.shape[0]
    return out
