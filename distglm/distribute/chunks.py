"""Chunks as a worker holds them: padded host arrays with labels as small integer codes.

Between the statistics pass and the encoding (when the shared classes become known), a cached
chunk is held as a :class:`HeldChunk`: X already padded to the plan's fixed row count, and its
labels as codes among the chunk's own sorted labels (an ``int8``/``int16`` a label, where the
raw labels may be 20-byte ``<U5`` strings). :func:`encode_held` then only maps those codes to
the shared classes. :func:`held_nbytes` is what the cache budget counts for a chunk, and it is
the size of the arrays actually kept (:meth:`HeldChunk.nbytes`, and the encoded arrays after).
:class:`LabelSet` refuses, at the chunk that shows it, more distinct labels than ``n_classes``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..encoding import code_dtype, label_codes
from ..kernels.buffers import aligned_zeros

__all__ = [
    "HeldChunk",
    "LabelSet",
    "encode_held",
    "encode_read",
    "held_nbytes",
    "hold_chunk",
]


def held_nbytes(rows: int, n_features: int, n_outputs: int, n_classes: int, dtype) -> int:
    """Bytes one cached chunk takes: padded X, codes and row weights.

    Parameters
    ----------
    rows : int
        The plan's fixed chunk row count.
    n_features, n_outputs : int
        Features, and the chunk's session's outputs (label columns).
    n_classes : int
        Labels the codes range over (sets their integer type).
    dtype : numpy dtype
        The kernel dtype of X and the weights.
    """
    item = np.dtype(dtype).itemsize
    return int(rows * (item * (n_features + 1) + code_dtype(n_classes).itemsize * n_outputs))


@dataclasses.dataclass(frozen=True, eq=False)
class HeldChunk:
    """A cached chunk before the shared classes are known.

    Attributes
    ----------
    session_index : int
    X : array of shape (rows, n_features)
        The kept rows, padded with zero rows to the fixed row count, in the kernel dtype.
    labels : array of shape (n_labels,)
        The chunk's distinct labels, sorted.
    codes : int array of shape (n_kept, n_outputs)
        Each kept row's labels as indices into ``labels``.
    """

    session_index: int
    X: np.ndarray
    labels: np.ndarray
    codes: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.X.nbytes + self.codes.nbytes + self.labels.nbytes)


def _padded(X: np.ndarray, keep: np.ndarray, rows: int, dtype) -> np.ndarray:
    n = int(keep.sum())
    if n > rows:
        raise ValueError(f"A chunk of {n} rows exceeds the fixed chunk size {rows}.")
    # always a copy: the chunk as read may be the caller's own array (an in-process worker
    # reading an in-memory dask array), which the worker must neither hold nor freeze
    Xp = aligned_zeros((rows, X.shape[1]), dtype)
    Xp[:n] = X if n == X.shape[0] else X[keep]  # cast in place: no full-size temporary
    return Xp


def hold_chunk(
    session_index: int, X: np.ndarray, y: np.ndarray, keep: np.ndarray, labels, rows: int, dtype
) -> HeldChunk:
    """Pad a chunk's kept rows and turn its labels into codes among ``labels`` (sorted: the
    chunk's distinct kept labels, as the statistics pass found them)."""
    labels = np.asarray(labels)
    kept = y if bool(keep.all()) else y[keep]
    codes = label_codes(labels, kept)[0].astype(code_dtype(labels.size))
    return HeldChunk(session_index, _padded(X, keep, rows, dtype), labels, codes)


def _weights(n: int, rows: int, dtype) -> np.ndarray:
    w = aligned_zeros((rows,), dtype)
    w[:n] = 1.0
    return w


def _outside(classes: np.ndarray, found) -> ValueError:
    return ValueError(
        f"labels {np.asarray(found)[:5].tolist()} are outside the classes {classes.tolist()}."
    )


def encode_held(held: HeldChunk, classes: np.ndarray, rows: int, dtype):
    """A held chunk's arrays for the kernels: (padded X, padded codes among ``classes``,
    row weights). The held X is reused, not copied."""
    classes = np.asarray(classes)
    glob, bad = label_codes(classes, held.labels)
    if np.any(bad):
        raise _outside(classes, held.labels[bad])
    n = held.codes.shape[0]
    cp = aligned_zeros((rows, held.codes.shape[1]), code_dtype(classes.size))
    glob = np.asarray(glob, cp.dtype)
    if np.array_equal(glob, np.arange(glob.size)):
        # the chunk's labels are the first classes (the usual case): its codes are the codes
        cp[:n] = held.codes
    else:
        cp[:n] = np.take(glob, held.codes)  # 1.0 ms for 32,768 x 20 int8 codes, [] 1.9 ms
    return held.X, cp, _weights(n, rows, dtype)


def encode_read(X: np.ndarray, y: np.ndarray, keep: np.ndarray, classes, rows: int, dtype):
    """A streamed chunk, as read, to the kernels' arrays (see :func:`encode_held`)."""
    classes = np.asarray(classes)
    kept = y if bool(keep.all()) else y[keep]
    codes, bad = label_codes(classes, kept)
    if np.any(bad):
        raise _outside(classes, np.unique(kept[bad]))
    n = kept.shape[0]
    Xp = _padded(X, keep, rows, dtype)
    cp = aligned_zeros((rows, kept.shape[1]), code_dtype(classes.size))
    cp[:n] = codes
    return Xp, cp, _weights(n, rows, dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelSet:
    """The distinct labels a worker's chunks showed so far, checked against ``n_classes``.

    Attributes
    ----------
    n_classes : int or None
        The classes the fit expects (None: no check).
    labels : array or None
        The sorted union so far (None before the first chunk).
    """

    n_classes: int | None
    labels: np.ndarray | None = None

    def add(self, labels: np.ndarray, spec) -> LabelSet:
        """The set with a chunk's labels added.

        Raises
        ------
        ValueError
            If the union now holds more than ``n_classes`` labels (naming ``spec``: its
            session and rows). Labels of another type than those before are left to the
            statistics merge, which reports where each type was found.
        """
        labels = np.asarray(labels)
        if self.n_classes is None or labels.size == 0:
            return self
        if self.labels is not None and (self.labels.dtype.kind in "US") != (
            labels.dtype.kind in "US"
        ):
            return self
        union = labels if self.labels is None else np.union1d(self.labels, labels)
        if union.size > self.n_classes:
            new = labels if self.labels is None else np.setdiff1d(labels, self.labels)
            raise ValueError(
                f"n_classes={self.n_classes}, but the chunks read so far hold {union.size} "
                f"distinct labels: {spec.describe()} brought {new[:5].tolist()} to "
                f"{union[:10].tolist()}{' ...' if union.size > 10 else ''}. Give the number "
                "of distinct labels as n_classes."
            )
        return LabelSet(self.n_classes, union)
