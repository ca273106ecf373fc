"""Unit tests of distglm's distributed-data layer, without a Dask cluster.

Covers :func:`distglm.open_sessions`, :func:`distglm.data.plan_data`, the statistics pass
(:func:`~distglm.data.stats.chunk_stats`, :func:`~distglm.data.merge_stats`), the per-worker
:class:`~distglm.distribute.ChunkWorker` driven in-process, :class:`~distglm.distribute.
DistributedData` over a fake in-process pool, and lazy prediction
(:class:`~distglm.data.lazy.LazyModel`). The oracle is always the in-memory path
(:class:`~distglm.solve.InMemoryData`, the estimators fitted on numpy arrays).
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import types

import dask
import dask.array as da
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings

import distglm
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.data import ChunkStats, DataPlan, Sessions, merge_stats, plan_data
from distglm.data.lazy import LazyModel
from distglm.data.stats import chunk_stats
from distglm.distribute import ChunkWorker, DistributedData
from distglm.distribute.chunks import encode_read
from distglm.distribute.reduce import CompensatedTotals, reduce_worker_buffers
from distglm.distribute.wire import gradient_shapes
from distglm.kernels import compiled as compiled_kernels
from distglm.kernels.buffers import on_device as put_on_device
from distglm.solve import InMemoryData

from helpers import raise_if_dask_computes

SETTINGS = settings(max_examples=15, deadline=None)
FEATURES = ["f0", "f1", "f2"]


# --------------------------------------------------------------------------- helpers
def _session(n, outputs, seed=0, features=FEATURES, labels=None, nan_rows=(), p=3):
    """An in-memory session Dataset: X (sample, feature), y (sample, output) of labels.

    Labels are int codes in [0, 3), or drawn from ``labels``; ``features=None`` leaves out the
    feature coordinate (``p`` features then).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p if features is None else len(features))).astype(np.float32)
    X[list(nan_rows)] = np.nan
    y = rng.integers(0, 3 if labels is None else len(labels), (n, len(outputs)))
    if labels is not None:
        y = np.asarray(labels)[y]
    coords = {"output": list(outputs)}
    if features is not None:
        coords["feature"] = list(features)
    return xr.Dataset(
        {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)}, coords=coords
    )


def _stats_of(plan):
    """ChunkStats of every chunk of ``plan`` (read in-process)."""
    return [
        chunk_stats(c.chunk_id, np.asarray(c.X.compute()), np.asarray(c.y.compute()))[0]
        for c in plan.chunks
    ]


def _theta(p, k, c, seed=0, scale=0.3):
    return np.random.default_rng(seed).normal(0.0, scale, (p + 1, k, c))


def _check(result):
    status, value = result
    assert status == "ok", value
    return value


def _worker(plan, specs=None, classes=None):
    """A ChunkWorker holding ``specs`` (all of the plan's by default), loaded and encoded."""
    w = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    _check(w.load(plan.chunks if specs is None else specs))
    if classes is not None:
        _check(w.encode(classes))
    return w


class FakePool:
    """The part of WorkerPool that DistributedData uses, over in-process ChunkWorkers."""

    def __init__(self, plan, assignment, n_workers, classes):
        self.plan = plan
        self.dtype = np.dtype("float32")
        by_worker = {i: [] for i in range(n_workers)}
        for spec in plan.chunks:
            by_worker[assignment[spec.chunk_id]].append(spec)
        self.workers = {i: _worker(plan, specs, classes) for i, specs in by_worker.items()}
        self.n_classes = len(classes)

    def run_shared(self, method, array, *rest):
        payload = np.asarray(array, self.dtype)
        return {i: _check(getattr(w, method)(payload, *rest)) for i, w in self.workers.items()}


def _results(plan, returned, with_grad=True, n_classes=3):
    """A worker's (ids, buffer, seconds, read seconds) as its chunk ids, its totals (loss, and
    the gradient's two arrays) and seconds."""
    ids, buffer, seconds, _ = _check(returned)
    shapes = gradient_shapes(plan.n_features, plan.n_outputs, n_classes, with_grad)
    return ids, reduce_worker_buffers({"w": buffer}, shapes), seconds


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# --------------------------------------------------------------------------- open_sessions
def test_open_sessions_dict_in_memory_becomes_dask_backed():
    a, b = _session(50, ["n1", "n2"], 0), _session(30, ["n2", "n3"], 1)
    s = distglm.open_sessions({"a": a, "b": b})
    assert isinstance(s, Sessions)
    assert list(s) == ["a", "b"] and len(s) == 2
    for name, src in (("a", a), ("b", b)):
        for var in ("X", "y"):
            assert isinstance(s[name][var].data, da.Array)
            assert s[name][var].chunks is not None
            np.testing.assert_array_equal(s[name][var].values, src[var].values)
    assert s.outputs.tolist() == ["n1", "n2", "n3"]
    assert s.features.tolist() == FEATURES
    assert s.n_features == 3
    assert s.sample_dim == {"a": "sample", "b": "sample"}
    assert distglm.open_sessions(s) is s


def test_open_sessions_list_gets_numbered_ids():
    s = distglm.open_sessions([_session(20, ["z", "m"], 0), _session(20, ["m", "a"], 1)])
    assert list(s) == ["0", "1"]
    assert s.outputs.tolist() == ["z", "m", "a"]  # first appearance, not sorted
    assert list(distglm.open_sessions(_session(10, ["x"]))) == ["0"]


def _write_store(path, sessions, chunk_rows=16):
    for group, ds in sessions.items():
        ds.chunk({"sample": chunk_rows}).to_zarr(path, group=group)
    return path


def test_open_sessions_zarr_store_is_lazy(tmp_path):
    src = {"s1": _session(40, ["z", "m"], 0), "s2": _session(25, ["m", "a"], 1)}
    store = _write_store(str(tmp_path / "rec.zarr"), src)
    with raise_if_dask_computes():
        s = distglm.open_sessions(store)
    assert list(s) == ["s1", "s2"]
    assert s.outputs.tolist() == ["z", "m", "a"]
    assert s.features.tolist() == FEATURES
    for g, ds in src.items():
        assert isinstance(s[g]["X"].data, da.Array)
        assert s[g]["X"].chunks[0] == tuple(ds.chunk({"sample": 16})["X"].chunks[0])
        np.testing.assert_array_equal(s[g]["X"].values, ds["X"].values)
        np.testing.assert_array_equal(s[g]["y"].values, ds["y"].values)
    # a pathlib path works too
    assert list(distglm.open_sessions(tmp_path / "rec.zarr")) == ["s1", "s2"]


