"""pynapple and nemos ``FeaturePytree`` inputs, as nemos 0.2.8 takes them.

:func:`support_pynapple` wraps the estimators' public methods: pynapple time series (``Tsd``,
``TsdFrame``, ``TsdTensor``) are read as their data arrays and nemos ``FeaturePytree`` values as
plain dicts of arrays; when any input was a pynapple object, every array result with one row per
time point comes back as a pynapple object on the input's time index and time support (rows that
a NaN made unusable stay in place, so the alignment holds). pynapple is imported only then.
Objects are recognised by their attributes, so neither pynapple nor nemos is imported to test.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse

__all__ = ["from_pynapple", "is_feature_pytree", "is_pynapple", "support_pynapple"]


def is_pynapple(x) -> bool:
    """Whether ``x`` is a pynapple time series with data (``Tsd``, ``TsdFrame``, ``TsdTensor``)."""
    return all(hasattr(x, a) for a in ("times", "data", "time_support"))


def is_feature_pytree(x) -> bool:
    """Whether ``x`` is a nemos ``FeaturePytree`` (a dict-like holding its arrays in ``.data``)."""
    return type(x).__name__ == "FeaturePytree" and isinstance(getattr(x, "data", None), dict)


def _is_tree(x) -> bool:
    """A dict of arrays (a scipy ``dok`` matrix is a dict too, but a design of its own)."""
    return isinstance(x, dict) and not scipy.sparse.issparse(x)


def _plain(x):
    """``x`` with pynapple objects replaced by their arrays and FeaturePytrees by dicts."""
    if is_feature_pytree(x):
        return {k: _plain(v) for k, v in x.data.items()}
    if _is_tree(x):
        return {k: _plain(v) for k, v in x.items()}
    if is_pynapple(x):
        return np.asarray(x.values)
    return x


def _series(x):
    """The pynapple objects in ``x`` (itself, or the leaves of a dict / FeaturePytree)."""
    if is_feature_pytree(x):
        x = x.data
    if _is_tree(x):
        return [s for v in x.values() for s in _series(v)]
    return [x] if is_pynapple(x) else []


def _same_time(a, b) -> bool:
    ta, tb = np.asarray(a.t), np.asarray(b.t)
    sa, sb = a.time_support, b.time_support
    return (
        ta.shape == tb.shape
        and np.allclose(ta, tb, rtol=0, atol=1e-9)
        and np.shape(sa.values) == np.shape(sb.values)
        and np.allclose(sa.values, sb.values, rtol=0, atol=1e-9)
    )


def from_pynapple(args, kwargs, method: str):
    """Plain inputs and the time reference (the first pynapple object, or None).

    Raises
    ------
    ValueError
        When pynapple inputs do not share one time axis and time support.
    """
    found = [s for a in (*args, *kwargs.values()) for s in _series(a)]
    for other in found[1:]:
        if not _same_time(found[0], other):
            raise ValueError(
                f"{method}: time axis mismatch: the pynapple inputs must share one time axis "
                f"and time support; got {len(found[0].t)} time points on "
                f"{found[0].time_support.values.tolist()} and {len(other.t)} on "
                f"{other.time_support.values.tolist()}."
            )
    plain_args = tuple(_plain(a) for a in args)
    plain_kwargs = {k: _plain(v) for k, v in kwargs.items()}
    return plain_args, plain_kwargs, (found[0] if found else None)


def _frame_labels(y):
    """``(columns, metadata)`` of a pynapple ``TsdFrame`` of labels, or None for anything else.

    Plain values, so a saved model keeps them: ``columns`` a list, ``metadata`` None or a
    tuple of (name, array) pairs, one value per column (a copy of the frame's metadata)."""
    if not is_pynapple(y) or np.ndim(y.values) != 2 or not hasattr(y, "columns"):
        return None
    meta = getattr(y, "metadata", None)
    columns = [c.item() if isinstance(c, np.generic) else c for c in y.columns]
    if meta is None or meta.shape[1] == 0:
        return columns, None
    return columns, tuple((str(c), np.array(meta[c].to_numpy())) for c in meta.columns)


def _metadata_frame(columns, meta):
    """The pandas metadata of a ``TsdFrame`` from :func:`_frame_labels`' plain pairs."""
    if meta is None:
        return None
    import pandas as pd

    return pd.DataFrame({name: np.asarray(values) for name, values in meta}, index=columns)


def to_pynapple(result, ref, labels=None):
    """Array results with one row per time point of ``ref`` as pynapple objects on its index.

    ``labels``: ``(columns, metadata)`` of the ``TsdFrame`` of labels the model was fitted on;
    a 2-D result with one column per output gets them (a copy of the metadata), as in nemos.
    """
    if isinstance(result, tuple):
        return tuple(to_pynapple(r, ref, labels) for r in result)
    if not hasattr(result, "shape") or not hasattr(result, "ndim") or result.ndim == 0:
        return result
    t = np.asarray(ref.t)
    if result.shape[0] != t.shape[0]:
        return result
    arr = np.asarray(result)
    if arr.dtype.kind not in "biuf":
        return result  # pynapple holds numbers only; labels of other types stay an array
    import pynapple as nap

    if arr.ndim == 1:
        return nap.Tsd(t=t, d=arr, time_support=ref.time_support)
    if arr.ndim == 2:
        if labels is not None and len(labels[0]) == arr.shape[1]:
            columns, meta = labels
            return nap.TsdFrame(
                t=t,
                d=arr,
                time_support=ref.time_support,
                columns=list(columns),
                metadata=_metadata_frame(list(columns), meta),
            )
        return nap.TsdFrame(t=t, d=arr, time_support=ref.time_support)
    return nap.TsdTensor(t=t, d=arr, time_support=ref.time_support)


def support_pynapple(method):
    """Decorate an estimator method to take pynapple / FeaturePytree inputs (see module doc).

    The host (an estimator, or its :class:`~distglm.predict.Fitted` value) declares
    ``_labels_for_pynapple``: the columns and metadata of the labels fitted on, or None.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        y = args[1] if len(args) > 1 else kwargs.get("y")
        args, kwargs, ref = from_pynapple(args, kwargs, method.__name__)
        result = method(self, *args, **kwargs)
        if method.__name__ == "fit" and result is self:
            # the labels' columns and metadata, given back on predictions (as nemos does)
            self._pynapple_labels = _frame_labels(y)
        if ref is None or result is self:
            return result
        # the estimator and its Fitted value both declare the labels they give back
        return to_pynapple(result, ref, self._labels_for_pynapple)

    return wrapper
