"""Regularization paths and cross-validated strengths, in memory, against brute force."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import distglm
from distglm.folds import plan_folds

from helpers import softmax_labels

_TIGHT = {"tol": 1e-12, "maxiter": 5000}
#: Newton to a gap of 1e-14: coefficients to about 1e-7 (a gap bounds their error squared)
_EXACT = {"solver_name": "Newton", "solver_kwargs": {"tol": 1e-14}}


@pytest.fixture
def x64():
    """float64 kernels for the test (scores compared to 1e-6 relative)."""
    with jax.enable_x64(True):
        yield


def _data(n=240, n_features=5, seed=0):
    """Output 0 follows X strongly, output 1 is nearly noise: they prefer different strengths."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    W = np.zeros((n_features, 2, 3))
    W[:, 0] = rng.normal(scale=1.5, size=(n_features, 3))
    W[0, 1] = [0.15, 0.0, -0.15]
    return X, softmax_labels(rng, X, W, np.zeros((2, 3)))


@pytest.mark.parametrize("regularizer", ["Lasso", "ElasticNet", distglm.regularizer.GroupLasso()])
def test_sparse_path_starts_at_the_strength_that_zeroes_every_coefficient(regularizer):
    X, y = _data(n=200)
    model = distglm.ClassifierPopulationGLM(3, regularizer=regularizer, solver_kwargs=_TIGHT)
    ds = distglm.regularization_path(model, X, y)
    strengths = ds["strength"].values
    assert strengths.size == 10 and np.all(np.diff(strengths) < 0)
    np.testing.assert_allclose(strengths[0] / strengths[-1], 1e4)
    assert np.all(ds["coef"].values[0] == 0.0)
    assert np.any(ds["coef"].values[-1] != 0.0)
    below = distglm.regularization_path(model, X, y, [0.9 * strengths[0]])
    assert np.any(below["coef"].values[0] != 0.0)
    assert model.coef_ is None  # the model itself is not fitted


def test_path_is_warm_started_and_equals_cold_fits(x64):
    X, y = _data(n=200)
    model = distglm.ClassifierGLM(3, regularizer="Ridge", **_EXACT)
    ds = distglm.regularization_path(model, X, y[:, 0], strengths=3)
    assert ds["coef"].shape == (3, 5, 1, 3) and ds["n_passes"].shape == (3,)
    for i, s in enumerate(ds["strength"].values):
        cold = distglm.ClassifierGLM(
            3, regularizer="Ridge", regularizer_strength=float(s), **_EXACT
        ).fit(X, y[:, 0])
        np.testing.assert_allclose(ds["coef"].values[i, :, 0], cold.coef_, atol=1e-6)
        np.testing.assert_allclose(ds["objective"].values[i], cold.fit_history_[-1]["objective"])
    with pytest.raises(ValueError, match="no strength"):
        distglm.regularization_path(distglm.ClassifierGLM(3, regularizer="UnRegularized"), X, y)


def test_ridge_takes_per_output_strengths_as_an_array_of_the_coefficient_shape(x64):
    X, y = _data(n=200)
    values = np.array([0.01, 0.5])
    with pytest.raises(ValueError, match="does not match the coefficient shape"):
        distglm.ClassifierPopulationGLM(3, regularizer_strength=values).fit(X, y)
    reg = distglm.regularizer.Ridge()
    joint = distglm.ClassifierPopulationGLM(
        3, regularizer_strength=reg.per_output_strength(values, (5, 2, 3)), **_EXACT
    ).fit(X, y)
    for k, s in enumerate(values):
        alone = distglm.ClassifierGLM(3, regularizer_strength=s, **_EXACT)
        alone.fit(X, y[:, k])
        np.testing.assert_allclose(joint.coef_[:, k], alone.coef_, atol=1e-6)


def _brute_force(X, y, strengths, fold_index, n_folds):
    """Separate cold fits per strength and fold, scored on the held-out rows."""
    score = np.empty((len(strengths), n_folds, y.shape[1]))
    for i, s in enumerate(strengths):
        for f in range(n_folds):
            held = fold_index == f
            model = distglm.ClassifierPopulationGLM(3, regularizer_strength=float(s), **_EXACT).fit(
                X[~held], y[~held]
            )
            lp = np.asarray(model.predict_proba(X[held], "log-proba"))
            yh = y[held]
            ll = np.take_along_axis(lp, yh[:, :, None], axis=2)[:, :, 0]
            score[i, f] = ll.mean(axis=0)
    return score


