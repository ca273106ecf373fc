"""What runs on a Dask worker: a :class:`ChunkWorker` holding decoded chunks and running kernels.

One ``ChunkWorker`` lives on each worker (as a Dask Actor, so a pass costs one direct call, not a
scheduled task). It is plain Python with no network code, so tests drive it directly.

- :meth:`ChunkWorker.load` reads chunks from their source (the culled dask graph of each block,
  computed here with the synchronous scheduler: the worker reads Zarr itself) and returns their
  statistics. Rows with NaN/Inf are dropped.
- :meth:`ChunkWorker.encode` turns the cached labels into small integer codes once the shared
  classes are known, pads every chunk to the plan's fixed row count (weight 0) and places the
  arrays on the worker's default JAX device. No re-read.
- :meth:`ChunkWorker.adopt` takes chunks whose statistics are already known (a fit resumed
  from its checkpoint): nothing is read then; each chunk is read on the first pass, checked
  against its recorded kept rows, and kept in the cache while the budget allows.
- :meth:`ChunkWorker.newton` with a :class:`~distglm.folds.FoldRule` runs a cross-validation
  search's stacked columns: each chunk's fold weights come from its session and row range
  (recorded when the chunk is read), its codes are repeated per fold, never re-read or one-hot.
- :meth:`ChunkWorker.value_and_grad` / :meth:`ChunkWorker.value` evaluate the kernels on every
  cached chunk at the given parameters and return **per-chunk** sums, so the coordinator can
  reduce them in chunk-id order whatever the assignment of chunks to workers.

Memory: a worker caches decoded chunks up to its budget (``cache_bytes``; by default half the
worker's memory limit). Chunks past the budget are **streamed**: re-read from their source on
every pass, the next one read in a background thread while the current one is computed (Zarr
decoding and XLA both release the GIL), and copied to the device as they come. At most two
streamed chunks are alive at once, so a worker's memory is its cache plus a few chunks plus the
runtime, whatever the size of the data.

Every public method returns ``("ok", result)`` or ``("error", exception)``
(:func:`~distglm.distribute.wire.reported`): an exception raised by a method is then told apart
from a lost worker. This module imports only :mod:`distglm.kernels` and :mod:`distglm.data`
(and the encoder's label rule); it never imports the solvers.
"""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np

from ..data.checks import read_block
from ..data.stats import chunk_stats
from ..encoding import label_codes
from ..inputs import kept_rows
from ..kernels.compile_cache import enable_compile_cache
from ..kernels.compiled import NEWTON_PASS, STACKED_FOLDS, VALUE, VALUE_AND_GRAD, pad_outputs
from ..kernels.newton import class_pairs
from .budget import CacheLedger, resolve_cache_bytes
from .runtime import keep_freed_memory, process_memory
from .wire import flatten_sums, reported

__all__ = ["ChunkWorker"]


def _code_dtype(n_classes):
    return np.int8 if n_classes <= 127 else np.int16


