"""Unit tests of distglm's estimators: every public method and attribute, without nemos."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.base

import distglm
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.exceptions import NotFittedError
from distglm.regularizer import ElasticNet, GroupLasso, Lasso, Ridge, UnRegularized

from helpers import softmax_labels

N, P, C, K = 400, 3, 3, 2
TIGHT = {"tol": 1e-9, "maxiter": 2000}
SCORE_TYPES = ["log-likelihood", "pseudo-r2-McFadden", "pseudo-r2-Cohen"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, P))
    y = softmax_labels(rng, X, rng.standard_normal((P, C)), np.zeros(C))
    Y = softmax_labels(rng, X, rng.standard_normal((P, K, C)), np.zeros((K, C)))
    return X, y, Y


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _ = data
    return ClassifierGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(X, y)


@pytest.fixture(scope="module")
def fitted_pop(data):
    X, _, Y = data
    return ClassifierPopulationGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(X, Y)


def _model(population, **kw):
    return (ClassifierPopulationGLM if population else ClassifierGLM)(C, **kw)


def _xy(data, population):
    X, y, Y = data
    return X, (Y if population else y)


def _zero_params(population, p=P):
    if population:
        return jnp.zeros((p, K, C)), jnp.zeros((K, C))
    return jnp.zeros((p, C)), jnp.zeros(C)


# ---------------------------------------------------------------------------- n_classes
@pytest.mark.parametrize("bad", [0, 1, 2.5, "3", True, np.inf, np.nan, None, [3, 4]])
@pytest.mark.parametrize("cls", [ClassifierGLM, ClassifierPopulationGLM])
def test_n_classes_invalid(cls, bad):
    with pytest.raises(ValueError, match="n_classes"):
        cls(bad)


@pytest.mark.parametrize("good", [np.int64(3), np.array([3]), 3.0, jnp.asarray(3)])
def test_n_classes_valid(good):
    m = ClassifierGLM(good)
    assert m.n_classes == 3 and type(m.n_classes) is int


def test_n_classes_setter_resets_classes(data):
    _X, y, _ = data
    m = ClassifierGLM(C).set_classes(y)
    assert m.classes_ is not None
    m.n_classes = 4
    assert m.n_classes == 4 and m.classes_ is None


# ---------------------------------------------------------------------------- classes_
def test_set_classes_and_setter(data):
    _, y, _ = data
    m = ClassifierGLM(C)
    assert m.classes_ is None
    assert m.set_classes(y) is m
    np.testing.assert_array_equal(m.classes_, [0, 1, 2])
    m.classes_ = None
    assert m.classes_ is None
    m.classes_ = np.array(["c", "a", "b", "a"])
    np.testing.assert_array_equal(m.classes_, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique class labels"):
        m.classes_ = np.array([0, 1])
    with pytest.raises(ValueError, match="unique class labels"):
        m.set_classes([0, 1, 2, 3])


@pytest.mark.parametrize("population", [False, True])
@pytest.mark.parametrize(
    "method",
    [
        "initialize_params",
        "predict",
        "predict_proba",
        "score",
        "simulate",
        "compute_loss",
        "update",
        "initialize_optimizer_and_state",
    ],
)
def test_runtime_error_before_set_classes(data, population, method):
    X, y = _xy(data, population)
    m = _model(population)
    params = _zero_params(population)
    calls = {
        "initialize_params": lambda: m.initialize_params(X, y),
        "predict": lambda: m.predict(X),
        "predict_proba": lambda: m.predict_proba(X),
        "score": lambda: m.score(X, y),
        "simulate": lambda: m.simulate(jax.random.key(0), X),
        "compute_loss": lambda: m.compute_loss(params, X, y),
        "update": lambda: m.update(params, None, X, y),
        "initialize_optimizer_and_state": lambda: m.initialize_optimizer_and_state(params, X, y),
    }
    with pytest.raises(RuntimeError, match="set_classes"):
        calls[method]()


@pytest.mark.parametrize("population", [False, True])
def test_not_fitted_error(data, population):
    X, y = _xy(data, population)
    m = _model(population).set_classes(y)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for call in (lambda: m.predict(X), lambda: m.predict_proba(X), lambda: m.score(X, y)):
        with pytest.raises(NotFittedError):
            call()
        with pytest.raises(ValueError):
            call()
        with pytest.raises(AttributeError):
            call()


def test_manual_params_after_set_classes(data, fitted):
    """coef_/intercept_ set by hand + set_classes work like a fitted model (as in nemos)."""
    X, y, _ = data
    m = ClassifierGLM(C).set_classes(y)
    m.coef_, m.intercept_ = fitted.coef_, fitted.intercept_
    np.testing.assert_array_equal(m.predict(X), fitted.predict(X))
    np.testing.assert_allclose(m.score(X, y), fitted.score(X, y), rtol=1e-6)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])


def test_layout_follows_coef_set_by_hand(data, fitted):
    """The design layout is read off coef_, so replacing it with a dict re-shapes predict."""
    X, y, _ = data
    split = {"a": fitted.coef_[:2], "b": fitted.coef_[2:]}
    fitted_copy = ClassifierGLM(C).set_classes(y)
    fitted_copy.coef_, fitted_copy.intercept_ = split, fitted.intercept_
    X_dict = {"a": X[:, :2], "b": X[:, 2:]}
    np.testing.assert_allclose(
        fitted_copy.predict_proba(X_dict), fitted.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="same structure"):
        fitted_copy.predict(X)


# ---------------------------------------------------------------------------- fit & shapes
def test_shapes(data, fitted, fitted_pop):
    X, _y, _Y = data
    assert fitted.coef_.shape == (P, C) and fitted.intercept_.shape == (C,)
    assert fitted_pop.coef_.shape == (P, K, C) and fitted_pop.intercept_.shape == (K, C)
    assert fitted.predict(X).shape == (N,)
    assert fitted_pop.predict(X).shape == (N, K)
    assert fitted.predict_proba(X).shape == (N, C)
    assert fitted_pop.predict_proba(X).shape == (N, K, C)
    assert fitted.dof_resid_.shape == (1,) and fitted.scale_.shape == (1,)
    assert fitted_pop.dof_resid_.shape == (K,) and fitted_pop.scale_.shape == (K,)
    # Ridge: n - (c-1) p - (c-1)
    np.testing.assert_allclose(fitted_pop.dof_resid_, N - (C - 1) * P - (C - 1))
    np.testing.assert_allclose(fitted_pop.scale_, 1.0)


def test_fit_returns_self_and_history(data):
    X, y, _ = data
    m = ClassifierGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT)
    assert m.fit(X, y) is m
    hist = m.fit_history_
    assert len(hist) >= 1
    for key in ("objective", "gap", "seconds", "passes"):
        assert all(key in h for h in hist)
    obj = np.array([h["objective"] for h in hist])
    assert np.all(np.diff(obj) <= 1e-6 * np.abs(obj[:-1]) + 1e-7)
    passes = np.array([h["passes"] for h in hist])
    assert np.all(np.diff(passes) >= 0) and passes[0] >= 1
    assert isinstance(m.n_passes_, (int, np.integer)) and m.n_passes_ >= passes[-1]
    assert m.solver_state_ is not None


@pytest.mark.parametrize("population", [False, True])
def test_predict_proba(data, fitted, fitted_pop, population):
    X, _ = _xy(data, population)
    m = fitted_pop if population else fitted
    lp = m.predict_proba(X)
    np.testing.assert_array_equal(lp, m.predict_proba(X, return_type="log-proba"))
    p = m.predict_proba(X, return_type="proba")
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(m.predict(X), m.classes_[np.argmax(p, -1)])
    with pytest.raises(ValueError, match="return_type"):
        m.predict_proba(X, return_type="odds")


@pytest.mark.parametrize("population", [False, True])
def test_score(data, fitted, fitted_pop, population):
    X, y = _xy(data, population)
    m = fitted_pop if population else fitted
    ll = m.score(X, y)
    lp = np.asarray(m.predict_proba(X))
    codes = np.asarray(y)
    per = np.take_along_axis(lp, codes[..., None], -1)[..., 0]
    np.testing.assert_allclose(ll, per.mean(), rtol=1e-5)
    np.testing.assert_allclose(m.score(X, y, aggregate_sample_scores=jnp.sum), per.sum(), rtol=1e-5)
    freq = np.stack([np.bincount(c, minlength=C) for c in codes.reshape(N, -1).T]) / N
    null = np.log(freq)[np.arange(codes.reshape(N, -1).shape[1]), codes.reshape(N, -1)]
    mcf = m.score(X, y, score_type="pseudo-r2-McFadden")
    np.testing.assert_allclose(mcf, 1 - per.mean() / null.mean(), rtol=1e-5)
    cohen = m.score(X, y, score_type="pseudo-r2-Cohen")
    np.testing.assert_allclose(cohen, (null.mean() - per.mean()) / null.mean(), rtol=1e-5)
    assert 0 < float(mcf) < 1
    with pytest.raises(NotImplementedError, match="score_type"):
        m.score(X, y, score_type="accuracy")
    with pytest.raises(ValueError, match=r"[Uu]nrecognized"):
        m.score(X, np.full_like(y, 7))


@pytest.mark.parametrize("population", [False, True])
def test_simulate(data, fitted, fitted_pop, population):
    X, _ = _xy(data, population)
    m = fitted_pop if population else fitted
    y1, lp1 = m.simulate(jax.random.key(3), X)
    y2, lp2 = m.simulate(jax.random.key(3), X)
    y3, _ = m.simulate(jax.random.key(4), X)
    assert y1.shape == ((N, K) if population else (N,))
    assert lp1.shape == (*y1.shape, C)
    assert np.isin(np.asarray(y1), m.classes_).all()
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(lp1, lp2)
    assert not np.array_equal(y1, y3)


@pytest.mark.parametrize("population", [False, True])
def test_compute_loss(data, fitted, fitted_pop, population):
    X, y = _xy(data, population)
    m = fitted_pop if population else fitted
    loss = m.compute_loss((m.coef_, m.intercept_), X, y)
    assert np.ndim(loss) == 0
    # no penalty, summed over outputs of the per-output mean
    np.testing.assert_allclose(loss, -m.score(X, y) * (K if population else 1), rtol=1e-5)
    zero = m.compute_loss(_zero_params(population), X, y)
    np.testing.assert_allclose(zero, np.log(C) * (K if population else 1), rtol=1e-6)
    with pytest.raises(ValueError):
        m.compute_loss(_zero_params(population, p=P + 1), X, y)


# ---------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "labels",
    [
        np.array(["left", "nogo", "right"]),
        np.array([10, 20, 30]),
        np.array([0.0, 1.0, 2.0]),
        np.array([("a", 1), ("b", 2), ("c", 3)], dtype=object)[[0, 1, 2]],
    ],
    ids=["str", "int", "float", "object"],
)
def test_label_types(data, fitted, labels):
    X, y, _ = data
    if labels.dtype == object:
        obj = np.empty(3, dtype=object)
        obj[:] = ["x", "y", "z"]
        labels = obj
    ylab = labels[y]
    m = ClassifierGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(X, ylab)
    np.testing.assert_array_equal(m.classes_, np.sort(labels))
    np.testing.assert_allclose(m.coef_, fitted.coef_, atol=1e-4)
    pred = np.asarray(m.predict(X))
    np.testing.assert_array_equal(pred, labels[np.asarray(fitted.predict(X))])
    assert np.isin(np.asarray(m.simulate(jax.random.key(0), X)[0]), labels).all()
    np.testing.assert_allclose(m.score(X, ylab), fitted.score(X, y), rtol=1e-5)


def test_population_string_labels(data, fitted_pop):
    X, _, Y = data
    names = np.array(["a", "b", "c"])
    m = ClassifierPopulationGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(X, names[Y])
    np.testing.assert_allclose(m.coef_, fitted_pop.coef_, atol=1e-4)
    np.testing.assert_array_equal(m.predict(X), names[np.asarray(fitted_pop.predict(X))])


# ---------------------------------------------------------------------------- initialize
@pytest.mark.parametrize("population", [False, True])
def test_initialize_params(data, population):
    X, y = _xy(data, population)
    m = _model(population).set_classes(y)
    coef, intercept = m.initialize_params(X, y)
    assert coef.shape == ((P, K, C) if population else (P, C))
    np.testing.assert_array_equal(coef, 0.0)
    yy = np.asarray(y).reshape(N, -1)
    freq = np.stack([np.bincount(c, minlength=C) for c in yy.T]) / N
    logf = np.log(freq)
    expect = logf - logf.mean(-1, keepdims=True)
    np.testing.assert_allclose(intercept, expect if population else expect[0], rtol=1e-5)


# ---------------------------------------------------------------------------- update loop
@pytest.mark.parametrize("population", [False, True])
def test_update_loop_with_batches_missing_a_class(data, population):
    X, y = _xy(data, population)
    yy = np.asarray(y)
    m = _model(population, regularizer_strength=1e-2)
    m.set_classes(y)
    # first batch: rows with no label 2 at all (for every output)
    no2 = ~np.any(yy.reshape(N, -1) == 2, axis=1)
    batches = [np.flatnonzero(no2)[:60]] + [np.arange(s, s + 100) for s in range(0, N, 100)]
    assert not np.any(yy[batches[0]] == 2)
    params = m.initialize_params(X[batches[0]], yy[batches[0]])
    state = m.initialize_optimizer_and_state(params, X[batches[0]], yy[batches[0]])
    np.testing.assert_array_equal(m.classes_, [0, 1, 2])
    full = ClassifierGLM if not population else ClassifierPopulationGLM
    ref = full(C, regularizer_strength=1e-2).set_classes(y)
    pen = Ridge().penalty

    def objective(params):
        return float(ref.compute_loss(params, X, y)) + float(pen(params[0], 1e-2))

    # from the batch's initialisation (class 2 has ~ -23 intercepts: far from the optimum)
    start = objective(params)
    for _ in range(3):
        for b in batches:
            params, state = m.update(params, state, X[b], yy[b], n_samples=N)
    assert objective(params) < 0.2 * start
    # from the full-data initialisation, in batches
    params = m.initialize_params(X, y)
    start = objective(params)
    state = m.initialize_optimizer_and_state(params, X[batches[0]], yy[batches[0]])
    for b in batches[1:]:
        params, state = m.update(params, state, X[b], yy[b], n_samples=N)
    assert objective(params) < start - 1e-2
    assert m.coef_.shape == params[0].shape
    np.testing.assert_allclose(m.dof_resid_, N - (C - 1) * P - (C - 1))
    with pytest.raises(TypeError):
        m.update(params, state, X, y, n_samples=float(N))
    with pytest.raises(TypeError):
        m.update(params, state, X, y, 1)


def test_update_needs_initialized_state(data):
    X, y, _ = data
    m = ClassifierGLM(C).set_classes(y)
    with pytest.raises(RuntimeError, match="initialize_optimizer_and_state"):
        m.update(_zero_params(False), None, X, y)


# ---------------------------------------------------------------------------- NaN rows
@pytest.mark.parametrize("population", [False, True])
def test_nan_rows_dropped(data, population):
    X, y = _xy(data, population)
    Xn = X.copy()
    yn = np.asarray(y, float).copy()
    Xn[3, 1] = np.nan
    Xn[10, 0] = np.inf
    yn[20] = np.nan
    keep = np.ones(N, bool)
    keep[[3, 10, 20]] = False
    a = _model(population, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(Xn, yn)
    b = _model(population, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(X[keep], y[keep])
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)
    np.testing.assert_allclose(a.intercept_, b.intercept_, atol=1e-6)
    for st in SCORE_TYPES:
        np.testing.assert_allclose(a.score(Xn, yn, st), b.score(X[keep], y[keep], st), rtol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        _model(population).fit(np.full_like(X, np.nan), y)


# ---------------------------------------------------------------------------- dict X
@pytest.mark.parametrize("population", [False, True])
def test_dict_design(data, fitted, fitted_pop, population):
    X, y = _xy(data, population)
    ref = fitted_pop if population else fitted
    Xd = {"b": X[:, 2:], "a": X[:, :2]}  # keys are stacked in sorted order
    m = _model(population, regularizer_strength=1e-2, solver_kwargs=TIGHT).fit(Xd, y)
    assert isinstance(m.coef_, dict) and set(m.coef_) == {"a", "b"}
    np.testing.assert_allclose(m.coef_["a"], ref.coef_[:2], atol=1e-5)
    np.testing.assert_allclose(m.coef_["b"], ref.coef_[2:], atol=1e-5)
    np.testing.assert_array_equal(m.predict(Xd), ref.predict(X))
    np.testing.assert_allclose(m.score(Xd, y), ref.score(X, y), rtol=1e-5)
    np.testing.assert_allclose(
        m.compute_loss((m.coef_, m.intercept_), Xd, y),
        ref.compute_loss((ref.coef_, ref.intercept_), X, y),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="structure"):
        m.predict(X)
    with pytest.raises(ValueError, match="structure"):
        m.predict({"a": X[:, :2]})
    with pytest.raises(ValueError):
        m.compute_loss((ref.coef_, ref.intercept_), Xd, y)
    with pytest.raises(ValueError, match="same number of samples"):
        _model(population).fit({"a": X, "b": X[:10]}, y)


# ---------------------------------------------------------------------------- feature_mask
def test_feature_mask(data):
    X, _, Y = data
    mask = np.ones((P, K, C))
    mask[0, 0, :] = 0
    mask[2, 1, 1] = 0
    m = ClassifierPopulationGLM(C, regularizer_strength=1e-2, feature_mask=mask).fit(X, Y)
    coef = np.asarray(m.coef_)
    assert np.all(coef[mask == 0] == 0.0)
    assert np.all(coef[mask == 1] != 0.0)
    np.testing.assert_array_equal(m.feature_mask, mask)
    with pytest.raises(AttributeError):
        m.feature_mask = np.ones((P, K, C))
    with pytest.raises(ValueError, match="0s and 1s"):
        ClassifierPopulationGLM(C, feature_mask=np.full((P, K, C), 0.5))
    # as in nemos, the shape is checked against the data at fit, not when set
    with pytest.raises(ValueError, match="shape"):
        ClassifierPopulationGLM(C, feature_mask=np.ones((P, K))).fit(X, Y)
    with pytest.raises(ValueError, match="shape"):
        ClassifierPopulationGLM(C, feature_mask=np.ones((P, K + 1, C))).fit(X, Y)
    with pytest.raises(ValueError, match="structure"):
        ClassifierPopulationGLM(C, feature_mask={"a": np.ones((P, K, C))}).fit(X, Y)


def test_feature_mask_dict(data):
    X, _, Y = data
    Xd = {"a": X[:, :2], "b": X[:, 2:]}
    mask = {"a": np.ones((2, K, C)), "b": np.zeros((1, K, C))}
    m = ClassifierPopulationGLM(C, regularizer_strength=1e-2, feature_mask=mask).fit(Xd, Y)
    np.testing.assert_array_equal(m.coef_["b"], 0.0)
    assert np.all(np.asarray(m.coef_["a"]) != 0.0)
    ref = ClassifierPopulationGLM(C, regularizer_strength=1e-2).fit(X[:, :2], Y)
    np.testing.assert_allclose(m.coef_["a"], ref.coef_, atol=1e-4)
    with pytest.raises(ValueError, match="structure"):
        ClassifierPopulationGLM(C, feature_mask=mask).fit(X, Y)


@pytest.mark.parametrize("reg", ["Lasso", "GroupLasso"])
def test_feature_mask_with_proximal(data, reg):
    X, _, Y = data
    mask = np.ones((P, K, C))
    mask[1] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = ClassifierPopulationGLM(
            C, regularizer=reg, regularizer_strength=1e-3, feature_mask=mask
        ).fit(X, Y)
    assert np.all(np.asarray(m.coef_)[1] == 0.0)


# ---------------------------------------------------------------------------- params API
def test_get_set_params_and_clone(data):
    X, _, Y = data
    mask = np.ones((P, K, C))
    m = ClassifierPopulationGLM(
        C,
        regularizer="Lasso",
        regularizer_strength=0.1,
        solver_kwargs={"maxiter": 50},
        feature_mask=mask,
    )
    params = m.get_params(deep=False)
    assert set(params) == {
        "n_classes",
        "inverse_link_function",
        "regularizer",
        "regularizer_strength",
        "solver_name",
        "solver_kwargs",
        "feature_mask",
    }
    assert params["n_classes"] == C and params["regularizer_strength"] == 0.1
    assert isinstance(params["regularizer"], Lasso)
    assert params["inverse_link_function"] is jax.nn.log_softmax
    assert set(ClassifierGLM().get_params(deep=False)) == set(params) - {"feature_mask"}
    assert m.solver_name == "ProximalGradient"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m.fit(X, Y)
    c = sklearn.base.clone(m)
    assert c.coef_ is None and c.intercept_ is None and c.classes_ is None
    cp = c.get_params(deep=False)
    for key in ("n_classes", "regularizer", "regularizer_strength", "solver_name", "solver_kwargs"):
        assert cp[key] == params[key], key
    np.testing.assert_array_equal(cp["feature_mask"], mask)
    assert cp["inverse_link_function"] is jax.nn.log_softmax

    assert m.set_params(regularizer_strength=0.5, n_classes=4) is m
    assert m.regularizer_strength == 0.5 and m.n_classes == 4
    m2 = ClassifierGLM(C).set_params(regularizer="ElasticNet", regularizer_strength=(0.1, 0.3))
    assert isinstance(m2.regularizer, ElasticNet) and m2.regularizer_strength == (0.1, 0.3)
    with pytest.raises(ValueError, match="Invalid parameter"):
        m2.set_params(alpha=1.0)
    deep = ClassifierGLM(C, regularizer=GroupLasso()).get_params(deep=True)
    assert "regularizer__mask" in deep


def test_inverse_link(data):
    assert ClassifierGLM(C).inverse_link_function is jax.nn.log_softmax
    assert ClassifierGLM(C, inverse_link_function=jax.nn.log_softmax)
    with pytest.raises(ValueError, match="log_softmax"):
        ClassifierGLM(C, inverse_link_function=jax.nn.softmax)


# ---------------------------------------------------------------------------- solvers
def test_solver_defaults_and_compatibility():
    assert ClassifierGLM().regularizer == Ridge()
    assert ClassifierGLM().solver_name == "LBFGS"
    assert ClassifierGLM(regularizer="UnRegularized").solver_name == "LBFGS"
    for reg in ("Lasso", "ElasticNet", "GroupLasso"):
        assert ClassifierGLM(regularizer=reg).solver_name == "ProximalGradient"
        with pytest.raises(ValueError, match="cannot be used"):
            ClassifierGLM(regularizer=reg, solver_name="LBFGS")
        with pytest.raises(ValueError, match="cannot be used"):
            ClassifierGLM(regularizer=reg, solver_name="GradientDescent")
    for name in ("LBFGS", "GradientDescent", "ProximalGradient", "Newton", "auto"):
        assert ClassifierGLM(solver_name=name).solver_name == name
    for reg in ("Lasso", "ElasticNet", "GroupLasso"):
        assert ClassifierGLM(regularizer=reg, solver_name="Newton").solver_name == "Newton"
    with pytest.raises(ValueError, match="Unknown solver 'BFGS'"):
        ClassifierGLM(solver_name="BFGS")
    with pytest.raises(
        ValueError, match=r"\['hessian_rows'\] are not accepted with solver_name='auto'"
    ):
        ClassifierGLM(solver_name="auto", solver_kwargs={"hessian_rows": 100})
    with pytest.raises(TypeError):
        ClassifierGLM(solver_name=3)
    with pytest.raises(ValueError, match="solver_kwargs"):
        ClassifierGLM(solver_kwargs={"not_an_option": 1})
    with pytest.raises(ValueError, match=r"[Uu]nknown regularizer"):
        ClassifierGLM(regularizer="Dropout")
    m = ClassifierGLM(solver_name="LBFGS")
    with pytest.raises(ValueError, match="cannot be used"):
        m.regularizer = "Lasso"
    with pytest.warns(UserWarning, match="UnRegularized"):
        ClassifierGLM(regularizer="UnRegularized", regularizer_strength=1.0)
    with pytest.raises(ValueError):
        ClassifierGLM(regularizer_strength=-1.0)


@pytest.mark.parametrize(
    "reg, strength, solver",
    [
        ("UnRegularized", None, None),
        ("Ridge", 1e-2, None),
        ("Ridge", 1e-2, "GradientDescent"),
        ("Ridge", 1e-2, "ProximalGradient"),
        ("Lasso", 1e-2, None),
        ("ElasticNet", (1e-2, 0.5), None),
        ("GroupLasso", 1e-2, None),
    ],
)
def test_every_regularizer_fits(data, reg, strength, solver):
    X, _, Y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = ClassifierPopulationGLM(
            C, regularizer=reg, regularizer_strength=strength, solver_name=solver
        ).fit(X, Y)
    hist = m.fit_history_
    assert hist[-1]["objective"] <= hist[0]["objective"]
    assert np.isfinite(m.score(X, Y))
    if reg in ("Lasso", "ElasticNet", "GroupLasso"):
        nz = np.sum(~np.isclose(np.asarray(m.coef_), 0.0), axis=(0, 2))
        np.testing.assert_allclose(m.dof_resid_, N - nz - (C - 1))
    elif reg == "UnRegularized":
        np.testing.assert_allclose(m.dof_resid_, N - P * (C - 1) - (C - 1))


def test_group_lasso_user_mask_zeroes_groups(data):
    X, _, Y = data
    mask = np.zeros((2, P, K, C))
    mask[0, :2] = 1
    mask[1, 2:] = 1
    m = ClassifierPopulationGLM(
        C, regularizer=GroupLasso(mask=mask), regularizer_strength=[1e-3, 10.0]
    ).fit(X, Y)
    assert np.all(np.asarray(m.coef_)[2:] == 0.0)
    assert np.any(np.asarray(m.coef_)[:2] != 0.0)


def test_non_convergence_warning(data):
    X, y, _ = data
    with pytest.warns(RuntimeWarning, match="converge"):
        m = ClassifierGLM(C, solver_kwargs={"maxiter": 1}).fit(X, y)
    assert len(m.fit_history_) == 1


def test_fit_with_init_params(data, fitted):
    X, y, _ = data
    m = ClassifierGLM(C, regularizer_strength=1e-2, solver_kwargs=TIGHT)
    m.fit(X, y, init_params=(fitted.coef_, fitted.intercept_))
    np.testing.assert_allclose(m.coef_, fitted.coef_, atol=1e-4)
    assert len(m.fit_history_) <= 3


# ---------------------------------------------------------------------------- shape errors
@pytest.mark.parametrize("population", [False, True])
def test_shape_errors(data, population):
    X, y = _xy(data, population)
    m = _model(population)
    with pytest.raises(ValueError, match=r"X has 10, y has 400"):
        m.fit(X[:10], y)
    bad_y = y[:, 0] if population else np.stack([y, y], 1)
    with pytest.raises(ValueError, match=r"dimensional.*shape"):
        m.fit(X, bad_y)
    with pytest.raises(ValueError, match=r"2-dimensional.*\(400,\)"):
        m.fit(X[:, 0], y)
    coef, icpt = _zero_params(population)
    with pytest.raises(ValueError, match="coef has 2, X has 3"):
        m.fit(X, y, init_params=(coef[:2], icpt))
    with pytest.raises(ValueError, match="n_classes=3"):
        m.fit(X, y, init_params=(coef, icpt[..., :2]))
    with pytest.raises(ValueError, match="shape"):
        m.fit(X, y, init_params=(coef[..., None], icpt))
    with pytest.raises(ValueError, match="pair"):
        m.fit(X, y, init_params=coef)
    if population:
        with pytest.raises(ValueError, match="outputs"):
            m.fit(X, y, init_params=(coef[:, :1], icpt[:1]))
    with pytest.raises(ValueError, match="unique class labels"):
        m.fit(X, np.zeros_like(y))
    m.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])
    with pytest.raises(ValueError, match="features"):
        m.score(X[:, :2], y)


def test_public_names():
    assert distglm.ClassifierGLM is ClassifierGLM
    assert isinstance(ClassifierGLM(regularizer="UnRegularized").regularizer, UnRegularized)
    assert "ClassifierGLM" in repr(ClassifierGLM(C))


def test_penalty_compiles_once_across_fits(data):
    """Equal models reuse the compiled penalty and prox (no recompilation per fit)."""
    from distglm.solve import penalty as objective

    X, _, Y = data
    ClassifierPopulationGLM(C, regularizer="Lasso", regularizer_strength=1e-3).fit(X, Y)
    sizes = (objective._PENALTY_VALUE._cache_size(), objective._PENALTY_PROX._cache_size())
    ClassifierPopulationGLM(C, regularizer="Lasso", regularizer_strength=1e-3).fit(X, Y)
    assert (objective._PENALTY_VALUE._cache_size(), objective._PENALTY_PROX._cache_size()) == sizes
