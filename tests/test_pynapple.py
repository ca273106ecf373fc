"""pynapple time series and nemos FeaturePytree inputs, against nemos 0.2.8 on the same inputs."""

from __future__ import annotations

import jax
import nemos as nmo
import numpy as np
import pynapple as nap
import pytest

import distglm
from distglm.pynapple_io import is_feature_pytree, is_pynapple

from helpers import softmax_labels

pytestmark = pytest.mark.parity


def _data(seed=0, n=120, nan_row=7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = softmax_labels(rng, X, rng.normal(size=(3, 3)), np.zeros(3))
    X[nan_row, 1] = np.nan
    t = np.arange(n) * 0.01 + 3.0
    support = nap.IntervalSet(start=2.5, end=5.0)
    Xt = nap.TsdFrame(t=t, d=X, columns=["a", "b", "c"], time_support=support)
    yt = nap.Tsd(t=t, d=y.astype(float), time_support=support)
    return X, y, Xt, yt


def _same_index(ours, theirs):
    assert type(ours) is type(theirs)
    np.testing.assert_array_equal(ours.t, theirs.t)
    np.testing.assert_array_equal(ours.time_support.values, theirs.time_support.values)


def test_classifier_tsdframe_in_gives_pynapple_out_like_nemos():
    _, _, Xt, yt = _data()
    ours = distglm.ClassifierGLM(3).fit(Xt, yt)
    theirs = nmo.glm.ClassifierGLM(3).fit(Xt, yt)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, atol=1e-3)
    X, y, _, _ = _data()
    plain = distglm.ClassifierGLM(3).fit(X, y)  # the pynapple path is the array path
    np.testing.assert_array_equal(ours.coef_, plain.coef_)
    np.testing.assert_array_equal(ours.predict_proba(Xt).d, plain.predict_proba(X))

    p, q = ours.predict(Xt), theirs.predict(Xt)
    _same_index(p, q)
    np.testing.assert_array_equal(p.d, q.d)

    lp, lq = ours.predict_proba(Xt), theirs.predict_proba(Xt)
    _same_index(lp, lq)
    np.testing.assert_allclose(lp.d, lq.d, atol=2e-3)  # the NaN row stays NaN, in place
    assert np.isnan(lp.d[7]).all() and not np.isnan(np.delete(lp.d, 7, axis=0)).any()

    proba = ours.predict_proba(Xt, return_type="proba")
    assert isinstance(proba, nap.TsdFrame)
    np.testing.assert_allclose(np.delete(proba.d, 7, 0).sum(1), 1.0, rtol=1e-5)

    sy, slp = ours.simulate(jax.random.key(1), Xt)
    ty, tlp = theirs.simulate(jax.random.key(1), Xt)
    _same_index(sy, ty)
    _same_index(slp, tlp)

    np.testing.assert_allclose(float(ours.score(Xt, yt)), float(theirs.score(Xt, yt)), rtol=1e-4)


def test_population_tsdframe_and_tsdtensor_outputs_like_nemos():
    rng = np.random.default_rng(3)
    X, _, Xt, _ = _data(seed=3)
    Y = np.stack(
        [
            softmax_labels(rng, np.nan_to_num(X), rng.normal(size=(3, 3)), np.zeros(3))
            for _ in range(2)
        ],
        axis=1,
    )
    Yt = nap.TsdFrame(t=Xt.t, d=Y.astype(float), time_support=Xt.time_support)
    ours = distglm.ClassifierPopulationGLM(3).fit(Xt, Yt)
    theirs = nmo.glm.ClassifierPopulationGLM(3).fit(Xt, Yt)
    p, q = ours.predict(Xt), theirs.predict(Xt)
    _same_index(p, q)
    np.testing.assert_array_equal(p.d, q.d)
    lp, lq = ours.predict_proba(Xt), theirs.predict_proba(Xt)
    _same_index(lp, lq)
    assert lp.shape == (120, 2, 3)
    np.testing.assert_allclose(lp.d, lq.d, atol=2e-3)


