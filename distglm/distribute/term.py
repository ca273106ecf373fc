"""The distributed data term: per-output mean NLL over chunks held by workers.

:class:`DistributedData` is the distributed counterpart of
:class:`~distglm.solve.InMemoryData`: same methods, same numbers. Each call is one pass: the
pool's actors return their totals over their chunks (each chunk's float32 sums from the
kernels added at the outputs its session recorded, with compensation, in float64), which are
added here (:mod:`~distglm.distribute.reduce`) and divided by each output's sample count.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid

import dask.config
import numpy as np

from ..solve.costs import PassFacts
from ..solve.means import mean_value, mean_value_and_grad, newton_means
from .passes import add_hessians, evaluate_pass, newton_pass

__all__ = ["MARK_INTERVAL", "DistributedData", "pass_clock"]

logger = logging.getLogger(__name__)


def _pass_marker(summary):
    """A no-op task whose key names a finished pass, so passes show on the dashboard."""
    return summary


def _mark_on_dashboard(transport, key, summary, markers):
    """Submit a marker task keyed ``distglm-pass-<n>-<kind>``: the actors' calls are not
    tasks, so without it the dashboard's task stream and progress panel show no passes. The
    last few markers' futures are kept in ``markers`` (a bounded deque) so each one runs before
    it is released; none outlives the data term (fire-and-forget tasks outlived the cluster and
    were reported lost when it closed). Transports without a Dask client (tests) are skipped."""
    client = getattr(transport, "client", None) if transport is not None else None
    if client is None:
        return
    markers.append(client.submit(_pass_marker, summary, key=key, pure=False))


#: passes closer together than this (seconds) are marked on the dashboard at most once in it: a
#: marker every pass cost the workers 1-3 ms of CPU and the coordinator 0.4-0.6 ms a pass, a pass
#: 0.9-1.9 ms more at 2 workers on tiny data (``bench_workers.txt``, markers 1 against 0)
MARK_INTERVAL = 0.1


def pass_clock() -> tuple[float, float]:
    """Wall and process CPU clocks at a pass's start (for :meth:`DistributedData._log`)."""
    return time.perf_counter(), time.process_time()


