"""Work units: the inputs of a distributed fit cut into row chunks aligned to the data's chunks.

:func:`plan_data` turns dask arrays, dask-backed xarray DataArrays or :class:`Sessions` into a
:class:`DataPlan`: a list of :class:`ChunkSpec` (one per row chunk of each session, or per unit
of one once split, numbered in a fixed order) plus what the coordinator needs to assemble
per-output sums (which global outputs each session recorded). Each spec carries the culled
dask graph of its block only, so a worker can read its chunk from the source (a Zarr store,
usually) without the client holding data.
:func:`split_plan` cuts every block into units of at most ``unit_rows`` rows (to balance few
large chunks over the workers); a unit keeps its block's graph and its offset in it, so a
worker reading several units of one block decodes the block once. Nothing is computed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..inputs import DesignLayout
from ..kernels.softmax import DEFAULT_BLOCK_ROWS
from .checks import zarr_layout
from .sessions import Sessions, _dim_labels, open_sessions

__all__ = [
    "ChunkSpec",
    "DataPlan",
    "cut_rows",
    "is_distributed_input",
    "plan_data",
    "split_plan",
    "whole_blocks",
]


@dataclasses.dataclass(frozen=True, eq=False)
class ChunkSpec:
    """One work unit: a block of rows of one session.

    Attributes
    ----------
    chunk_id : int
        Position in the plan; partial sums are reduced in this order.
    session : str
        Session id ("" for a single dataset).
    session_index : int
    start, stop : int
        Rows of the session this chunk covers.
    X, y : dask arrays
        The source block's design (block rows, n_features) and labels (block rows,
        n_session_outputs), each with a graph culled to that block: the chunk's own rows, or
        (a unit of a split block) the whole block, of which the chunk takes ``rows`` rows from
        ``offset`` on (:meth:`take`).
    stored : tuple of StoredBlock
        The Zarr chunks behind X and y, when the session was opened from a store (checked to
        exist before the block is first read); empty otherwise.
    offset : int
        Rows of the source block before this chunk's first row (0 unless split).
    """

    chunk_id: int
    session: str
    session_index: int
    start: int
    stop: int
    X: da.Array
    y: da.Array
    stored: tuple = ()
    offset: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def source_rows(self) -> int:
        """Rows of the source block (``rows`` unless the block was split)."""
        return int(self.X.shape[0])

    @property
    def nbytes(self) -> int:
        """Decoded bytes of this chunk's rows of ``X`` and ``y``, as stored (before any cast)."""
        return int(self.read_nbytes * self.rows // max(self.source_rows, 1))

    @property
    def read_nbytes(self) -> int:
        """Decoded bytes of the source block (what one read of it holds)."""
        return int(self.X.nbytes + self.y.nbytes)

    @property
    def block(self) -> tuple[int, int]:
        """``(session index, first row)`` of the source block: the same for its units."""
        return (self.session_index, self.start - self.offset)

    def take(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This chunk's rows of its source block as read (views; the block itself unless
        split)."""
        if self.rows == self.source_rows:
            return X, y
        rows = slice(self.offset, self.offset + self.rows)
        return X[rows], y[rows]

    def describe(self) -> str:
        where = f"session {self.session!r}, " if self.session else ""
        text = f"{where}rows {self.start}-{self.stop} (chunk {self.chunk_id})"
        if self.rows == self.source_rows:
            return text
        first = self.block[1]
        return f"{text}, a unit of the block of rows {first}-{first + self.source_rows}"


@dataclasses.dataclass(eq=False)
class DataPlan:
    """Everything the coordinator knows about distributed data before reading any of it.

    Attributes
    ----------
    chunks : list of ChunkSpec
    sessions : list of str
    session_outputs : list of int arrays
        For each session, the global output index of each of its ``y`` columns.
    outputs : array of shape (n_outputs,)
        Output ids (the union over sessions), naming ``coef_``'s output axis.
    features : array of shape (n_features,) or None
        Feature labels, when the data has them.
    layout : DesignLayout
        The design's structure (a dict X keeps its keys).
    chunk_rows : int
        Rows every chunk is padded to, so each worker compiles once per output count.
    block_rows : int or None
        Kernel block size (``chunk_rows`` is a multiple of it), or None for one block.
    kind : {"array", "xarray", "sessions"}
    unit_rows : int or None
        The rows blocks were split into (:func:`split_plan`); None: one chunk a block.

    The properties ``source`` (``(session index, start, stop)`` of every source block) and
    ``source_chunk_rows`` (the fixed row count before any split) identify the data's layout
    however it is split (the checkpoint's fingerprint).
    """

    chunks: list
    sessions: list
    session_outputs: list
    outputs: np.ndarray
    features: np.ndarray | None
    layout: DesignLayout
    chunk_rows: int
    block_rows: int | None
    kind: str
    unit_rows: int | None = None

    @property
    def source(self) -> list[tuple[int, int, int]]:
        """``(session index, start, stop)`` of every source block, in order."""
        blocks = {c.block: (*c.block, c.block[1] + c.source_rows) for c in self.chunks}
        return list(blocks.values())

    @property
    def source_chunk_rows(self) -> int:
        """The fixed row count of the blocks unsplit (``chunk_rows`` when not split)."""
        if self.unit_rows is None:
            return self.chunk_rows
        return _fixed_rows([b - a for _, a, b in self.source], self.block_rows)[0]

    @property
    def n_outputs(self) -> int:
        return int(self.outputs.size)

    def read_nbytes(self, chunk_ids) -> int:
        """Bytes one read of each source block behind ``chunk_ids`` holds, each block once
        (a worker reads a block once for its units of it)."""
        blocks = {c.block: c.read_nbytes for c in (self.chunks[i] for i in chunk_ids)}
        return sum(blocks.values())

    def n_blocks(self, chunk_ids) -> int:
        """Source blocks behind ``chunk_ids`` (each block once)."""
        return len({self.chunks[i].block for i in chunk_ids})

    @property
    def n_features(self) -> int:
        return self.layout.n_features


def _is_dask(a) -> bool:
    return isinstance(a, da.Array)


def _is_dask_dataarray(a) -> bool:
    return isinstance(a, xr.DataArray) and _is_dask(a.data)


def is_distributed_input(X) -> bool:
    """Whether ``X`` asks for the distributed fit (dask, dask-backed xarray, or sessions)."""
    if isinstance(X, (Sessions, xr.Dataset, str)) or _is_dask(X) or _is_dask_dataarray(X):
        return True
    if hasattr(X, "__fspath__"):
        return True
    if isinstance(X, Mapping):
        vals = list(X.values())
        return bool(vals) and (
            all(isinstance(v, xr.Dataset) for v in vals) or any(_is_dask(v) for v in vals)
        )
    if isinstance(X, (list, tuple)) and X:
        return all(isinstance(v, (xr.Dataset, str)) or hasattr(v, "__fspath__") for v in X)
    return False


def _is_sessions_input(X) -> bool:
    if isinstance(X, (Sessions, xr.Dataset, str)) or hasattr(X, "__fspath__"):
        return True
    if isinstance(X, Mapping):
        return bool(X) and all(isinstance(v, xr.Dataset) for v in X.values())
    return isinstance(X, (list, tuple))


def _check_known_chunks(a, what):
    if any(np.isnan(c) for dim in a.chunks for c in dim):
        raise ValueError(
            f"{what} has unknown chunk sizes (NaN); call {what}.compute_chunk_sizes() first."
        )


def _as_design(X, name="X"):
    """A 2-D dask design with one chunk along features, and its layout."""
    if isinstance(X, Mapping):
        layout = DesignLayout.from_design(X)
        parts = [da.asarray(X[k]) for k in layout.keys]
        for k, p in zip(layout.keys, parts, strict=True):
            _check_known_chunks(p, f"{name}[{k!r}]")
        Xd = da.concatenate([p.rechunk({0: parts[0].chunks[0]}) for p in parts], axis=1)
    else:
        Xd = da.asarray(X)
        layout = DesignLayout.from_design(Xd)
    _check_known_chunks(Xd, name)
    if len(Xd.chunks[1]) > 1:
        Xd = Xd.rechunk({1: -1})  # the kernel needs whole rows; rows stay chunked as stored
    return Xd, layout


def _as_labels(y, X, population, name="y"):
    """A 2-D dask label array chunked like X's rows."""
    if y is None:
        raise ValueError(f"{name} is required when X is an array (only sessions carry their y).")
    if not _is_dask(y):
        y = np.asarray(y)
        if y.ndim >= 1 and y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X and {name} must have the same number of samples; X has {X.shape[0]}, "
                f"{name} has {y.shape[0]}."
            )
        y = da.from_array(y, chunks=(X.chunks[0],) + (-1,) * (y.ndim - 1))
    yd = y
    want = 2 if population else 1
    if yd.ndim != want:
        shape = "(n_samples, n_outputs)" if population else "(n_samples,)"
        raise ValueError(f"{name} must be {want}-dimensional {shape}; got shape {yd.shape}.")
    if yd.ndim == 1:
        yd = yd[:, None]
    _check_known_chunks(yd, name)
    if yd.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and {name} must have the same number of samples; X has {X.shape[0]}, "
            f"{name} has {yd.shape[0]}."
        )
    if yd.chunks[0] != X.chunks[0] or len(yd.chunks[1]) > 1:
        yd = yd.rechunk((X.chunks[0], -1))
    return yd


