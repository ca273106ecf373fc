"""Mapping between user class labels and the integer codes used by the solvers.

A :class:`LabelEncoder` learns the sorted set of labels once (``set_classes``) and then
turns label arrays into ``int32`` codes in ``[0, n_classes)`` (``encode``) and back
(``decode``). When the labels already are ``0, 1, ..., n_classes - 1`` encoding is a
cast, so JAX inputs stay on their device.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["INT_SPAN", "LabelEncoder", "code_dtype", "distinct_labels", "label_codes"]

#: widest range of integer labels found (and counted) with one ``np.bincount`` instead of a
#: sort (beyond it, the sort costs less memory)
INT_SPAN = 1 << 16

_MAX_LISTED = 10


def _list_labels(labels: Any) -> str:
    """Format up to ``_MAX_LISTED`` labels for an error message."""
    items = list(np.asarray(labels, dtype=object).ravel())
    shown = ", ".join(repr(_plain(v)) for v in items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... ({len(items) - _MAX_LISTED} more)"
    return f"[{shown}]"


def _plain(value: Any) -> Any:
    """Turn numpy scalars into Python scalars so that reprs read naturally."""
    return value.item() if isinstance(value, np.generic) else value


def _validate_n_classes(value: Any) -> int:
    """Return ``value`` as a Python ``int`` >= 2, or raise ``ValueError``."""
    candidate = value
    if isinstance(candidate, (np.ndarray, jax.Array)) and candidate.size == 1:
        candidate = candidate.item()
    elif isinstance(candidate, np.generic):
        candidate = candidate.item()
    ok = (
        isinstance(candidate, numbers.Real)
        and not isinstance(candidate, bool)
        and np.isfinite(candidate)
        and float(candidate) == int(candidate)
        and int(candidate) >= 2
    )
    if not ok:
        raise ValueError(f"The number of classes must be an integer >= 2; got {value!r}.")
    return int(candidate)


def code_dtype(n_labels: int) -> np.dtype:
    """The integer type of label codes among ``n_labels`` labels (int8 up to 127)."""
    return np.dtype(np.int8 if n_labels <= 127 else np.int16 if n_labels <= 32767 else np.int32)


def label_codes(classes: np.ndarray, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """The one rule from labels to codes: each label's position among the sorted classes.

    Used by the encoder, by the workers (their chunks' labels), by the lazy scores and by the
    statistics merge, so a label means the same code everywhere.

    Parameters
    ----------
    classes : array of shape (n_classes,)
        Sorted, distinct.
    labels : array of any shape
        Of a type comparable with ``classes``.

    Returns
    -------
    codes : int array of the shape of ``labels``
        In ``[0, n_classes)``; meaningless where ``bad``. Labels of at most 16 bits give
        codes of :func:`code_dtype` (int8 for up to 127 classes), others ``intp``.
    bad : bool array of the shape of ``labels``
        Labels that are not among ``classes``.

    Raises
    ------
    TypeError, ValueError
        If the labels cannot be compared with the classes (e.g. strings against numbers).
    """
    labels = np.asarray(labels)
    classes = np.asarray(classes)
    if labels.dtype.kind in "iu" and labels.dtype.itemsize <= 2 and classes.dtype.kind in "iuf":
        # labels of at most 16 bits (int8 spike-sorting labels, uint16 stimulus ids): a lookup
        # table over every value of their dtype, ~7x faster than the sorted search
        unsigned = np.dtype(f"u{labels.dtype.itemsize}")
        codes = np.take(_small_int_table(classes, labels.dtype), labels.view(unsigned))
        bad = codes < 0
        if bad.any():
            codes[bad] = 0
        return codes, bad
    codes = np.searchsorted(classes, labels)
    np.minimum(codes, classes.size - 1, out=codes)
    bad = ~np.asarray(classes[codes] == labels, dtype=bool)
    return codes, bad


def distinct_labels(labels: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D label array (``np.unique``'s result).

    Integer (or boolean) labels spanning at most :data:`INT_SPAN` values are found with one
    ``np.bincount``, no sort: 0.06 against 2.6 s for 40 million int64 labels.

    Raises
    ------
    TypeError
        If the labels cannot be sorted.
    """
    if labels.dtype.kind in "iub" and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if 0 <= lo and hi < INT_SPAN and labels.dtype.kind != "b":
            # counted as they are (no shifted copy)
            return np.flatnonzero(np.bincount(labels.astype(np.intp, copy=False))).astype(
                labels.dtype
            )
        if hi - lo < INT_SPAN:
            present = np.flatnonzero(np.bincount(labels.astype(np.int64) - lo))
            return (present + lo).astype(labels.dtype)
    return np.unique(labels)


def _small_int_table(classes: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Each value of the integer ``dtype`` (at most 16 bits; indexed by its unsigned view) to
    its code among ``classes``, -1 for the values that are not a class (classes that are not
    values of ``dtype``, e.g. 0.5 or 300 for int8, match no label)."""
    with np.errstate(invalid="ignore", over="ignore"):
        as_dtype = classes.astype(dtype)
        fits = np.asarray(as_dtype == classes, bool)
    table = np.full(1 << (8 * dtype.itemsize), -1, code_dtype(classes.size))
    table[as_dtype[fits].view(f"u{dtype.itemsize}")] = np.flatnonzero(fits)
    return table


class LabelEncoder:
    """Encode class labels as integer codes and decode them back.

    Parameters
    ----------
    n_classes :
        Number of classes, an integer >= 2.

    Attributes
    ----------
    n_classes : int
        Number of classes.
    classes_ : numpy.ndarray of shape (n_classes,) or None
        Sorted unique labels, ``None`` until :meth:`set_classes` is called.

    Examples
    --------
    >>> enc = LabelEncoder(3).set_classes(["b", "a", "c", "a"])
    >>> enc.encode(["c", "a"])
    array([2, 0], dtype=int32)
    >>> enc.decode([1, 2])
    array(['b', 'c'], dtype='<U1')
    """

    def __init__(self, n_classes: int) -> None:
        self._n_classes = _validate_n_classes(n_classes)
        self._classes: np.ndarray | None = None
        self._is_default = False

    def __repr__(self) -> str:
        return f"LabelEncoder(n_classes={self._n_classes})"

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return self._n_classes

    @property
    def classes_(self) -> np.ndarray | None:
        """Sorted unique labels of shape ``(n_classes,)``, or ``None`` when not set."""
        return self._classes

    @property
    def is_set(self) -> bool:
        """Whether :meth:`set_classes` has been called since creation or the last reset."""
        return self._classes is not None

    @property
    def is_default(self) -> bool:
        """Whether the labels are ``0, ..., n_classes - 1`` (encoding is then a cast)."""
        return self._is_default

    def reset(self) -> None:
        """Forget the classes set by :meth:`set_classes`."""
        self._classes = None
        self._is_default = False

    def check_is_set(self, method_name: str) -> None:
        """Raise ``RuntimeError`` if the classes are not set.

        Parameters
        ----------
        method_name :
            Name of the method that needs the classes, used in the message.
        """
        if self._classes is None:
            raise RuntimeError(
                f"Classes are not set. Call ``set_classes`` (or ``fit``) before ``{method_name}``."
            )

    def set_classes(self, y: Any) -> LabelEncoder:
        """Learn the class labels from an array holding every class.

        Parameters
        ----------
        y :
            Array-like of labels, any shape (numpy, JAX, list; numbers, strings or
            sortable objects). NaN entries of float arrays mark missing rows and are
            ignored.

        Returns
        -------
        :
            ``self``.

        Raises
        ------
        ValueError
            If the number of distinct labels differs from ``n_classes``.
        TypeError
            If the labels cannot be sorted.
        """
        labels = np.asarray(y).ravel()
        if labels.dtype.kind in "fc":
            labels = labels[~np.isnan(labels)]
        try:
            classes = distinct_labels(labels)
        except TypeError as err:
            raise TypeError(
                f"Class labels must be mutually sortable; got labels of dtype {labels.dtype} "
                f"that cannot be ordered ({err})."
            ) from err
        n_found = classes.shape[0]
        if n_found > self._n_classes:
            continuous = classes.dtype.kind == "f" and not np.all(classes == np.round(classes))
            hint = " y looks continuous (non-integer floats); a classifier needs class labels." * (
                bool(continuous)
            )
            raise ValueError(
                f"Found {n_found} unique class labels but n_classes is {self._n_classes}; "
                f"labels found: {_list_labels(classes)}.{hint}"
            )
        if n_found < self._n_classes:
            raise ValueError(
                f"Found only {n_found} unique class labels but n_classes is {self._n_classes}; "
                + ("y holds only one class; " if n_found == 1 else "")
                + "pass an array that holds every class at least once."
            )
        self._classes = classes
        self._is_default = classes.dtype.kind in "iuf" and bool(
            np.all(classes == np.arange(self._n_classes))
        )
        return self

    # ------------------------------------------------------------------ encode
    def encode(self, y: Any, safe: bool = True) -> np.ndarray | jax.Array:
        """Map labels to integer codes.

        Parameters
        ----------
        y :
            Labels of any shape. JAX arrays give JAX codes (computed on device);
            anything else gives numpy codes.
        safe :
            Check that every label is a known class. With ``safe=False`` no check is
            made: unknown labels give arbitrary codes in ``[0, n_classes)``. Inside
            ``jax.jit`` use ``safe=False``.

        Returns
        -------
        :
            ``int32`` codes in ``[0, n_classes)``, same shape as ``y``.

        Raises
        ------
        RuntimeError
            If the classes are not set.
        ValueError
            If ``safe`` and some labels are not among ``classes_``.
        """
        self.check_is_set("encode")
        if isinstance(y, jax.Array):
            if safe and isinstance(y, jax.core.Tracer):
                raise ValueError(
                    "encode(safe=True) cannot check traced labels; call it outside "
                    "jax transformations or pass safe=False."
                )
            return self._encode_jax(y, safe)
        return self._encode_numpy(np.asarray(y), safe)

    def _encode_jax(self, y: jax.Array, safe: bool) -> jax.Array:
        n = self._n_classes
        if self._is_default:
            if safe:
                if jnp.issubdtype(y.dtype, jnp.inexact):
                    bad = (y != jnp.floor(y)) | (y < 0) | (y >= n) | jnp.isnan(y)
                else:
                    bad = (y < 0) | (y >= n)
                if bool(jnp.any(bad)):
                    self._raise_unknown(np.asarray(y)[np.asarray(bad)])
            return y.astype(jnp.int32)
        if self._classes.dtype.kind not in "iufb":
            if safe:
                self._raise_unknown(np.asarray(y))
            return jnp.zeros(y.shape, dtype=jnp.int32)
        classes = jnp.asarray(self._classes)
        codes = jnp.minimum(jnp.searchsorted(classes, y), n - 1).astype(jnp.int32)
        if safe:
            bad = classes[codes] != y
            if bool(jnp.any(bad)):
                self._raise_unknown(np.asarray(y)[np.asarray(bad)])
        return codes

    def _encode_numpy(self, y: np.ndarray, safe: bool) -> np.ndarray:
        n = self._n_classes
        if self._is_default and y.dtype.kind in "iufb":
            if safe:
                if y.dtype.kind in "f":
                    with np.errstate(invalid="ignore"):
                        bad = (y != np.floor(y)) | ~(y >= 0) | ~(y < n)
                else:
                    bad = (y < 0) | (y >= n)
                if np.any(bad):
                    self._raise_unknown(y[bad])
            return y.astype(np.int32)
        flat = y.ravel()
        try:
            codes, bad = label_codes(self._classes, flat)
        except (TypeError, ValueError) as err:
            if safe:
                self._raise_unknown(flat, err)
            return np.zeros(y.shape, dtype=np.int32)
        if safe and np.any(bad):
            self._raise_unknown(flat[bad])
        return codes.astype(np.int32).reshape(y.shape)

    def _raise_unknown(self, bad: np.ndarray, cause: BaseException | None = None) -> None:
        """Raise a ``ValueError`` naming (some of) the unrecognised labels in ``bad``."""
        try:
            shown = np.unique(bad.ravel())
        except TypeError:
            shown = bad.ravel()
        raise ValueError(
            f"Unrecognized label(s) {_list_labels(shown)}; the valid labels are "
            f"{_list_labels(self._classes)}."
        ) from cause

    # ------------------------------------------------------------------ decode
    def decode(self, codes: Any) -> np.ndarray | jax.Array:
        """Map integer codes back to labels.

        Parameters
        ----------
        codes :
            Integer codes in ``[0, n_classes)``, any shape.

        Returns
        -------
        :
            Labels, same shape as ``codes``. With default classes the codes are returned
            unchanged (JAX stays JAX); otherwise a numpy array with the dtype of
            ``classes_``.

        Raises
        ------
        RuntimeError
            If the classes are not set.
        ValueError
            If codes are not integers in ``[0, n_classes)``.
        """
        self.check_is_set("decode")
        if self._is_default:
            return codes if isinstance(codes, (np.ndarray, jax.Array)) else np.asarray(codes)
        idx = np.asarray(codes)
        if idx.dtype.kind not in "iu":
            raise ValueError(f"Codes must be integers; got an array of dtype {idx.dtype}.")
        if idx.size and (idx.min() < 0 or idx.max() >= self._n_classes):
            raise ValueError(
                f"Codes must lie in [0, {self._n_classes}); got values from {idx.min()} "
                f"to {idx.max()}."
            )
        return self._classes[idx]