def test_open_sessions_list_of_stores_prefixes_ids(tmp_path):
    one = _write_store(str(tmp_path / "day1.zarr"), {"a": _session(20, ["n1"], 0)})
    two = _write_store(
        str(tmp_path / "day2.zarr"), {"a": _session(20, ["n2"], 1), "b": _session(20, ["n1"], 2)}
    )
    s = distglm.open_sessions([one, two])
    assert list(s) == ["day1.zarr/a", "day2.zarr/a", "day2.zarr/b"]
    assert s.outputs.tolist() == ["n1", "n2"]
    # a single store in a list keeps the bare group names
    assert list(distglm.open_sessions([one])) == ["a"]


def test_open_sessions_same_id_from_two_stores(tmp_path):
    os.makedirs(tmp_path / "x")
    os.makedirs(tmp_path / "y")
    one = _write_store(str(tmp_path / "x" / "rec.zarr"), {"a": _session(20, ["n1"], 0)})
    two = _write_store(str(tmp_path / "y" / "rec.zarr"), {"a": _session(20, ["n1"], 1)})
    with pytest.raises(ValueError, match=r"rec\.zarr/a"):
        distglm.open_sessions([one, two])


def test_open_sessions_store_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        distglm.open_sessions(str(tmp_path / "missing.zarr"))
    import zarr

    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(ValueError, match="no groups"):
        distglm.open_sessions(str(tmp_path / "empty.zarr"))


def test_open_sessions_different_features_names_session_and_features():
    a = _session(10, ["n1"], 0)
    b = _session(10, ["n1"], 1, features=["f0", "f1", "f9"])
    with pytest.raises(ValueError) as err:
        distglm.open_sessions({"a": a, "b": b})
    msg = str(err.value)
    assert "'b'" in msg and "'f2'" in msg and "'f9'" in msg
    assert "lacks" in msg and "extra" in msg


def test_open_sessions_features_in_another_order():
    a = _session(10, ["n1"], 0)
    b = _session(10, ["n1"], 1, features=["f2", "f0", "f1"])
    with pytest.raises(ValueError, match="order") as err:
        distglm.open_sessions({"a": a, "b": b})
    assert "'b'" in str(err.value)


def test_open_sessions_without_feature_coordinate():
    s = distglm.open_sessions([_session(10, ["n"], features=None), _session(10, ["n"], 1, None)])
    assert s.features is None
    assert s.n_features == 3


def test_open_sessions_feature_coordinate_in_one_session_only():
    with pytest.raises(ValueError, match="'0' has a feature coordinate but session '1' has none"):
        distglm.open_sessions([_session(10, ["n"]), _session(10, ["n"], features=None)])


def test_open_sessions_feature_count_mismatch():
    with pytest.raises(ValueError, match="'1' has 4 features but session '0' has 3"):
        distglm.open_sessions([_session(10, ["n"], 0, None), _session(10, ["n"], 1, None, p=4)])


@pytest.mark.parametrize("var", ["X", "y"])
def test_open_sessions_missing_variable_names_session(var):
    bad = _session(10, ["n1"], 1).drop_vars(var)
    with pytest.raises(ValueError, match=f"'rec2'.*{var!r}"):
        distglm.open_sessions({"rec1": _session(10, ["n1"]), "rec2": bad})


def test_open_sessions_y_needs_output_coordinate():
    ds = _session(10, ["n1", "n2"]).drop_vars("output")
    with pytest.raises(ValueError, match="output"):
        distglm.open_sessions({"r": ds})
    ds = _session(10, ["n1", "n2"]).rename({"output": "neuron"})
    with pytest.raises(ValueError, match="output"):
        distglm.open_sessions({"r": ds})


def test_open_sessions_bad_dimensions():
    ds = _session(10, ["n1"])
    with pytest.raises(ValueError, match="2-dimensional"):
        distglm.open_sessions({"r": ds.assign(X=ds["X"].isel(feature=0))})
    y = ds["y"].rename({"sample": "time"})
    with pytest.raises(ValueError, match="sample"):
        distglm.open_sessions({"r": ds.drop_vars("y").assign(y=y)})


def test_open_sessions_duplicate_output_ids():
    with pytest.raises(ValueError, match="more than once") as err:
        distglm.open_sessions({"r": _session(10, ["n1", "n2", "n1"])})
    assert "'n1'" in str(err.value) and "'r'" in str(err.value)


@pytest.mark.parametrize("empty", [{}, []])
def test_open_sessions_empty(empty):
    with pytest.raises(ValueError, match="No sessions"):
        distglm.open_sessions(empty)


@pytest.mark.parametrize(
    "source",
    [[1, 2], [np.zeros((3, 2))], {"a": np.zeros((3, 2))}, [_session(5, ["n"]), "store.zarr"]],
)
def test_open_sessions_wrong_types(source):
    with pytest.raises(TypeError):
        distglm.open_sessions(source)


# --------------------------------------------------------------------------- plan_data
N_PLAN = 233
ROW_CHUNKS = (50, 70, 30, 70, 13)


@pytest.fixture(scope="module")
def plan_xy():
    X, y, _, _ = make_population(N_PLAN, 4, 2, 3, seed=1)
    return X, y


def _check_cover(plan, n):
    assert [c.chunk_id for c in plan.chunks] == list(range(len(plan.chunks)))
    covered = np.zeros(n, dtype=int)
    for c in plan.chunks:
        assert c.rows == c.stop - c.start > 0
        assert c.X.shape[0] == c.rows and c.y.shape[0] == c.rows
        covered[c.start : c.stop] += 1
    np.testing.assert_array_equal(covered, 1)


