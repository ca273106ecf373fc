"""Work units smaller than a chunk: when blocks are split, into what, where the units go, how
they are read, and a fit over them (against the unsplit fit, and resumed from a checkpoint).

The pure rules (:func:`balanced_unit_rows`, :func:`contiguous_owners`, :func:`split_plan`)
are checked without a cluster; the fits run on the session's 2-worker ``LocalCluster`` over a
Zarr store in ``tmp_path`` with 3 chunks of 32,768 rows and one of 1,000 (unsplit, one worker
holds 65,536 rows and the other 33,768).
"""

from __future__ import annotations

import itertools

import dask.array as da
import dask.config
import hypothesis.strategies as st
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings

import distglm
from distglm.cli import make_population
from distglm.data import plan_data
from distglm.data.plan import cut_rows, split_plan, whole_blocks
from distglm.distribute.assignment import (
    SPLIT_GAIN,
    Assignment,
    balanced_unit_rows,
    contiguous_owners,
    max_load,
)
from distglm.distribute.reader import ChunkReader
from distglm.persist.fingerprint import plan_fingerprint


# ---------------------------------------------------------------------------- pure rules
@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.integers(1, 1000), min_size=1, max_size=40), n=st.integers(1, 8))
def test_contiguous_owners_are_runs_each_within_a_chunk_of_the_even_share(rows, n):
    owners = contiguous_owners(rows, n)
    assert len(owners) == len(rows) and owners[0] == 0
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(owners))  # runs
    load = [sum(r for r, w in zip(rows, owners, strict=True) if w == j) for j in range(n)]
    assert max(load) == max_load(rows, n)
    if len(rows) >= n:  # nobody idle while chunks could go round
        assert all(x > 0 for x in load)
    assert max(load) <= sum(rows) / n + max(rows)


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.integers(1, 8 * 64), min_size=1, max_size=12),
    n=st.integers(1, 8),
)
def test_a_split_is_whole_kernel_blocks_and_lowers_the_most_loaded_worker(blocks, n):
    block_rows = 8
    chunk_rows = whole_blocks(max(blocks), block_rows)
    unit = balanced_unit_rows(blocks, n, chunk_rows, block_rows)
    names = [str(i) for i in range(n)]
    unsplit = max(Assignment.initial(blocks, names).load(names).values())
    if unit is not None:
        assert unit % block_rows == 0 and block_rows <= unit < chunk_rows
        assert max_load(cut_rows(blocks, unit), n) <= (1 - SPLIT_GAIN) * unsplit
        return
    # no split: nothing to balance, or no candidate gains enough
    if n == 1 or chunk_rows <= block_rows or unsplit <= (1 + SPLIT_GAIN) * sum(blocks) / n:
        return
    candidate = chunk_rows
    while candidate > block_rows:
        candidate = whole_blocks(candidate // 2, block_rows)
        assert max_load(cut_rows(blocks, candidate), n) > (1 - SPLIT_GAIN) * unsplit


def test_four_chunks_of_the_200k_problem_are_halved_for_two_workers():
    blocks = [65536, 65536, 65536, 3392]
    names = ["a", "b"]
    assert Assignment.initial(blocks, names).load(names) == {"a": 131072, "b": 68928}
    unit = balanced_unit_rows(blocks, 2, 65536, 8192)
    assert unit == 32768
    units = cut_rows(blocks, unit)
    a = Assignment.initial(units, names, contiguous=True)
    assert a.load(names) == {"a": 98304, "b": 101696}
    assert a.owner == ("a",) * 3 + ("b",) * 4  # one block (the second) read by both
    # already balanced, one worker, or chunks of one kernel block: no split
    assert balanced_unit_rows([65536] * 8, 2, 65536, 8192) is None
    assert balanced_unit_rows(blocks, 1, 65536, 8192) is None
    assert balanced_unit_rows([8192, 100], 2, 8192, 8192) is None


def _array_plan(n=200, chunk=64, block_rows=16):
    X, y, _, _ = make_population(n, 3, 2, 3, seed=0)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(chunk, 3))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(chunk, 2))
    return plan_data(Xd, yd, block_rows=block_rows), np.asarray(X, np.float32), np.asarray(y)


