"""Nothing lost silently, every error names where: missing, corrupt and out-of-range chunks,
rows dropped for NaN/Inf, stale consolidated metadata (real Zarr stores in ``tmp_path``, no
cluster: the chunk reads and statistics are called directly)."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

from distglm import open_sessions
from distglm.data import merge_stats, plan_data
from distglm.data.checks import (
    DROPPED_WARN_FRACTION,
    FINGERPRINT_STRIDE,
    computed,
    content_fingerprint,
    read_block,
    report_dropped,
)
from distglm.data.stats import chunk_stats
from distglm.distribute.worker import ChunkWorker
from distglm.exceptions import ChunkReadTimeout, StoreChangedError
from distglm.solve.checks import check_finite_objective

ROWS, P, K = 64, 3, 2


def _session(n=256, seed=0, float_labels=False, X=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, P)) if X is None else X
    y = rng.integers(1, 3, size=(n, K))
    y = y.astype(np.float64) if float_labels else y
    return xr.Dataset(
        {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
        coords={"output": [f"u{j}" for j in range(K)]},
    )


def _write(path, sessions, write_empty_chunks=None):
    for name, ds in sessions.items():
        ds.chunk({"sample": ROWS}).to_zarr(
            path, group=name, mode="a", zarr_format=3, write_empty_chunks=write_empty_chunks
        )
    return path


def _chunk_file(path, session, var, i):
    return os.path.join(path, session, var, "c", str(i), "0")


def _spec(plan, session, start):
    return next(c for c in plan.chunks if c.session == session and c.start == start)


def _read(plan, spec, dtype="float32"):
    k = len(plan.session_outputs[spec.session_index])
    return read_block(spec, k, np.dtype(dtype), check_stored=True)


def test_missing_x_chunk_is_an_error_naming_session_rows_and_path(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session(), "b": _session(seed=1)})
    os.remove(_chunk_file(path, "b", "X", 2))
    plan = plan_data(open_sessions(path))
    spec = _spec(plan, "b", 2 * ROWS)
    with pytest.raises(FileNotFoundError) as e:
        _read(plan, spec)
    msg = str(e.value)
    assert "session 'b'" in msg and f"rows {2 * ROWS}-{3 * ROWS}" in msg
    assert "b/X/c/2/0" in msg and path in msg
    # the other chunks read as written
    X, _ = _read(plan, _spec(plan, "b", ROWS))
    np.testing.assert_array_equal(X, _session(seed=1)["X"].values[ROWS : 2 * ROWS])


def test_chunk_replaced_by_a_directory_is_missing(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session(float_labels=True)})
    f = _chunk_file(path, "a", "y", 1)
    os.remove(f)
    os.mkdir(f)
    plan = plan_data(open_sessions(path))
    with pytest.raises(FileNotFoundError, match=r"session 'a', rows 64-128 .*a/y/c/1/0"):
        _read(plan, _spec(plan, "a", ROWS))


def test_unwritten_chunk_with_finite_fill_reads_as_its_fill(tmp_path):
    """Zarr does not write a chunk equal to the fill value (int labels all 0): not an error."""
    ds = _session()
    ds["y"][ROWS : 2 * ROWS] = 0
    path = _write(str(tmp_path / "s.zarr"), {"a": ds})
    assert not os.path.exists(_chunk_file(path, "a", "y", 1))
    plan = plan_data(open_sessions(path))
    _, y = _read(plan, _spec(plan, "a", ROWS))
    assert (y == 0).all()


def test_worker_statistics_pass_refuses_a_missing_chunk(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    os.remove(_chunk_file(path, "a", "X", 3))
    plan = plan_data(open_sessions(path))
    worker = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    status, err = worker.load(plan.chunks)
    assert status != "ok" and isinstance(err, FileNotFoundError)
    assert "session 'a', rows 192-256" in str(err)


def test_resumed_worker_checks_chunks_on_their_first_read(tmp_path):
    """A worker adopting known statistics (a resumed fit) checks each chunk when it first
    reads it, as the statistics pass would have."""
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    plan = plan_data(open_sessions(path))
    loaded = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    status, stats = loaded.load(plan.chunks)
    assert status == "ok"
    classes = merge_stats(plan, stats, 2).classes
    os.remove(_chunk_file(path, "a", "X", 2))
    adopted = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    kept = [st.n_rows - st.n_dropped for st in stats]
    assert adopted.adopt(plan.chunks, classes, kept)[0] == "ok"
    theta = np.zeros((P + 1, K, 2), np.float32)
    status, err = adopted.value_and_grad(theta)
    assert status != "ok" and isinstance(err, FileNotFoundError)
    assert "session 'a', rows 128-192" in str(err)


def test_corrupt_chunk_names_session_rows_and_path(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    f = _chunk_file(path, "a", "X", 1)
    with open(f, "r+b") as fh:
        data = fh.read()
        fh.seek(0)
        fh.write(b"\x00garbage" + data[: len(data) // 3])
        fh.truncate()
    plan = plan_data(open_sessions(path))
    with pytest.raises(
        Exception,
        match=r"Reading X of session 'a', rows 64-128 \(chunk 1\) at \S*s\.zarr/a/X failed",
    ):
        _read(plan, _spec(plan, "a", ROWS))


def test_x_and_y_row_counts_differ_names_the_session(tmp_path):
    path = str(tmp_path / "s.zarr")
    _write(path, {"a": _session()})
    other = _session(n=100)
    other[["X"]].to_zarr(path, group="b", mode="a", zarr_format=3)
    _session(n=90).to_zarr(path, group="tmp", mode="a", zarr_format=3)
    shutil.move(os.path.join(path, "tmp", "y"), os.path.join(path, "b", "y"))
    shutil.move(os.path.join(path, "tmp", "output"), os.path.join(path, "b", "output"))
    shutil.rmtree(os.path.join(path, "tmp"))
    with pytest.raises(ValueError, match=r"Session 'b' \(group 'b' of .*s\.zarr'\)"):
        open_sessions(path)


def test_values_beyond_float32_are_refused_naming_session_and_chunk(tmp_path):
    X = np.random.default_rng(0).normal(size=(256, P))
    X[130, 1] = 3e39  # finite in float64, Inf in float32
    path = _write(str(tmp_path / "s.zarr"), {"a": _session(X=X)})
    plan = plan_data(open_sessions(path))
    spec = _spec(plan, "a", 2 * ROWS)
    with pytest.raises(
        ValueError, match=r"rows 128-192 \(chunk 2\) at \S*a/X: .*3e\+39 at row 130, feature 1"
    ):
        _read(plan, spec)
    X64, _ = _read(plan, spec, dtype="float64")  # representable in float64
    assert X64[2, 1] == 3e39


def _stats(plan):
    return [chunk_stats(c.chunk_id, *_read(plan, c))[0] for c in plan.chunks]


def test_dropped_rows_are_logged_and_warned_per_session(tmp_path, caplog):
    few = _session(seed=1, float_labels=True)
    few["y"][5, 0] = np.nan  # 1 of 256 rows: logged only
    many = _session(seed=2, float_labels=True)
    many["X"][:10, 0] = np.inf  # 10 of 256 rows: above 1%, warned
    path = _write(str(tmp_path / "s.zarr"), {"few": few, "many": many})
    plan = plan_data(open_sessions(path))
    with caplog.at_level(logging.INFO, logger="distglm"):
        with pytest.warns(UserWarning, match=r"session 'many' \(10 of 256 rows, 3.9%\)") as rec:
            stats = merge_stats(plan, _stats(plan), 2)
    assert not any("'few'" in str(w.message) for w in rec)
    assert stats.n_dropped == {"few": 1, "many": 10}
    logged = [r.getMessage() for r in caplog.records if r.name == "distglm.data"]
    assert "session 'few': 1 of 256 rows dropped for NaN/Inf" in logged
    assert "session 'many': 10 of 256 rows dropped for NaN/Inf" in logged


def test_a_session_entirely_dropped_is_an_error_unless_asked(tmp_path):
    gone = _session(seed=3, float_labels=True)
    gone["y"][:] = np.nan
    path = str(tmp_path / "s.zarr")
    _write(path, {"a": _session(float_labels=True), "gone": gone}, write_empty_chunks=True)
    plan = plan_data(open_sessions(path))
    stats = _stats(plan)
    with pytest.raises(ValueError, match=r"Session\(s\) \['gone'\] have every row dropped"):
        merge_stats(plan, stats, 2)
    with pytest.warns(UserWarning, match=r"\['gone'\] have every row dropped.*without them"):
        merged = merge_stats(plan, stats, 2, drop_empty_sessions=True)
    assert merged.n_dropped["gone"] == 256 and merged.n_rows == 256


def test_outputs_with_no_samples_name_their_sessions(tmp_path):
    gone = _session(seed=3, float_labels=True).assign_coords(output=["v0", "v1"])
    gone["y"][:] = np.nan
    path = str(tmp_path / "s.zarr")
    _write(path, {"a": _session(float_labels=True), "gone": gone}, write_empty_chunks=True)
    plan = plan_data(open_sessions(path))
    stats = _stats(plan)
    with (
        pytest.warns(UserWarning),
        pytest.raises(
            ValueError, match=r"\['v0', 'v1'\] have no samples left.*'gone' \(256 of 256 rows"
        ),
    ):
        merge_stats(plan, stats, 2, drop_empty_sessions=True)


def test_report_dropped_threshold():
    n = 10_000
    at = int(DROPPED_WARN_FRACTION * n)
    assert report_dropped({"s": at}, {"s": n}) == []  # at the threshold: no warning
    with pytest.warns(UserWarning, match="'s'"):
        report_dropped({"s": at + 1}, {"s": n})
    with pytest.raises(ValueError, match="All rows of the data"):
        report_dropped({"": 5}, {"": 5})


def test_open_sessions_lists_groups_missing_from_consolidated_metadata(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session(), "b": _session(seed=1)})
    zarr.consolidate_metadata(path)
    _write(path, {"c": _session(seed=2)})  # added without consolidating again
    assert sorted(open_sessions(path)) == ["a", "b", "c"]
    shutil.rmtree(os.path.join(path, "b"))
    assert sorted(open_sessions(path)) == ["a", "c"]


def test_non_finite_objective_error_shows_the_non_finite_quantity():
    with pytest.raises(ValueError, match=r"objective \(1 of 2 entries NaN/Inf, e.g. \[inf\]\)"):
        check_finite_objective(np.array([8.5, np.inf]), np.zeros(3))
    with pytest.raises(ValueError, match=r"gradient \(1 of 3 entries NaN/Inf, e.g. \[nan\]"):
        check_finite_objective(np.array([8.5, 0.1]), np.array([0.0, np.nan, 1.0]))


@pytest.mark.cluster
@pytest.mark.slow
def test_fit_refuses_missing_chunks_and_empty_sessions_unless_asked(tmp_path, client):
    """On a real cluster: the workers' errors reach the fit with session, rows and path;
    drop_empty_sessions fits the other sessions exactly as if the empty one were absent."""
    from distglm import ClassifierPopulationGLM

    kept = {"a": _session(float_labels=True), "b": _session(seed=1, float_labels=True)}
    gone = _session(seed=3, float_labels=True)
    gone["y"][:] = np.nan
    full = _write(str(tmp_path / "full.zarr"), {**kept, "gone": gone}, write_empty_chunks=True)
    ref = _write(str(tmp_path / "ref.zarr"), kept)

    def model():
        return ClassifierPopulationGLM(2, regularizer_strength=0.1)

    with pytest.raises(ValueError, match=r"\['gone'\] have every row dropped"):
        model().fit(full, client=client)
    with pytest.warns(UserWarning, match=r"\['gone'\] have every row dropped"):
        dropped = model().fit(full, client=client, drop_empty_sessions=True)
    expected = model().fit(ref, client=client)
    np.testing.assert_array_equal(dropped.coef_, expected.coef_)
    np.testing.assert_array_equal(dropped.intercept_, expected.intercept_)

    os.remove(_chunk_file(ref, "b", "X", 1))
    with pytest.raises(FileNotFoundError, match=r"session 'b', rows 64-128 .*ref\.zarr/b/X"):
        model().fit(ref, client=client)


def _streaming_worker(plan, read_floor=60.0):
    """A worker that caches nothing: every pass re-reads its chunks from the store."""
    return ChunkWorker(
        plan.session_outputs,
        plan.chunk_rows,
        plan.block_rows,
        cache_bytes=0,
        read_limits=(10.0, read_floor),
    )


def test_a_store_rewritten_mid_fit_is_refused(tmp_path):
    """The statistics pass fingerprints every chunk; a streamed re-read of a chunk whose
    content changed since is refused, naming it (never mixed with the old statistics)."""
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    plan = plan_data(open_sessions(path))
    worker = _streaming_worker(plan)
    status, stats = worker.load(plan.chunks)
    assert status == "ok" and all(st.fingerprint for st in stats)
    classes = merge_stats(plan, stats, 2).classes
    assert worker.encode(classes)[0] == "ok"
    theta = np.zeros((P + 1, K, 2), np.float32)
    assert worker.value_and_grad(theta)[0] == "ok"  # unchanged: passes
    arr = zarr.open_array(path, path="a/X", mode="r+")
    arr[ROWS + 5, 1] = 123.0  # one value of one row
    status, err = worker.value_and_grad(theta)
    assert status != "ok" and isinstance(err, StoreChangedError), err
    assert "session 'a', rows 64-128" in str(err) and "a/X" in str(err)


def test_a_streamed_reread_takes_the_kept_rows_its_first_read_found(tmp_path, monkeypatch):
    """A re-read whose fingerprint matches reuses the chunk's kept-row mask (no NaN scan);
    its sums equal a cached worker's, NaN rows dropped the same; a changed chunk is still
    refused before any mask is reused."""
    import distglm.distribute.holdings as holdings_module

    X = np.random.default_rng(4).normal(size=(256, P))
    X[[3, 70, 71, 200], 1] = np.nan
    path = _write(str(tmp_path / "s.zarr"), {"a": _session(X=X)})
    plan = plan_data(open_sessions(path))
    streamed = _streaming_worker(plan)
    cached = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    stats = streamed.load(plan.chunks)[1]
    assert [st.n_dropped for st in stats] == [1, 2, 0, 1]
    cached.load(plan.chunks)
    with pytest.warns(UserWarning, match="4 of 256 rows"):
        classes = merge_stats(plan, stats, 2).classes
    streamed.encode(classes)
    cached.encode(classes)
    scans = []
    real = holdings_module.kept_rows
    monkeypatch.setattr(holdings_module, "kept_rows", lambda *a: scans.append(1) or real(*a))
    theta = np.random.default_rng(5).normal(0, 0.1, (P + 1, K, 2)).astype(np.float32)
    for _ in range(2):
        got, want = streamed.value_and_grad(theta), cached.value_and_grad(theta)
        assert got[0] == want[0] == "ok"
        np.testing.assert_array_equal(got[1][1], want[1][1])
    assert scans == []  # every chunk re-read twice, none scanned again
    zarr.open_array(path, path="a/X", mode="r+")[5, 0] = np.nan  # a new NaN row
    status, err = streamed.value_and_grad(theta)
    assert status != "ok" and isinstance(err, StoreChangedError) and "rows 0-64" in str(err)


def test_computed_takes_one_block_from_its_graph_and_more_through_compute(tmp_path, monkeypatch):
    """A chunk's one-block dask array is read from its graph without ``compute`` (no copy
    to join blocks); an array of several blocks goes through ``compute``; both give the
    stored values."""
    import dask.array as da

    values = np.arange(600, dtype=np.float32).reshape(200, 3)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=values.shape, chunks=(50, 3), dtype="f4")
    z[:] = values
    lazy = da.from_zarr(str(tmp_path / "x.zarr"))
    block, several = lazy[50:100], lazy[25:175]
    computes = []
    real = da.Array.compute
    monkeypatch.setattr(
        da.Array, "compute", lambda self, **kw: computes.append(1) or real(self, **kw)
    )
    np.testing.assert_array_equal(computed(block), values[50:100])
    assert computes == []
    np.testing.assert_array_equal(computed(several), values[25:175])
    assert computes == [1]
    own = np.ones((4, 2))  # an in-memory source: its values, whatever the path
    np.testing.assert_array_equal(computed(da.from_array(own, chunks=(4, 2))[1:3]), own[1:3])


def test_a_chunk_moved_to_another_worker_is_checked_against_the_statistics_pass(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    plan = plan_data(open_sessions(path))
    status, stats = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows).load(
        plan.chunks
    )
    prints = {st.chunk_id: st.fingerprint for st in stats}
    zarr.open_array(path, path="a/y", mode="r+")[200, 0] = 2 if _session()["y"][200, 0] == 1 else 1
    other = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    status, err = other.load(plan.chunks, prints)
    assert status != "ok" and isinstance(err, StoreChangedError)
    assert "rows 192-256" in str(err)


def test_fingerprint_sees_a_change_of_any_one_value():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)).astype(np.float32), rng.integers(0, 3, (64, 2))
    base = content_fingerprint(X, y)
    assert base == content_fingerprint(X.copy(), y.copy())
    for r in range(64):
        X2 = X.copy()
        X2[r, r % 3] += 1
        assert content_fingerprint(X2, y) != base
    X2 = X.copy()  # rows the stride samples: swapping them is seen too
    X2[[0, FINGERPRINT_STRIDE]] = X2[[FINGERPRINT_STRIDE, 0]]
    assert content_fingerprint(X2, y) != base
    for r in range(64):
        y2 = y.copy()
        y2[r, 1] = (y2[r, 1] + 1) % 3
        assert content_fingerprint(X, y2) != base
    assert content_fingerprint(X[:32], y[:32]) != base


def test_a_stalled_chunk_read_is_an_error_in_bounded_time(tmp_path):
    """A chunk that became a named pipe blocks its read for ever: the read's deadline ends
    it with an error naming the chunk; the worker's next reads are not held up."""
    import time

    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    plan = plan_data(open_sessions(path))
    worker = _streaming_worker(plan, read_floor=1.0)
    status, stats = worker.load(plan.chunks)
    assert status == "ok"
    assert worker.encode(merge_stats(plan, stats, 2).classes)[0] == "ok"
    f = _chunk_file(path, "a", "X", 2)
    os.remove(f)
    os.mkfifo(f)
    theta = np.zeros((P + 1, K, 2), np.float32)
    try:
        start = time.monotonic()
        status, err = worker.value_and_grad(theta)
        seconds = time.monotonic() - start
        assert status != "ok" and isinstance(err, ChunkReadTimeout), err
        assert "session 'a', rows 128-192" in str(err) and "s.zarr/a/X" in str(err)
        assert seconds < 10
    finally:
        fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)  # the stuck reader sees EOF and ends
        os.close(fd)
    os.remove(f)
    status, err = worker.value_and_grad(theta)  # a new reader; the chunk gone is named
    assert isinstance(err, StoreChangedError) and "rows 128-192" in str(err), err


def test_forget_frees_cache_space(tmp_path):
    path = _write(str(tmp_path / "s.zarr"), {"a": _session()})
    plan = plan_data(open_sessions(path))
    worker = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    status, stats = worker.load(plan.chunks)
    used = worker.holdings.ledger.used
    assert used > 0
    assert worker.encode(merge_stats(plan, stats, 2).classes)[0] == "ok"
    status, left = worker.forget([0, 2])
    assert status == "ok" and left == [1, 3]
    assert worker.holdings.ledger.used == used // 2
    assert worker.info()[1]["chunks"] == [1, 3]