def test_plan_chunks_cover_rows_in_order(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    with raise_if_dask_computes():
        plan = plan_data(Xd, da.from_array(y, chunks=(ROW_CHUNKS, -1)), block_rows=64)
    assert isinstance(plan, DataPlan) and plan.kind == "array"
    _check_cover(plan, N_PLAN)
    assert [c.rows for c in plan.chunks] == list(ROW_CHUNKS)
    assert plan.chunk_rows == 128 and plan.block_rows == 64  # 70 rounded up to 2 blocks
    assert plan.sessions == [""] and plan.n_outputs == 2 and plan.n_features == 4
    np.testing.assert_array_equal(plan.session_outputs[0], [0, 1])
    for c in plan.chunks:
        np.testing.assert_array_equal(c.X.compute(), X[c.start : c.stop])
        np.testing.assert_array_equal(c.y.compute(), y[c.start : c.stop])


def test_plan_chunk_rows_without_blocking(plan_xy):
    X, y = plan_xy
    plan = plan_data(da.from_array(X, chunks=(ROW_CHUNKS, -1)), y, block_rows=100)
    assert plan.chunk_rows == 70 and plan.block_rows is None
    plan = plan_data(da.from_array(X, chunks=(ROW_CHUNKS, -1)), y, block_rows=70)
    assert plan.chunk_rows == 70 and plan.block_rows is None


@SETTINGS
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6),
    block_rows=st.integers(1, 128),
)
def test_plan_chunk_rows_property(sizes, block_rows):
    n = sum(sizes)
    Xd = da.zeros((n, 2), chunks=(tuple(sizes), -1))
    plan = plan_data(Xd, np.zeros((n, 1), int), block_rows=block_rows)
    longest = max(sizes)
    if longest <= block_rows:
        assert plan.chunk_rows == longest and plan.block_rows is None
    else:
        assert plan.block_rows == block_rows
        assert plan.chunk_rows % block_rows == 0
        assert longest <= plan.chunk_rows < longest + block_rows
    assert [c.rows for c in plan.chunks] == sizes


def test_plan_rechunks_features_to_one_piece(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, (1, 2, 1)))
    with raise_if_dask_computes():
        plan = plan_data(Xd, y)
    for c in plan.chunks:
        assert c.X.chunks == ((c.rows,), (4,))
        np.testing.assert_array_equal(c.X.compute(), X[c.start : c.stop])