def test_feature_pytree_is_a_dict_of_arrays():
    X, y, _, _ = _data(nan_row=0)
    X[0, 1] = 0.5
    tree = nmo.pytrees.FeaturePytree(a=X[:, :2], b=X[:, 2:])
    assert is_feature_pytree(tree) and not is_feature_pytree({"a": X})
    ours = distglm.ClassifierGLM(3).fit(tree, y)
    theirs = nmo.glm.ClassifierGLM(3).fit(tree, y)
    assert set(ours.coef_) == {"a", "b"}
    for k in ("a", "b"):
        np.testing.assert_allclose(ours.coef_[k], theirs.coef_[k], atol=1e-3)
    np.testing.assert_array_equal(ours.predict(tree), theirs.predict(tree))
    plain = distglm.ClassifierGLM(3).fit({"a": X[:, :2], "b": X[:, 2:]}, y)
    np.testing.assert_allclose(plain.coef_["a"], ours.coef_["a"])


def test_arrays_in_stay_arrays_out_and_mismatched_times_are_refused():
    X, y, Xt, yt = _data()
    model = distglm.ClassifierGLM(3).fit(X, y)
    assert not is_pynapple(model.predict(X)) and is_pynapple(model.predict(Xt))
    shifted = nap.Tsd(t=Xt.t + 0.5, d=yt.d)
    with pytest.raises(ValueError, match="time axis"):
        model.score(Xt, shifted)


def test_labels_frame_columns_and_metadata_reach_predictions_as_in_nemos():
    rng = np.random.default_rng(4)
    t = np.arange(90) * 0.1
    X = rng.standard_normal((90, 3))
    y = np.stack([np.arange(90) % 3, (np.arange(90) // 3) % 3], axis=1)
    Xt = nap.TsdFrame(t=t, d=X)
    yt = nap.TsdFrame(t=t, d=y, columns=["u1", "u2"], metadata={"depth": np.array([10, 20])})
    out = {}
    for name, cls in [
        ("ours", distglm.ClassifierPopulationGLM),
        ("nemos", nmo.glm.ClassifierPopulationGLM),
    ]:
        model = cls(3).fit(Xt, yt)
        out[name] = model.predict(Xt)
    for pred in out.values():
        assert list(pred.columns) == ["u1", "u2"]
        np.testing.assert_array_equal(pred.metadata["depth"].to_numpy(), [10, 20])
    np.testing.assert_array_equal(out["ours"].values, out["nemos"].values)
    # a copy: changing the labels' metadata later leaves the predictions' alone
    yt["depth"] = np.array([1, 2])
    np.testing.assert_array_equal(out["ours"].metadata["depth"].to_numpy(), [10, 20])
    # a fit on plain labels gives plain columns again
    plain = distglm.ClassifierPopulationGLM(3).fit(Xt, y).predict(Xt)
    assert list(plain.columns) == [0, 1] and plain.metadata.shape[1] == 0


@pytest.mark.parametrize("suffix", ["model.npz", "model.zarr"])
def test_labels_frame_columns_and_metadata_survive_save_and_load(tmp_path, suffix):
    rng = np.random.default_rng(5)
    t = np.arange(90) * 0.1
    Xt = nap.TsdFrame(t=t, d=rng.standard_normal((90, 3)))
    y = np.stack([np.arange(90) % 3, (np.arange(90) // 3) % 3], axis=1)
    meta = {"depth": np.array([10.5, 20.5]), "area": np.array(["CA1", "V1"])}
    yt = nap.TsdFrame(t=t, d=y, columns=["u1", "u2"], metadata=meta)
    model = distglm.ClassifierPopulationGLM(3).fit(Xt, yt)
    path = tmp_path / suffix
    model.save_params(path)
    loaded = distglm.load_model(path)
    for m in (loaded, model.__class__(**model.get_params()).fit(Xt, yt)):
        pred = m.predict(Xt)
        assert isinstance(pred, nap.TsdFrame) and list(pred.columns) == ["u1", "u2"]
        np.testing.assert_array_equal(pred.metadata["depth"].to_numpy(), [10.5, 20.5])
        np.testing.assert_array_equal(pred.metadata["area"].to_numpy(), ["CA1", "V1"])
        np.testing.assert_array_equal(pred.values, model.predict(Xt).values)
    # integer columns and no metadata come back as they went in
    plain = nap.TsdFrame(t=t, d=y, columns=[3, 7])
    path2 = tmp_path / ("int-" + suffix)
    distglm.ClassifierPopulationGLM(3).fit(Xt, plain).save_params(path2)
    pred = distglm.load_model(path2).predict(Xt)
    assert list(pred.columns) == [3, 7] and pred.metadata.shape[1] == 0