def test_split_units_cover_each_block_in_order_and_keep_the_fingerprint():
    plan, X, y = _array_plan()
    split = split_plan(plan, 32)
    assert plan.chunk_rows == 64 and split.chunk_rows == 32 and split.unit_rows == 32
    assert [(c.start, c.stop, c.offset) for c in split.chunks] == [
        (0, 32, 0),
        (32, 64, 32),
        (64, 96, 0),
        (96, 128, 32),
        (128, 160, 0),
        (160, 192, 32),
        (192, 200, 0),
    ]
    assert [c.chunk_id for c in split.chunks] == list(range(7))
    assert sum(c.nbytes for c in split.chunks) == sum(c.nbytes for c in plan.chunks)
    for c in split.chunks:
        Xs, ys = c.take(c.X.compute(), c.y.compute())
        np.testing.assert_array_equal(Xs, X[c.start : c.stop])
        np.testing.assert_array_equal(ys, y[c.start : c.stop])
    assert plan_fingerprint(split, "float32") == plan_fingerprint(plan, "float32")
    assert split_plan(plan, None) is plan and split_plan(plan, 64) is plan
    with pytest.raises(ValueError, match="multiple of the kernel block \\(16 rows\\); got 24"):
        split_plan(plan, 24)
    with pytest.raises(ValueError, match="already split into units of 32 rows"):
        split_plan(split, 16)


def test_the_units_of_a_block_share_one_read_within_a_batch():
    plan, X, y = _array_plan()
    split = split_plan(plan, 32)
    reader = ChunkReader(split.session_outputs, np.float32)
    got = list(reader.prefetched(split.chunks[:3], reader.read))
    assert reader.count == 2  # blocks 0 and 1 for units 0, 1 and 2
    for c, (Xs, ys) in zip(split.chunks[:3], got, strict=True):
        np.testing.assert_array_equal(Xs, X[c.start : c.stop])
        np.testing.assert_array_equal(ys, y[c.start : c.stop])
    # the batch ended after the first unit of block 1: its next unit reads the block again
    list(reader.prefetched(split.chunks[3:4], reader.read))
    assert reader.count == 3


def test_a_block_is_kept_until_a_unit_reaching_its_end_and_never_past_its_batch():
    plan, X, _ = _array_plan()
    split = split_plan(plan, 16)  # 4 units a 64-row block
    units = split.chunks
    reader = ChunkReader(split.session_outputs, np.float32)
    list(reader.prefetched([units[0], units[1], units[3], units[4]], reader.read))
    assert reader.count == 2  # units 0, 1, 3 share block 0's read (3 reaches its end)
    list(reader.prefetched([units[3], units[0]], reader.read))
    assert reader.count == 4  # unit 3 ended block 0: unit 0 reads it again
    # a batch given up while its next read runs: that read may not keep its block
    batch = reader.prefetched(units[4:8], reader.read)
    next(batch)
    batch.close()
    reader._pool.submit(lambda: None).result()  # the abandoned read has finished
    before = reader.count
    (got,) = reader.prefetched([units[6]], reader.read)
    assert reader.count == before + 1
    np.testing.assert_array_equal(got[0], X[units[6].start : units[6].stop])


def test_the_read_a_pass_counts_each_streamed_block_once():
    from distglm.distribute.session import measured_pass_facts

    plan, _, _ = _array_plan()
    split = split_plan(plan, 32)  # 7 units of 4 blocks
    info = {
        "a": {
            "chunks": [0, 1, 2, 3],
            "streamed": [0, 1, 2],  # blocks 0 and 1
            "read_seconds": 1.0,
            "block_reads": 2,
            "device": "cpu",
        },
        "b": {
            "chunks": [4, 5, 6],
            "streamed": [],
            "read_seconds": 0.5,
            "block_reads": 2,
            "device": "cpu",
        },
    }
    assert measured_pass_facts(info, split).read_seconds == 1.0  # 2 blocks of 0.5 s
    assert split.read_nbytes([0, 1, 2]) == 2 * plan.chunks[0].read_nbytes
    assert split.n_blocks([0, 1, 2]) == 2 and split.n_blocks([6]) == 1


