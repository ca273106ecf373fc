"""The statistics pass's per-chunk arithmetic against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from distglm.data.counting import GRAM_BLOCK_ROWS, design_gram, label_counts
from distglm.inputs import kept_rows


def _reference(y):
    labels, inverse = np.unique(y, return_inverse=True)
    inverse = inverse.reshape(y.shape)
    counts = np.zeros((labels.size, y.shape[1]), np.int64)
    for j in range(y.shape[1]):
        counts[:, j] = np.bincount(inverse[:, j], minlength=labels.size)
    return labels, counts


_int_labels = st.sampled_from([np.int8, np.int16, np.int64, np.uint8]).flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9),
        elements=st.integers(max(np.iinfo(dt).min, -100_000), min(np.iinfo(dt).max, 100_000)),
    )
)


@given(_int_labels)
def test_integer_labels_match_unique(y):
    labels, counts = label_counts(0, y)
    ref_labels, ref_counts = _reference(y)
    assert labels.dtype == y.dtype
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(counts, ref_counts)
    assert counts.dtype == np.int64


@pytest.mark.parametrize(
    "y",
    [
        np.array([["a", "b"], ["b", "b"], ["c", "a"]]),
        np.array([[True, False], [True, True]]),
        np.array([[0.5, 1.5], [1.5, 2.5]]),
        np.array([[-(10**12), 10**12], [3, 3]]),
    ],
)
def test_other_labels_match_unique(y):
    labels, counts = label_counts(0, y)
    ref_labels, ref_counts = _reference(y)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(counts, ref_counts)


def test_unsortable_labels_name_the_chunk():
    y = np.array([[1, "a"], [None, 2]], dtype=object)
    with pytest.raises(TypeError, match="Chunk 7: class labels of dtype object"):
        label_counts(7, y)


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
        elements=st.floats(-1e3, 1e3, width=32),
    )
)
def test_gram_matches_float64_numpy(X):
    Z = np.concatenate([X.astype(np.float64), np.ones((X.shape[0], 1))], axis=1)
    got = design_gram(X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, Z.T @ Z, rtol=1e-12, atol=1e-9)


@given(
    st.integers(0, 3 * GRAM_BLOCK_ROWS + 5),
    st.integers(0, 7),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
@example(2 * GRAM_BLOCK_ROWS + 5, 3, 0.5, 0)  # two whole blocks and a ragged one
@example(3 * GRAM_BLOCK_ROWS, 2, 0.5, 1)  # whole blocks only
@settings(max_examples=25, deadline=None)
def test_gram_over_blocks_and_kept_rows(rows, p, frac, seed):
    """Over several blocks, a ragged last one and any kept rows: the float64 Gram of the kept
    rows, with their feature sums and count in the last row and column, exactly symmetric."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((rows, p)) * 100).astype(np.float32)
    keep = rng.random(rows) < frac
    Z = np.concatenate([X[keep].astype(np.float64), np.ones((int(keep.sum()), 1))], axis=1)
    got = design_gram(X, keep)
    assert got.shape == (p + 1, p + 1) and got.dtype == np.float64
    np.testing.assert_array_equal(got, got.T)
    assert got[p, p] == keep.sum()
    np.testing.assert_allclose(got, Z.T @ Z, rtol=1e-12, atol=1e-9)
    # the same rows given without the mask, and the mask that keeps them all
    np.testing.assert_allclose(design_gram(X[keep]), got, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(design_gram(X, np.ones(rows, bool)), design_gram(X), rtol=0)


@pytest.mark.parametrize("keep", [np.ones(5, bool), np.ones(4, np.int64), np.ones((4, 1), bool)])
def test_gram_refuses_a_mask_that_is_not_one_bool_a_row(keep):
    with pytest.raises(ValueError, match=r"bool mask of shape \(4,\), one entry a row of X"):
        design_gram(np.ones((4, 2), np.float32), keep)


_finite_or_not = st.sampled_from([0.0, 1.5, -2.0, np.nan, np.inf, -np.inf])


@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6), elements=_finite_or_not
    ),
    st.sampled_from([None, "int", "float", "float 1-D"]),
    st.data(),
)
def test_kept_rows_are_the_rows_finite_in_x_and_float_labels(X, label_kind, data):
    """The fast path (every value finite) and the per-row scan give the same rows."""
    y = None
    if label_kind == "int":
        y = np.zeros((X.shape[0], 2), np.int8)
    elif label_kind is not None:
        shape = (X.shape[0],) if label_kind.endswith("1-D") else (X.shape[0], 2)
        y = data.draw(hnp.arrays(np.float64, shape, elements=_finite_or_not))
    expected = np.array([np.isfinite(row).all() for row in X], dtype=bool).reshape(-1)
    if y is not None and y.dtype.kind == "f":
        rows = y.reshape(y.shape[0], -1)
        expected &= np.array([np.isfinite(row).all() for row in rows], dtype=bool).reshape(-1)
    got = kept_rows(X, y)
    assert got.dtype == bool and got.shape == (X.shape[0],)
    np.testing.assert_array_equal(got, expected)
