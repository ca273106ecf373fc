"""The compensated two-stage reduction (each worker over its chunks, then the coordinator over
the workers): exact sums, whatever the assignment of chunks to workers."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from distglm.distribute.reduce import CompensatedTotals, reduce_worker_buffers, two_sum
from distglm.distribute.wire import gradient_shapes, newton_shapes


def _two_stage(parts, cols, assignment, shape, axis, n_workers):
    """What the workers and the coordinator compute: worker ``assignment[i]`` adds chunk ``i``
    (in chunk order) at columns ``cols[i]``; the coordinator adds the workers' buffers."""
    workers = [CompensatedTotals([shape]) for _ in range(n_workers)]
    for part, col, w in zip(parts, cols, assignment, strict=True):
        workers[w].add([part], [axis], col)
    (total,) = reduce_worker_buffers({f"w{i}": t.buffer() for i, t in enumerate(workers)}, [shape])
    return total


def _exact(parts, cols, shape, axis):
    """The correctly rounded exact sum of every entry (math.fsum)."""
    terms: dict[tuple, list] = {}
    for part, col in zip(parts, cols, strict=True):
        for idx in np.ndindex(part.shape):
            out = list(idx)
            out[axis] = int(col[idx[axis]])
            terms.setdefault(tuple(out), []).append(float(part[idx]))
    want = np.zeros(shape)
    for idx, values in terms.items():
        want[idx] = math.fsum(values)
    return want


#: float32 partial sums over ~40 binary orders of magnitude, both signs, with zeros
_value = st.one_of(
    st.just(0.0),
    st.builds(
        lambda m, e, s: s * m * 2.0**e,
        st.floats(1.0, 2.0, width=32, exclude_max=True),
        st.integers(-20, 20),
        st.sampled_from([-1.0, 1.0]),
    ),
)


@st.composite
def _chunks(draw):
    n_out, rows = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    n_chunks = draw(st.integers(1, 12))
    parts, cols = [], []
    for _ in range(n_chunks):
        k = draw(st.integers(1, n_out))
        col = np.asarray(draw(st.permutations(range(n_out)))[:k])
        values = draw(st.lists(_value, min_size=rows * k, max_size=rows * k))
        parts.append(np.asarray(values, np.float32).reshape(rows, k))
        cols.append(col)
    return (rows, n_out), parts, cols


@settings(max_examples=150, deadline=None)
@given(
    problem=_chunks(),
    data=st.data(),
)
def test_two_stage_sum_is_the_exact_sum_for_any_assignment(problem, data):
    shape, parts, cols = problem
    n_workers = data.draw(st.integers(1, 5))
    assignment = data.draw(
        st.lists(st.integers(0, n_workers - 1), min_size=len(parts), max_size=len(parts))
    )
    got = _two_stage(parts, cols, assignment, shape, 1, n_workers)
    one = _two_stage(parts, cols, [0] * len(parts), shape, 1, 1)
    want = _exact(parts, cols, shape, 1)
    # float32 partials over 40 octaves add exactly in hi + lo: the same bits as math.fsum, and
    # so the same bits for every assignment
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, one)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
    ),
    data=st.data(),
)
def test_two_stage_sum_within_an_ulp_of_the_sum_of_magnitudes_for_any_floats(values, data):
    # float64 partials of any exponents: no longer always exact, but every assignment stays
    # within a few ulps of the sum of the magnitudes (far inside the 1e-12 the design promises)
    parts = [np.array([v]) for v in values]
    cols = [np.array([0])] * len(parts)
    n_workers = data.draw(st.integers(1, 5))
    assignment = data.draw(
        st.lists(st.integers(0, n_workers - 1), min_size=len(parts), max_size=len(parts))
    )
    got = _two_stage(parts, cols, assignment, (1,), 0, n_workers)[0]
    want = math.fsum(values)
    scale = math.fsum(abs(v) for v in values)
    assert abs(got - want) <= 4 * np.finfo(np.float64).eps * scale


def test_two_sum_is_exact():
    big = 2.0**60
    s, e = two_sum(np.float64(big), np.float64(1.0))
    assert s == big and e == 1.0
    s, e = two_sum(np.array([1e-30, 3.0]), np.array([1.0, -3.0]))
    np.testing.assert_array_equal(s, [1.0, 0.0])
    np.testing.assert_array_equal(e, [1e-30, 0.0])


