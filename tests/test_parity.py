"""Parity of distglm's estimators with nemos 0.2.8 and scikit-learn on small seeded data.

Each nemos reference is fitted once per module (nemos fits are slow) to a tight tolerance;
distglm is fitted on the same data and both optima are compared through distglm's own
penalised objective, ``compute_loss + regularizer.penalty``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import nemos as nmo
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import distglm
from distglm import regularizer as dreg

from helpers import softmax_labels

pytestmark = [pytest.mark.parity, pytest.mark.slow]

N, P, C, K = 500, 3, 3, 2
STRENGTH = 1e-2
NEMOS_TIGHT = {"tol": 1e-10, "maxiter": 3000}
OURS_TIGHT = {"tol": 1e-10, "maxiter": 3000}
SCORE_TYPES = ["log-likelihood", "pseudo-r2-McFadden", "pseudo-r2-Cohen"]


RNG = np.random.default_rng(42)
X = RNG.standard_normal((N, P)).astype(np.float32)
Y1 = softmax_labels(RNG, X, RNG.standard_normal((P, C)), np.array([0.3, 0.0, -0.3]))
YK = softmax_labels(RNG, X, RNG.standard_normal((P, K, C)), np.zeros((K, C)))


def _group_mask(population):
    shape = (2, P, K, C) if population else (2, P, C)
    mask = np.zeros(shape)
    mask[0, :2] = 1
    mask[1, 2:] = 1
    return mask


def _feature_mask():
    mask = np.ones((P, K, C))
    mask[0, 0] = 0
    mask[2, 1, 1:] = 0
    return mask


# name -> (regularizer name, strength, nemos solver, distglm regularizer factory, extra)
CASES = {
    "UnRegularized": ("UnRegularized", None, "LBFGS"),
    "Ridge": ("Ridge", STRENGTH, "LBFGS"),
    "Lasso": ("Lasso", STRENGTH, "ProximalGradient"),
    "ElasticNet": ("ElasticNet", (STRENGTH, 0.5), "ProximalGradient"),
    "GroupLasso": ("GroupLasso", STRENGTH, "ProximalGradient"),
    "GroupLassoMask": ("GroupLasso", STRENGTH, "ProximalGradient"),
    "FeatureMask": ("Ridge", STRENGTH, "LBFGS"),
    "DictX": ("Ridge", STRENGTH, "LBFGS"),
}
SINGLE = [c for c in CASES if c != "FeatureMask"]
POP = list(CASES)
ALL = [(False, c) for c in SINGLE] + [(True, c) for c in POP]
IDS = [f"{'pop' if p else 'glm'}-{c}" for p, c in ALL]


def _regularizers(case, population):
    name = CASES[case][0]
    if case == "GroupLassoMask":
        mask = _group_mask(population)
        return nmo.regularizer.GroupLasso(mask=mask), dreg.GroupLasso(mask=mask)
    return name, name


def _design(case):
    if case == "DictX":
        return {"a": X[:, :2], "b": X[:, 2:]}
    return X


class Pair:
    """A nemos reference and a distglm fit of the same case."""

    def __init__(self, population, case):
        _, strength, nemos_solver = CASES[case]
        self.population, self.case = population, case
        self.X = _design(case)
        # nemos 0.2.8 fails on a plain dict X (its validator reads X.shape): use its pytree
        self.Xn = nmo.pytrees.FeaturePytree(**self.X) if case == "DictX" else self.X
        self.y = YK if population else Y1
        nreg, dreg_ = _regularizers(case, population)
        kw = {}
        if case == "FeatureMask":
            kw["feature_mask"] = _feature_mask()
        ncls = nmo.glm.ClassifierPopulationGLM if population else nmo.glm.ClassifierGLM
        dcls = distglm.ClassifierPopulationGLM if population else distglm.ClassifierGLM
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.nemos = ncls(
                C,
                regularizer=nreg,
                regularizer_strength=strength,
                solver_name=nemos_solver,
                solver_kwargs=NEMOS_TIGHT,
                **kw,
            ).fit(self.Xn, self.y)
            self.ours = dcls(
                C, regularizer=dreg_, regularizer_strength=strength, solver_kwargs=OURS_TIGHT, **kw
            ).fit(self.X, self.y)

    def params(self, which):
        m = self.nemos if which == "nemos" else self.ours
        return m.coef_, m.intercept_

    def objective(self, which):
        params = self.params(which)
        loss = self.ours.compute_loss(params, self.X, self.y)
        pen = self.ours.regularizer.penalty(params[0], self.ours.regularizer_strength)
        return float(loss) + float(pen)


_CACHE: dict = {}


@pytest.fixture(scope="module")
def pairs():
    def get(population, case):
        key = (population, case)
        if key not in _CACHE:
            _CACHE[key] = Pair(population, case)
        return _CACHE[key]

    yield get
    _CACHE.clear()


def _centre(a):
    a = np.asarray(a, np.float64)
    return a - a.mean(-1, keepdims=True)


def _block(coef):
    if isinstance(coef, dict):
        return np.concatenate([np.asarray(coef[k]) for k in sorted(coef)], 0)
    return np.asarray(coef)


# ---------------------------------------------------------------------------- optimum
@pytest.mark.parametrize("population, case", ALL, ids=IDS)
def test_objective_at_optimum(pairs, population, case):
    pair = pairs(population, case)
    ours, theirs = pair.objective("ours"), pair.objective("nemos")
    # distglm must be at least as good as nemos, up to the float32 resolution
    assert ours <= theirs * (1 + 1e-5), (ours, theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


@pytest.mark.parametrize("population, case", ALL, ids=IDS)
def test_coefficients(pairs, population, case):
    pair = pairs(population, case)
    ours, theirs = _block(pair.ours.coef_), _block(pair.nemos.coef_)
    assert ours.shape == theirs.shape
    if isinstance(pair.nemos.coef_, dict):
        assert set(pair.ours.coef_) == set(pair.nemos.coef_)
    # class-centred coefficients are identifiable even without a penalty
    np.testing.assert_allclose(_centre(ours), _centre(theirs), atol=2e-3)
    if case != "UnRegularized":  # identifiable only with a penalty
        np.testing.assert_allclose(ours, theirs, atol=2e-3)
    # the intercept is never penalised: only its class-centred part is identifiable
    np.testing.assert_allclose(
        _centre(pair.ours.intercept_), _centre(pair.nemos.intercept_), atol=5e-3
    )
    if case == "FeatureMask":
        assert np.all(ours[_feature_mask() == 0] == 0.0)
        assert np.all(theirs[_feature_mask() == 0] == 0.0)


@pytest.mark.parametrize("population, case", ALL, ids=IDS)
def test_predictions(pairs, population, case):
    pair = pairs(population, case)
    np.testing.assert_allclose(
        pair.ours.predict_proba(pair.X, return_type="proba"),
        pair.nemos.predict_proba(pair.Xn, return_type="proba"),
        atol=1e-3,
    )
    np.testing.assert_allclose(  # float32 fits: log-probabilities down to -13 here
        pair.ours.predict_proba(pair.X, return_type="log-proba"),
        pair.nemos.predict_proba(pair.Xn, return_type="log-proba"),
        rtol=1e-3,
        atol=2e-3,
    )
    agree = np.mean(
        np.asarray(pair.ours.predict(pair.X)) == np.asarray(pair.nemos.predict(pair.Xn))
    )
    assert agree >= 0.99, agree
    np.testing.assert_array_equal(pair.ours.classes_, pair.nemos.classes_)


@pytest.mark.parametrize("population, case", ALL, ids=IDS)
def test_score_and_loss_on_same_params(pairs, population, case):
    """Scores and losses at nemos' own parameters, computed by both libraries."""
    pair = pairs(population, case)
    params = pair.params("nemos")
    ours = distglm.ClassifierPopulationGLM(C) if population else distglm.ClassifierGLM(C)
    ours.set_classes(pair.y)
    ours.coef_, ours.intercept_ = params
    for st in SCORE_TYPES:
        np.testing.assert_allclose(
            ours.score(pair.X, pair.y, score_type=st),
            pair.nemos.score(pair.Xn, pair.y, score_type=st),
            rtol=1e-5,
            err_msg=st,
        )
    np.testing.assert_allclose(
        ours.score(pair.X, pair.y, aggregate_sample_scores=jnp.sum),
        pair.nemos.score(pair.Xn, pair.y, aggregate_sample_scores=jnp.sum),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        ours.compute_loss(params, pair.X, pair.y),
        pair.nemos.compute_loss(params, pair.Xn, pair.y),
        rtol=1e-5,
    )
    # and the fitted model's own scores agree with nemos' fitted model
    for st in SCORE_TYPES:
        np.testing.assert_allclose(
            pair.ours.score(pair.X, pair.y, score_type=st),
            pair.nemos.score(pair.Xn, pair.y, score_type=st),
            rtol=1e-4,
            err_msg=st,
        )


