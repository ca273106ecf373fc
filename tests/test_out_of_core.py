"""Out of core and few passes: cache budgets, streamed chunks, the Newton solver distributed.

Unit tests drive :class:`~distglm.distribute.ChunkWorker` directly (no cluster); integration
tests fit Zarr stores in ``tmp_path`` on one module-scoped two-worker ``LocalCluster`` with a
memory limit, comparing every distributed result with the in-memory fit of the same numbers.
"""

from __future__ import annotations

import threading
import time

import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from distglm import ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.data import merge_stats, plan_data
from distglm.distribute.budget import CACHE_FOOTPRINT, MemoryCeiling, resolve_cache_bytes
from distglm.distribute.reader import ChunkReader
from distglm.distribute.worker import ChunkWorker

N, P, K, C = 24_000, 8, 4, 3
ROWS = 2048
TIGHT = {"tol": 1e-10, "maxiter": 3000}


def _write(path, X, y, rows):
    Xz = zarr.create_array(
        store=str(path / "X"), shape=X.shape, chunks=(rows, X.shape[1]), dtype="float32"
    )
    yz = zarr.create_array(
        store=str(path / "y"), shape=y.shape, chunks=(rows, y.shape[1]), dtype="int8"
    )
    Xz[:] = X
    yz[:] = y
    return da.from_zarr(str(path / "X")), da.from_zarr(str(path / "y"))


def _objective(model):
    return model.fit_history_[-1]["objective"]


def _rel(a, b):
    return abs(a - b) / abs(b)


def _check(returned):
    status, value = returned
    if status != "ok":
        raise value
    return value


@pytest.fixture(scope="module")
def population():
    X, y, _, _ = make_population(N, P, K, C, seed=3)
    return X, y


@pytest.fixture(scope="module")
def store(population, tmp_path_factory):
    X, y = population
    return _write(tmp_path_factory.mktemp("ooc"), X, y.astype(np.int8), ROWS)


# ---------------------------------------------------------------------------- budgets
def test_resolve_cache_bytes():
    gib = 2**30
    ceiling = MemoryCeiling(pause=0.8, terminate=0.95)
    # by default: the limit up to the pause fraction, less the runtime and working memory
    # (what is free, over the resident cost of a cached byte)
    assert resolve_cache_bytes(None, 4 * gib, ceiling=ceiling) == int(
        int(0.8 * 4 * gib) / CACHE_FOOTPRINT
    )
    assert resolve_cache_bytes(
        None, 4 * gib, runtime_bytes=gib, working=gib // 2, ceiling=ceiling
    ) == int((int(0.8 * 4 * gib) - gib - gib // 2) / CACHE_FOOTPRINT)
    assert resolve_cache_bytes(0.25, 4 * gib) == gib
    assert resolve_cache_bytes(0, 4 * gib) == 0
    assert resolve_cache_bytes("64 MiB", 4 * gib) == 64 * 2**20
    assert resolve_cache_bytes(1000, None) == 1000
    # no memory limit: the machine's memory shared by the workers on it
    assert resolve_cache_bytes(
        None, None, total_memory=8 * gib, workers_on_host=4, ceiling=ceiling
    ) == int(int(0.8 * 2 * gib) / CACHE_FOOTPRINT)
    with pytest.raises(ValueError, match=r"cache_bytes=1\.5"):
        resolve_cache_bytes(1.5, gib)
    with pytest.raises(ValueError, match="'lots'"):
        resolve_cache_bytes("lots", gib)
    with pytest.raises(ValueError, match="-3"):
        resolve_cache_bytes(-3, gib)
    with pytest.raises(TypeError):
        resolve_cache_bytes(True, gib)


def test_prefetch_reads_one_ahead():
    """While chunk i is consumed, chunk i+1 is read; never more than one read ahead."""
    reader = ChunkReader([np.arange(1)], "float32")
    events, lock = [], threading.Lock()

    def read(i):
        with lock:
            events.append(("start", i))
        time.sleep(0.02)
        with lock:
            events.append(("done", i))
        return i

    got = []
    for i in reader.prefetched(list(range(5)), read):
        time.sleep(0.05)  # "compute" long enough for the next read to finish
        with lock:
            events.append(("used", i))
        got.append(i)
    assert got == list(range(5))
    for i in range(4):
        # the read of i+1 started before i was used ...
        assert events.index(("start", i + 1)) < events.index(("used", i))
        # ... and the read of i+2 only after i was handed out
        if i + 2 < 5:
            assert events.index(("start", i + 2)) > events.index(("used", i))


def test_streamed_worker_sums_equal_cached(store):
    """A worker with no cache budget re-reads every chunk per pass; its sums are identical."""
    Xd, yd = store
    plan = plan_data(Xd[:8192], yd[:8192])
    cached = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    streamed = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows, cache_bytes=0)
    stats = _check(cached.load(plan.chunks))
    assert [s.chunk_id for s in _check(streamed.load(plan.chunks))] == [s.chunk_id for s in stats]
    classes = merge_stats(plan, stats, C).classes
    _check(cached.encode(classes))
    _check(streamed.encode(classes))
    info_c, info_s = _check(cached.info()), _check(streamed.info())
    assert info_c["streamed"] == [] and len(info_c["cached"]) == len(plan.chunks)
    assert info_s["cached"] == [] and len(info_s["streamed"]) == len(plan.chunks)
    assert info_s["nbytes"] == 0
    theta = np.random.default_rng(0).normal(0, 0.1, (P + 1, K, C)).astype(np.float32)
    read_before = streamed.read_seconds
    a, b = _check(cached.value_and_grad(theta)), _check(streamed.value_and_grad(theta))
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert b[3] > 0 and streamed.read_seconds > read_before  # it read again
    assert a[3] == 0


def test_budget_caches_whole_chunks_in_order(store):
    Xd, yd = store
    plan = plan_data(Xd[:8192], yd[:8192])
    one = plan.chunk_rows * (4 * (P + 1) + 2 * K)  # the worker's estimate of one chunk
    w = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows, cache_bytes=2 * one)
    stats = _check(w.load(plan.chunks))
    _check(w.encode(merge_stats(plan, stats, C).classes))
    info = _check(w.info())
    assert info["cached"] == [0, 1] and info["streamed"] == [2, 3]
    assert info["nbytes"] <= info["cache_bytes"]