class ChunkWorker:
    """Per-worker cache of decoded chunks, the streaming of the rest, and the kernels over them.

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
    cache_bytes : None, float, int or str
        Budget of the chunk cache (see :func:`resolve_cache_bytes`); chunks beyond it are
        streamed from their source on every pass.
    workers_on_host : int
        Workers sharing this machine (they share its memory when they have no memory limit).
    """

    def __init__(
        self,
        session_outputs,
        chunk_rows,
        block_rows,
        dtype="float32",
        cache_bytes=None,
        workers_on_host=1,
    ):
        import jax

        if np.dtype(dtype) == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.compile_cache = enable_compile_cache()
        self.malloc_tuned = keep_freed_memory()
        self._session_outputs = [np.asarray(o) for o in session_outputs]
        self._rows = int(chunk_rows)
        self._block = block_rows
        self._dtype = np.dtype(dtype)
        self._ledger = CacheLedger(self._budget(cache_bytes, workers_on_host))
        self._n_features = 0
        self._raw = {}  # chunk_id -> (session_index, X kept rows, raw labels)
        self._cache = {}  # chunk_id -> (session_index, X, codes, weights) on the JAX device
        self._streamed = {}  # chunk_id -> ChunkSpec, re-read on every pass
        self._stats = {}  # chunk_id -> ChunkStats (a repeated load does not re-read)
        self._pending = {}  # chunk_id -> ChunkSpec, adopted: read on the first pass, then cached
        self._expected = {}  # chunk_id -> kept rows the adopted statistics recorded
        self._row_ranges = {}  # chunk_id -> (session, row start, stop, kept-row mask)
        self._folds = {}  # chunk_id -> (FoldRule, fold index per padded row on the device)
        self._classes = None
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distglm-read")
        self.read_seconds = 0.0
        jax.devices()  # start the backend (a GPU's runtime) before taking the baseline
        self.memory_start = process_memory(reset_peak=True)

    @property
    def cache_bytes(self) -> int:
        """The cache budget in bytes."""
        return self._ledger.budget

    @staticmethod
    def _budget(cache_bytes, workers_on_host):
        limit = None
        try:
            from distributed import get_worker

            limit = getattr(get_worker().memory_manager, "memory_limit", None)
        except (ImportError, ValueError, AttributeError):
            pass  # not on a Dask worker (tests drive the class directly)
        return resolve_cache_bytes(cache_bytes, limit, workers_on_host=workers_on_host)

    def chunk_bytes(self, session_index):
        """Bytes one cached chunk of this session takes: padded X, codes and weights."""
        k = len(self._session_outputs[session_index])
        return self._rows * (
            self._dtype.itemsize * (self._n_features + 1) + np.dtype(np.int16).itemsize * k
        )

    # ------------------------------------------------------------------ loading
    def _read(self, spec, check_stored=False):
        """Read one chunk from its source, check it; returns (X, y) as read."""
        t = time.perf_counter()
        want = len(self._session_outputs[spec.session_index])
        X, y = read_block(spec, want, self._dtype, check_stored)
        self.read_seconds += time.perf_counter() - t
        return X, y

    @reported
    def load(self, specs):
        """Read chunks from their source; return their statistics.

        Chunks are kept (decoded) while the cache budget allows; the others are remembered by
        their spec and streamed on every pass. Reads run one ahead in a background thread.

        Parameters
        ----------
        specs : list of ChunkSpec

        Returns
        -------
        list of ChunkStats
        """
        todo = [spec for spec in specs if spec.chunk_id not in self._stats]
        if todo:
            self._n_features = todo[0].X.shape[1]
        for spec, (X, y) in zip(todo, self._prefetched(todo, self._read_checked), strict=True):
            stats, keep = chunk_stats(spec.chunk_id, X, y)
            self._row_ranges[spec.chunk_id] = (spec.session_index, spec.start, spec.stop, keep)
            cached, self._ledger = self._ledger.admit(self.chunk_bytes(spec.session_index))
            if cached:
                self._raw[spec.chunk_id] = (
                    spec.session_index,
                    X[keep].astype(self._dtype),
                    y[keep],
                )
            else:
                self._streamed[spec.chunk_id] = spec
            self._stats[spec.chunk_id] = stats
        return [self._stats[spec.chunk_id] for spec in specs]

    def _read_checked(self, spec):
        return self._read(spec, check_stored=True)

    def _prefetched(self, items, read):
        """Yield ``read(item)`` for each item, the next one read in the background thread."""
        if not items:
            return
        pending = self._reader.submit(read, items[0])
        for i in range(len(items)):
            result = pending.result()
            pending = self._reader.submit(read, items[i + 1]) if i + 1 < len(items) else None
            yield result
            del result

    def _encode_arrays(self, X, y):
        """Codes among the classes, padded to the fixed row count, as host arrays."""
        classes = self._classes
        codes, bad = label_codes(classes, y)
        if np.any(bad):
            raise ValueError(
                f"labels {np.unique(y[bad])[:5].tolist()} are outside the classes "
                f"{classes.tolist()}."
            )
        n = X.shape[0]
        if n > self._rows:
            raise ValueError(f"A chunk of {n} rows exceeds the fixed chunk size {self._rows}.")
        Xp = np.zeros((self._rows, X.shape[1]), self._dtype)
        Xp[:n] = X
        cp = np.zeros((self._rows, y.shape[1]), _code_dtype(classes.size))
        cp[:n] = codes
        w = np.zeros(self._rows, self._dtype)
        w[:n] = 1.0
        return Xp, cp, w

    def _device(self, arrays):
        import jax

        return tuple(jax.device_put(a) for a in arrays)

    @reported
    def encode(self, classes):
        """Encode cached labels as codes among ``classes``, pad, and move to the device.

        Parameters
        ----------
        classes : array of shape (n_classes,), sorted

        Returns
        -------
        list of int
            The chunk ids now ready for passes (cached and streamed).
        """
        self._classes = np.asarray(classes)
        for cid, (s, X, y) in list(self._raw.items()):
            try:
                arrays = self._encode_arrays(X, y)
            except ValueError as e:
                raise ValueError(f"Chunk {cid}: {e}") from None
            self._cache[cid] = (s, *self._device(arrays))
            del self._raw[cid]
        return sorted([*self._cache, *self._streamed])

    @reported
    def adopt(self, specs, classes, kept):
        """Take chunks whose statistics are known, without reading them (a resumed fit).

        Each chunk is admitted to the cache budget now (as :meth:`load` would) and read on the
        first pass: a cached one is kept from then on, the others are streamed.

        Parameters
        ----------
        specs : list of ChunkSpec
        classes : array of shape (n_classes,), sorted
        kept : list of int
            Each chunk's kept rows as the statistics recorded them; a read that finds another
            number raises (the data changed since).

        Returns
        -------
        list of int
            The chunk ids now ready for passes.
        """
        self._classes = np.asarray(classes)
        if specs:
            self._n_features = specs[0].X.shape[1]
        for spec, n in zip(specs, kept, strict=True):
            cid = spec.chunk_id
            if cid in self._cache or cid in self._streamed or cid in self._pending:
                continue
            cached, self._ledger = self._ledger.admit(self.chunk_bytes(spec.session_index))
            (self._pending if cached else self._streamed)[cid] = spec
            self._expected[cid] = int(n)
        return sorted([*self._cache, *self._streamed, *self._pending])

    def _read_encoded(self, spec):
        """A streamed chunk: read, drop non-finite rows, encode, pad, copy to the device."""
        X, y = self._read(spec, check_stored=spec.chunk_id in self._pending)
        keep = kept_rows(X, y)
        self._row_ranges[spec.chunk_id] = (spec.session_index, spec.start, spec.stop, keep)
        expected = self._expected.get(spec.chunk_id)
        if expected is not None and int(keep.sum()) != expected:
            raise ValueError(
                f"{spec.describe()}: {int(keep.sum())} rows without NaN/Inf, but the statistics "
                f"this fit resumed with counted {expected}: the data changed since they were "
                "gathered. Fit with resume=False to read it afresh."
            )
        try:
            arrays = self._encode_arrays(X[keep].astype(self._dtype), y[keep])
        except ValueError as e:
            raise ValueError(f"{spec.describe()}: {e}") from None
        return spec.chunk_id, spec.session_index, self._device(arrays)

    def _chunks(self):
        """Every chunk in chunk-id order as (id, session, X, codes, weights): cached ones from
        the cache, streamed (and adopted, not yet read) ones read one ahead in the background;
        an adopted chunk is cached once read."""
        ids = sorted([*self._cache, *self._streamed, *self._pending])
        to_read = [self._streamed.get(c) or self._pending[c] for c in ids if c not in self._cache]
        stream = self._prefetched(to_read, self._read_encoded)
        for cid in ids:
            if cid in self._cache:
                s, X, y, w = self._cache[cid]
            else:
                got, s, (X, y, w) = next(stream)
                assert got == cid, (got, cid)
                if self._pending.pop(cid, None) is not None:
                    self._cache[cid] = (s, X, y, w)
            yield cid, s, X, y, w

    # ------------------------------------------------------------------ passes
    def _session_params(self, theta):
        import jax.numpy as jnp

        out = {}
        for s in range(len(self._session_outputs)):
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
        start = time.perf_counter()
        read_before = self.read_seconds
        params = self._session_params(self._resolve(theta))
        fn = VALUE_AND_GRAD if with_grad else VALUE
        ids, flat = [], []
        # one flat float32 buffer for all chunks (one serialised frame, not 3 per chunk); the
        # coordinator knows each chunk's session and so the sizes to cut it back into. Each
        # chunk's sums are pulled to the host before the next chunk is computed, so a streamed
        # chunk's arrays are freed as soon as it is done.
        for cid, s, X, y, w in self._chunks():
            r = fn(params[s], X, y, w, block_rows=self._block)
            ids.append(cid)
            if with_grad:
                loss, (gc, gb) = r
                flat += [np.asarray(loss).ravel(), np.asarray(gc).ravel(), np.asarray(gb).ravel()]
            else:
                flat.append(np.asarray(r).ravel())
        buffer = flatten_sums(flat, self._dtype)
        return ids, buffer, time.perf_counter() - start, self.read_seconds - read_before

    @reported
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
            Wall time of the pass on this worker.
        read_seconds : float
            Of which reading streamed chunks (in the background thread, overlapping compute).
        """
        return self._run(theta, True)

    @reported
    def value(self, theta):
        """Per-chunk loss sums at ``theta``: chunk ids, their (k_s,) sums concatenated, seconds,
        read seconds."""
        return self._run(theta, False)

    def _fold_index(self, cid, rule):
        """The fold of each of a chunk's padded rows under ``rule``, on the device (kept)."""
        import jax

        held = self._folds.get(cid)
        if held is None or held[0] != rule:
            held = (rule, jax.device_put(rule.kept_index(*self._row_ranges[cid], self._rows)))
            self._folds[cid] = held
        return held[1]

    @reported
    def fold_counts(self, rule):
        """Per chunk, its kept rows held out by each fold of ``rule`` (a FoldRule): chunk ids
        and an int64 array of shape (n_chunks, n_folds). Reads nothing (each chunk's rows are
        recorded when it is read)."""
        ids = sorted([*self._cache, *self._streamed, *self._pending])
        missing = [cid for cid in ids if cid not in self._row_ranges]
        if missing:
            raise ValueError(f"Chunks {missing} have not been read here yet: rows unknown.")
        return ids, np.stack([rule.held_counts(*self._row_ranges[cid]) for cid in ids])

    @reported
    def newton(self, payload, outputs, steps, t_eval, hess_stride, folds=None):
        """One Newton pass (see :func:`~distglm.kernels.newton.newton_pass_sums`).

        Parameters
        ----------
        payload : array of shape (2, n_features + 1, k, n_classes), or its scattered key
            The point and the direction, for the ``k`` outputs ``outputs``.
        outputs : int array of shape (k,)
            Global indices of the outputs evaluated (the others have converged).
        steps : array of shape (n_trials, k)
        t_eval : array of shape (k,)
        hess_stride : int
        folds : FoldRule, optional
            Fit the stacked problem of a cross-validation search instead: output ``f * K + o``
            is output ``o`` on fold ``f``'s training rows (``f = n_folds``: every row), each
            chunk's fold weights derived here from its session and row range, and every
            chunk's sums end with the loss over the fold's held-out rows (k_s',).

        Returns
        -------
        chunk_ids : list of int
        sums : 1-D float32 array
            Per chunk: trial losses (n_trials, k_s'), loss (k_s',), gradient sums
            (n_features, k_s', c) and (k_s', c), with ``k_s'`` the outputs of ``outputs``
            its session recorded, in the order of ``outputs`` (and, with ``folds``, the
            held-out loss (k_s',)).
        hess : float32 array of shape (n_pairs, k, n_features + 1, n_features + 1)
            Hessian class-pair sums over this worker's chunks (in chunk-id order).
        hess_weights : float array of shape (k,)
        seconds, read_seconds : float
        """
        import jax.numpy as jnp

        start = time.perf_counter()
        read_before = self.read_seconds
        payload = np.asarray(self._resolve(payload))
        outputs = np.asarray(outputs)
        steps = np.asarray(steps)
        t_eval = np.asarray(t_eval)
        p1, k, c = payload.shape[1:]
        position = {int(o): i for i, o in enumerate(outputs)}
        per_session = {}
        session_outputs = self._session_outputs
        if folds is not None:
            session_outputs = [folds.stacked_outputs(o) for o in session_outputs]
        for s, outs in enumerate(session_outputs):
            local = [i for i, o in enumerate(outs) if int(o) in position]
            if not local:
                continue
            pos = np.array([position[int(outs[i])] for i in local])
            idx = pad_outputs(local, len(outs))
            sel = np.concatenate([pos, np.full(idx.size - pos.size, pos[-1])])
            th = payload[:, :, sel].astype(self._dtype)
            per_session[s] = (
                pos,
                jnp.asarray(idx),
                (jnp.asarray(th[0, :-1]), jnp.asarray(th[0, -1])),
                (jnp.asarray(th[1, :-1]), jnp.asarray(th[1, -1])),
                jnp.asarray(steps[:, sel], self._dtype),
                jnp.asarray(t_eval[sel], self._dtype),
            )
        hess = np.zeros((len(class_pairs(c)), k, p1, p1))
        hw = np.zeros(k)
        ids, flat = [], []
        for cid, s, X, y, w in self._chunks():
            if s not in per_session:
                ids.append(cid)
                continue
            pos, idx, th, d, st, te = per_session[s]
            if folds is not None:
                fold = self._fold_index(cid, folds)
                y, w = STACKED_FOLDS(y, w, fold, n_folds=folds.n_folds)
            trial, loss, (gc, gb), h, hws, *held = NEWTON_PASS(
                th, d, X, y, w, idx, st, te, hess_stride=int(hess_stride), block_rows=self._block
            )
            m = pos.size
            ids.append(cid)
            flat += [
                np.asarray(trial)[:, :m].ravel(),
                np.asarray(loss)[:m].ravel(),
                np.asarray(gc)[:, :m].ravel(),
                np.asarray(gb)[:m].ravel(),
                *(np.asarray(a)[:m].ravel() for a in held),
            ]
            hess[:, pos] += np.asarray(h)[:, :m]
            hw[pos] += np.asarray(hws)[:m]
        buffer = flatten_sums(flat, self._dtype)
        return (
            ids,
            buffer,
            hess.astype(self._dtype),
            hw,
            time.perf_counter() - start,
            self.read_seconds - read_before,
        )

    @reported
    def info(self):
        """Cached and streamed chunk ids, the cache's bytes and budget, the JAX device, the
        seconds spent reading, and this process's memory (now and peak since the actor
        started)."""
        import jax

        nbytes = sum(int(a.nbytes) for entry in self._cache.values() for a in entry[1:])
        return {
            "chunks": sorted([*self._cache, *self._streamed, *self._pending]),
            "cached": sorted(self._cache),
            "streamed": sorted(self._streamed),
            "pending": sorted(self._pending),
            "nbytes": nbytes,
            "cache_bytes": self.cache_bytes,
            "device": str(jax.devices()[0]),
            "read_seconds": self.read_seconds,
            "memory_start": self.memory_start,
            "memory": process_memory(),
        }