def test_buffer_round_trip_and_size_check():
    shapes = gradient_shapes(3, 4, 2)
    assert shapes == [(4,), (3, 4, 2), (4, 2)]
    t = CompensatedTotals(shapes)
    rng = np.random.default_rng(0)
    t.add([rng.normal(size=s) for s in shapes], (0, 1, 0))
    buf = t.buffer()
    assert buf.dtype == np.float64 and buf.size == 2 * (4 + 24 + 8) == 2 * t.size
    back = CompensatedTotals.from_buffer(shapes, buf)
    for a, b in zip(back.totals(), t.totals(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"holds 71 floats; totals of shapes .* need 72"):
        CompensatedTotals.from_buffer(shapes, buf[:-1])
    assert CompensatedTotals(newton_shapes(2, 4, 3, 2)).size == 8 + 4 + 24 + 8


def test_add_at_columns_leaves_the_others():
    t = CompensatedTotals([(2, 4)])
    t.add([np.ones((2, 2))], [1], np.array([3, 1]))
    t.add([np.full((2, 1), 2.0)], [1], np.array([3]))
    np.testing.assert_array_equal(t.totals()[0], [[0, 1, 0, 3], [0, 1, 0, 3]])


@settings(max_examples=60)
@given(st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_the_whole_buffer_reduction_adds_as_the_totals_do_bit_for_bit(n_workers, seed):
    """reduce_worker_buffers adds each worker's whole buffer at once: the same additions as
    total by total, so the same bits; a short buffer is refused naming its worker."""
    rng = np.random.default_rng(seed)
    shapes = gradient_shapes(3, 4, 2, True)
    workers = {}
    for i in range(n_workers):
        t = CompensatedTotals(shapes)
        for _ in range(3):
            scale = 2.0 ** rng.integers(-30, 30, size=1)
            t.add([rng.normal(size=s) * scale for s in shapes], (0, 1, 0))
        workers[f"tcp://10.0.0.{i}:1"] = t
    hi, lo = [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]
    for addr in sorted(workers):  # total by total: the worker's hi two-summed, its lo added
        for i in range(len(shapes)):
            s, e = two_sum(hi[i], workers[addr].hi[i])
            hi[i], lo[i] = s, lo[i] + (workers[addr].lo[i] + e)
    got = reduce_worker_buffers({a: t.buffer() for a, t in workers.items()}, shapes)
    for a, h, low in zip(got, hi, lo, strict=True):
        np.testing.assert_array_equal(a, h + low)
    short = {a: t.buffer()[:-1] for a, t in workers.items()}
    with pytest.raises(ValueError, match=r"Worker tcp://10\.0\.0\.0:1's buffer of sums holds"):
        reduce_worker_buffers(short, shapes)


def _add_total_by_total(hi, lo, parts, axes, cols):
    """The reference: each total's two-sum at its own columns (what add did before its flat
    form)."""
    for h, low, part, axis in zip(hi, lo, parts, axes, strict=True):
        index = [slice(None)] * h.ndim
        index[axis] = cols
        s, e = two_sum(h[tuple(index)], part)
        h[tuple(index)] = s
        low[tuple(index)] += e


@settings(max_examples=80)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_a_flat_part_at_its_positions_adds_as_each_total_at_its_columns(K, p, c, seed):
    """Several chunks of sessions holding any subset of the outputs, in any order, added as one
    flat part each at ``positions``: every total bit for bit as adding each total's part at its
    columns; the whole set of outputs in order takes no positions."""
    rng = np.random.default_rng(seed)
    shapes, axes = gradient_shapes(p, K, c), (0, 1, 0)
    t = CompensatedTotals(shapes)
    hi, lo = [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]
    for _ in range(4):
        cols = rng.permutation(K)[: rng.integers(1, K + 1)]
        parts = [rng.normal(size=s) * 2.0 ** rng.integers(-20, 20, size=s) for s in shapes]
        parts = [np.take(part, cols, axis=a) for part, a in zip(parts, axes, strict=True)]
        t.add_flat(np.concatenate([q.ravel() for q in parts]), t.positions(axes, cols))
        _add_total_by_total(hi, lo, parts, axes, cols)
    for got, want in zip([*t.hi, *t.lo], [*hi, *lo], strict=True):
        np.testing.assert_array_equal(got, want)
    assert t.positions(axes, np.arange(K)) is None
    assert t.positions(axes, None) is None


def test_parts_of_the_wrong_shape_or_number_are_refused():
    """A part is checked against its total's shape (with ``len(cols)`` on its axis), so one of
    the right size but another layout is not added scrambled."""
    t = CompensatedTotals(gradient_shapes(3, 4, 2))
    good = [np.zeros((4,)), np.zeros((3, 4, 2)), np.zeros((4, 2))]
    with pytest.raises(ValueError, match=r"Part 1 of shape \(3, 4, 2\) was expected; .*2, 4\)"):
        t.add([good[0], np.zeros((3, 2, 4)), good[2]], (0, 1, 0))
    with pytest.raises(ValueError, match=r"Part 2 of shape \(2, 2\) was expected; .*\(4, 2\)"):
        t.add([np.zeros(2), np.zeros((3, 2, 2)), good[2]], (0, 1, 0), np.array([3, 1]))
    with pytest.raises(ValueError, match="3 parts were expected; 2 came"):
        t.add(good[:2], (0, 1, 0))
    np.testing.assert_array_equal(t.buffer(), 0.0)  # nothing was added


def test_a_flat_part_of_the_wrong_size_is_refused():
    t = CompensatedTotals(gradient_shapes(3, 4, 2))
    with pytest.raises(ValueError, match=r"of 36 sums was expected; one of shape \(35,\)"):
        t.add_flat(np.zeros(35))
    cols = np.array([2, 0])
    with pytest.raises(ValueError, match=r"flat part of 18 sums was expected"):
        t.add_flat(np.zeros(36), t.positions((0, 1, 0), cols))