# ---------------------------------------------------------------------------- fits
def test_over_budget_fit_matches_cached_fit(store, client):
    Xd, yd = store
    fits = {}
    for label, budget in (("cached", 1.0), ("streamed", 0), ("partly", "400KiB")):
        m = ClassifierPopulationGLM(C, regularizer_strength=1e-3, solver_name="Newton")
        fits[label] = m.fit(Xd, yd, client=client, cache_bytes=budget)
    assert not fits["cached"].fit_profile_["streamed"]
    assert fits["streamed"].fit_profile_["streamed"]
    partly = fits["partly"].fit_profile_["cache"].values()
    assert all(c["cached_chunks"] > 0 and c["streamed_chunks"] > 0 for c in partly)
    for label in ("streamed", "partly"):
        assert _rel(_objective(fits[label]), _objective(fits["cached"])) <= 1e-6
        np.testing.assert_allclose(fits[label].coef_, fits["cached"].coef_, atol=1e-6)
    passes = fits["streamed"].fit_profile_["passes"]
    assert all(p["read"] > 0 for p in passes)
    assert all(p["read"] == 0 for p in fits["cached"].fit_profile_["passes"])


def test_worker_memory_stays_within_budget(tmp_path, client):
    """Peak worker memory grows with the budget, not with the data.

    Fits with the same 2 MiB budget: a store of 16x the sum of the budgets first (so every
    kernel variant it needs is compiled), then one of 4x, then the 16x one again. The worker's
    peak resident memory (VmHWM since its actor started) must not grow with the store beyond a
    few chunks in flight.
    """
    rng = np.random.default_rng(0)
    budget = 2 * 2**20
    p, k = 32, 4
    rows = 8192  # one chunk: 1.1 MiB decoded

    stores = {}

    def fit(n):
        if n not in stores:
            X = rng.standard_normal((n, p)).astype(np.float32)
            y = rng.integers(0, C, (n, k)).astype(np.int8)
            stores[n] = _write(tmp_path / f"n{n}", X, y, rows)
            del X, y
        Xd, yd = stores[n]
        m = ClassifierPopulationGLM(C, regularizer_strength=1.0, solver_name="Newton")
        m.fit(Xd, yd, client=client, cache_bytes=budget)
        grown = [
            c["memory_end"]["peak"] - c["memory_start"]["rss"]
            for c in m.fit_profile_["cache"].values()
        ]
        return m, max(grown)

    store_bytes = 2 * budget  # the two workers' budgets
    n_large = 16 * store_bytes // (4 * p + k)
    fit(n_large)  # compiles every kernel variant the large fit takes (XLA compiles use memory)
    _, grown_small = fit(4 * store_bytes // (4 * p + k))
    large, grown_large = fit(n_large)
    assert large.fit_profile_["streamed"]
    streamed = sum(c["streamed_chunks"] for c in large.fit_profile_["cache"].values())
    assert streamed >= 20
    data_mib = 16 * store_bytes / 2**20 / 2  # each worker's share of the large store
    grown_mib = (grown_large - grown_small) / 2**20
    # far below the worker's share of the data (32 MiB): a few chunks of slack
    assert grown_mib <= 8, (grown_mib, data_mib)
    assert grown_large / 2**20 <= budget / 2**20 + 256, grown_large / 2**20


@pytest.mark.parametrize(
    "regularizer, strength",
    [
        ("Ridge", 1e-3),
        ("Ridge", 1.0),
        ("UnRegularized", None),
        ("Lasso", 1e-3),
        ("ElasticNet", (1e-3, 0.5)),
    ],
)
def test_newton_distributed_reaches_in_memory_optimum(
    store, population, client, regularizer, strength
):
    X, y = population
    Xd, yd = store
    kw = {"regularizer": regularizer}
    if strength is not None:
        kw["regularizer_strength"] = strength
    reference_solver = "LBFGS" if regularizer in ("Ridge", "UnRegularized") else "ProximalGradient"
    ref = ClassifierPopulationGLM(C, solver_name=reference_solver, solver_kwargs=TIGHT, **kw)
    ref.fit(X, y)
    m = ClassifierPopulationGLM(C, solver_name="Newton", **kw)
    m.fit(Xd, yd, client=client, cache_bytes=0)
    assert m.solver_ == "Newton"
    assert _rel(_objective(m), _objective(ref)) <= 1e-6
    assert m.n_passes_ <= 12


def test_newton_few_passes_distributed(store, client):
    """Well-conditioned seeded problem: at most 10 passes, the statistics pass included."""
    Xd, yd = store
    for strength in (1.0, 1e-3):
        m = ClassifierPopulationGLM(C, regularizer_strength=strength, solver_name="auto")
        m.fit(Xd, yd, client=client, cache_bytes=0)
        assert m.solver_ == "Newton"
        assert m.n_passes_ <= 10, m.fit_history_
        assert [p["kind"] for p in m.fit_profile_["passes"]] == ["newton"] * (m.n_passes_ - 1)


def test_newton_one_and_two_workers_agree(store, client):
    """Losses and gradients are reduced per chunk; only the Hessian depends on the worker
    count, at rounding level: the optimum is the same."""
    Xd, yd = store
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cl,
        Client(cl, set_as_default=False) as one,
    ):
        a = ClassifierPopulationGLM(C, regularizer_strength=1e-3, solver_name="Newton")
        a.fit(Xd, yd, client=one)
    b = ClassifierPopulationGLM(C, regularizer_strength=1e-3, solver_name="Newton")
    b.fit(Xd, yd, client=client)
    assert _rel(_objective(a), _objective(b)) <= 1e-7
    # both stop within the tolerance of the same optimum; coefficients agree to what an
    # objective gap of ~1e-8 (relative) pins down along the flattest directions
    np.testing.assert_allclose(a.coef_, b.coef_, atol=5e-4)


