"""Lazy prediction over dask arrays, dask-backed xarray and sessions.

A fitted model's parameters are small; they are closed over by per-block functions that
``dask.array.map_blocks`` applies to each row chunk, so ``predict``, ``predict_proba`` and
``simulate`` return lazy dask arrays (xarray DataArrays with coordinates when given xarray, a
dict of them for sessions) and compute nothing until asked. :func:`score_sums` builds the
per-output sums a whole-dataset score needs (log-likelihood, sample and class counts) and
computes them in one pass.
"""

from __future__ import annotations

import functools

import dask
import dask.array as da
import jax
import numpy as np
import xarray as xr

from ..encoding import label_codes
from ..inputs import kept_rows
from ..kernels.linear import log_proba
from .plan import _as_design, _as_labels, _is_sessions_input
from .sessions import open_sessions

__all__ = ["LazyModel"]


def _log_proba_block(x, coef, intercept):
    xj = jax.numpy.asarray(x, coef.dtype)
    return np.asarray(log_proba(jax.numpy.asarray(coef), jax.numpy.asarray(intercept), xj))


class LazyModel:
    """Fitted parameters applied lazily to distributed inputs.

    Parameters
    ----------
    coef : float array of shape (n_features, n_outputs, n_classes)
    intercept : float array of shape (n_outputs, n_classes)
    classes : array of shape (n_classes,)
    outputs : array of shape (n_outputs,)
        Output ids (``outputs_``), used to select a session's outputs.
    population : bool
        False for ``ClassifierGLM``: results have no output axis.
    """

    def __init__(self, coef, intercept, classes, outputs, population):
        self.coef = np.asarray(coef, np.float32)
        self.intercept = np.asarray(intercept, np.float32)
        self.classes = np.asarray(classes)
        self.outputs = np.asarray(outputs)
        self.population = population

    # ------------------------------------------------------------------ dispatch
    def _targets(self, X):
        """(name, design dask array, coef, intercept, session outputs, source) per target."""
        if _is_sessions_input(X):
            sessions = open_sessions(X)
            index = {o: j for j, o in enumerate(self.outputs.tolist())}
            out = []
            for name, ds in sessions.items():
                ids = np.asarray(ds["y"].coords["output"].values)
                unknown = [o for o in ids.tolist() if o not in index]
                if unknown:
                    raise ValueError(
                        f"Session {name!r} records outputs {unknown[:8]} that the model was not "
                        "fitted on."
                    )
                sel = np.asarray([index[o] for o in ids.tolist()], dtype=np.int64)
                Xd, _ = _as_design(ds["X"].data, f"session {name!r} X")
                out.append((name, Xd, sel, ids, ds["X"]))
            return out, "sessions"
        source = X if isinstance(X, xr.DataArray) else None
        data = X.data if source is not None else X
        Xd, _ = _as_design(data)
        return [(None, Xd, np.arange(self.outputs.size), self.outputs, source)], (
            "xarray" if source is not None else "array"
        )

    def _check_features(self, Xd):
        if Xd.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"Inconsistent number of features: the model has {self.coef.shape[0]}, X has "
                f"{Xd.shape[1]}."
            )

    def _log_proba(self, Xd, sel):
        self._check_features(Xd)
        coef, icpt = self.coef[:, sel], self.intercept[sel]
        k, c = coef.shape[1], coef.shape[2]
        return da.map_blocks(
            functools.partial(_log_proba_block, coef=coef, intercept=icpt),
            Xd,
            new_axis=2,
            chunks=(Xd.chunks[0], (k,), (c,)),
            dtype=np.float32,
        )

    def _wrap(self, arr, source, ids, with_class, name):
        """Drop the output axis for a single-output model; wrap as xarray when given xarray."""
        if not self.population:
            arr = arr[:, 0]
        if source is None:
            return arr
        sample = source.dims[0]
        dims = (
            [sample] + (["output"] if self.population else []) + (["class"] if with_class else [])
        )
        coords = {}
        if sample in source.coords:
            coords[sample] = source.coords[sample]
        if self.population:
            coords["output"] = ids
        if with_class:
            coords["class"] = self.classes
        return xr.DataArray(arr, dims=dims, coords=coords, name=name)

    def _apply(self, X, fn):
        targets, kind = self._targets(X)
        results = {}
        for sess, Xd, sel, ids, source in targets:
            if kind == "sessions" and source is None:
                source = xr.DataArray(Xd)
            results[sess] = fn(Xd, sel, source, ids)
        if kind == "sessions":
            return results
        return results[None]

    # ------------------------------------------------------------------ public
    def log_proba(self, X, proba=False):
        """Lazy (log-)probabilities, (n, [k,] c)."""

        def fn(Xd, sel, source, ids):
            lp = self._log_proba(Xd, sel)
            if proba:
                p = da.exp(lp)
                lp = p / p.sum(axis=-1, keepdims=True)
            return self._wrap(lp, source, ids, True, "proba" if proba else "log_proba")

        return self._apply(X, fn)

    def predict(self, X):
        """Lazy most probable labels, (n, [k])."""
        classes = self.classes

        def fn(Xd, sel, source, ids):
            codes = self._log_proba(Xd, sel).argmax(axis=-1)
            labels = codes.map_blocks(lambda c: classes[c], dtype=classes.dtype)
            return self._wrap(labels, source, ids, False, "prediction")

        return self._apply(X, fn)

    def simulate(self, key, X):
        """Lazy draws (labels) and the log-probabilities they were drawn from.

        Each row chunk draws with ``fold_in(key, chunk index)``, so draws are reproducible for
        a given key and chunking (they differ from the in-memory draws with the same key).
        """
        key_data = np.asarray(
            jax.random.key_data(key)
            if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
            else key
        )
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        classes = self.classes
        salt = {"n": 0}

        def draw(lp, offset, block_info=None):
            k = jax.random.wrap_key_data(key_data) if typed else key_data
            k = jax.random.fold_in(k, offset + block_info[0]["chunk-location"][0])
            return classes[np.asarray(jax.random.categorical(k, lp))]

        def fn(Xd, sel, source, ids):
            lp = self._log_proba(Xd, sel)
            offset = salt["n"]
            salt["n"] += len(Xd.chunks[0])
            labels = lp.map_blocks(draw, offset, drop_axis=2, dtype=classes.dtype)
            return (
                self._wrap(labels, source, ids, False, "simulated"),
                self._wrap(lp, source, ids, True, "log_proba"),
            )

        out = self._apply(X, fn)
        if isinstance(out, dict):
            return {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()}
        return out

    def score_sums(self, X, y=None, per_session=False):
        """Per-output log-likelihood sums, sample counts and class counts over the dataset.

        Rows with NaN/Inf in X or y are dropped. Computed in one pass.

        Returns
        -------
        ll : float64 array of shape (n_outputs,)
        counts : int array of shape (n_outputs, n_classes)
        sessions : dict, only with ``per_session=True``
            ``session id -> (ll, counts, output indices)``, the same sums over that session's
            outputs (``output indices`` into ``outputs``), from the same pass.
        """
        classes = self.classes
        c = classes.size
        if _is_sessions_input(X):
            if y is not None:
                raise ValueError("Sessions carry their own labels; call score(sessions).")
            sessions = open_sessions(X)
            targets, _ = self._targets(sessions)
            pairs = [
                (Xd, _as_labels(sessions[name]["y"].data, Xd, True), sel)
                for name, Xd, sel, _, _ in targets
            ]
            names = [name for name, *_ in targets]
        else:
            targets, _ = self._targets(X)
            _, Xd, sel, _, _ = targets[0]
            yv = y.data if isinstance(y, xr.DataArray) else y
            pairs = [(Xd, _as_labels(yv, Xd, self.population), sel)]
            names = [None]
            if per_session:
                raise ValueError("per_session scores need sessions; X is one dataset.")

        def block_sums(x, yb, coef, icpt):
            keep = kept_rows(x, yb)
            x, yb = x[keep], yb[keep]
            codes, bad = label_codes(classes, yb)
            if np.any(bad):
                raise ValueError(
                    f"y holds labels {np.unique(yb[bad])[:5].tolist()} that are not among "
                    f"classes_ {classes.tolist()}."
                )
            lp = _log_proba_block(x, coef, icpt)
            k = yb.shape[1]
            ll = np.take_along_axis(lp, codes[..., None], axis=2)[..., 0].astype(np.float64)
            out = np.zeros((1, k, 1 + c))
            out[0, :, 0] = ll.sum(axis=0)
            for j in range(k):
                out[0, j, 1:] = np.bincount(codes[:, j], minlength=c)
            return out

        K = self.outputs.size
        ll_tot, counts = np.zeros(K), np.zeros((K, c), dtype=np.int64)
        lazies = []
        for Xd, yd, sel in pairs:
            self._check_features(Xd)
            coef, icpt = self.coef[:, sel], self.intercept[sel]
            s = da.map_blocks(
                functools.partial(block_sums, coef=coef, icpt=icpt),
                Xd,
                yd,
                dtype=np.float64,
                new_axis=2,
                chunks=((1,) * len(Xd.chunks[0]), (len(sel),), (1 + c,)),
            ).sum(axis=0)
            lazies.append((s, sel))
        computed = dask.compute(*[s for s, _ in lazies])
        by_session = {}
        for name, (_, sel), s in zip(names, lazies, computed, strict=True):
            ll_tot[sel] += s[:, 0]
            counts[sel] += np.rint(s[:, 1:]).astype(np.int64)
            by_session[name] = (s[:, 0], np.rint(s[:, 1:]).astype(np.int64), sel)
        return (ll_tot, counts, by_session) if per_session else (ll_tot, counts)
