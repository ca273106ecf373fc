"""Checks that keep a fit from losing data silently, and errors that name where a problem is.

- Where a chunk is stored: :func:`zarr_layout` (on the client, once per session and
  variable, when the data is planned) lists the Zarr chunk keys behind each row block;
  :func:`read_block` (on a worker) checks those keys exist before reading, since Zarr reads
  a missing chunk back as its fill value (NaN rows would then be dropped without a word),
  and names the session, rows and path of any failure (decompression errors, shapes that
  disagree, values beyond float32 range).
- Rows dropped for NaN/Inf: :func:`report_dropped` logs them per session, warns above
  :data:`DROPPED_WARN_FRACTION` of a session, and refuses a session with no row left.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
import zlib

import numpy as np

from ..exceptions import StoreChangedError

__all__ = [
    "DROPPED_WARN_FRACTION",
    "StoredBlock",
    "ZarrLayout",
    "check_fingerprint",
    "computed",
    "content_fingerprint",
    "mark_zarr_source",
    "read_block",
    "report_dropped",
    "zarr_layout",
]

logger = logging.getLogger("distglm.data")

#: Fraction of a session's rows dropped for NaN/Inf above which a fit warns.
DROPPED_WARN_FRACTION = 0.01

#: The key of a variable's ``encoding`` recording the Zarr array it was opened from.
_SOURCE_KEY = "distglm_zarr_source"


@dataclasses.dataclass(frozen=True, eq=False)
class StoredBlock:
    """The Zarr chunks holding one row block of one variable.

    Attributes
    ----------
    store : zarr.abc.store.Store
    path : str
        The array's path in the store (``"<session group>/X"``).
    shown : str
        The store as shown in errors (its path or URL).
    keys : tuple of str
        Chunk keys (relative to the store's root) covering the block's rows.
    fill_is_data : bool
        Whether a missing chunk reads as usable values (a finite fill value: Zarr does not
        write chunks holding only the fill value); with a NaN fill a missing chunk is an error.
    """

    store: object
    path: str
    shown: str
    keys: tuple
    fill_is_data: bool

    def where(self) -> str:
        return f"{self.shown.rstrip('/')}/{self.path}"


def mark_zarr_source(ds, store, group: str, shown: str) -> None:
    """Record in ``ds``'s ``X`` and ``y`` encodings which Zarr arrays they were opened from."""
    for var in ("X", "y"):
        if var in ds.variables:
            ds.variables[var].encoding[_SOURCE_KEY] = (store, f"{group}/{var}", shown)


@dataclasses.dataclass(frozen=True, eq=False)
class ZarrLayout:
    """How one variable's rows map onto its Zarr chunks (read once per session, on the
    client), to list the chunk keys behind any row block."""

    store: object
    path: str
    shown: str
    metadata: object
    rows: int
    n_cols: int
    fill_is_data: bool

    def block(self, start: int, stop: int) -> StoredBlock:
        """The chunks holding rows ``start:stop``."""
        keys = tuple(
            f"{self.path}/{self.metadata.encode_chunk_key((i, j))}"
            for i in range(start // self.rows, (stop - 1) // self.rows + 1)
            for j in range(self.n_cols)
        )
        return StoredBlock(self.store, self.path, self.shown, keys, self.fill_is_data)


def zarr_layout(variable) -> ZarrLayout | None:
    """The Zarr layout of ``variable`` (an xarray variable opened by
    :func:`~distglm.data.stores.open_store`), or None when it was not opened from a store."""
    source = getattr(variable, "encoding", {}).get(_SOURCE_KEY)
    if source is None:
        return None
    import zarr

    store, path, shown = source
    arr = zarr.open_array(store, path=path, mode="r")
    meta = arr.metadata
    grid = getattr(getattr(meta, "chunk_grid", None), "chunk_shape", None) or arr.chunks
    fill = np.asarray(arr.fill_value)
    return ZarrLayout(
        store,
        path,
        str(shown),
        meta,
        int(grid[0]),
        -(-int(arr.shape[1]) // int(grid[1])),
        bool(fill.dtype.kind not in "fc" or np.all(np.isfinite(fill))),
    )


def _check_stored(spec, blocks) -> None:
    from zarr.core.sync import sync

    for block in blocks:
        missing = [k for k in block.keys if not sync(block.store.exists(k))]
        if not missing:
            continue
        if block.fill_is_data:
            logger.info(
                "%s: chunk(s) %s of %s are not stored; read as the fill value",
                spec.describe(),
                missing,
                block.where(),
            )
            continue
        raise FileNotFoundError(
            f"{spec.describe()}: chunk(s) {missing[:4]} of {block.where()} are missing from the "
            "store (Zarr would read them back as the fill value NaN and the rows would be "
            "dropped). Restore them; a chunk that held only NaN is not written unless the "
            "session is written with to_zarr(..., write_empty_chunks=True)."
        )


def chunk_where(spec, var=None) -> str:
    """The chunk's session and rows, and the path of its ``var`` array (both, if None)."""
    paths = [b.where() for b in spec.stored if var is None or b.path.endswith(f"/{var}")]
    return spec.describe() + (f" at {', '.join(paths)}" if paths else "")


def computed(arr) -> np.ndarray:
    """A dask array's values, computed in this thread.

    An array of one block (a chunk's ``X`` or ``y``, as planned) is taken straight from its
    graph: ``compute`` would optimise the graph again on every call and copy the block once
    more to join it with none (together 3-10 ms of a 20 ms read of 65,536 x 50 float32 from
    Zarr). The block may then be the source's own array (an in-memory dask array): the
    caller copies before it writes or keeps it.
    """
    from dask.core import flatten
    from dask.local import get_sync

    keys = list(flatten(arr.__dask_keys__()))
    if len(keys) == 1:
        return np.asarray(get_sync(arr.__dask_graph__(), keys[0]))
    return np.asarray(arr.compute(scheduler="sync"))


def _compute(spec, var):
    try:
        return computed(getattr(spec, var))
    except (OSError, RuntimeError, ValueError) as e:
        msg = f"Reading {var} of {chunk_where(spec, var)} failed: {type(e).__name__}: {e}"
        try:
            named = type(e)(msg)
        except TypeError:  # an error type that takes other arguments
            named = RuntimeError(msg)
        raise named from e


#: every how many rows of X the fingerprint reads (all of y is read)
FINGERPRINT_STRIDE = 8


def content_fingerprint(X: np.ndarray, y: np.ndarray) -> int:
    """A checksum of one chunk as read (about 3 ms for 65,536 x 50, ``bench_stats.txt``):
    Adler-32 over the shapes, every ``FINGERPRINT_STRIDE``-th row of ``X`` and all of ``y``,
    combined with the XOR of all of ``X``'s bytes taken as 64-bit words.

    Taken in the statistics pass and compared on every later read of the chunk (streamed
    passes, a chunk moved to another worker), so a store rewritten during a fit is refused
    rather than mixed with the statistics of its old content. Any change of one value is
    seen; what goes unseen is a reordering of values among rows of X the stride skips.
    """
    Xs = np.ascontiguousarray(X[::FINGERPRINT_STRIDE])
    head = np.asarray([*X.shape, *y.shape], np.int64).tobytes()
    h = zlib.adler32(head)
    h = zlib.adler32(Xs.view(np.uint8).reshape(-1), h)
    h = zlib.adler32(np.ascontiguousarray(y).view(np.uint8).reshape(-1), h)
    raw = np.ascontiguousarray(X).view(np.uint8).reshape(-1)
    words = raw[: raw.size - raw.size % 8].view(np.uint64)
    fold = int(np.bitwise_xor.reduce(words)) if words.size else 0
    fold ^= int.from_bytes(raw[words.size * 8 :].tobytes() or b"\0", "little")
    return ((fold & 0xFFFFFFFF) ^ (fold >> 32) ^ (h << 32)) or 1


def check_fingerprint(spec, expected: int | None, X: np.ndarray, y: np.ndarray) -> int:
    """The chunk's :func:`content_fingerprint`; raises :class:`StoreChangedError` where it
    differs from ``expected`` (None or 0: nothing to compare)."""
    got = content_fingerprint(X, y)
    if expected and got != expected:
        raise StoreChangedError(
            f"{chunk_where(spec)} changed since this fit's statistics pass read it "
            f"(fingerprint {got:#018x}, was {expected:#018x}): the store was modified during "
            "the fit. Fit again once it is no longer being written."
        )
    return got


def read_block(spec, n_outputs: int, dtype, check_stored: bool):
    """Read one chunk's source block ``(X, y)``, checked; errors name session, rows, path.

    The block is the chunk's own rows, or, for a unit of a split block, the whole block
    (:meth:`~distglm.data.plan.ChunkSpec.take` cuts the unit's rows from it).

    Parameters
    ----------
    spec : ChunkSpec
    n_outputs : int
        The ``y`` columns the session records.
    dtype : numpy dtype
        The kernels' dtype: finite values beyond its range are refused.
    check_stored : bool
        Whether to check that the chunk's Zarr chunks exist (done in the statistics pass).

    Returns
    -------
    X : array of shape (source rows, n_features)
    y : array of shape (source rows, n_outputs)
    """
    if check_stored:
        _check_stored(spec, spec.stored)
    X, y = _compute(spec, "X"), _compute(spec, "y")
    rows = spec.source_rows
    if X.shape[0] != rows or y.shape != (rows, n_outputs):
        raise ValueError(
            f"{chunk_where(spec)}: expected X with {rows} rows and y of shape "
            f"{(rows, n_outputs)}; read X {X.shape} and y {y.shape}."
        )
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{chunk_where(spec, 'X')}: X must be numeric; got dtype {X.dtype}.")
    _check_range(spec, X, np.dtype(dtype))
    return X, y


def _check_range(spec, X, dtype) -> None:
    if X.dtype.kind != "f" or X.dtype.itemsize <= dtype.itemsize or dtype.kind != "f":
        return
    big = np.isfinite(X) & (np.abs(X) > np.finfo(dtype).max)
    if np.any(big):
        r, c = np.argwhere(big)[0]
        raise ValueError(
            f"{chunk_where(spec, 'X')}: X holds {int(big.sum())} finite value(s) beyond the "
            f"{dtype} "
            f"range (first {float(X[r, c])!r} at row {spec.start - spec.offset + int(r)}, "
            f"feature {int(c)}); "
            "they would become Inf. Rescale the features, or fit in float64 (jax_enable_x64)."
        )


def report_dropped(n_dropped: dict, n_rows: dict, drop_empty_sessions: bool = False) -> list[str]:
    """Log rows dropped for NaN/Inf per session, warn above the threshold, refuse empty ones.

    Parameters
    ----------
    n_dropped, n_rows : dict
        Per session id: rows dropped, and rows read.
    drop_empty_sessions : bool
        Whether a session with every row dropped is left out (with a warning) instead of
        refused.

    Returns
    -------
    list of str
        The sessions with no row left (empty unless ``drop_empty_sessions``).

    Raises
    ------
    ValueError
        If a session has no row left and not ``drop_empty_sessions``.
    """
    empty, heavy = [], []
    for s, dropped in n_dropped.items():
        total = n_rows.get(s, 0)
        name = f"session {s!r}" if s else "the data"
        if dropped:
            logger.info("%s: %d of %d rows dropped for NaN/Inf", name, dropped, total)
        if total and dropped == total:
            empty.append(s)
        elif total and dropped > DROPPED_WARN_FRACTION * total:
            heavy.append(f"{name} ({dropped} of {total} rows, {dropped / total:.1%})")
    if empty and not drop_empty_sessions:
        named = "All rows of the data have" if empty == [""] else f"Session(s) {empty} have"
        raise ValueError(
            f"{named} every row dropped for NaN or Inf in X or y "
            f"({[n_rows[s] for s in empty]} rows). Fix the data, or pass "
            "drop_empty_sessions=True to fit without them."
        )
    if empty:
        warnings.warn(
            f"Sessions {empty} have every row dropped for NaN or Inf; fitting without them.",
            UserWarning,
            stacklevel=3,
        )
    if heavy:
        warnings.warn(
            f"Rows with NaN or Inf in X or y were dropped: more than "
            f"{DROPPED_WARN_FRACTION:.0%} of " + ", ".join(heavy) + ".",
            UserWarning,
            stacklevel=3,
        )
    return empty