# ---------------------------------------------------------------------------- fits
ROWS = 3 * 32768 + 1000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    X, y, _, _ = make_population(ROWS, 6, 4, 3, seed=3)
    ds = xr.Dataset(
        {"X": (("sample", "feature"), X.astype(np.float32)), "y": (("sample", "output"), y)}
    )
    path = tmp_path_factory.mktemp("balance") / "s.zarr"
    ds.assign_coords(output=np.arange(4)).chunk({"sample": 32768}).to_zarr(str(path), group="s0")
    return path


def _fit(store, client, **kw):
    model = distglm.ClassifierPopulationGLM(
        3, regularizer_strength=1e-2, solver_kwargs={"tol": 1e-8, "maxiter": 200}
    )
    return model.fit(distglm.open_sessions(str(store)), client=client, **kw)


@pytest.mark.cluster
def test_a_fit_over_units_reads_each_block_once_and_matches_the_unsplit_fit(store, client):
    split = _fit(store, client)
    prof = split.fit_profile_
    assert prof["unit_rows"] == 16384 and prof["chunk_rows"] == 16384
    assert prof["n_chunks"] == 7
    loads = sorted(c["cached_chunks"] for c in prof["cache"].values())
    assert loads == [3, 4]  # 49,152 rows against 50,152 (unsplit: 65,536 against 33,768)
    # 4 blocks; the one whose units the two runs share is read by both
    assert sum(c["block_reads"] for c in prof["cache"].values()) == 5
    with dask.config.set({"distglm.balance.split": False}):
        whole = _fit(store, client)
    assert whole.fit_profile_["unit_rows"] is None and whole.fit_profile_["n_chunks"] == 4
    # the sums differ by float32 rounding of the kernels' row blocks only
    np.testing.assert_allclose(split.coef_, whole.coef_, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(split.intercept_, whole.intercept_, rtol=2e-4, atol=2e-5)


class _Stop(BaseException):
    pass


@pytest.mark.cluster
def test_a_resumed_fit_keeps_the_split_its_checkpoint_recorded(store, client, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    reference = _fit(store, client)

    def stop(record):
        if record.iteration >= 3:
            raise _Stop

    with pytest.raises(_Stop):
        _fit(store, client, checkpoint=ckpt, callback=stop)
    # without the split the statistics' per-chunk counts would not fit the plan
    with dask.config.set({"distglm.balance.split": False}):
        resumed = _fit(store, client, checkpoint=ckpt)
    assert resumed.fit_profile_["unit_rows"] == 16384
    np.testing.assert_allclose(resumed.coef_, reference.coef_, rtol=1e-5, atol=1e-6)


@pytest.mark.cluster
def test_a_checkpoint_written_before_splits_existed_resumes_unsplit(
    store, client, tmp_path, monkeypatch
):
    import distglm.persist.checkpoint as checkpoint
    from distglm.persist.bundle import read_bundle
    from distglm.persist.saved import CHECKPOINT_KIND, data_record, read_checkpoint

    def older_record(data, arrays):  # the record as written before the split: no unit_rows key
        record = data_record(data, arrays)
        del record["unit_rows"]
        return record

    ckpt = tmp_path / "old.ckpt"

    def stop(record):
        if record.iteration >= 3:
            raise _Stop

    with dask.config.set({"distglm.balance.split": False}):
        reference = _fit(store, client)
        monkeypatch.setattr(checkpoint, "data_record", older_record)
        with pytest.raises(_Stop):
            _fit(store, client, checkpoint=ckpt, callback=stop)
    monkeypatch.undo()
    meta, _ = read_bundle(ckpt, CHECKPOINT_KIND)
    assert "unit_rows" not in meta["data"]  # written as before the split
    saved = read_checkpoint(ckpt)
    assert saved.data.unit_rows is None and len(saved.data.chunk_kept) == 4
    # the split is on now, but the checkpoint counts the 4 whole chunks: the fit resumes unsplit
    resumed = _fit(store, client, checkpoint=ckpt)
    assert resumed.fit_profile_["unit_rows"] is None and resumed.fit_profile_["n_chunks"] == 4
    assert resumed.n_passes_ < reference.n_passes_  # resumed, not started again
    np.testing.assert_allclose(resumed.coef_, reference.coef_, rtol=1e-5, atol=1e-6)
