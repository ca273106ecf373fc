"""Tests for distglm.encoding.LabelEncoder."""

from __future__ import annotations

import time

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from distglm.encoding import INT_SPAN, LabelEncoder, code_dtype, distinct_labels, label_codes

SETTINGS = settings(max_examples=40, deadline=None)


def _roundtrip(labels: list, as_object: bool = False) -> tuple[LabelEncoder, np.ndarray]:
    y = np.empty(len(labels), dtype=object) if as_object else np.asarray(labels)
    if as_object:
        y[:] = labels
    n = len(set(labels))
    enc = LabelEncoder(n).set_classes(y)
    codes = enc.encode(y)
    assert codes.dtype == np.int32
    assert codes.shape == y.shape
    assert np.all((codes >= 0) & (codes < n))
    back = enc.decode(codes)
    assert np.all(np.asarray(back) == y)
    assert np.all(enc.classes_[:-1] < enc.classes_[1:]) if n > 1 else True
    return enc, codes


def _at_least_two(elements: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(elements, min_size=2, max_size=30).filter(lambda v: len(set(v)) >= 2)


@SETTINGS
@given(_at_least_two(st.integers(-1000, 1000)))
def test_roundtrip_ints(labels):
    _roundtrip(labels)


#: numpy's fixed-width strings drop trailing NUL characters ('\x00' == ''), so labels that differ
#: only by them are one label to numpy, and to the encoder
_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=5)


@SETTINGS
@given(_at_least_two(_TEXT))
def test_roundtrip_strings(labels):
    _roundtrip(labels)


@SETTINGS
@given(_at_least_two(st.integers(-50, 50).map(float)))
def test_roundtrip_integer_valued_floats(labels):
    _roundtrip(labels)


@SETTINGS
@given(_at_least_two(st.tuples(st.integers(0, 3), _TEXT)))
def test_roundtrip_tuples_in_object_array(labels):
    _roundtrip(labels, as_object=True)


@SETTINGS
@given(st.integers(2, 8), st.data())
def test_default_classes_cast_only(n, data):
    y = np.arange(n)
    enc = LabelEncoder(n).set_classes(y)
    assert enc.is_default
    sample = np.asarray(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20)))
    np.testing.assert_array_equal(enc.encode(sample), sample)
    codes = enc.encode(sample)
    assert enc.decode(codes) is codes


def test_classes_sorted_and_is_default():
    enc = LabelEncoder(3).set_classes(["c", "a", "b", "a"])
    np.testing.assert_array_equal(enc.classes_, ["a", "b", "c"])
    assert not enc.is_default
    assert LabelEncoder(3).set_classes([2.0, 0.0, 1.0]).is_default
    assert (
        LabelEncoder(3).set_classes(np.array([[2.0, 0.0], [1.0, 1.0]])).classes_.dtype.kind == "f"
    )
    assert not LabelEncoder(3).set_classes([1, 2, 3]).is_default
    assert not LabelEncoder(2).set_classes([True, False]).is_default


