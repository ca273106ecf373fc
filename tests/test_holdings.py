"""ChunkHoldings, a worker's chunks by place, driven directly: no worker, device or cluster."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distglm.distribute.holdings import ChunkHoldings


@dataclasses.dataclass(frozen=True)
class Spec:
    chunk_id: int
    session_index: int
    start: int = 0
    stop: int = 4


@dataclasses.dataclass(frozen=True)
class Held:
    session_index: int


SIZES = {0: 10, 1: 30}  # bytes one cached chunk of each session takes


def _holdings(budget):
    return ChunkHoldings(budget, SIZES.__getitem__)


def _read(h, spec):
    keep = np.ones(spec.stop - spec.start, bool)
    if h.record_read(spec, f"stats {spec.chunk_id}", keep):
        h.held[spec.chunk_id] = Held(spec.session_index)


def test_read_chunks_are_held_while_the_budget_allows_then_streamed():
    h = _holdings(45)
    for cid, s in [(0, 1), (1, 1), (2, 0), (3, 0)]:
        _read(h, Spec(cid, s))
    # 30 fits, the next 30 does not, a later 10 still fits, then the budget is spent
    assert sorted(h.held) == [0, 2] and sorted(h.streamed) == [1, 3]
    assert h.ledger.used == 40 and h.all_ids() == [0, 1, 2, 3]
    assert h.stats[3] == "stats 3" and h.row_ranges[1][:3] == (1, 0, 4)
    assert h.ready() == [1, 3]  # held chunks are not ready until encoded
    for cid in sorted(h.held):
        held = h.held.pop(cid)
        h.cache[cid] = (held.session_index, "X", "codes", "w")
    assert h.ready() == [0, 1, 2, 3] and h.sessions() == {0: 1, 1: 1, 2: 0, 3: 0}
    assert [s.chunk_id for s in h.to_read(h.ready())] == [1, 3]


def test_adopted_chunks_are_read_once_then_cached_and_a_repeat_is_ignored():
    h = _holdings(35)
    for cid, s, kept in [(0, 1, 4), (1, 1, 3), (2, 0, 2)]:
        h.adopt(Spec(cid, s), kept)
    h.adopt(Spec(0, 1), 99)  # already adopted: nothing changes
    assert sorted(h.pending) == [0] and sorted(h.streamed) == [1, 2]
    assert h.expected == {0: 4, 1: 3, 2: 2} and h.ledger.used == 30
    assert [s.chunk_id for s in h.to_read([0, 1, 2])] == [0, 1, 2]
    h.was_read(0, (1, "X", "codes", "w"))
    h.was_read(1, (1, "X", "codes", "w"))  # streamed: stays streamed
    assert sorted(h.cache) == [0] and not h.pending and sorted(h.streamed) == [1, 2]


def test_forget_and_clear_free_the_cache_space():
    h = _holdings(100)
    for cid, s in [(0, 1), (1, 0), (2, 1)]:
        _read(h, Spec(cid, s))
    h.cache[0] = (1, "X", "codes", "w")
    del h.held[0]
    assert h.forget([0, 1]) == [2] and h.ledger.used == 30
    assert 0 not in h.stats and 1 not in h.stats
    with pytest.raises(KeyError):
        h.session_of(0)
    h.clear()
    assert h.all_ids() == [] and h.ledger.used == 0 and h.budget == 100


def test_fold_counts_need_the_rows_read():
    h = _holdings(0)
    h.adopt(Spec(0, 0), 4)
    with pytest.raises(ValueError, match=r"Chunks \[0\] have not been read"):
        h.fold_counts(rule=None)


@settings(max_examples=60, deadline=None)
@given(
    budget=st.integers(0, 200),
    chunks=st.lists(st.tuples(st.sampled_from([0, 1]), st.booleans()), max_size=12),
    forget=st.sets(st.integers(0, 11)),
)
def test_ledger_counts_exactly_the_chunks_admitted(budget, chunks, forget):
    """Whatever is read, adopted and forgotten, the ledger holds the sizes of the chunks in
    held, cache and pending, never more than the budget, and each chunk is in one place."""
    h = _holdings(budget)
    for cid, (s, adopted) in enumerate(chunks):
        if adopted:
            h.adopt(Spec(cid, s), 4)
        else:
            _read(h, Spec(cid, s))
    h.forget(sorted(forget))
    places = [h.held, h.cache, h.pending, h.streamed]
    ids = [cid for d in places for cid in d]
    assert len(ids) == len(set(ids)) == len([c for c in range(len(chunks)) if c not in forget])
    admitted = [h.held[c].session_index for c in h.held]
    admitted += [h.pending[c].session_index for c in h.pending]
    assert h.ledger.used == sum(SIZES[s] for s in admitted) <= budget