def test_per_output_choices_and_held_out_scores_match_brute_force(x64):
    X, y = _data()
    strengths = [3.0, 0.3, 0.03, 0.003]
    search = distglm.ClassifierPopulationGLMCV(3, strengths=strengths, cv=3, **_EXACT).fit(X, y)
    fold_index = plan_folds([len(X)], 3).index
    reference = _brute_force(X, y, strengths, fold_index, 3)
    res = search.cv_results_
    np.testing.assert_allclose(res["score"].values, reference, rtol=1e-6)
    np.testing.assert_array_equal(res["n_held_out"].values, [[80, 80]] * 3)
    best = np.asarray(strengths)[np.argmax(reference.mean(axis=1), axis=0)]
    assert best[0] != best[1]  # the data make the outputs disagree
    np.testing.assert_array_equal(search.strength_, best)
    # the refit is each output alone at its own strength
    for k in range(2):
        alone = distglm.ClassifierGLM(3, regularizer_strength=best[k], **_EXACT)
        alone.fit(X, y[:, k])
        np.testing.assert_allclose(search.best_estimator_.coef_[:, k], alone.coef_, atol=1e-6)
    np.testing.assert_array_equal(search.predict(X), search.best_estimator_.predict(X))
    # the full-data path came with the folds' passes, and equals regularization_path's
    alone_path = distglm.regularization_path(
        distglm.ClassifierPopulationGLM(3, **_EXACT), X, y, strengths
    )
    np.testing.assert_allclose(search.path_["coef"], alone_path["coef"], atol=1e-6)
    np.testing.assert_allclose(search.path_["objective"], alone_path["objective"], rtol=1e-9)
    assert search.n_passes_ > int(search.path_["n_passes"].sum())
    # one shared strength: the best mean over outputs
    shared = distglm.ClassifierPopulationGLMCV(
        3, strengths=strengths, cv=3, per_output=False, **_EXACT, refit=False
    ).fit(X, y)
    i = np.argmax(reference.mean(axis=1).mean(axis=1))
    np.testing.assert_array_equal(shared.strength_, [strengths[i]] * 2)
    with pytest.raises(ValueError, match="no refitted model"):
        shared.predict(X)


def test_single_output_search_with_a_group_splitter():
    from sklearn.model_selection import GroupKFold

    X, y = _data(n=180)
    groups = np.repeat(np.arange(6), 30)
    search = distglm.ClassifierGLMCV(3, regularizer="Lasso", strengths=3, cv=GroupKFold(3))
    search.fit(X, y[:, 0], groups=groups)
    assert isinstance(search.strength_, float)
    assert search.cv_results_["score"].shape == (3, 3, 1)
    assert int(search.cv_results_["n_held_out"].sum()) == 180
    assert search.best_estimator_.coef_.shape == (5, 3)
    with pytest.raises(ValueError, match="int k >= 2"):
        distglm.ClassifierGLMCV(3, cv="session").fit(X, y[:, 0])
    with pytest.raises(ValueError, match="requires y"):
        distglm.ClassifierGLMCV(3).fit(X)
    with pytest.raises(NotImplementedError, match="log-likelihood"):
        distglm.ClassifierGLMCV(3, scoring="pseudo-r2-McFadden").fit(X, y[:, 0])


@pytest.mark.parametrize("regularizer", ["ElasticNet", "GroupLasso"])
def test_sparse_per_output_refit_equals_each_output_alone(regularizer, x64):
    X, y = _data(n=200)
    search = distglm.ClassifierPopulationGLMCV(
        3, regularizer=regularizer, strengths=[0.3, 0.01], cv=2, **_EXACT
    ).fit(X, y)
    assert search.strength_[0] != search.strength_[1]
    for k in range(2):
        alone = distglm.ClassifierGLM(3, regularizer=regularizer, **_EXACT)
        alone.regularizer_strength = alone.regularizer.with_strength(
            alone.regularizer_strength, search.strength_[k]
        )
        alone.fit(X, y[:, k])
        np.testing.assert_allclose(search.best_estimator_.coef_[:, k], alone.coef_, atol=1e-6)


def test_group_lasso_with_a_user_mask_has_no_per_output_strength():
    mask = np.ones((1, 5, 2, 3))
    reg = distglm.regularizer.GroupLasso(mask=mask)
    with pytest.raises(NotImplementedError, match="per_output=False"):
        reg.per_output_strength(np.array([0.1, 0.2]), (5, 2, 3))


def test_rows_with_nan_are_left_out_of_every_fold_and_the_search_clones():
    from sklearn.base import clone

    X, y = _data(n=100)
    X[3, 1] = np.nan
    search = clone(distglm.ClassifierPopulationGLMCV(3, strengths=[1.0, 0.1], cv=2)).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["n_held_out"].values, [[49, 49], [50, 50]])
    assert search.get_params()["strengths"] == [1.0, 0.1]


def test_set_params_names_unknown_parameters():
    search = distglm.ClassifierGLMCV(3).set_params(cv=4, per_output=False)
    assert search.get_params()["cv"] == 4 and search.per_output is False
    with pytest.raises(ValueError, match="Invalid parameter"):
        search.set_params(alpha=1.0)