def test_plan_aligns_y_chunks_to_x(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    yd = da.from_array(y, chunks=((100, 100, 33), (1, 1)))
    with raise_if_dask_computes():
        plan = plan_data(Xd, yd)
    _check_cover(plan, N_PLAN)
    for c in plan.chunks:
        assert c.y.chunks == ((c.rows,), (2,))
        np.testing.assert_array_equal(c.y.compute(), y[c.start : c.stop])


def test_plan_numpy_y_and_single_output(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    plan = plan_data(Xd, y[:, 0], population=False)
    assert plan.n_outputs == 1
    for c in plan.chunks:
        np.testing.assert_array_equal(c.y.compute(), y[c.start : c.stop, :1])
    with pytest.raises(ValueError, match="2-dimensional"):
        plan_data(Xd, y[:, 0], population=True)
    with pytest.raises(ValueError, match="1-dimensional"):
        plan_data(Xd, y, population=False)
    with pytest.raises(ValueError, match="required"):
        plan_data(Xd)


def test_plan_dask_y_with_wrong_rows(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    with pytest.raises(ValueError, match="X has 233, y has 230"):
        plan_data(Xd, da.from_array(y[:-3], chunks=50))


def test_plan_numpy_y_with_wrong_rows(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    with pytest.raises(ValueError, match="X has 233, y has 232"):
        plan_data(Xd, y[:-1])


def test_plan_unknown_chunk_sizes(plan_xy):
    X, y = plan_xy
    Xd = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    keep = da.from_array(np.arange(N_PLAN) % 3 > 0, chunks=ROW_CHUNKS)
    assert np.isnan(Xd[keep].shape[0])
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        plan_data(Xd[keep], y[np.arange(N_PLAN) % 3 > 0])
    yd = da.from_array(y, chunks=(ROW_CHUNKS, -1))
    yk = da.concatenate([yd[keep], yd[:0]])  # unknown sizes along rows
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        plan_data(Xd[: int((np.arange(N_PLAN) % 3 > 0).sum())], yk)


def test_plan_dict_design(plan_xy):
    X, y = plan_xy
    design = {
        "b": da.from_array(X[:, 3:], chunks=(100, -1)),
        "a": da.from_array(X[:, :3], chunks=(ROW_CHUNKS, -1)),
    }
    assert distglm.data.is_distributed_input(design)
    plan = plan_data(design, y)
    assert plan.layout.keys == ("a", "b") and plan.n_features == 4
    _check_cover(plan, N_PLAN)
    assert [c.rows for c in plan.chunks] == list(ROW_CHUNKS)
    for c in plan.chunks:
        np.testing.assert_array_equal(c.X.compute(), X[c.start : c.stop])


def test_plan_xarray_keeps_feature_and_output_labels(plan_xy):
    X, y = plan_xy
    Xa = xr.DataArray(
        da.from_array(X, chunks=(ROW_CHUNKS, -1)),
        dims=("sample", "feature"),
        coords={"feature": ["a", "b", "c", "d"]},
    )
    ya = xr.DataArray(y, dims=("sample", "output"), coords={"output": ["u", "v"]})
    plan = plan_data(Xa, ya)
    assert plan.kind == "xarray"
    assert plan.features.tolist() == ["a", "b", "c", "d"]
    assert plan.outputs.tolist() == ["u", "v"]


def test_plan_xarray_without_feature_coordinate(plan_xy):
    X, y = plan_xy
    Xa = xr.DataArray(da.from_array(X, chunks=(ROW_CHUNKS, -1)), dims=("sample", "feature"))
    assert plan_data(Xa, y).features is None  # "Feature labels, when the data has them"


def test_plan_sessions():
    src = {"a": _session(60, ["n1", "n2"], 0), "b": _session(45, ["n2", "n3"], 1)}
    sessions = {k: v.chunk({"sample": 20}) for k, v in src.items()}
    with raise_if_dask_computes():
        plan = plan_data(sessions, block_rows=8)
    assert plan.kind == "sessions" and plan.sessions == ["a", "b"]
    assert plan.outputs.tolist() == ["n1", "n2", "n3"]
    assert [s.tolist() for s in plan.session_outputs] == [[0, 1], [1, 2]]
    assert [(c.session, c.session_index, c.start, c.stop) for c in plan.chunks] == [
        ("a", 0, 0, 20),
        ("a", 0, 20, 40),
        ("a", 0, 40, 60),
        ("b", 1, 0, 20),
        ("b", 1, 20, 40),
        ("b", 1, 40, 45),
    ]
    assert [c.chunk_id for c in plan.chunks] == list(range(6))
    assert plan.chunk_rows == 24 and plan.block_rows == 8
    for c in plan.chunks:
        np.testing.assert_array_equal(c.X.compute(), src[c.session]["X"].values[c.start : c.stop])
        np.testing.assert_array_equal(c.y.compute(), src[c.session]["y"].values[c.start : c.stop])


def test_plan_sessions_errors(plan_xy):
    _, y = plan_xy
    sessions = [_session(20, ["n1", "n2"]), _session(20, ["n2"], 1)]
    with pytest.raises(ValueError, match="without y"):
        plan_data(sessions, y[:40])
    with pytest.raises(ValueError, match="ClassifierPopulationGLM"):
        plan_data(sessions, population=False)
    plan = plan_data([_session(20, ["n1"]), _session(20, ["n1"], 1)], population=False)
    assert plan.n_outputs == 1


@pytest.mark.slow
def test_plan_zarr_chunk_specs_carry_only_their_block(tmp_path):
    n, rows = 6000, 15
    src = _session(n, ["n1", "n2"], 3)
    store = _write_store(str(tmp_path / "big.zarr"), {"g": src}, chunk_rows=rows)
    sessions = distglm.open_sessions(store)
    with raise_if_dask_computes():
        plan = plan_data(sessions)
    assert len(plan.chunks) == n // rows
    # the whole array's materialised graph is much larger than the limit: it discriminates
    full = dict(sessions["g"]["X"].data.__dask_graph__())
    assert len(full) > n // rows and len(pickle.dumps(full)) > 20_000
    for c in plan.chunks:
        assert len(pickle.dumps(c.X)) < 20_000
        assert len(pickle.dumps(c.y)) < 20_000
        assert len(dict(c.X.__dask_graph__())) <= 4  # this block's X (and y) tasks only
    for c in plan.chunks[::37]:
        Xc = pickle.loads(pickle.dumps(c.X)).compute(scheduler="sync")
        np.testing.assert_array_equal(Xc, src["X"].values[c.start : c.stop])


# --------------------------------------------------------------------------- statistics
def test_chunk_stats_small_example():
    X = np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, 1.0], [3.0, -1.0], [1.0, 1.0], [2.0, np.inf]])
    y = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0], [np.nan, 2.0], [5.0, 0.0], [0.0, 0.0]])
    stats, keep = chunk_stats(7, X, y)
    np.testing.assert_array_equal(keep, [True, False, True, False, True, False])
    assert isinstance(stats, ChunkStats)
    assert stats.chunk_id == 7 and stats.n_rows == 6 and stats.n_dropped == 3
    np.testing.assert_array_equal(stats.labels, [0.0, 2.0, 5.0])
    np.testing.assert_array_equal(stats.counts, [[1, 2], [1, 1], [1, 0]])
    Z = np.array([[1.0, 2.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(stats.gram, Z.T @ Z)
    assert stats.gram.dtype == np.float64


def test_chunk_stats_string_labels_are_never_dropped():
    X = np.ones((3, 1), np.float32)
    stats, keep = chunk_stats(0, X, np.array([["b"], ["a"], ["b"]]))
    assert keep.all() and stats.n_dropped == 0
    assert stats.labels.tolist() == ["a", "b"]
    np.testing.assert_array_equal(stats.counts, [[1], [2]])


@SETTINGS
@given(
    n=st.integers(12, 80),
    k=st.integers(1, 3),
    n_chunks=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_merge_stats_matches_whole_data(n, k, n_chunks, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = rng.integers(0, 4, (n, k)).astype(float)
    y[:4] = np.arange(4)[:, None]  # every class occurs
    bad = rng.random(n) < 0.15
    bad[:4] = False
    X[bad & (rng.random(n) < 0.5), 1] = np.nan
    y[bad & ~np.isnan(X[:, 1]), 0] = np.inf
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(n_chunks - 1, n - 1), replace=False))
    sizes = tuple(np.diff(np.concatenate([[0], cuts, [n]])).tolist())
    plan = plan_data(da.from_array(X, chunks=(sizes, -1)), y)
    stats = _stats_of(plan)
    merged = merge_stats(plan, stats, 4)

    keep = ~bad
    Xk, yk = X[keep], y[keep].astype(int)
    np.testing.assert_array_equal(merged.classes, [0, 1, 2, 3])
    want_counts = np.stack([np.bincount(yk[:, j], minlength=4) for j in range(k)])
    np.testing.assert_array_equal(merged.class_counts, want_counts)
    np.testing.assert_array_equal(merged.n_samples, np.full(k, keep.sum()))
    assert merged.n_rows == keep.sum()
    assert merged.n_dropped == {"": int(bad.sum())}
    Z = np.concatenate([Xk, np.ones((Xk.shape[0], 1))], axis=1)
    np.testing.assert_allclose(merged.gram, Z.T @ Z / keep.sum(), rtol=1e-12, atol=1e-12)

    # the order the ChunkStats arrive in does not matter, bit for bit
    shuffled = merge_stats(plan, [stats[i] for i in rng.permutation(len(stats))], 4)
    for field in ("classes", "class_counts", "n_samples", "gram"):
        np.testing.assert_array_equal(getattr(shuffled, field), getattr(merged, field))
    assert shuffled.n_dropped == merged.n_dropped and shuffled.n_rows == merged.n_rows


def test_merge_stats_sessions_counts_per_output():
    a = _session(30, ["n1", "n2"], 0, nan_rows=[3, 4])
    b = _session(20, ["n2", "n3"], 1, nan_rows=[0])
    plan = plan_data({"a": a.chunk({"sample": 7}), "b": b.chunk({"sample": 7})})
    merged = merge_stats(plan, _stats_of(plan), 3)
    np.testing.assert_array_equal(merged.n_samples, [28, 28 + 19, 19])
    assert merged.n_dropped == {"a": 2, "b": 1}
    ya = np.delete(a["y"].values, [3, 4], axis=0)
    yb = np.delete(b["y"].values, [0], axis=0)
    want = np.stack(
        [
            np.bincount(ya[:, 0], minlength=3),
            np.bincount(ya[:, 1], minlength=3) + np.bincount(yb[:, 0], minlength=3),
            np.bincount(yb[:, 1], minlength=3),
        ]
    )
    np.testing.assert_array_equal(merged.class_counts, want)


def test_merge_stats_names_the_session_of_an_unexpected_label():
    labels = ["left", "right"]
    s1 = _session(40, ["n1"], 0, labels=labels)
    s2 = _session(40, ["n1"], 1, labels=labels)
    y2 = s2["y"].values.copy()
    y2[25] = "lfet"  # a typo in the second chunk of s2
    s2 = s2.assign(y=(("sample", "output"), y2))
    plan = plan_data({"s1": s1.chunk({"sample": 20}), "s2": s2.chunk({"sample": 20})})
    with pytest.raises(ValueError) as err:
        merge_stats(plan, _stats_of(plan), 2)
    msg = str(err.value)
    assert "'lfet'" in msg and "'s2'" in msg and "n_classes=2" in msg
    assert "rows 20-40" in msg


def test_merge_stats_mixed_label_types():
    s1 = _session(20, ["n1"], 0, labels=["a", "b", "c"])
    s2 = _session(20, ["n1"], 1)
    plan = plan_data({"s1": s1, "s2": s2})
    with pytest.raises(ValueError, match="one type") as err:
        merge_stats(plan, _stats_of(plan), 3)
    msg = str(err.value)
    assert "string" in msg and "number" in msg and "'s1'" in msg and "'s2'" in msg


def test_merge_stats_output_without_samples():
    s1 = _session(20, ["n1", "n2"], 0)
    s2 = _session(20, ["n1", "n9"], 1, nan_rows=range(20))
    s1["y"][:3] = [[0, 0], [1, 1], [2, 2]]
    plan = plan_data({"s1": s1, "s2": s2})
    stats = _stats_of(plan)
    with pytest.raises(ValueError, match=r"Session\(s\) \['s2'\] have every row dropped"):
        merge_stats(plan, stats, 3)
    with (
        pytest.warns(UserWarning, match="'s2'"),
        pytest.raises(ValueError, match=r"no samples.*session\(s\) 's2' \(20 of 20") as err,
    ):
        merge_stats(plan, stats, 3, drop_empty_sessions=True)
    assert "'n9'" in str(err.value) and "'n1'" not in str(err.value)


def test_merge_stats_missing_chunk():
    plan = plan_data([_session(20, ["n1"]).chunk({"sample": 10})])
    with pytest.raises(RuntimeError, match="missing"):
        merge_stats(plan, _stats_of(plan)[:1], 3)


# --------------------------------------------------------------------------- ChunkWorker
N_W, P_W, K_W, C_W = 700, 5, 3, 4
W_CHUNKS = (200, 200, 200, 100)
W_NAN = [5, 260, 690]


@pytest.fixture(scope="module")
def worker_data():
    X, y, _, _ = make_population(N_W, P_W, K_W, C_W, seed=2)
    X = X.copy()
    X[W_NAN, 1] = np.nan
    plan = plan_data(da.from_array(X, chunks=(W_CHUNKS, -1)), y, block_rows=64)
    keep = np.ones(N_W, bool)
    keep[W_NAN] = False
    return X, y, keep, plan


def _in_memory_sums(X, y, keep, theta, weights=None):
    ref = InMemoryData(X[keep], y[keep], C_W if weights is None else 3, weights=weights)
    value, grad = ref.value_and_grad(theta)
    return ref, value, grad


def test_chunk_worker_sums_match_in_memory(worker_data):
    X, y, keep, plan = worker_data
    assert plan.chunk_rows == 256 and plan.block_rows == 64
    w = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    stats = _check(w.load(plan.chunks))
    assert [s.chunk_id for s in stats] == [0, 1, 2, 3]
    assert [s.n_dropped for s in stats] == [1, 1, 0, 1]
    merged = merge_stats(plan, stats, C_W)
    assert _check(w.encode(merged.classes)) == [0, 1, 2, 3]

    theta = _theta(P_W, K_W, C_W, seed=3)
    ids, (loss, gc, gb), seconds = _results(
        plan, w.value_and_grad(np.asarray(theta, np.float32)), True, C_W
    )
    assert seconds >= 0 and ids == [0, 1, 2, 3]
    assert gc.shape == (P_W, K_W, C_W) and gb.shape == (K_W, C_W) and loss.dtype == np.float64

    ref, value, grad = _in_memory_sums(X, y, keep, theta)
    np.testing.assert_array_equal(ref.weight_sums, merged.n_samples)
    loss_ref = np.asarray(
        compiled_kernels.VALUE(ref._params(theta), *ref.arrays, block_rows=ref.block_rows),
        np.float64,
    )
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(np.sum(loss / ref.weight_sums), value, rtol=1e-5)
    scaled = grad * ref.weight_sums[None, :, None]
    assert _rel(gc, scaled[:-1]) < 1e-5 and _rel(gb, scaled[-1]) < 1e-5

    _, (values,), _ = _results(plan, w.value(np.asarray(theta, np.float32)), False, C_W)
    np.testing.assert_allclose(values, loss, rtol=1e-6)

    info = _check(w.info())
    assert info["chunks"] == [0, 1, 2, 3] and info["nbytes"] > 0


def test_chunk_worker_second_load_does_not_reread(worker_data):
    _, _, _, plan = worker_data
    w = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    first = _check(w.load(plan.chunks))
    read = w.read_seconds
    assert read > 0

    def boom():
        raise AssertionError("re-read")

    # the same chunk ids, whose sources now fail when read
    failing = [
        type(c)(
            c.chunk_id,
            c.session,
            c.session_index,
            c.start,
            c.stop,
            da.from_delayed(dask.delayed(boom)(), c.X.shape, c.X.dtype),
            da.from_delayed(dask.delayed(boom)(), c.y.shape, c.y.dtype),
        )
        for c in plan.chunks
    ]
    status, err = ChunkWorker(plan.session_outputs, plan.chunk_rows, None).load(failing[:1])
    assert status == "error" and "re-read" in str(err)  # the failing source does fail
    second = _check(w.load(failing))
    assert w.read_seconds == read
    assert [s.chunk_id for s in second] == [s.chunk_id for s in first]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.counts, b.counts)
        np.testing.assert_array_equal(a.gram, b.gram)


def test_chunk_worker_pads_chunks_to_one_compiled_shape():
    # a shape of its own (p=7), so that every chunk shape would compile anew without padding
    X, y, _, _ = make_population(330, 7, 2, 3, seed=4)
    plan = plan_data(da.from_array(X, chunks=((120, 120, 90), -1)), y, block_rows=40)
    assert plan.chunk_rows == 120
    w = _worker(plan, classes=np.arange(3))
    before = compiled_kernels.VALUE_AND_GRAD_FLAT._cache_size()
    ids, _, _ = _results(plan, w.value_and_grad(np.zeros((8, 2, 3), np.float32)))
    _check(w.value_and_grad(np.ones((8, 2, 3), np.float32)))
    assert ids == [0, 1, 2]
    assert compiled_kernels.VALUE_AND_GRAD_FLAT._cache_size() - before == 1  # a shape of its own
    shapes = {tuple(a.shape) for entry in w.holdings.cache.values() for a in entry[1:]}
    assert shapes == {(120, 7), (120, 2), (120,)}
    # padding rows have weight 0: the short chunk's sums are those of its 90 rows
    short = _worker(plan, plan.chunks[2:], classes=np.arange(3))
    _, (loss_short, *_), _ = _results(plan, short.value_and_grad(np.zeros((8, 2, 3), np.float32)))
    ref = InMemoryData(X[240:], y[240:], 3)
    loss = compiled_kernels.VALUE(
        ref._params(np.zeros((8, 2, 3))), *ref.arrays, block_rows=ref.block_rows
    )
    np.testing.assert_allclose(loss_short, loss, rtol=1e-6)


def test_chunk_worker_errors_are_returned(worker_data):
    _, _, _, plan = worker_data
    w = _worker(plan)
    status, err = w.encode(np.array([0, 1, 2]))  # label 3 is missing
    assert status == "error" and isinstance(err, ValueError)
    assert "Chunk 0" in str(err) and "[3]" in str(err)

    bad_rows = ChunkWorker([np.arange(5)], plan.chunk_rows, plan.block_rows)
    status, err = bad_rows.load(plan.chunks[:1])  # y has 3 columns, the worker expects 5
    assert status == "error" and isinstance(err, ValueError) and "chunk 0" in str(err)

    strings = plan_data(da.from_array(np.array([["a"], ["b"]]), chunks=1), np.zeros((2, 1)))
    status, err = ChunkWorker(strings.session_outputs, 1, None).load(strings.chunks)
    assert status == "error" and isinstance(err, TypeError) and "numeric" in str(err)


@pytest.mark.parametrize(("n_classes", "dtype"), [(3, np.int8), (127, np.int8), (128, np.int16)])
def test_chunk_worker_code_dtype(n_classes, dtype):
    X = np.random.default_rng(0).standard_normal((n_classes, 2)).astype(np.float32)
    y = np.arange(n_classes)[:, None]
    plan = plan_data(da.from_array(X, chunks=(n_classes, -1)), y)
    w = _worker(plan, classes=np.arange(n_classes))
    codes = w.holdings.cache[0][2]
    assert codes.dtype == dtype
    np.testing.assert_array_equal(np.asarray(codes)[:, 0], np.arange(n_classes))


# --------------------------------------------------------------------------- DistributedData
D_CHUNKS = (90, 60, 110, 40, 100, 30)


@pytest.fixture(scope="module")
def dist_data():
    X, y, _, _ = make_population(sum(D_CHUNKS), P_W, K_W, C_W, seed=5)
    plan = plan_data(da.from_array(X, chunks=(D_CHUNKS, -1)), y, block_rows=32)
    stats = merge_stats(plan, _stats_of(plan), C_W)
    return X, y, plan, stats


def _distributed(plan, stats, assignment, n_workers):
    pool = FakePool(plan, assignment, n_workers, stats.classes)
    return DistributedData(pool, stats, C_W)


def test_distributed_data_matches_in_memory(dist_data):
    X, y, plan, stats = dist_data
    data = _distributed(plan, stats, {c.chunk_id: c.chunk_id % 2 for c in plan.chunks}, 2)
    ref = InMemoryData(X, y, C_W)
    np.testing.assert_array_equal(data.weight_sums, ref.weight_sums)
    for seed in (0, 1):
        theta = _theta(P_W, K_W, C_W, seed=seed)
        value, grad = data.value_and_grad(theta)
        v_ref, g_ref = ref.value_and_grad(theta)
        assert grad.shape == g_ref.shape and grad.dtype == np.float64
        assert abs(value - v_ref) <= 1e-6 * abs(v_ref)
        assert _rel(grad, g_ref) <= 1e-6
        assert abs(data.value(theta) - v_ref) <= 1e-6 * abs(v_ref)
    np.testing.assert_allclose(data.gram(), np.asarray(ref.gram()), rtol=1e-5, atol=1e-6)
    assert len(data.pass_log) == 4 and data.pass_log[0]["workers"] == 2
    assert data.stat_passes == 1


@pytest.fixture(scope="module")
def dist_reference(dist_data):
    _, _, plan, stats = dist_data
    data = _distributed(plan, stats, {c.chunk_id: 0 for c in plan.chunks}, 1)
    theta = _theta(P_W, K_W, C_W, seed=7)
    return theta, data.value_and_grad(theta), data.value(theta)


@SETTINGS
@given(assignment=st.lists(st.integers(0, 1), min_size=len(D_CHUNKS), max_size=len(D_CHUNKS)))
def test_distributed_data_is_independent_of_assignment(dist_data, dist_reference, assignment):
    _, _, plan, stats = dist_data
    theta, (v_ref, g_ref), value_ref = dist_reference
    data = _distributed(plan, stats, dict(enumerate(assignment)), 2)
    value, grad = data.value_and_grad(theta)
    assert value == v_ref
    np.testing.assert_array_equal(grad, g_ref)
    assert data.value(theta) == value_ref


class _FixedPool:
    """Workers that answer with given per-chunk sums: worker ``i`` adds the chunks
    ``split[i]``, in that order, as :func:`gradient_chunk_sums` does."""

    def __init__(self, plan, sums, split):
        self.plan, self.dtype, self._sums, self._split = plan, np.dtype("float32"), sums, split
        self.n_classes = 2

    def run_shared(self, method, array, *rest):
        n = 3 if method == "value_and_grad" else 1
        out = {}
        for i, cids in enumerate(self._split):
            totals = CompensatedTotals(gradient_shapes(2, 1, 2, n == 3))
            for cid in cids:
                totals.add(self._sums[cid][:n], (0, 1, 0)[:n], np.array([0]))
            out[f"w{i}"] = (list(cids), totals.buffer(), 0.0, 0.0)
        return out


def test_distributed_data_sums_exactly_in_any_order_and_split():
    # float64 partials chosen so that a plain sum's result depends on the order (1 is lost
    # next to 2**54): the compensated reduction gives the exact sum, 1, for every order of the
    # chunks and every split of them over workers
    plan = plan_data(da.zeros((3, 2), chunks=(1, -1)), np.zeros((3, 1), int))
    big = 2.0**54
    losses = {0: 1.0, 1: big, 2: -big}
    sums = {
        cid: (np.array([v]), np.full((2, 1, 2), v), np.full((1, 2), v)) for cid, v in losses.items()
    }
    assert ((0.0 + 1.0) + big) - big != 1.0  # a plain sum in chunk-id order loses it
    stats = types.SimpleNamespace(n_samples=np.array([3]), gram=np.eye(3), n_rows=3)
    splits = [[list(order)] for order in itertools.permutations(range(3))]
    splits += [[[a], [b, c]] for a, b, c in itertools.permutations(range(3))]
    splits += [[[0], [1], [2]], [[2], [0], [1]]]
    for split in splits:
        data = DistributedData(_FixedPool(plan, sums, split), stats, 2)
        value, grad = data.value_and_grad(np.zeros((3, 1, 2)))
        assert value == 1.0 / 3, split
        np.testing.assert_array_equal(grad, np.full((3, 1, 2), 1.0 / 3))
        assert data.value(np.zeros((3, 1, 2))) == 1.0 / 3


def test_distributed_data_refuses_a_chunk_missing_or_twice():
    plan = plan_data(da.zeros((3, 2), chunks=(1, -1)), np.zeros((3, 1), int))
    sums = {cid: (np.array([1.0]), np.ones((2, 1, 2)), np.ones((1, 2))) for cid in range(3)}
    stats = types.SimpleNamespace(n_samples=np.array([3]), gram=np.eye(3), n_rows=3)
    for split, what in (
        ([[0, 1]], r"Chunks \[2\] returned no sums"),
        ([[0, 1], [1, 2]], "summed by two workers"),
    ):
        data = DistributedData(_FixedPool(plan, sums, split), stats, 2)
        with pytest.raises(RuntimeError, match=what):
            data.value(np.zeros((3, 1, 2)))


def test_distributed_data_sessions_with_output_subsets():
    s1 = _session(150, ["a", "b"], 0, nan_rows=[7])
    s2 = _session(120, ["b", "c"], 1)
    plan = plan_data(
        {"s1": s1.chunk({"sample": 64}), "s2": s2.chunk({"sample": 64})}, block_rows=16
    )
    stats = merge_stats(plan, _stats_of(plan), 3)
    np.testing.assert_array_equal(stats.n_samples, [149, 269, 120])
    pool = FakePool(plan, {c.chunk_id: c.chunk_id % 3 for c in plan.chunks}, 3, stats.classes)
    data = DistributedData(pool, stats, 3)

    X1 = np.delete(s1["X"].values, 7, axis=0)
    y1 = np.delete(s1["y"].values, 7, axis=0)
    X2, y2 = s2["X"].values, s2["y"].values
    X = np.concatenate([X1, X2])
    codes = np.zeros((X.shape[0], 3), int)
    weights = np.zeros((X.shape[0], 3), np.float32)
    codes[: len(X1), :2], weights[: len(X1), :2] = y1, 1
    codes[len(X1) :, 1:], weights[len(X1) :, 1:] = y2, 1
    ref = InMemoryData(X, codes, 3, weights=weights)
    np.testing.assert_array_equal(data.weight_sums, ref.weight_sums)

    theta = np.random.default_rng(9).normal(0, 0.5, (4, 3, 3))
    value, grad = data.value_and_grad(theta)
    v_ref, g_ref = ref.value_and_grad(theta)
    assert abs(value - v_ref) <= 1e-6 * abs(v_ref)
    assert _rel(grad, g_ref) <= 1e-6
    assert abs(data.value(theta) - v_ref) <= 1e-6 * abs(v_ref)


# --------------------------------------------------------------------------- LazyModel
LABELS = np.array(["left", "nogo", "right"])


@pytest.fixture(scope="module")
def fitted_models():
    X, y, _, _ = make_population(300, 4, 2, 3, seed=6)
    pop = ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(X, LABELS[y])
    single = ClassifierGLM(3, regularizer_strength=1e-2).fit(X, LABELS[y[:, 0]])
    return X, pop, single


def test_lazy_predict_and_log_proba_match_in_memory(fitted_models):
    X, pop, _ = fitted_models
    Xd = da.from_array(X, chunks=(70, -1))
    with raise_if_dask_computes():
        pred = pop.predict(Xd)
        lp = pop.predict_proba(Xd)
        proba = pop.predict_proba(Xd, return_type="proba")
    assert isinstance(pred, da.Array) and isinstance(lp, da.Array)
    pred = pred.compute(scheduler="sync")
    np.testing.assert_array_equal(pred, np.asarray(pop.predict(X)))
    assert set(np.unique(pred)) <= set(LABELS)
    lp = lp.compute(scheduler="sync")
    assert lp.shape == (300, 2, 3)
    np.testing.assert_allclose(lp, np.asarray(pop.predict_proba(X)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        proba.compute(scheduler="sync"),
        np.asarray(pop.predict_proba(X, return_type="proba")),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lazy_model_direct(fitted_models):
    X, pop, _ = fitted_models
    model = LazyModel(pop.coef_, pop.intercept_, pop.classes_, np.arange(2), True)
    got = model.predict(da.from_array(X, chunks=(100, -1))).compute(scheduler="sync")
    np.testing.assert_array_equal(got, np.asarray(pop.predict(X)))
    with pytest.raises(ValueError, match="features"):
        model.predict(da.from_array(X[:, :3], chunks=(100, -1)))


def test_lazy_simulate_reproducible(fitted_models):
    X, pop, _ = fitted_models
    key = jax.random.PRNGKey(3)
    Xd = da.from_array(X, chunks=(70, -1))
    draws, lp = pop.simulate(key, Xd)
    first = draws.compute(scheduler="sync")
    assert first.shape == (300, 2)
    assert set(np.unique(first)) <= set(pop.classes_.tolist())
    np.testing.assert_array_equal(draws.compute(scheduler="sync"), first)
    again, _ = pop.simulate(key, da.from_array(X.copy(), chunks=(70, -1)))
    np.testing.assert_array_equal(again.compute(scheduler="sync"), first)
    other, _ = pop.simulate(jax.random.PRNGKey(4), Xd)
    assert not np.array_equal(other.compute(scheduler="sync"), first)
    np.testing.assert_allclose(
        lp.compute(scheduler="sync"), np.asarray(pop.predict_proba(X)), rtol=1e-5, atol=1e-5
    )
    # a typed key draws the same as its raw key data
    typed, _ = pop.simulate(jax.random.wrap_key_data(key), Xd)
    np.testing.assert_array_equal(typed.compute(scheduler="sync"), first)


def test_lazy_simulate_follows_the_model(fitted_models):
    X, pop, _ = fitted_models
    Xd = da.from_array(np.repeat(X[:5], 400, axis=0), chunks=(250, -1))
    draws, _ = pop.simulate(jax.random.PRNGKey(0), Xd)
    draws = draws.compute(scheduler="sync").reshape(5, 400, 2)
    p = np.exp(np.asarray(pop.predict_proba(X[:5])))
    for i, lab in enumerate(pop.classes_):
        freq = (draws == lab).mean(axis=1)
        assert np.all(np.abs(freq - p[:, :, i]) < 0.1)


def test_lazy_single_output_drops_the_output_axis(fitted_models):
    X, _, single = fitted_models
    Xd = da.from_array(X, chunks=(70, -1))
    pred = single.predict(Xd).compute(scheduler="sync")
    assert pred.shape == (300,)
    np.testing.assert_array_equal(pred, np.asarray(single.predict(X)))
    lp = single.predict_proba(Xd).compute(scheduler="sync")
    assert lp.shape == (300, 3)
    np.testing.assert_allclose(lp, np.asarray(single.predict_proba(X)), rtol=1e-5, atol=1e-5)
    draws, lp2 = single.simulate(jax.random.PRNGKey(1), Xd)
    assert draws.compute(scheduler="sync").shape == (300,)
    assert lp2.shape == (300, 3)


def test_lazy_xarray_and_sessions(fitted_models):
    X, pop, _ = fitted_models
    Xa = xr.DataArray(
        da.from_array(X, chunks=(100, -1)),
        dims=("time", "feature"),
        coords={"time": np.arange(300) * 0.1},
    )
    pred = pop.predict(Xa)
    assert isinstance(pred, xr.DataArray) and pred.dims == ("time", "output")
    np.testing.assert_array_equal(pred.coords["time"].values, np.arange(300) * 0.1)
    np.testing.assert_array_equal(pred.values, np.asarray(pop.predict(X)))
    lp = pop.predict_proba(Xa)
    assert lp.dims == ("time", "output", "class")
    assert lp.coords["class"].values.tolist() == LABELS.tolist()

    # sessions: each session gets the columns of the outputs it records
    ds = xr.Dataset(
        {
            "X": (("sample", "feature"), X[:120]),
            "y": (("sample", "output"), np.zeros((120, 1), int)),
        },
        coords={"output": [1]},
    )
    out = pop.predict({"s": ds})
    assert list(out) == ["s"]
    np.testing.assert_array_equal(out["s"].values, np.asarray(pop.predict(X[:120]))[:, 1:])
    with pytest.raises(ValueError, match="not fitted on"):
        pop.predict({"s": ds.assign_coords(output=[5])})


def test_lazy_score_sums_match_in_memory(fitted_models):
    X, pop, _ = fitted_models
    _, y, _, _ = make_population(300, 4, 2, 3, seed=6)
    labels = LABELS[y].astype(object).astype(str)
    ll, counts = (
        pop._fitted("score")
        .lazy()
        .score_sums(da.from_array(X, chunks=(70, -1)), da.from_array(labels, chunks=(50, -1)))
    )
    codes = np.searchsorted(pop.classes_, labels)
    lp = np.asarray(pop.predict_proba(X), np.float64)
    want = np.take_along_axis(lp, codes[..., None], axis=2)[..., 0].sum(axis=0)
    np.testing.assert_allclose(ll, want, rtol=1e-5)
    np.testing.assert_array_equal(
        counts, np.stack([np.bincount(codes[:, j], minlength=3) for j in range(2)])
    )


def test_chunk_workers_keep_freed_memory_for_reuse():
    # dask's nanny sets MALLOC_TRIM_THRESHOLD_, which made the kernels 1.4-1.7x slower in
    # workers; the actor undoes it with mallopt where glibc has it (Linux, as in CI)
    from distglm.distribute.runtime import keep_freed_memory

    expected = sys.platform.startswith("linux")
    assert keep_freed_memory() is expected
    X, y, _, _ = make_population(50, 3, 1, 3, seed=0)
    plan = plan_data(da.from_array(X, chunks=(25, 3)), y)
    assert ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows).malloc_tuned is (
        expected
    )


def test_chunk_worker_puts_its_chunk_arrays_on_the_device_without_a_copy():
    rows, p = 1000, 3
    X = np.random.default_rng(0).standard_normal((rows, p)).astype(np.float32)
    keep = np.ones(rows, bool)
    # the chunk as read is the caller's own array: it is copied, and left writeable
    Xp, cp, w = encode_read(X, np.zeros((rows, 1), np.int8), keep, np.arange(2), rows, np.float32)
    assert not np.shares_memory(Xp, X) and X.flags.writeable
    for a in (Xp, cp, w):
        assert a.ctypes.data % 64 == 0
    on_device = put_on_device(Xp, cp, w)  # as the worker caches and streams its chunks
    assert not any(a.flags.writeable for a in (Xp, cp, w))
    np.testing.assert_array_equal(np.asarray(on_device[0]), X)
    if jax.default_backend() == "cpu":  # aligned and read-only: used by JAX as it is
        pairs = zip(on_device, (Xp, cp, w), strict=True)
        assert all(np.shares_memory(np.asarray(d), a) for d, a in pairs)
    X[0, 0] = 100.0
    assert float(on_device[0][0, 0]) != 100.0
