"""What runs on a Dask worker: a :class:`ChunkWorker` holding decoded chunks and running kernels.

One ``ChunkWorker`` lives on each worker (as a Dask Actor, so a pass costs one direct call, not a
scheduled task). It is plain Python with no network code, so tests drive it directly.

- :meth:`ChunkWorker.load` reads chunks from their source (the culled dask graph of each block,
  computed here with the synchronous scheduler: the worker reads Zarr itself) and returns their
  statistics. Rows with NaN/Inf are dropped.
- :meth:`ChunkWorker.encode` turns the cached labels into small integer codes once the shared
  classes are known, pads every chunk to the plan's fixed row count (weight 0) and places the
  arrays on the worker's default JAX device. No re-read.
- :meth:`ChunkWorker.value_and_grad` / :meth:`ChunkWorker.value` evaluate the kernels on every
  cached chunk at the given parameters and return **per-chunk** sums, so the coordinator can
  reduce them in chunk-id order whatever the assignment of chunks to workers.

Every public method returns ``("ok", result)`` or ``("error", exception)``: an exception raised
by a method is then told apart from a lost worker.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ..data.stats import chunk_stats

__all__ = ["ChunkWorker", "keep_freed_memory", "unpack_chunk_sums"]


def _reported(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return ("ok", method(self, *args, **kwargs))
        except Exception as e:  # returned, re-raised at the coordinator
            return ("error", e)

    return wrapper


def unpack_chunk_sums(plan, n_classes, chunk_ids, sums, with_grad=True):
    """Cut a worker's flat buffer of per-chunk sums back into arrays.

    Parameters
    ----------
    plan : DataPlan
    n_classes : int
    chunk_ids : list of int
        As returned by :meth:`ChunkWorker.value_and_grad` / :meth:`ChunkWorker.value`.
    sums : 1-D array
    with_grad : bool

    Returns
    -------
    dict chunk id -> tuple
        ``(loss (k_s,), grad_coef (n_features, k_s, c), grad_intercept (k_s, c))``, or
        ``(loss,)`` without the gradient.
    """
    p, c = plan.n_features, int(n_classes)
    session_of = {spec.chunk_id: spec.session_index for spec in plan.chunks}
    out, offset = {}, 0
    for cid in chunk_ids:
        k = len(plan.session_outputs[session_of[cid]])
        parts = []
        for shape in [(k,), (p, k, c), (k, c)] if with_grad else [(k,)]:
            size = int(np.prod(shape))
            parts.append(sums[offset : offset + size].reshape(shape))
            offset += size
        out[cid] = tuple(parts)
    if offset != sums.size:
        raise RuntimeError(f"Got {sums.size} sums for chunks {list(chunk_ids)}; expected {offset}.")
    return out


#: glibc's mallopt parameters and the values a worker sets (see :func:`keep_freed_memory`)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 << 20, 64 << 20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed blocks of up to 32 MiB instead of returning them to the system.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes
    glibc's mmap threshold at 128 KiB: every large temporary of an XLA kernel is then mapped
    and unmapped on every call, and the kernel ran 1.4-1.7x slower in a worker than in a plain
    process (measured here: 58-64 ms against 38 ms for 65,536 x 50 x 20 x 3). Called once per
    worker when distglm's actor starts; a no-op (False) where glibc's ``mallopt`` is missing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1


def _code_dtype(n_classes):
    return np.int8 if n_classes <= 127 else np.int16


class ChunkWorker:
    """Per-worker cache of decoded chunks and the kernels over them.

    Parameters
    ----------
    session_outputs : list of int arrays
        For each session, the global output index of each of its label columns.
    chunk_rows : int
        Rows every chunk is padded to (one compile per session output count).
    block_rows : int or None
        Kernel block size.
    dtype : str
        Kernel dtype, "float32" (default) or "float64" (turns on ``jax_enable_x64`` here).
    """

    def __init__(self, session_outputs, chunk_rows, block_rows, dtype="float32"):
        import jax

        if np.dtype(dtype) == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.malloc_tuned = keep_freed_memory()
        self._session_outputs = [np.asarray(o) for o in session_outputs]
        self._rows = int(chunk_rows)
        self._block = block_rows
        self._dtype = np.dtype(dtype)
        self._raw = {}  # chunk_id -> (session_index, X kept rows, raw labels)
        self._cache = {}  # chunk_id -> (session_index, X, codes, weights) on the JAX device
        self._stats = {}  # chunk_id -> ChunkStats (a repeated load does not re-read)
        self.read_seconds = 0.0

    # ------------------------------------------------------------------ loading
    @_reported
    def load(self, specs):
        """Read chunks from their source; return their statistics.

        Parameters
        ----------
        specs : list of ChunkSpec

        Returns
        -------
        list of ChunkStats
        """
        out = []
        for spec in specs:
            if spec.chunk_id in self._stats:
                out.append(self._stats[spec.chunk_id])
                continue
            t = time.perf_counter()
            X = np.asarray(spec.X.compute(scheduler="sync"))
            y = np.asarray(spec.y.compute(scheduler="sync"))
            self.read_seconds += time.perf_counter() - t
            want = len(self._session_outputs[spec.session_index])
            if X.shape[0] != spec.rows or y.shape != (spec.rows, want):
                raise ValueError(
                    f"{spec.describe()}: expected X with {spec.rows} rows and y of shape "
                    f"{(spec.rows, want)}; read X {X.shape} and y {y.shape}."
                )
            if X.dtype.kind not in "biuf":
                raise TypeError(f"{spec.describe()}: X must be numeric; got dtype {X.dtype}.")
            stats, keep = chunk_stats(spec.chunk_id, X, y)
            self._raw[spec.chunk_id] = (spec.session_index, X[keep].astype(self._dtype), y[keep])
            self._stats[spec.chunk_id] = stats
            out.append(stats)
        return out

    @_reported
    def encode(self, classes):
        """Encode cached labels as codes among ``classes``, pad, and move to the device.

        Parameters
        ----------
        classes : array of shape (n_classes,), sorted

        Returns
        -------
        list of int
            The chunk ids now ready for passes.
        """
        import jax.numpy as jnp

        classes = np.asarray(classes)
        code_dtype = _code_dtype(classes.size)
        for cid, (s, X, y) in list(self._raw.items()):
            codes = np.searchsorted(classes, y)
            bad = (codes >= classes.size) | (classes[np.minimum(codes, classes.size - 1)] != y)
            if np.any(bad):
                raise ValueError(
                    f"Chunk {cid} holds labels {np.unique(y[bad])[:5].tolist()} outside the "
                    f"classes {classes.tolist()}."
                )
            n = X.shape[0]
            pad = self._rows - n
            Xp = np.zeros((self._rows, X.shape[1]), self._dtype)
            Xp[:n] = X
            cp = np.zeros((self._rows, y.shape[1]), code_dtype)
            cp[:n] = codes
            w = np.zeros(self._rows, self._dtype)
            w[:n] = 1.0
            assert pad >= 0, (cid, n, self._rows)
            self._cache[cid] = (s, jnp.asarray(Xp), jnp.asarray(cp), jnp.asarray(w))
            del self._raw[cid]
        return sorted(self._cache)

    # ------------------------------------------------------------------ passes
    def _session_params(self, theta):
        import jax.numpy as jnp

        theta = self._resolve(theta)
        out = {}
        for s in {entry[0] for entry in self._cache.values()}:
            th = np.asarray(theta[:, self._session_outputs[s], :], self._dtype)
            out[s] = (jnp.asarray(th[:-1]), jnp.asarray(th[-1]))
        return out

    @staticmethod
    def _resolve(theta):
        if isinstance(theta, tuple) and len(theta) == 2 and theta[0] == "scattered":
            from distributed import get_client, get_worker

            key = theta[1]
            data = get_worker().data
            if key in data:
                return data[key]
            from distributed import Future

            return get_client().gather(Future(key))
        return theta

    def _run(self, theta, with_grad):
        from ..solve.objective import _VALUE, _VALUE_AND_GRAD

        start = time.perf_counter()
        params = self._session_params(theta)
        fn = _VALUE_AND_GRAD if with_grad else _VALUE
        pending = [
            (cid, fn(params[s], X, y, w, block_rows=self._block))
            for cid, (s, X, y, w) in sorted(self._cache.items())
        ]
        # one flat float32 buffer for all chunks (one serialised frame, not 3 per chunk); the
        # coordinator knows each chunk's session and so the sizes to cut it back into
        ids = [cid for cid, _ in pending]
        flat = []
        for _, r in pending:
            if with_grad:
                loss, (gc, gb) = r
                flat += [np.asarray(loss).ravel(), np.asarray(gc).ravel(), np.asarray(gb).ravel()]
            else:
                flat.append(np.asarray(r).ravel())
        buffer = np.concatenate(flat) if flat else np.zeros(0, self._dtype)
        return ids, buffer, time.perf_counter() - start

    @_reported
    def value_and_grad(self, theta):
        """Per-chunk loss and gradient sums at ``theta``.

        Parameters
        ----------
        theta : array of shape (n_features + 1, n_outputs, n_classes)
            All outputs' parameters (intercept last); each chunk uses its session's outputs.

        Returns
        -------
        chunk_ids : list of int
            The chunks evaluated, in increasing order.
        sums : 1-D array
            For each chunk in turn, its loss sums (k_s,), gradient sums for the coefficients
            (n_features, k_s, c) and for the intercept (k_s, c), flattened and concatenated
            (k_s: the outputs of the chunk's session).
        seconds : float
            Compute time on this worker.
        """
        return self._run(theta, True)

    @_reported
    def value(self, theta):
        """Per-chunk loss sums at ``theta``: chunk ids, their (k_s,) sums concatenated, seconds."""
        return self._run(theta, False)

    @_reported
    def info(self):
        """Cached chunk ids, their bytes, and the JAX device they live on."""
        import jax

        nbytes = sum(int(a.nbytes) for entry in self._cache.values() for a in entry[1:])
        return {
            "chunks": sorted(self._cache),
            "nbytes": nbytes,
            "device": str(jax.devices()[0]),
            "read_seconds": self.read_seconds,
        }