def test_float_default_encodes_and_rejects_non_integers():
    enc = LabelEncoder(3).set_classes(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(enc.encode(np.array([2.0, 0.0])), [2, 0])
    with pytest.raises(ValueError, match=r"0\.5"):
        enc.encode(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="7"):
        enc.encode(np.array([7, 1]))
    with pytest.raises(ValueError, match="-1"):
        enc.encode(jnp.array([-1, 1]))


def test_too_many_classes_message():
    with pytest.raises(ValueError, match=r"Found 12 .*n_classes is 3") as info:
        LabelEncoder(3).set_classes(np.arange(12))
    assert "more" in str(info.value)  # the listing is truncated


def test_too_few_classes_message():
    with pytest.raises(
        ValueError, match=r"Found only 2 unique class labels but n_classes is 3.*every class"
    ):
        LabelEncoder(3).set_classes(["a", "b", "a"])


def test_unknown_labels_named():
    enc = LabelEncoder(2).set_classes(["cat", "dog"])
    with pytest.raises(ValueError, match=r"'emu'.*'cat'"):
        enc.encode(["cat", "emu"])
    with pytest.raises(ValueError, match="5"):
        enc.encode([5])
    enc = LabelEncoder(2).set_classes([10, 20])
    with pytest.raises(ValueError, match="15"):
        enc.encode(np.array([10, 15]))
    with pytest.raises(ValueError, match="15"):
        enc.encode(jnp.array([10, 15]))


def test_nan_excluded_from_set_classes():
    enc = LabelEncoder(2).set_classes(np.array([1.0, np.nan, 3.0, np.nan]))
    np.testing.assert_array_equal(enc.classes_, [1.0, 3.0])
    enc = LabelEncoder(2).set_classes(np.array([0.0, np.nan, 1.0]))
    assert enc.is_default


@pytest.mark.parametrize("method", ["encode", "decode"])
def test_runtime_error_before_set_classes(method):
    enc = LabelEncoder(2)
    assert not enc.is_set
    with pytest.raises(RuntimeError, match=rf"set_classes.*{method}"):
        getattr(enc, method)([0, 1])


def test_reset():
    enc = LabelEncoder(2).set_classes([0, 1])
    enc.reset()
    assert not enc.is_set and enc.classes_ is None and not enc.is_default


@pytest.mark.parametrize("bad", [1, 0, 2.5, True, "3", None, np.array([2, 3]), -3])
def test_n_classes_validation(bad):
    with pytest.raises(ValueError, match="integer >= 2"):
        LabelEncoder(bad)


@pytest.mark.parametrize("good", [2, 3.0, np.int64(4), np.array(5), np.array([6])])
def test_n_classes_accepted(good):
    enc = LabelEncoder(good)
    assert isinstance(enc.n_classes, int)
    assert enc.n_classes == int(np.asarray(good).item())


def test_jax_in_jax_out():
    enc = LabelEncoder(3).set_classes(jnp.array([10, 30, 20]))
    y = jnp.array([[30, 10], [20, 20]])
    codes = enc.encode(y)
    assert isinstance(codes, jax.Array) and codes.dtype == jnp.int32
    np.testing.assert_array_equal(codes, [[2, 0], [1, 1]])
    np.testing.assert_array_equal(enc.decode(codes), np.asarray(y))
    default = LabelEncoder(3).set_classes(np.arange(3))
    out = default.encode(jnp.array([2, 1]))
    assert isinstance(out, jax.Array) and out.dtype == jnp.int32
    assert isinstance(default.decode(out), jax.Array)


def test_safe_false_path():
    enc = LabelEncoder(3).set_classes([10, 20, 30])
    np.testing.assert_array_equal(enc.encode([30, 10], safe=False), [2, 0])
    codes = enc.encode(np.array([5, 99]), safe=False)  # no error, codes stay in range
    assert np.all((codes >= 0) & (codes < 3))
    jitted = jax.jit(lambda v: enc.encode(v, safe=False))
    np.testing.assert_array_equal(jitted(jnp.array([20, 30])), [1, 2])
    with pytest.raises(ValueError, match="safe=False"):
        jax.jit(lambda v: enc.encode(v))(jnp.array([20, 30]))


def test_decode_keeps_dtype_and_checks_range():
    enc = LabelEncoder(2).set_classes(np.array(["alpha", "beta"]))
    out = enc.decode(np.array([1, 0]))
    assert out.dtype == np.dtype("<U5")
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        enc.decode([0, 2])


def test_encode_strings_is_vectorised():
    labels = np.array(["w", "x", "y", "z"])
    y = labels[np.random.default_rng(0).integers(0, 4, size=4_000_000)]
    enc = LabelEncoder(4).set_classes(labels)
    start = time.perf_counter()
    codes = enc.encode(y)
    assert time.perf_counter() - start < 5.0
    np.testing.assert_array_equal(labels[codes[:100]], y[:100])


# --------------------------------------------------------------------------- label_codes
def _codes_by_search(classes, labels):
    """label_codes' rule spelled out with searchsorted (its general path)."""
    labels = np.asarray(labels)
    codes = np.minimum(np.searchsorted(classes, labels), classes.size - 1)
    return codes, classes[codes] != labels


@SETTINGS
@given(
    dtype=st.sampled_from(["int8", "uint8", "int16", "uint16"]),
    data=st.data(),
)
def test_label_codes_of_small_integers_match_the_sorted_search(dtype, data):
    info = np.iinfo(dtype)
    values = st.integers(int(info.min), int(info.max))
    labels = np.asarray(data.draw(st.lists(values, min_size=1, max_size=60)), dtype)
    # classes: some of the labels, some other values (also outside the dtype's range, or not
    # integers), of the classes' own dtype
    picked = data.draw(st.lists(st.sampled_from(labels.tolist()), max_size=5))
    other = data.draw(
        st.lists(
            st.one_of(values, st.integers(-70000, 70000), st.sampled_from([0.5, -2.5])), max_size=4
        )
    )
    cls_dtype = data.draw(st.sampled_from(["int64", "float64", dtype]))
    raw = np.unique(np.asarray(picked + other, np.float64))
    if cls_dtype != "float64":
        raw = raw[
            (raw == np.round(raw))
            & (raw >= np.iinfo(cls_dtype).min)
            & (raw <= np.iinfo(cls_dtype).max)
        ]
    classes = np.unique(raw.astype(cls_dtype))
    if classes.size == 0:
        classes = np.asarray([labels[0]], cls_dtype)
    codes, bad = label_codes(classes, labels)
    want_codes, want_bad = _codes_by_search(classes, labels)
    np.testing.assert_array_equal(bad, want_bad)
    np.testing.assert_array_equal(codes[~bad], want_codes[~want_bad])
    assert codes.shape == labels.shape and np.all((0 <= codes) & (codes < classes.size))
    assert codes.dtype == code_dtype(classes.size)  # the chunks' code type: no wider temporary


def test_label_codes_of_small_integers_widen_with_the_classes():
    labels = np.arange(256, dtype=np.uint16)
    for n, dtype in ((127, np.int8), (200, np.int16)):
        codes, bad = label_codes(np.arange(n), labels)
        assert codes.dtype == dtype and bad.sum() == 256 - n
        np.testing.assert_array_equal(codes[:n], np.arange(n))


def test_label_codes_other_labels_take_the_search():
    classes = np.array(["a", "c"])
    codes, bad = label_codes(classes, np.array([["c", "b"], ["a", "a"]]))
    np.testing.assert_array_equal(codes[~bad], [1, 0, 0])
    np.testing.assert_array_equal(bad, [[False, True], [False, False]])
    codes, bad = label_codes(np.array([0.5, 1.0]), np.array([1.0, 0.5, 2.0]))
    np.testing.assert_array_equal(bad, [False, False, True])
    np.testing.assert_array_equal(codes[:2], [1, 0])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["int8", "int16", "uint16", "int64", "bool", "float32", "<U3"]),
    st.lists(st.integers(-300, 300), min_size=1, max_size=60),
    st.booleans(),
)
def test_distinct_labels_is_numpys_unique(dtype, values, wide):
    """The bincount path (integers within INT_SPAN) and the sort give the same sorted labels
    of the same dtype; a span past INT_SPAN takes the sort."""
    labels = np.array(values)
    if wide and dtype == "int64":
        labels = np.concatenate([labels, [INT_SPAN * 3]])
    labels = labels.astype(dtype)
    found, expected = distinct_labels(labels), np.unique(labels)
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(found, expected)
