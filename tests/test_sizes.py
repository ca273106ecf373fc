"""Up-front size checks: what a fit will need on the client and on each worker, refused with
the figure and the limit before any pass, or a cheaper preconditioner where the dense one
would not fit (no cluster)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from distglm import ClassifierPopulationGLM, FitTooLargeError
from distglm.data import plan_data
from distglm.data.sizes import (
    Need,
    check_needs,
    client_needs,
    dense_preconditioner_fits,
    worker_stats_need,
)
from distglm.distribute.worker import ChunkWorker
from distglm.solve.precondition import BlockPreconditioner

MIB = 2**20


def test_check_needs_names_the_largest_part_and_the_limit():
    needs = [Need("small", 10 * MIB), Need("the big part", 900 * MIB)]
    check_needs(needs, 1000 * MIB, "here")
    with pytest.raises(FitTooLargeError, match=r"the big part take 900 MiB; 910 MiB .* 800 MiB"):
        check_needs(needs, 800 * MIB, "here")
    assert issubclass(FitTooLargeError, MemoryError) and issubclass(FitTooLargeError, ValueError)


def test_a_1000_class_preconditioner_takes_the_per_class_model():
    """1,000 classes with 10 features: the dense model would be ~2.9 GB (the issue measured
    2.2 GB on the client); the per-class one is ~3 MB and still preconditions."""
    assert dense_preconditioner_fits(50, 3) and not dense_preconditioner_fits(10, 1000)
    needs = client_needs(10, 1, 1000, 1, 10, "LBFGS")
    pre = [n for n in needs if "preconditioner" in n.what]
    assert pre[0].nbytes < 4 * MIB and "per-class" in pre[0].what
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 10))
    gram = np.block([[X.T @ X, X.sum(0)[:, None]], [X.sum(0)[None], np.full((1, 1), 500.0)]])
    pc = BlockPreconditioner(gram / 500, 1000, (11, 1, 1000), ridge=1e-3)
    assert pc._shared is None and pc._columns is not None
    g = rng.standard_normal((11, 1, 1000))
    out = pc.solve(g)
    assert out.shape == g.shape and np.all(np.isfinite(out)) and float((out * g).sum()) > 0


def test_newton_hessians_too_large_are_refused_before_any_read():
    X = da.zeros((100, 3000), chunks=(50, -1), dtype="float32")
    y = da.zeros((100, 2), chunks=(50, -1), dtype="int8")
    model = ClassifierPopulationGLM(50, solver_name="Newton")
    with pytest.raises(FitTooLargeError, match=r"Newton's Hessian blocks .* take [\d,]+ MiB"):
        model.fit(X, y)  # no cluster is started: the check comes first


def test_12000_feature_second_moments_are_refused_on_a_600mib_worker(monkeypatch):
    """At 12,000 features one chunk's float64 second moment is 1.15 GB: the worker refuses
    the statistics pass before reading, instead of dying for memory."""
    need = worker_stats_need(1, 12_000, 100)
    assert need.nbytes > 1.15e9
    X = da.zeros((200, 12_000), chunks=(100, -1), dtype="float32")
    y = da.zeros((200, 2), chunks=(100, -1), dtype="int8")
    plan = plan_data(X, y)
    monkeypatch.setattr(ChunkWorker, "memory_limit", property(lambda self: 600 * MIB))
    w = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows, cache_bytes=0)
    status, err = w.load(plan.chunks)
    assert status == "error" and isinstance(err, FitTooLargeError)
    assert "600 MiB memory limit" in str(err) and "second moments of its 2 chunks" in str(err)
    assert w.read_seconds == 0.0  # nothing read
