"""Fold assignments as data, and every fold's sums in one pass (kernels.folds)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distglm.folds import (
    DEFAULT_FALLBACK_FOLDS,
    block_folds,
    fold_rule,
    plan_folds,
    splitter_folds,
)
from distglm.kernels.folds import fold_nll_sums, fold_value_and_grad_sums, stacked_fold_columns
from distglm.kernels.softmax import nll_sums, nll_value_and_grad_sums

from helpers import softmax_labels


def _is_contiguous_blocks(col):
    """Each fold's held-out rows within one session form one contiguous run."""
    runs = col[np.r_[True, np.diff(col) != 0]]
    return len(runs) == len(set(runs.tolist()))


@given(st.lists(st.integers(5, 40), min_size=1, max_size=4), st.integers(2, 5))
@settings(max_examples=15, deadline=None)
def test_int_cv_blocks_are_contiguous_within_every_session(lengths, k):
    plan = plan_folds(lengths, k)
    assert plan.n_folds == k and plan.index.shape == (sum(lengths),)
    offsets = np.cumsum([0, *lengths])
    for s in range(len(lengths)):
        col = plan.index[offsets[s] : offsets[s + 1]]
        assert sorted(set(col.tolist())) == list(range(k))
        assert np.all(np.diff(col) >= 0) and _is_contiguous_blocks(col)
    ranges = plan.row_ranges()
    assert sum(b - a for r in ranges for a, b in r) == sum(lengths)
    for f, r in enumerate(ranges):
        for a, b in r:
            assert np.all(plan.index[a:b] == f)


def test_session_folds_leave_one_session_out_and_fall_back_for_single_session_outputs():
    lengths = [30, 20, 25]
    recorded = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    plan = plan_folds(lengths, "session", recorded)
    assert plan.n_folds == 3 and plan.fallback == (2,)
    np.testing.assert_array_equal(plan.column(0), np.repeat([0, 1, 2], lengths))
    col = plan.column(2)
    assert np.all(col[:50] == -1)
    np.testing.assert_array_equal(col[50:], block_folds(25, 3))
    # without recorded: one index for every output
    assert plan_folds(lengths).index.ndim == 1
    with pytest.raises(ValueError, match="at least 2 sessions"):
        plan_folds([10])
    with pytest.raises(ValueError, match="at least 2 folds"):
        plan_folds([10, 10], 1)


def test_splitter_folds_follow_groups_and_refuse_overlapping_splits():
    from sklearn.model_selection import GroupKFold, ShuffleSplit

    groups = np.repeat([0, 1, 2, 3], 5)
    X = np.zeros((20, 2))
    plan = splitter_folds(GroupKFold(2), X, groups=groups)
    assert plan.n_folds == 2
    for g in range(4):
        assert len(set(plan.index[groups == g].tolist())) == 1
    with pytest.raises(ValueError, match="disjoint"):
        splitter_folds(ShuffleSplit(3, test_size=0.5, random_state=0), X)


_N, _FOLDS = 24, 3


@pytest.mark.parametrize(("per_output", "held"), [(False, True), (True, False)])
@given(st.data())
@settings(max_examples=3, deadline=None)
def test_every_folds_sums_in_one_pass_equal_separate_passes(per_output, held, data):
    n_folds = _FOLDS
    shape = (_N, 2) if per_output else (_N,)
    fold_index = np.asarray(
        data.draw(
            st.lists(
                st.integers(-1, n_folds - 1),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            )
        ),
        np.int32,
    ).reshape(shape)
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n, p, k, c = _N, 3, 2, 3
    X = rng.normal(size=(n, p)).astype(np.float32)
    y = softmax_labels(rng, X, rng.normal(size=(p, k, c)), np.zeros((k, c))).astype(np.int32)
    w = (rng.random((n, k)) > 0.2).astype(float) if per_output else np.ones(n)
    coef = rng.normal(size=(n_folds, p, k, c)) * 0.3
    intercept = rng.normal(size=(n_folds, k, c)) * 0.3
    loss, (gc, gb) = fold_value_and_grad_sums(
        (jnp.asarray(coef), jnp.asarray(intercept)), X, y, w, fold_index, held, None
    )
    hl, cnt = fold_nll_sums((jnp.asarray(coef), jnp.asarray(intercept)), X, y, w, fold_index)
    for f in range(n_folds):
        keep = (fold_index == f) if held else (fold_index != f)
        wf = np.where(keep, w if w.ndim == fold_index.ndim else w[:, None], 0.0)
        if wf.ndim == 1 and per_output:
            wf = wf[:, None]
        ref_l, (ref_gc, ref_gb) = nll_value_and_grad_sums((coef[f], intercept[f]), X, y, wf, None)
        np.testing.assert_allclose(loss[f], ref_l, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gc[f], ref_gc, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gb[f], ref_gb, rtol=1e-5, atol=1e-5)
        wh = np.where(fold_index == f, w if w.ndim == fold_index.ndim else w[:, None], 0.0)
        np.testing.assert_allclose(
            hl[f], nll_sums((coef[f], intercept[f]), X, y, wh, None), rtol=1e-5
        )
        np.testing.assert_allclose(cnt[f], np.broadcast_to(wh.reshape(n, -1), (n, k)).sum(0))


