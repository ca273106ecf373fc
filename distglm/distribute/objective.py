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
        Per pass: ``seconds`` (wall time at the coordinator), ``compute`` (the slowest
        worker's kernel time) and ``overhead`` (the difference).
    """

    def __init__(self, pool, stats, n_classes):
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

    def _pass(self, theta, with_grad):
        start = time.perf_counter()
        per_chunk, compute = self.pool.evaluate(theta, with_grad)
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
        seconds = time.perf_counter() - start
        slowest = max(compute.values())
        self.pass_log.append(
            {
                "seconds": seconds,
                "compute": slowest,
                "overhead": seconds - slowest,
                "workers": len(compute),
            }
        )
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

    def gram(self):
        """Second moment of ``[X, 1]`` from the statistics pass: (n_features + 1,) * 2, or
        (n_outputs, n_features + 1, n_features + 1) when sessions record different outputs."""
        return self._gram
