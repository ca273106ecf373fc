"""Recording sessions: xarray Datasets sharing one feature space, opened lazily from Zarr.

A *session* is an :class:`xarray.Dataset` with a design ``X`` of dims ``(sample, feature)`` and
labels ``y`` of dims ``(sample, output)``, an ``output`` coordinate naming its outputs (neuron or
subject ids) and, optionally, a ``feature`` coordinate. A store of sessions has one group per
session, written with plain ``session.to_zarr(store, group="<session id>")``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import xarray as xr

from .stores import is_store_source, open_store, store_label

__all__ = ["DEFAULT_SESSION_CHUNK_ROWS", "Sessions", "open_sessions"]

#: Row chunking given to sessions that arrive in memory (numpy-backed Datasets).
DEFAULT_SESSION_CHUNK_ROWS = 65_536

_MAX_LISTED = 8


def _listed(values) -> str:
    items = [v.item() if isinstance(v, np.generic) else v for v in list(values)]
    shown = ", ".join(repr(v) for v in items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _dim_labels(array: xr.DataArray, axis: int):
    """The coordinate labels of one dimension, or None when it has no coordinate.

    (``DataArray.coords.get(dim)`` would invent a default ``0..n-1`` index.)
    """
    dim = array.dims[axis]
    return np.asarray(array.coords[dim].values) if dim in array.coords else None


class Sessions(Mapping):
    """An ordered mapping ``session id -> xarray.Dataset``, checked to share one feature space.

    Build it with :func:`open_sessions`. Nothing is read when it is built: the Datasets stay
    dask-backed (lazy) until a fit's workers read their chunks.

    Attributes
    ----------
    outputs : numpy array of shape (n_outputs,)
        Union of the sessions' output ids, in order of first appearance.
    features : numpy array of shape (n_features,) or None
        The shared ``feature`` coordinate, or None when the sessions have none.
    sample_dim : dict
        Each session's sample dimension name (the first dimension of its ``X``).
    """

    def __init__(self, datasets: Mapping[str, xr.Dataset]):
        if not datasets:
            raise ValueError("No sessions were given: expected at least one Dataset or group.")
        self._data = {}
        self.sample_dim = {}
        features, first = None, None
        for name, ds in datasets.items():
            ds = self._check_session(str(name), ds)
            self._data[str(name)] = ds
            feat = _dim_labels(ds["X"], 1)
            n_feat = ds["X"].shape[1]
            if first is None:
                features, first, first_p = feat, str(name), n_feat
                continue
            self._check_same_features(str(name), feat, n_feat, first, features, first_p)
        self.features = features
        seen = {}
        for ds in self._data.values():
            for o in np.asarray(ds["y"].coords["output"].values).tolist():
                seen.setdefault(o, None)
        self.outputs = np.asarray(list(seen))

    def _check_session(self, name, ds):
        if not isinstance(ds, xr.Dataset):
            raise TypeError(f"Session {name!r} must be an xarray.Dataset; got {type(ds).__name__}.")
        for var, dims in (("X", "(sample, feature)"), ("y", "(sample, output)")):
            if var not in ds:
                raise ValueError(
                    f"Session {name!r} has no variable {var!r} {dims}; it has "
                    f"{sorted(map(str, ds.data_vars))}."
                )
            if ds[var].ndim != 2:
                raise ValueError(
                    f"Session {name!r}: {var} must be 2-dimensional {dims}; got dims "
                    f"{ds[var].dims}."
                )
        sample = ds["X"].dims[0]
        if ds["y"].dims[0] != sample:
            raise ValueError(
                f"Session {name!r}: X and y must share their first (sample) dimension; X has "
                f"{ds['X'].dims}, y has {ds['y'].dims}."
            )
        if ds["y"].dims[1] != "output" or "output" not in ds["y"].coords:
            raise ValueError(
                f"Session {name!r}: y must have dims (sample, 'output') with an 'output' "
                f"coordinate naming its outputs; got dims {ds['y'].dims}."
            )
        ids = np.asarray(ds["y"].coords["output"].values)
        if len(set(ids.tolist())) != ids.size:
            dup = [v for v in set(ids.tolist()) if ids.tolist().count(v) > 1]
            raise ValueError(f"Session {name!r} names output(s) {_listed(dup)} more than once.")
        if ds["X"].chunks is None or ds["y"].chunks is None:
            ds = ds.chunk({sample: DEFAULT_SESSION_CHUNK_ROWS})
        self.sample_dim[name] = sample
        return ds

    @staticmethod
    def _check_same_features(name, feat, n_feat, first, features, first_p):
        if (feat is None) != (features is None):
            has, lacks = (name, first) if features is None else (first, name)
            raise ValueError(
                f"Session {has!r} has a feature coordinate but session {lacks!r} has none; "
                "give every session the same feature coordinate (or none)."
            )
        if features is None:
            if n_feat != first_p:
                raise ValueError(
                    f"Session {name!r} has {n_feat} features but session {first!r} has {first_p}."
                )
            return
        if feat.shape == features.shape and np.array_equal(feat, features):
            return
        missing = [f for f in features.tolist() if f not in set(feat.tolist())]
        extra = [f for f in feat.tolist() if f not in set(features.tolist())]
        if missing or extra:
            raise ValueError(
                f"Session {name!r} does not share the features of session {first!r}: it lacks "
                f"{_listed(missing)} and has extra {_listed(extra)}."
            )
        raise ValueError(
            f"Session {name!r} has the features of session {first!r} in another order "
            f"({_listed(feat)} against {_listed(features)}); reorder it with "
            "ds.sel(feature=...)."
        )

    def __getitem__(self, key: str) -> xr.Dataset:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def n_features(self) -> int:
        return int(next(iter(self._data.values()))["X"].shape[1])

    def __repr__(self) -> str:
        rows = sum(ds["X"].shape[0] for ds in self._data.values())
        return (
            f"Sessions({len(self)} sessions {_listed(self)}, {rows:,} samples, "
            f"{self.n_features} features, {self.outputs.size} outputs)"
        )


def open_sessions(source, storage_options=None) -> Sessions:
    """Open recording sessions lazily, for :meth:`ClassifierPopulationGLM.fit`.

    Parameters
    ----------
    source : str or path, URL, store, list of them, list of xarray.Dataset, or dict of them
        - a Zarr store whose groups are sessions (the group names become the session ids): a
          local path, a URL (``"s3://bucket/sessions.zarr"``, any fsspec protocol), an fsspec
          mapper, a Zarr store or group, or an ``xarray.DataTree`` (its nodes holding data);
        - a list of such stores (ids are ``"<store name>/<group>"`` when more than one store);
        - a list of Datasets (ids ``"0"``, ``"1"``, ...) or a dict ``session id -> Dataset``.

        Each session holds ``X`` (sample, feature) and ``y`` (sample, output) with an
        ``output`` coordinate. Datasets held in memory are chunked along samples.
    storage_options : dict, optional
        For URLs: fsspec's options (credentials, ``client_kwargs={"endpoint_url": ...}``).
        They travel to the workers with the chunks' graphs; workers need the filesystem
        package (``s3fs`` for ``s3://``) and, without explicit credentials, their own.

    Returns
    -------
    Sessions
        A mapping ``session id -> Dataset``; ``.outputs`` is the union of output ids.

    Raises
    ------
    ValueError
        If a session lacks ``X``/``y``/``output``, or the sessions' features differ (the message
        names the session and the features).
    """
    if isinstance(source, Sessions):
        return source
    if is_store_source(source):
        return Sessions(open_store(source, storage_options))
    if isinstance(source, xr.Dataset):
        return Sessions({"0": source})
    if isinstance(source, Mapping):
        return Sessions(dict(source))
    items = list(source)
    if items and all(is_store_source(s) for s in items):
        out = {}
        for store in items:
            prefix = f"{store_label(store)}/" if len(items) > 1 else ""
            for g, ds in open_store(store, storage_options).items():
                name = prefix + g
                if name in out:
                    raise ValueError(f"Two stores give the session id {name!r}; rename one.")
                out[name] = ds
        return Sessions(out)
    if all(isinstance(s, xr.Dataset) for s in items):
        return Sessions({str(i): ds for i, ds in enumerate(items)})
    kinds = sorted({type(s).__name__ for s in items})
    raise TypeError(
        "open_sessions expects a Zarr store path, a list of paths, a list of xarray Datasets or "
        f"a dict of them; got a {type(source).__name__} of {kinds}."
    )
