"""What runs on a Dask worker: a :class:`ChunkWorker` reading chunks and running kernels on them.

One ``ChunkWorker`` lives on each worker (as a Dask Actor, so a pass costs one direct call, not a
scheduled task). It is plain Python with no network code (but :meth:`ChunkWorker.relay`, which
hands a relayed call to :mod:`.relay`), so tests drive it directly. Where each chunk is and the
cache budget: :class:`~.holdings.ChunkHoldings`; memory plan: :func:`~.worker_memory.plan_memory`;
the chunks each pass runs over, read, encoded and timed: :class:`~.pass_chunks.PassChunks`.

- :meth:`ChunkWorker.load` reads chunks from their source (the culled dask graph of each block,
  computed here with the synchronous scheduler: the worker reads Zarr itself) and returns their
  statistics. Rows with NaN/Inf are dropped.
- :meth:`ChunkWorker.encode` turns the cached labels into small integer codes once the shared
  classes are known, pads every chunk to the plan's fixed row count (weight 0) and places the
  arrays on the worker's default JAX device. No re-read.
- :meth:`ChunkWorker.adopt` takes chunks whose statistics are already known (a fit resumed
  from its checkpoint): each is read on the first pass, checked against its recorded kept rows.
- :meth:`ChunkWorker.newton` with a :class:`~distglm.folds.FoldRule` runs a cross-validation
  search's stacked columns: each chunk's fold weights come from its session and row range.
- :meth:`ChunkWorker.value_and_grad` / :meth:`ChunkWorker.value` / :meth:`ChunkWorker.newton`
  return the worker's **totals** over its chunks, added exactly (:mod:`.reduce`): one buffer of
  the problem's size per worker, whatever the assignment of chunks to workers.

Streamed chunks are read one ahead in a background thread (:mod:`~distglm.distribute.reader`).
Every public method returns ``("ok", result)`` or ``("error", exception)``
(:func:`~distglm.distribute.wire.reported`): an exception raised by a method is then told apart
from a lost worker. This module imports only :mod:`distglm.kernels` and :mod:`distglm.data`
(and the encoder's label rule); it never imports the solvers.
"""

from __future__ import annotations

import numpy as np

from ..kernels.compile_cache import enable_compile_cache
from .chunks import held_nbytes
from .gradient_pass import gradient_chunk_sums, resolve_shared
from .holdings import ChunkHoldings
from .newton_pass import newton_chunk_sums
from .pass_chunks import PassChunks
from .reader import ChunkReader
from .runtime import HeapGuard, keep_freed_memory, process_memory, return_freed_memory
from .wire import reported
from .worker_memory import BUDGET_EVENT, check_stats_size, dask_memory_limit, plan_memory