@pytest.mark.parametrize("population, case", ALL, ids=IDS)
def test_dof_and_scale(pairs, population, case):
    pair = pairs(population, case)
    assert np.shape(pair.ours.dof_resid_) == np.shape(pair.nemos.dof_resid_)
    assert np.shape(pair.ours.scale_) == np.shape(pair.nemos.scale_)
    if case in ("Ridge", "UnRegularized", "DictX", "FeatureMask"):
        np.testing.assert_allclose(pair.ours.dof_resid_, pair.nemos.dof_resid_)


@pytest.mark.parametrize("population", [False, True])
def test_simulate_same_key(pairs, population):
    pair = pairs(population, "Ridge")
    ours = distglm.ClassifierPopulationGLM(C) if population else distglm.ClassifierGLM(C)
    ours.set_classes(pair.y)
    ours.coef_, ours.intercept_ = pair.params("nemos")
    for seed in (0, 7):
        y_ours, lp_ours = ours.simulate(jax.random.key(seed), X)
        y_nemos, lp_nemos = pair.nemos.simulate(jax.random.key(seed), X)
        np.testing.assert_allclose(lp_ours, lp_nemos, atol=1e-5)
        assert np.mean(np.asarray(y_ours) == np.asarray(y_nemos)) >= 0.999


