"""Opening stores of sessions: local paths, URLs (``s3://``, ``gs://``, ... through fsspec),
fsspec mappers, Zarr stores and groups, and xarray DataTrees.

Every source becomes a dict ``session id -> lazy xarray.Dataset``. The Datasets' dask graphs
hold the store (an fsspec filesystem with its ``storage_options`` for a URL), so each worker
opens the chunks it reads itself: the workers need the filesystem package (``s3fs``,
``gcsfs``, ...) installed and credentials that reach the store (given in ``storage_options``,
which travel with the graph, or found in the worker's own environment, e.g. ``AWS_*``
variables or an instance role).
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from .checks import mark_zarr_source

__all__ = ["is_store_source", "open_store", "store_label"]


def _is_url(source) -> bool:
    return isinstance(source, str) and "://" in source and not source.startswith("file://")


def _is_mapper(source) -> bool:
    try:
        from fsspec.mapping import FSMap
    except ImportError:  # pragma: no cover - fsspec comes with dask
        return False
    return isinstance(source, FSMap)


def _is_zarr(source) -> bool:
    import zarr
    from zarr.abc.store import Store

    return isinstance(source, (Store, zarr.Group))


def _is_datatree(source) -> bool:
    tree = getattr(xr, "DataTree", None)
    return tree is not None and isinstance(source, tree)


def is_store_source(source) -> bool:
    """Whether ``source`` names one store of sessions (path, URL, mapper, Zarr, DataTree)."""
    return (
        isinstance(source, (str, os.PathLike))
        or _is_mapper(source)
        or _is_zarr(source)
        or _is_datatree(source)
    )


def store_label(source) -> str:
    """A short name of a store, for session ids when several stores are opened together."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source).rstrip("/"))
    root = getattr(source, "root", None) or getattr(source, "path", None) or ""
    return os.path.basename(str(root).rstrip("/")) or type(source).__name__


def _zarr_store(source, storage_options):
    """A Zarr store object (and a group path inside it) for a path, URL, mapper or store."""
    import zarr
    from zarr.storage import FsspecStore, LocalStore

    if isinstance(source, zarr.Group):
        return source.store, source.path
    if _is_mapper(source):
        return FsspecStore.from_mapper(source, read_only=True), ""
    if _is_url(source):
        return FsspecStore.from_url(source, storage_options=storage_options, read_only=True), ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        path = path[len("file://") :] if path.startswith("file://") else path
        if storage_options:
            raise ValueError(
                f"storage_options apply to URLs such as 's3://bucket/store.zarr'; {path!r} is a "
                "local path."
            )
        return LocalStore(path, read_only=True), ""
    return source, ""


def _session_groups(store, path, shown) -> list[str]:
    import zarr

    try:
        # the store's own listing, not consolidated metadata that may predate a new group
        root = zarr.open_group(store, path=path or None, mode="r", use_consolidated=False)
    except Exception as e:  # zarr raises several types for a missing or invalid store
        raise FileNotFoundError(
            f"Cannot open a Zarr group at {shown!r}: {e}. A string X is read as the path or "
            "URL of a Zarr store of sessions; pass an array for in-memory data."
        ) from e
    groups = sorted(root.group_keys())
    if not groups:
        raise ValueError(
            f"The Zarr store {shown!r} has no groups: write one group per session with "
            "session_ds.to_zarr(store, group='<session id>')."
        )
    return groups


def _from_datatree(tree) -> dict[str, xr.Dataset]:
    out = {}
    for node in tree.subtree:
        if node is tree or not node.has_data:
            continue
        out[node.relative_to(tree)] = node.to_dataset()
    if not out:
        raise ValueError(
            f"The DataTree {tree.name!r} has no child nodes holding data: expected one node per "
            "session with X (sample, feature) and y (sample, output)."
        )
    return out


def open_store(source, storage_options: dict[str, Any] | None = None) -> dict[str, xr.Dataset]:
    """Open the sessions of one store, lazily: ``session id -> Dataset`` (dask-backed).

    Parameters
    ----------
    source : path, URL, fsspec mapper, Zarr store or group, or xarray.DataTree
        The groups directly under it (under the group, for a Zarr group) are the sessions;
        for a DataTree, its nodes holding data (ids are their paths relative to the root).
    storage_options : dict, optional
        For URLs: passed to fsspec (``{"anon": True}``, ``{"key": ..., "secret": ...,
        "client_kwargs": {"endpoint_url": ...}}`` for S3, ...).

    Raises
    ------
    FileNotFoundError
        If no Zarr group can be opened at ``source``.
    ValueError
        If it holds no session groups, or ``storage_options`` come with a local path.
    """
    if _is_datatree(source):
        return _from_datatree(source)
    store, path = _zarr_store(source, storage_options)
    shown = source if isinstance(source, (str, os.PathLike)) else repr(source)
    prefix = f"{path}/" if path else ""
    out = {}
    for g in _session_groups(store, path, shown):
        try:
            out[g] = xr.open_zarr(store, group=prefix + g, consolidated=False)
        except ValueError as e:  # e.g. X and y with different row counts
            raise ValueError(
                f"Session {g!r} (group {prefix + g!r} of {shown!r}) cannot be opened: {e}. "
                "Expected X (sample, feature) and y (sample, output) with as many rows."
            ) from e
        mark_zarr_source(out[g], store, prefix + g, str(shown))
    return out