def _block_specs(Xd, yd, session, session_index, first_id, ds=None):
    layouts = [] if ds is None else [zarr_layout(ds.variables[v]) for v in ("X", "y")]
    specs, start = [], 0
    for i, rows in enumerate(Xd.chunks[0]):
        (xb,) = dask.optimize(Xd.blocks[i])  # culled: the graph of this block only
        (yb,) = dask.optimize(yd.blocks[i])
        stop = start + int(rows)
        stored = tuple(lay.block(start, stop) for lay in layouts if lay is not None)
        specs.append(ChunkSpec(first_id + i, session, session_index, start, stop, xb, yb, stored))
        start = stop
    return specs


def whole_blocks(rows: int, block_rows: int) -> int:
    """``rows`` rounded up to whole kernel blocks of ``block_rows``."""
    return -(-int(rows) // block_rows) * block_rows


def _fixed_rows(rows, block_rows):
    longest = max(rows)
    if block_rows is None or longest <= block_rows:
        return longest, None
    return whole_blocks(longest, block_rows), block_rows


def plan_data(X, y=None, population=True, block_rows=DEFAULT_BLOCK_ROWS) -> DataPlan:
    """Cut distributed inputs into work units (nothing is computed).

    Parameters
    ----------
    X : dask array (n_samples, n_features), dict of them, dask-backed DataArray, or sessions
        (anything :func:`open_sessions` accepts).
    y : dask/numpy array or DataArray of shape (n_samples,) or (n_samples, n_outputs); must be
        None for sessions, which carry their labels.
    population : bool
        Whether labels are 2-D (population model) or 1-D (single output).
    block_rows : int
        Kernel block size.

    Returns
    -------
    DataPlan
    """
    if _is_sessions_input(X):
        if y is not None:
            raise ValueError(
                "Sessions carry their own labels (each session's y); call fit(sessions) without y."
            )
        sessions = open_sessions(X)
        out_index = {o: j for j, o in enumerate(sessions.outputs.tolist())}
        if not population and sessions.outputs.size != 1:
            raise ValueError(
                f"ClassifierGLM fits one output, but the sessions record "
                f"{sessions.outputs.size} outputs; use ClassifierPopulationGLM."
            )
        chunks, sess_outputs = [], []
        for s, (name, ds) in enumerate(sessions.items()):
            Xd, layout = _as_design(ds["X"].data, f"session {name!r} X")
            yd = _as_labels(ds["y"].data, Xd, True, f"session {name!r} y")
            chunks += _block_specs(Xd, yd, name, s, len(chunks), ds)
            ids = np.asarray(ds["y"].coords["output"].values).tolist()
            sess_outputs.append(np.asarray([out_index[o] for o in ids], dtype=np.int64))
        rows, block = _fixed_rows([c.rows for c in chunks], block_rows)
        return DataPlan(
            chunks,
            list(sessions),
            sess_outputs,
            sessions.outputs,
            sessions.features,
            layout,
            rows,
            block,
            "sessions",
        )
    kind, features, outputs = "array", None, None
    if isinstance(X, xr.DataArray):
        kind = "xarray"
        if X.ndim != 2:
            raise ValueError(f"X must be 2-dimensional (sample, feature); got dims {X.dims}.")
        features = _dim_labels(X, 1)
        X = X.data
    if isinstance(y, xr.DataArray):
        if y.ndim == 2 and "output" in y.coords:
            outputs = np.asarray(y.coords["output"].values)
        elif y.ndim == 2:
            outputs = _dim_labels(y, 1)
        y = y.data
    Xd, layout = _as_design(X)
    yd = _as_labels(y, Xd, population)
    if outputs is None:
        outputs = np.arange(yd.shape[1])
    chunks = _block_specs(Xd, yd, "", 0, 0)
    rows, block = _fixed_rows([c.rows for c in chunks], block_rows)
    return DataPlan(
        chunks, [""], [np.arange(yd.shape[1])], outputs, features, layout, rows, block, kind
    )


def split_plan(plan: DataPlan, unit_rows: int | None) -> DataPlan:
    """``plan`` with every block cut into chunks of at most ``unit_rows`` rows.

    A block of ``r`` rows becomes ``ceil(r / unit_rows)`` chunks, all of ``unit_rows`` rows
    but the last; chunks are renumbered in the same order (a block's chunks in row order).
    Each keeps its block's graph, stored chunks and its offset in the block (see
    :meth:`ChunkSpec.take`); the fixed row count becomes ``unit_rows``.

    Parameters
    ----------
    plan : DataPlan
        A plan as :func:`plan_data` made it (not split).
    unit_rows : int or None
        A multiple of the plan's ``block_rows`` (when it has one), below its ``chunk_rows``;
        None or ``chunk_rows``: the plan itself.

    Returns
    -------
    DataPlan
    """
    if unit_rows is None or unit_rows >= plan.chunk_rows:
        return plan
    if plan.unit_rows is not None:
        raise ValueError(f"The plan is already split into units of {plan.unit_rows} rows.")
    unit_rows = int(unit_rows)
    if unit_rows <= 0 or (plan.block_rows is not None and unit_rows % plan.block_rows):
        raise ValueError(
            f"unit_rows must be a positive multiple of the kernel block ({plan.block_rows} "
            f"rows); got {unit_rows}."
        )
    chunks = []
    for c in plan.chunks:
        offset = 0
        for rows in cut_rows([c.rows], unit_rows):
            start = c.start + offset
            chunks.append(
                dataclasses.replace(
                    c, chunk_id=len(chunks), start=start, stop=start + rows, offset=offset
                )
            )
            offset += rows
    return dataclasses.replace(plan, chunks=chunks, chunk_rows=unit_rows, unit_rows=unit_rows)


def cut_rows(rows, unit_rows: int) -> list[int]:
    """The rows of the units blocks of ``rows`` rows are cut into: ``unit_rows`` each, the
    last of a block what is left (the one rule :func:`split_plan` and the balance use)."""
    return [min(unit_rows, r - o) for r in rows for o in range(0, r, unit_rows)]