class DistributedData:
    """Data term over a :class:`~distglm.distribute.WorkerPool`.

    Parameters
    ----------
    pool : WorkerPool
        Chunks loaded and encoded.
    stats : DataStats
        From the statistics pass (sample counts per output, second moment).
    n_classes : int

    Implements :class:`~distglm.solve.protocols.DataTerm`.

    Attributes
    ----------
    weight_sums : float64 array of shape (n_outputs,)
        Samples per output.
    stat_passes : int
        1 when this fit caused the statistics pass (which also gathered the second moment),
        0 for later fits over the same :class:`~distglm.distribute.session.DataSession`.
    pass_log : list of dict
        Per pass: ``kind`` ("gradient", "value" or "newton"), ``seconds`` (wall time at the
        coordinator), ``compute`` (the slowest worker's wall time for its chunks, reads of
        streamed chunks included), ``read`` (that worker's time reading streamed chunks, in
        its background thread), ``overhead`` (``seconds - compute``), ``coordinator_cpu``
        (CPU seconds of this process during the pass: the coordinator's own work when the
        workers are other processes) and ``workers``.
    streamed : bool
        Whether some chunks did not fit the workers' caches and are read on every pass.
    read_bytes : int
        Bytes of the streamed chunks (uncompressed), read from the store on every pass.
    pass_facts : PassFacts
        The busiest worker's read seconds per pass and share of the rows, and the workers'
        device (from the statistics pass; what ``solver_name="auto"`` prices passes by).

    Every pass is logged at INFO on this module's logger: its kind, seconds, the slowest
    worker's compute and read seconds, the bytes read, cached or streamed, and the recoveries
    so far.
    """

    def __init__(
        self,
        pool,
        stats,
        n_classes,
        streamed=False,
        stat_passes=1,
        read_bytes=0,
        pass_facts=None,
    ):
        self.pool = pool
        self.plan = pool.plan
        self.n_classes = int(n_classes)
        self.n_features = self.plan.n_features
        self.n_outputs = self.plan.n_outputs
        self.weight_sums = np.asarray(stats.n_samples, np.float64)
        self.dtype = np.dtype(pool.dtype)
        self.stat_passes = int(stat_passes)
        outputs = {tuple(np.sort(o)) for o in self.plan.session_outputs}
        # one second moment for all outputs when every session records the same outputs,
        # otherwise one per output, over the sessions that recorded it
        self._gram = stats.gram if len(outputs) == 1 else stats.output_grams(self.plan)
        self.pass_log = []
        self.streamed = bool(streamed)
        self.read_bytes = int(read_bytes)
        self.pass_facts = pass_facts if pass_facts is not None else PassFacts()
        self._tag = uuid.uuid4().hex[:8]  # keys of this term's dashboard markers
        self._markers: collections.deque = collections.deque(maxlen=4)
        # dashboard markers (Dask key distglm.dashboard.markers), and when the last one went
        self._mark = bool(dask.config.get("distglm.dashboard.markers", True))
        self._marked_at = -np.inf
        self._marked_pass = 0  # the number of the last pass marked (0: none)
        self._last: tuple | None = None  # the last pass logged: number, kind, summary
        self.n_rows = int(stats.n_rows)
        self.block_rows = self.plan.block_rows

    def _log(self, kind, start, timing):
        """Record one pass; ``start`` is :func:`pass_clock` at its start."""
        seconds = time.perf_counter() - start[0]
        cpu = time.process_time() - start[1]
        slowest = max(timing, key=lambda a: timing[a][0])
        compute, read = timing[slowest]
        self.pass_log.append(
            {
                "kind": kind,
                "seconds": seconds,
                "compute": compute,
                "read": read,
                "overhead": seconds - compute,
                "coordinator_cpu": cpu,
                "workers": len(timing),
            }
        )
        n = len(self.pass_log) + self.stat_passes
        # pools without a Dask transport or recovery count (test doubles) log without them
        now = time.monotonic()
        self._last = (n, kind, {"kind": kind, "seconds": seconds, "compute": compute, "read": read})
        if self._mark and now - self._marked_at >= MARK_INTERVAL:
            self._marked_at = now
            self._submit_marker()
        logger.info(
            "pass %d (%s): %.3f s, compute %.3f s, read %.3f s, %.1f MiB read, %s, %d workers, "
            "%d recoveries",
            n,
            kind,
            seconds,
            compute,
            read,
            self.read_bytes / 2**20,
            "streamed" if self.streamed else "cached",
            len(timing),
            getattr(self.pool, "recoveries", 0),
        )

    def _submit_marker(self):
        n, kind, summary = self._last
        self._marked_pass = n
        _mark_on_dashboard(
            getattr(self.pool, "transport", None),
            f"distglm-pass-{n}-{kind}-{self._tag}",
            summary,
            self._markers,
        )

    def mark_last(self) -> None:
        """Mark the last pass on the dashboard if :data:`MARK_INTERVAL` passed it over (called
        as a fit ends: the dashboard then shows the pass the fit ended with)."""
        if self._mark and self._last is not None and self._last[0] != self._marked_pass:
            self._submit_marker()

    def _pass(self, theta, with_grad):
        start = pass_clock()
        sums, timing = evaluate_pass(self.pool, theta, with_grad)
        self._log("gradient" if with_grad else "value", start, timing)
        return sums

    def value_and_grad(self, theta):
        """Sum over outputs of each output's mean NLL, and its gradient (float64)."""
        loss, gc, gb = self._pass(theta, True)
        return mean_value_and_grad(loss, gc, gb, self.weight_sums)

    def value(self, theta):
        """Sum over outputs of each output's mean NLL (float64)."""
        (loss,) = self._pass(theta, False)
        return mean_value(loss, self.weight_sums)

    def newton_sums(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """Per-output means for one Newton pass over every chunk (see
        :meth:`distglm.solve.InMemoryData.newton_sums`; same arguments and results).

        Losses and gradients are compensated sums (:mod:`~distglm.distribute.reduce`), the
        same whichever worker held which chunk; the Hessian is summed per worker in float64
        (it is large: ``n_pairs k (p + 1)^2`` floats) and then over workers in address order,
        so it, and only it, depends on the assignment at rounding level.
        """
        start = pass_clock()
        outputs = np.asarray(outputs)
        (trial, loss, gc, gb), hess_parts, timing = newton_pass(
            self.pool, theta, direction, outputs, steps, t_eval, hess_stride
        )
        hess, hw = add_hessians(hess_parts, outputs.size)
        means = newton_means(
            trial, loss, gc, gb, hess, hw, self.weight_sums[outputs], self.n_classes
        )
        self._log("newton", start, timing)
        return means

    def gram(self):
        """Second moment of ``[X, 1]`` from the statistics pass: (n_features + 1,) * 2, or
        (n_outputs, n_features + 1, n_features + 1) when sessions record different outputs."""
        return self._gram