@pytest.mark.parametrize("population", [False, True])
@pytest.mark.parametrize("labels", ["int", "str"])
def test_initialize_params(population, labels):
    y = YK if population else Y1
    if labels == "str":
        y = np.array(["a", "b", "c"])[y]
    theirs = (nmo.glm.ClassifierPopulationGLM if population else nmo.glm.ClassifierGLM)(C)
    ours = (distglm.ClassifierPopulationGLM if population else distglm.ClassifierGLM)(C)
    theirs.set_classes(y)
    ours.set_classes(y)
    for rows in (slice(None), slice(0, 40)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tc, ti = theirs.initialize_params(X[rows], y[rows])
        oc, oi = ours.initialize_params(X[rows], y[rows])
        np.testing.assert_array_equal(oc, tc)
        np.testing.assert_allclose(oi, ti, rtol=1e-5, atol=1e-5)


def test_initialize_params_missing_class():
    """A batch without one class: both clip the frequency at the float64 epsilon."""
    y = Y1.copy()
    rows = np.flatnonzero(y != 2)[:50]
    theirs = nmo.glm.ClassifierGLM(C).set_classes(y)
    ours = distglm.ClassifierGLM(C).set_classes(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, ti = theirs.initialize_params(X[rows], y[rows])
    _, oi = ours.initialize_params(X[rows], y[rows])
    np.testing.assert_allclose(oi, ti, rtol=1e-5)


# ---------------------------------------------------------------------------- scikit-learn
@pytest.mark.parametrize("n_classes", [2, 3])
def test_sklearn_ridge(n_classes):
    """Ridge-penalised softmax == sklearn's LogisticRegression (lbfgs) with C = 1/(s n).

    For 2 classes sklearn fits one column ``w = w1 - w0``; the symmetric two-column optimum is
    ``w0 = -w1 = -w/2``, whose Ridge penalty is ``s |w|^2 / 4``: half sklearn's, so C = 2/(s n).
    """
    rng = np.random.default_rng(n_classes)
    Xs = rng.standard_normal((800, 4))
    Y = softmax_labels(rng, Xs, rng.standard_normal((4, 2, n_classes)), np.zeros((2, n_classes)))
    s = 5e-3
    ours = distglm.ClassifierPopulationGLM(
        n_classes, regularizer="Ridge", regularizer_strength=s, solver_kwargs=OURS_TIGHT
    ).fit(Xs, Y)
    single = distglm.ClassifierGLM(
        n_classes, regularizer="Ridge", regularizer_strength=s, solver_kwargs=OURS_TIGHT
    ).fit(Xs, Y[:, 0])
    proba = np.asarray(ours.predict_proba(Xs, return_type="proba"))
    for j in range(2):
        c_sk = (2.0 if n_classes == 2 else 1.0) / (s * Xs.shape[0])
        sk = LogisticRegression(C=c_sk, tol=1e-10, max_iter=10000).fit(Xs, Y[:, j])
        sk_coef = sk.coef_.T  # (p, c), or (p, 1) for 2 classes
        if n_classes == 2:  # sklearn keeps one column: class 1 minus class 0, centred: +-w/2
            sk_coef = np.concatenate([-sk_coef / 2, sk_coef / 2], axis=1)
            sk_icpt = np.array([-sk.intercept_[0] / 2, sk.intercept_[0] / 2])
        else:
            sk_icpt = sk.intercept_
        # float32 fit: ~1e-8 relative above sklearn's float64 optimum, 2e-4 in probabilities
        np.testing.assert_allclose(proba[:, j], sk.predict_proba(Xs), atol=5e-4)
        np.testing.assert_allclose(_centre(ours.coef_[:, j]), _centre(sk_coef), atol=1e-3)
        np.testing.assert_allclose(_centre(ours.intercept_[j]), _centre(sk_icpt), atol=1e-3)
    np.testing.assert_allclose(single.coef_, ours.coef_[:, 0], atol=1e-3)


def test_feature_mask_class_shift(pairs):
    """Unmasked coefficient rows are shift-invariant in the loss, so Ridge centres them."""
    pair = pairs(True, "FeatureMask")
    coef, mask = np.asarray(pair.ours.coef_), _feature_mask()
    full = mask.all(-1)  # (feature, output) rows with every class free
    np.testing.assert_allclose(np.asarray(pair.nemos.coef_).mean(-1)[full], 0.0, atol=1e-5)
    np.testing.assert_allclose(coef.mean(-1)[full], 0.0, atol=1e-4)