@given(
    st.lists(st.integers(6, 40), min_size=1, max_size=4),
    st.sampled_from(["session", 2, 3]),
    st.integers(3, 17),
    st.integers(0, 2**31 - 1),
)
@settings(max_examples=30, deadline=None)
def test_fold_rule_over_chunks_equals_the_plan_over_sessions(lengths, cv, chunk, seed):
    """A worker's rule, applied chunk by chunk (kept rows only), is plan_folds row for row and
    output for output, with sessions recording different outputs (some in one session only,
    which fall back to time blocks under cv="session")."""
    rng = np.random.default_rng(seed)
    n_outputs = 4
    recorded = rng.random((len(lengths), n_outputs)) < 0.6
    recorded[rng.integers(0, len(lengths), n_outputs), np.arange(n_outputs)] = True
    recorded[:, 0] = True  # one output everywhere
    session_outputs = [np.flatnonzero(r) for r in recorded]
    rule = fold_rule(lengths, cv, n_outputs, session_outputs)
    plan = (
        plan_folds(lengths, cv, recorded=recorded) if cv == "session" else plan_folds(lengths, cv)
    )
    assert rule.n_folds == plan.n_folds
    assert rule.fallback_outputs == (plan.fallback if cv == "session" else ())
    offsets = np.cumsum([0, *lengths])
    counts = np.zeros((rule.n_folds, n_outputs), np.int64)
    for s, n in enumerate(lengths):
        outs = session_outputs[s]
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            keep = rng.random(b - a) > 0.2
            index = rule.kept_index(s, a, b, keep, chunk + 2)
            rows = plan.index[offsets[s] + a : offsets[s] + b][keep]
            expected = rows[:, outs] if rows.ndim == 2 else rows[:, None]
            got = index[: keep.sum()]
            got = got if got.ndim == 2 else got[:, None]
            np.testing.assert_array_equal(np.broadcast_to(got, expected.shape), expected)
            assert np.all(index[keep.sum() :] == -1)
            held = rule.held_counts(s, a, b, keep)
            assert held.shape == (rule.n_folds, outs.size)
            counts[:, outs] += held
    for j in range(n_outputs):  # every kept row of an output is held out by at most one fold
        assert counts[:, j].sum() <= sum(lengths)
    np.testing.assert_array_equal(
        rule.stacked_outputs(np.array([1])), [1 + n_outputs * f for f in range(rule.n_folds + 1)]
    )


def test_one_session_falls_back_to_time_blocks():
    rule = fold_rule([10], "session", 1)
    assert rule.n_folds == DEFAULT_FALLBACK_FOLDS and rule.fallback_outputs == (0,)
    np.testing.assert_array_equal(rule.chunk_index(0, 0, 10)[:, 0], block_folds(10, 5))


def test_stacked_fold_columns_weight_training_and_held_out_rows():
    y = np.array([[0, 1], [2, 0], [1, 1], [0, 2]], np.int32)
    w = np.array([1.0, 1.0, 0.0, 1.0])  # the third row is padding
    fold = np.array([0, 1, 1, -1], np.int32)
    codes, both = stacked_fold_columns(jnp.asarray(y), jnp.asarray(w), jnp.asarray(fold), 2)
    np.testing.assert_array_equal(codes, np.tile(y, (1, 3)))
    train, held = np.asarray(both[:, 0]), np.asarray(both[:, 1])
    # columns: fold 0 (outputs 0, 1), fold 1 (0, 1), every row (0, 1)
    np.testing.assert_array_equal(train[:, 0], [0, 1, 0, 1])
    np.testing.assert_array_equal(train[:, 2], [1, 0, 0, 1])
    np.testing.assert_array_equal(train[:, 4], [1, 1, 0, 1])
    np.testing.assert_array_equal(held[:, 1], [1, 0, 0, 0])
    np.testing.assert_array_equal(held[:, 3], [0, 1, 0, 0])
    np.testing.assert_array_equal(held[:, 5], [1, 1, 0, 1])
