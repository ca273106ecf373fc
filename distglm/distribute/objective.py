"""The distributed data term: per-output mean NLL over chunks held by workers.

:class:`DistributedData` is the distributed counterpart of
:class:`~distglm.solve.InMemoryData`: same methods, same numbers. Each call is one pass: the
pool's actors return per-chunk sums (float32 from the kernels), which are accumulated here in
float64 **in chunk-id order**, scattered onto the global output axis (a chunk only has the
outputs its session recorded), and divided by each output's sample count.
"""

from __future__ import annotations

import time

import numpy as np

from ..solve.objective import newton_means

__all__ = ["DistributedData"]


class DistributedData:
    """Data term over a :class:`~distglm.distribute.WorkerPool`.

    Parameters
    ----------
    pool : WorkerPool
        Chunks loaded and encoded.
    stats : DataStats
        From the statistics pass (sample counts per output, second moment).
    n_classes : int

    Attributes
    ----------
    weight_sums : float64 array of shape (n_outputs,)
        Samples per output.
    stat_passes : int
        1: the statistics pass, which also gathered the second moment.
    pass_log : list of dict
        Per pass: ``kind`` ("gradient", "value" or "newton"), ``seconds`` (wall time at the
        coordinator), ``compute`` (the slowest worker's wall time for its chunks, reads of
        streamed chunks included), ``read`` (that worker's time reading streamed chunks, in
        its background thread), ``overhead`` (``seconds - compute``) and ``workers``.
    streamed : bool
        Whether some chunks did not fit the workers' caches and are read on every pass.
    """

    def __init__(self, pool, stats, n_classes, streamed=False):
        self.pool = pool
        self.plan = pool.plan
        self.n_classes = int(n_classes)
        self.n_features = self.plan.n_features
        self.n_outputs = self.plan.n_outputs
        self.weight_sums = np.asarray(stats.n_samples, np.float64)
        self.dtype = np.dtype(pool.dtype)
        self.stat_passes = 1
        outputs = {tuple(np.sort(o)) for o in self.plan.session_outputs}
        # one second moment for all outputs when every session records the same outputs,
        # otherwise one per output, over the sessions that recorded it
        self._gram = stats.gram if len(outputs) == 1 else stats.output_grams(self.plan)
        self.pass_log = []
        self.streamed = bool(streamed)
        self.n_rows = int(stats.n_rows)
        self.block_rows = self.plan.block_rows

    def _log(self, kind, start, timing):
        seconds = time.perf_counter() - start
        slowest = max(timing, key=lambda a: timing[a][0])
        compute, read = timing[slowest]
        self.pass_log.append(
            {
                "kind": kind,
                "seconds": seconds,
                "compute": compute,
                "read": read,
                "overhead": seconds - compute,
                "workers": len(timing),
            }
        )

    def _pass(self, theta, with_grad):
        start = time.perf_counter()
        per_chunk, timing = self.pool.evaluate(theta, with_grad)
        p, K, c = self.n_features, self.n_outputs, self.n_classes
        loss = np.zeros(K)
        grad = np.zeros((p + 1, K, c)) if with_grad else None
        for spec in self.plan.chunks:  # chunk-id order: independent of who computed what
            outs = self.plan.session_outputs[spec.session_index]
            r = per_chunk[spec.chunk_id]
            loss[outs] += r[0]
            if with_grad:
                grad[:-1, outs] += r[1]
                grad[-1, outs] += r[2]
        self._log("gradient" if with_grad else "value", start, timing)
        return loss, grad

    def value_and_grad(self, theta):
        """Sum over outputs of each output's mean NLL, and its gradient (float64)."""
        loss, grad = self._pass(theta, True)
        inv = 1.0 / self.weight_sums
        return float(np.sum(loss * inv)), grad * inv[None, :, None]

    def value(self, theta):
        """Sum over outputs of each output's mean NLL (float64)."""
        loss, _ = self._pass(theta, False)
        return float(np.sum(loss / self.weight_sums))

    def newton_sums(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """Per-output means for one Newton pass over every chunk (see
        :meth:`distglm.solve.InMemoryData.newton_sums`; same arguments and results).

        Losses and gradients are reduced per chunk in chunk-id order; the Hessian is summed
        per worker (it is large: ``n_pairs k (p + 1)^2`` floats) and then over workers in
        address order, so it, and only it, depends on the assignment at rounding level.
        """
        start = time.perf_counter()
        outputs = np.asarray(outputs)
        per_chunk, hess_parts, timing = self.pool.newton(
            theta, direction, outputs, steps, t_eval, hess_stride
        )
        p, c, k = self.n_features, self.n_classes, outputs.size
        T = np.asarray(steps).shape[0]
        position = {int(o): i for i, o in enumerate(outputs)}
        trial, loss = np.zeros((T, k)), np.zeros(k)
        gc, gb = np.zeros((p, k, c)), np.zeros((k, c))
        for spec in self.plan.chunks:  # chunk-id order
            outs = self.plan.session_outputs[spec.session_index]
            pos = [position[int(o)] for o in outs if int(o) in position]
            if not pos:
                continue
            r = per_chunk[spec.chunk_id]
            trial[:, pos] += r[0]
            loss[pos] += r[1]
            gc[:, pos] += r[2]
            gb[pos] += r[3]
        hess, hw = None, np.zeros(k)
        for addr in sorted(hess_parts):
            h, w = hess_parts[addr]
            hess = np.asarray(h, np.float64) if hess is None else hess + h
            hw += w
        means = newton_means(
            trial, loss, gc, gb, hess, hw, self.weight_sums[outputs], self.n_classes
        )
        self._log("newton", start, timing)
        return means

    def gram(self):
        """Second moment of ``[X, 1]`` from the statistics pass: (n_features + 1,) * 2, or
        (n_outputs, n_features + 1, n_features + 1) when sessions record different outputs."""
        return self._gram