def test_cache_bytes_errors(store, population, client):
    Xd, yd = store
    X, y = population
    with pytest.raises(ValueError, match="in memory"):
        ClassifierPopulationGLM(C).fit(X, y, cache_bytes=0)
    with pytest.raises(ValueError, match="'plenty'"):
        ClassifierPopulationGLM(C).fit(Xd, yd, client=client, cache_bytes="plenty")


def test_newton_pass_reads_no_chunk_of_a_converged_session():
    """A Newton pass on outputs of one session only (the other session's outputs converged)
    reads none of the other session's streamed chunks; its sums equal a full worker's."""
    import xarray as xr

    from distglm import open_sessions

    rng = np.random.default_rng(3)
    sessions = {}
    for s, outs in (("a", ["u0", "u1"]), ("b", ["u2"])):
        sessions[s] = xr.Dataset(
            {
                "X": (("sample", "feature"), rng.normal(size=(3000, P)).astype(np.float32)),
                "y": (("sample", "output"), rng.integers(0, C, (3000, len(outs)))),
            },
            coords={"output": outs},
        ).chunk({"sample": 1000})
    plan = plan_data(open_sessions(sessions))
    streamed = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows, cache_bytes=0)
    cached = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    stats = _check(streamed.load(plan.chunks))
    _check(cached.load(plan.chunks))
    classes = merge_stats(plan, stats, C).classes
    _check(streamed.encode(classes))
    _check(cached.encode(classes))
    outputs = np.array([0, 1])  # session a's outputs; u2 (session b) has converged
    payload = rng.normal(0, 0.1, (2, P + 1, 2, C)).astype(np.float32)
    steps, t_eval = np.ones((1, 2), np.float32), np.ones(2, np.float32)
    reads = _check(streamed.info())["block_reads"]
    got = _check(streamed.newton(payload, outputs, steps, t_eval, 1))
    assert _check(streamed.info())["block_reads"] - reads == 3  # session a's chunks only
    want = _check(cached.newton(payload, outputs, steps, t_eval, 1))
    assert sorted(got[0]) == sorted(want[0]) == list(range(6))
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
