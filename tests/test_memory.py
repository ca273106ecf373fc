"""Memory within budget: labels cached as codes at their real size, raw chunks released as
they are encoded, the default budget from the memory limit, Dask's fractions and the measured
runtime, and the early check of ``n_classes`` (no cluster: the worker is driven directly)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from distglm.cli import make_population
from distglm.data import merge_stats, plan_data
from distglm.distribute import pass_chunks
from distglm.distribute.budget import (
    CACHE_FOOTPRINT,
    IN_FLIGHT_CHUNKS,
    XLA_RESERVE_BYTES,
    MemoryCeiling,
    default_cache_bytes,
    working_bytes,
)
from distglm.distribute.chunks import LabelSet, encode_held, held_nbytes, hold_chunk
from distglm.distribute.runtime import TRIM_THRESHOLD_BYTES
from distglm.distribute.worker import ChunkWorker
from distglm.encoding import code_dtype

MIB = 2**20


def _ok(returned):
    status, value = returned
    if status != "ok":
        raise value
    return value


def _string_plan(n=6000, rows=1000, labels=("left", "nogo", "right")):
    X, y, _, _ = make_population(n, 5, 3, len(labels), seed=1)
    y = np.asarray(labels)[y]  # "<U5": 20 bytes a label as read
    return plan_data(da.from_array(X, chunks=(rows, -1)), da.from_array(y, chunks=(rows, -1)))


def _worker(plan, n_classes=3, **kw):
    return ChunkWorker(
        plan.session_outputs,
        plan.chunk_rows,
        plan.block_rows,
        n_features=plan.n_features,
        n_classes=n_classes,
        **kw,
    )


def test_string_labels_are_cached_as_codes_at_their_budgeted_size():
    plan = _string_plan()
    w = _worker(plan)
    stats = _ok(w.load(plan.chunks))
    held = list(w.holdings.held.values())
    assert held and all(h.codes.dtype == np.int8 for h in held)
    budgeted = w.chunk_bytes(0)
    # what the ledger counted is what is held: padded X + int8 codes (+ the few labels)
    for h in held:
        assert h.nbytes - h.labels.nbytes <= budgeted
        assert h.X.nbytes + h.codes.nbytes >= budgeted - plan.chunk_rows * 4  # all but weights
    # raw <U5 labels would be 20 bytes each: ten times the codes' whole chunk allowance
    raw = plan.chunks[0].y.nbytes
    assert raw > 10 * held[0].codes.nbytes
    classes = merge_stats(plan, stats, 3).classes
    ids = _ok(w.encode(classes))
    assert not w.holdings.held  # every host copy released as encoded
    info = _ok(w.info())
    assert info["nbytes"] == len(ids) * budgeted  # cached arrays are exactly the budgeted bytes


def test_codes_map_to_the_shared_classes():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([["b"], ["d"], ["b"], ["z"], ["d"], ["b"]])
    keep = np.array([True, True, True, False, True, True])
    h = hold_chunk(0, X, y, keep, np.array(["b", "d"]), 8, np.float32)
    Xp, codes, w = encode_held(h, np.array(["a", "b", "c", "d"]), 8, np.float32)
    np.testing.assert_array_equal(codes[:5, 0], [1, 3, 1, 3, 1])
    np.testing.assert_array_equal(Xp[:5], X[keep])
    assert not Xp[5:].any() and w.tolist() == [1] * 5 + [0] * 3
    with pytest.raises(ValueError, match="outside the classes"):
        encode_held(h, np.array(["a", "b"]), 8, np.float32)


@pytest.mark.parametrize("labels", [[0, 1, 2], [0, 1], [1, 2], [2]])
def test_held_int_codes_map_to_the_shared_classes(labels):
    """A chunk whose labels are the first classes keeps its codes; any other is remapped."""
    rng = np.random.default_rng(len(labels))
    y = rng.choice(np.array(labels, np.int8), size=(40, 3))
    X = rng.standard_normal((40, 2)).astype(np.float32)
    keep = rng.random(40) < 0.8
    h = hold_chunk(0, X, y, keep, np.unique(y[keep]), 48, np.float32)
    _, codes, w = encode_held(h, np.arange(4, dtype=np.int8), 48, np.float32)
    n = int(keep.sum())
    assert codes.dtype == np.int8 and codes.shape == (48, 3) and not codes[n:].any()
    np.testing.assert_array_equal(codes[:n], y[keep])
    assert w.sum() == n


def test_held_nbytes_counts_real_code_width():
    assert code_dtype(3) == np.int8 and code_dtype(200) == np.int16
    assert held_nbytes(100, 9, 4, 3, np.float32) == 100 * (4 * 10 + 4)
    assert held_nbytes(100, 9, 4, 300, np.float32) == 100 * (4 * 10 + 8)


def test_encode_releases_each_raw_chunk_before_the_next(monkeypatch):
    """While chunk i is encoded, at most one held chunk has been let go but not yet freed:
    the held copies of the chunks before it are gone."""
    import weakref

    plan = _string_plan()
    w = _worker(plan)
    stats = _ok(w.load(plan.chunks))
    refs = {cid: weakref.ref(h.X) for cid, h in w.holdings.held.items()}
    alive = []
    real_device = pass_chunks.on_device

    def spy(*arrays):
        # a host copy still alive and not the buffer a device array uses (on a CPU, JAX may
        # alias an aligned numpy array instead of copying it)
        shared = {int(a.unsafe_buffer_pointer()) for e in w.holdings.cache.values() for a in e[1:]}
        copies = [r() for r in refs.values()]
        alive.append(sum(x is not None and x.ctypes.data not in shared for x in copies))
        return real_device(*arrays)

    monkeypatch.setattr(pass_chunks, "on_device", spy)
    _ok(w.encode(merge_stats(plan, stats, 3).classes))
    n = len(refs)
    # on the i-th encode the held copies of the i-1 chunks before it are freed (the one being
    # encoded and the ones after remain): not all n of them, as before
    assert alive == [n - i for i in range(n)]


def test_default_budget_from_limit_fractions_and_runtime():
    ceiling = MemoryCeiling(pause=0.8, terminate=0.95)
    assert ceiling.fraction == 0.8
    assert MemoryCeiling(pause=None, terminate=0.95).fraction == 0.95
    assert MemoryCeiling(None, None).fraction == 1.0
    work = working_bytes(10 * MIB, 6 * MIB)
    assert work == IN_FLIGHT_CHUNKS * 10 * MIB + XLA_RESERVE_BYTES + TRIM_THRESHOLD_BYTES
    got = default_cache_bytes(1000 * MIB, 260 * MIB, work, ceiling)
    assert got == int((int(0.8 * 1000 * MIB) - 260 * MIB - work) / CACHE_FOOTPRINT)
    assert default_cache_bytes(300 * MIB, 260 * MIB, work, ceiling) == 0  # all streamed
    with dask.config.set(
        {"distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.7}
    ):
        assert MemoryCeiling.from_config() == MemoryCeiling(None, 0.7)


def test_worker_default_budget_sets_aside_its_measured_runtime(monkeypatch):
    plan = _string_plan()
    monkeypatch.setattr(ChunkWorker, "memory_limit", property(lambda self: 2**30))
    read = max(int(c.X.nbytes + c.y.nbytes) for c in plan.chunks)
    w = _worker(plan, read_bytes=read)
    runtime = w.memory_start["rss"]
    assert runtime > 100 * MIB  # JAX is up: this is the runtime the budget sets aside
    expected = default_cache_bytes(2**30, runtime, working_bytes(read, w.chunk_bytes(0)))
    assert w.cache_bytes == expected < int(0.8 * 2**30) - 100 * MIB


def test_more_labels_than_n_classes_fail_at_the_chunk_that_shows_them():
    labels = np.array(["a", "b", "c"])
    X = np.zeros((9, 1), np.float32)
    y = labels[np.array([0, 1, 0, 1, 0, 1, 0, 1, 2])][:, None]
    plan = plan_data(da.from_array(X, chunks=(3, -1)), da.from_array(y, chunks=(3, -1)))
    w = _worker(plan, n_classes=2)
    with pytest.raises(ValueError, match=r"n_classes=2.*rows 6-9 \(chunk 2\).*\['c'\]"):
        _ok(w.load(plan.chunks))
    s = LabelSet(2).add(np.array([1, 2]), plan.chunks[0])
    with pytest.raises(ValueError, match="3 distinct labels"):
        s.add(np.array([3]), plan.chunks[1])
    assert LabelSet(None).add(np.arange(50), plan.chunks[0]).labels is None


# ---------------------------------------------------------------------------- the pool
def _int_plan():
    X, y, _, _ = make_population(3000, 4, 3, 3, seed=4)
    return plan_data(da.from_array(X, chunks=(500, -1)), da.from_array(y, chunks=(500, -1)))


def test_a_worker_restarted_for_memory_is_reported_with_its_limit_and_budget():
    from fakes import LocalTransport

    from distglm import ClassifierPopulationGLM, WorkerMemoryError
    from distglm.distribute import DataSession

    plan = _int_plan()
    # one restart is survived (the chunks go to the others), and recorded
    transport = LocalTransport(["w0", "w1", "w2"], {4: [("oom", "w1")]})
    with DataSession(None, plan, 3, transport=transport, cache_bytes="1MiB") as s:
        ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(s)
        assert set(s.pool.memory_kills) == {"w1"}
    # a second one ends the fit with the figures, in the statistics pass as later
    for call in (1, 4):
        transport = LocalTransport(["w0", "w1", "w2"], {call: [("oom", "w0"), ("oom", "w1")]})
        with pytest.raises(WorkerMemoryError) as err:
            with DataSession(None, plan, 3, transport=transport, cache_bytes="1MiB") as s:
                ClassifierPopulationGLM(3).fit(s)
        msg = str(err.value)
        assert "restarted worker w0 at 590 MiB resident (memory limit 600 MiB" in msg
        assert "chunk-cache budget 1 MiB" in msg and "w1" in msg and "cache_bytes" in msg


def test_closing_a_session_clears_every_worker():
    from fakes import LocalTransport

    from distglm.distribute import DataSession

    plan = _int_plan()
    transport = LocalTransport(["w0", "w1"])
    with DataSession(None, plan, 3, transport=transport):
        actors = dict(transport.actors)
        assert sum(len(_ok(a.info())["chunks"]) for a in actors.values()) == len(plan.chunks)
    assert transport.log[-1][1] == {"w0": "clear", "w1": "clear"}
    for a in actors.values():  # the actor objects, still alive here, hold nothing
        info = _ok(a.info())
        assert info["chunks"] == [] and info["nbytes"] == 0