__all__ = ["BUDGET_EVENT", "ChunkWorker"]


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
    n_features : int
        Features of every chunk (sizes the default budget's working memory).
    read_bytes : int
        The largest source block's bytes as read, X and labels decoded (the same).
    n_classes : int, optional
        The classes the fit expects: a load whose chunks show more distinct labels fails at
        once, naming the chunk (and codes are sized for them).
    read_limits : (float, float)
        ``(factor, floor)`` of the deadline on each chunk read (see
        :func:`~distglm.distribute.deadline.read_deadline`).
    """

    def __init__(
        self,
        session_outputs,
        chunk_rows,
        block_rows,
        dtype="float32",
        cache_bytes=None,
        workers_on_host=1,
        n_features=0,
        read_bytes=0,
        n_classes=None,
        read_limits=(10.0, 60.0),
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
        self._n_features = int(n_features)
        self._n_classes = n_classes
        jax.devices()  # start the backend (a GPU's runtime) before taking the baseline
        self.memory_start = process_memory(reset_peak=True)
        held = max((self.chunk_bytes(s) for s in range(len(self._session_outputs))), default=0)
        rss = self.memory_start["rss"]
        plan = plan_memory(self.memory_limit, cache_bytes, workers_on_host, rss, read_bytes, held)
        self.holdings = ChunkHoldings(plan.cache_bytes, self.chunk_bytes)
        self._heap = HeapGuard(plan.planned)
        self._classes = None
        self._reader = ChunkReader(self._session_outputs, self._dtype, read_limits)
        self._pass_chunks = PassChunks(
            self.holdings, self._reader, self._heap, self._rows, self._dtype, n_classes
        )

    @property
    def cache_bytes(self) -> int:
        """The cache budget in bytes."""
        return self.holdings.budget

    @property
    def memory_limit(self) -> int | None:
        """This Dask worker's memory limit (None outside a worker or without a limit)."""
        return dask_memory_limit()

    def chunk_bytes(self, session_index):
        """Bytes one cached chunk of this session takes: padded X, codes and weights."""
        k = len(self._session_outputs[session_index])
        c = 32767 if self._n_classes is None else int(self._n_classes)
        return held_nbytes(self._rows, self._n_features, k, c, self._dtype)

    # ------------------------------------------------------------------ loading
    @property
    def read_seconds(self) -> float:
        """Seconds this worker spent reading chunks."""
        return self._reader.seconds

    @property
    def block_reads(self) -> int:
        """Source block reads this worker made (units of a block read in turn share one)."""
        return self._reader.count

    @reported
    def load(self, specs, fingerprints=None):
        """Read chunks from their source; return their statistics.

        Chunks are kept (padded, labels as codes) while the cache budget allows; the others
        are remembered by their spec and streamed on every pass. Reads run one ahead in a
        background thread.

        Parameters
        ----------
        specs : list of ChunkSpec
        fingerprints : dict of chunk id -> int, optional
            What the statistics pass read (chunks moved here from another worker): a chunk
            that reads otherwise raises :class:`~distglm.exceptions.StoreChangedError`.

        Returns
        -------
        list of ChunkStats

        Raises
        ------
        ValueError
            As soon as the chunks read show more distinct labels than ``n_classes`` (naming
            the chunk where the count was passed).
        """
        h = self.holdings
        todo = [spec for spec in specs if spec.chunk_id not in h.stats]
        if todo:
            self._n_features = todo[0].X.shape[1]
            n = len(todo) + len(h.stats)
            rss = self.memory_start["rss"]
            check_stats_size(self.memory_limit, rss, n, self._n_features, self._rows)
        self._pass_chunks.read_statistics(todo, fingerprints or {})
        return [h.stats[spec.chunk_id] for spec in specs]

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
        self._pass_chunks.encode(self._classes)
        h = self.holdings
        return sorted([*h.cache, *h.streamed])

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
            self.holdings.adopt(spec, n)
        return self.holdings.ready()

    def _chunks(self, sessions=None):
        """Every chunk in chunk-id order as (id, session, X, codes, weights), cached or read
        (:meth:`~.pass_chunks.PassChunks.chunks`); with ``sessions``, only those sessions'."""
        return self._pass_chunks.chunks(self._classes, sessions)

    # ------------------------------------------------------------------ passes
    def _run(self, theta, with_grad):
        return self._pass_chunks.timed(
            lambda: gradient_chunk_sums(
                self._chunks(),
                self._session_outputs,
                resolve_shared(theta),
                with_grad,
                self._block,
                self._dtype,
            )
        )

    @reported
    def value_and_grad(self, theta):
        """Loss and gradient totals over this worker's chunks at ``theta``.

        Parameters
        ----------
        theta : array of shape (n_features + 1, n_outputs, n_classes)
            All outputs' parameters (intercept last); each chunk uses its session's outputs.

        Returns
        -------
        chunk_ids : list of int
            The chunks evaluated, in increasing order.
        buffer : 1-D float64 array
            The compensated totals of loss (n_outputs,) and gradient (n_features, n_outputs, c)
            and (n_outputs, c) (:func:`~.gradient_pass.gradient_chunk_sums`).
        seconds, read_seconds : float
            Wall time of the pass here, and of it the reads of streamed chunks (background).
        """
        return self._run(theta, True)

    @reported
    def value(self, theta):
        """Loss totals at ``theta``: as :meth:`value_and_grad`, without the gradient."""
        return self._run(theta, False)

    def _fold_index(self, cid, rule):
        import jax

        return self.holdings.fold_index(cid, rule, self._rows, jax.device_put)

    @reported
    def fold_counts(self, rule):
        """Per chunk, its kept rows held out by each fold of ``rule`` (a FoldRule): chunk ids
        and, for each, an int64 array of shape (n_folds, k_s). Reads nothing (each chunk's rows are
        recorded when it is read)."""
        return self.holdings.fold_counts(rule)

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
            chunk's fold weights derived here from its session and row range, and the totals
            end with the loss over the folds' held-out rows (k,).

        Returns
        -------
        chunk_ids : list of int
            Every chunk this worker holds (those of sessions with no output evaluated: unread).
        buffer : 1-D float64 array
            Compensated totals over the ``k`` outputs, in the order of ``outputs``
            (:func:`~.newton_pass.newton_chunk_sums`).
        hess : float32 array of shape (n_pairs, k, n_features + 1, n_features + 1)
            Hessian class-pair sums over this worker's chunks (float64 accumulation).
        hess_weights : float array of shape (k,)
        seconds, read_seconds : float
        """

        def run():
            held = self.holdings.sessions()
            session_outputs = self._session_outputs
            if folds is not None:
                session_outputs = [folds.stacked_outputs(o) for o in session_outputs]
            return newton_chunk_sums(
                self._chunks,
                held,
                session_outputs,
                np.asarray(resolve_shared(payload)),
                (np.asarray(outputs), np.asarray(steps), np.asarray(t_eval)),
                int(hess_stride),
                self._block,
                self._dtype,
                None if folds is None else (folds, lambda cid: self._fold_index(cid, folds)),
            )

        return self._pass_chunks.timed(run)

    @reported
    def clear(self):
        """Drop every chunk (cached, held, streamed) and return the freed memory to the system
        (a fit's end: the actor itself may outlive it a moment). Returns this process's memory
        afterwards."""
        self.holdings.clear()
        self._reader.forget()
        return return_freed_memory()

    @reported
    def forget(self, chunk_ids):
        """Drop the chunks ``chunk_ids`` (list of int) another worker now holds (a worker
        joined), freeing their cache space; returns the chunk ids this worker still holds."""
        chunk_ids = list(chunk_ids)
        self._reader.forget(chunk_ids)
        return self.holdings.forget(chunk_ids)

    @reported
    def info(self):
        """Cached and streamed chunk ids, the cache's bytes and budget, the JAX device, the
        seconds spent reading and the block reads made, and this process's memory (now and
        peak since the actor started)."""
        import jax

        h = self.holdings
        return {
            "chunks": h.ready(),
            "cached": sorted(h.cache),
            "streamed": sorted(h.streamed),
            "pending": sorted(h.pending),
            "nbytes": h.cached_nbytes(),
            "cache_bytes": self.cache_bytes,
            "memory_limit": self.memory_limit,
            "device": str(jax.devices()[0]),
            "read_seconds": self.read_seconds,
            "block_reads": self._reader.count,
            "memory_start": self.memory_start,
            "memory": process_memory(),
        }

    async def relay(self, request):
        """Run a relayed call for this worker's group (``request``: the bytes of
        :func:`~.relay.pack_relay`) on this worker's event loop: ``("ok", {address: outcome})``."""
        from distributed import get_worker

        from .relay import forward, unpack_relay

        try:
            return ("ok", await forward(get_worker(), *unpack_relay(request)))
        except Exception as e:  # returned, re-raised at the coordinator
            return ("error", e)
