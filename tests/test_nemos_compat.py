"""nemos 0.2.8's public behaviour beyond the estimators' own methods: the observation model,
nemos' regularizer objects and link, and the parameters nemos code reads back."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import distglm

nemos = pytest.importorskip("nemos")

pytestmark = pytest.mark.parity


def _one_hot_problem(seed, n=40, k=None, c=3):
    rng = np.random.default_rng(seed)
    shape = (n, c) if k is None else (n, k, c)
    lp = np.asarray(jax.nn.log_softmax(rng.standard_normal(shape), axis=-1), np.float32)
    codes = rng.integers(0, c, shape[:-1])
    y = np.eye(c, dtype=np.float32)[codes]
    return y, lp


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), outputs=st.sampled_from([None, 1, 4]))
def test_observation_model_matches_nemos(seed, outputs):
    y, lp = _one_hot_problem(seed, k=outputs)
    ours = distglm.ClassifierPopulationGLM(3).observation_model
    ref = nemos.observation_models.CategoricalObservations()
    for name in ("log_likelihood", "likelihood"):
        np.testing.assert_allclose(getattr(ours, name)(y, lp), getattr(ref, name)(y, lp), rtol=2e-6)
    np.testing.assert_allclose(ours.deviance(y, lp), ref.deviance(y, lp), rtol=2e-6)
    for score in ("pseudo-r2-McFadden", "pseudo-r2-Cohen"):
        np.testing.assert_allclose(
            ours.pseudo_r2(y, lp, score_type=score),
            ref.pseudo_r2(y, lp, score_type=score),
            rtol=2e-5,
            atol=1e-6,
        )
    np.testing.assert_array_equal(ours.estimate_scale(y, lp, 3), ref.estimate_scale(y, lp, 3))
    key = jax.random.PRNGKey(seed)
    np.testing.assert_array_equal(ours.sample_generator(key, lp), ref.sample_generator(key, lp))
    assert ours.scale == ref.scale == 1.0


def test_observation_model_link_and_errors():
    obs = distglm.ClassifierGLM(2).observation_model
    assert obs.default_inverse_link_function is jax.nn.log_softmax
    y, lp = _one_hot_problem(0)
    with pytest.raises(NotImplementedError, match="pseudo-r2-McFadden"):
        obs.pseudo_r2(y, lp, score_type="accuracy")
    with pytest.raises(ValueError, match=r"same shape.*\(40, 3\).*\(40, 2\)"):
        obs.log_likelihood(y, lp[:, :2])


def test_observation_model_scores_a_fitted_model_as_score_does():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 4)).astype(np.float32)
    y = rng.integers(0, 3, (300, 2))
    model = distglm.ClassifierPopulationGLM(3).fit(X, y)
    lp = np.asarray(model.predict_proba(X, return_type="log-proba"))
    onehot = np.eye(3, dtype=np.float32)[y]
    obs = model.observation_model
    np.testing.assert_allclose(
        obs.pseudo_r2(onehot, lp), model.score(X, y, score_type="pseudo-r2-McFadden"), atol=1e-6
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: nemos.regularizer.Ridge(),
        lambda: nemos.regularizer.Lasso(),
        lambda: nemos.regularizer.ElasticNet(),
        lambda: nemos.regularizer.UnRegularized(),
        lambda: nemos.regularizer.GroupLasso(mask=np.array([[1, 1, 0, 0], [0, 0, 1, 1]])),
    ],
)
def test_nemos_regularizer_objects_are_translated(make):
    reg = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = distglm.ClassifierGLM(2, regularizer=reg)
    assert type(model.regularizer).__name__ == type(reg).__name__
    assert type(model.regularizer).__module__.startswith("distglm")
    if type(reg).__name__ == "GroupLasso":
        np.testing.assert_array_equal(model.regularizer.mask, reg.mask)


def test_nemos_link_and_link_name_accepted():
    nemos_link = nemos.glm.ClassifierGLM(2).inverse_link_function
    for link in (nemos_link, "log_softmax", jax.nn.log_softmax, None):
        assert distglm.ClassifierGLM(2, inverse_link_function=link).inverse_link_function is (
            jax.nn.log_softmax
        )
    with pytest.raises(ValueError, match="log-softmax"):
        distglm.ClassifierGLM(2, inverse_link_function=jax.nn.softmax)
    with pytest.raises(ValueError, match="log-softmax"):
        distglm.ClassifierGLM(2, inverse_link_function="softmax")


def test_fit_with_nemos_regularizer_matches_nemos_model():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 3))
    y = (X[:, 0] + rng.standard_normal(400) > 0).astype(int)
    kwargs = {"regularizer_strength": 0.1, "solver_kwargs": {"tol": 1e-12, "maxiter": 5000}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nemos.glm.ClassifierGLM(
            2, regularizer=nemos.regularizer.Ridge(), solver_name="LBFGS", **kwargs
        ).fit(X, y)
    ours = distglm.ClassifierGLM(2, regularizer=nemos.regularizer.Ridge(), **kwargs).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=2e-4, atol=2e-5)


def test_a_string_x_that_names_no_store_is_refused():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 3))
    model = distglm.ClassifierGLM(2).fit(X, np.arange(60) % 2)
    for call in (model.predict, model.predict_proba):
        with pytest.raises(FileNotFoundError, match=r"'invalid'.*pass an array"):
            call("invalid")


@pytest.mark.parametrize("solver", ["GradientDescent", "ProximalGradient", "LBFGS"])
def test_unknown_solver_options_are_refused_by_name_as_nemos_does(solver):
    for cls in (nemos.glm.ClassifierGLM, distglm.ClassifierGLM):
        with pytest.raises(NameError, match=r"kwargs \{'tols'\} in solver_kwargs not a kwarg for"):
            cls(2, solver_name=solver, solver_kwargs={"tols": 1e-6})
    # distglm's error is a ValueError too, like its other bad arguments
    with pytest.raises(ValueError, match=r"\{'tols'\}"):
        distglm.ClassifierGLM(2, solver_name=solver, solver_kwargs={"tol": 1e-6, "tols": 1e-6})


@pytest.mark.parametrize(
    ("solver", "options"),
    [
        ("GradientDescent", {"stepsize": 0.5, "acceleration": False}),
        ("GradientDescent", {"stepsize": 0.0, "acceleration": True}),
        ("ProximalGradient", {"stepsize": 0.5}),
        ("LBFGS", {"memory_size": 5}),
    ],
)
def test_nemos_solver_options_are_taken_and_reach_nemos_optimum(solver, options):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 3))
    y = (X[:, 0] - X[:, 1] + rng.standard_normal(300) > 0).astype(int)
    kwargs = {
        "regularizer": "Ridge",
        "regularizer_strength": 0.1,
        "solver_name": solver,
        "solver_kwargs": {"tol": 1e-10, "maxiter": 20000, **options},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nemos.glm.ClassifierGLM(2, **kwargs).fit(X, y)
    ours = distglm.ClassifierGLM(2, **kwargs).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-3, atol=1e-4)


def test_a_fixed_stepsize_is_the_step_taken():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 3))
    y = (X[:, 0] > 0).astype(int)

    def coef(stepsize):
        options = {"stepsize": stepsize, "maxiter": 1, "acceleration": False}
        model = distglm.ClassifierGLM(2, solver_name="GradientDescent", solver_kwargs=options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one step does not converge
            return model.fit(X, y).coef_

    # one plain gradient step from zero is linear in the step
    np.testing.assert_allclose(coef(0.2), 2 * coef(0.1), rtol=1e-5, atol=1e-7)


def _both_raise(exc, match, call):
    """``call(module)`` raises ``exc`` with nemos' classes and with distglm's."""
    for module in (nemos.glm, distglm):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(exc, match=match):
                call(module)


def test_feature_mask_shape_is_checked_at_fit_as_nemos_does():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, (40, 2))
    for shape in [(3, 2), (5, 2, 2)]:
        for module in (nemos.glm, distglm):
            model = module.ClassifierPopulationGLM(2, feature_mask=np.ones(shape))  # accepted
        # ... and refused at fit, naming coef's shape
        _both_raise(
            ValueError,
            r"feature_mask.*must match coef.{0,2} shape.*\(3, 2, 2\)",
            lambda m, s=shape: m.ClassifierPopulationGLM(2, feature_mask=np.ones(s)).fit(X, y),
        )
    assert model.feature_mask.shape == (5, 2, 2)


def test_structure_mismatches_are_type_errors_as_in_nemos():
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    X_tree = {"a": X[:, :2], "b": X[:, 2:]}
    _both_raise(
        TypeError,
        "feature_mask and (coef|X) must have the same structure",
        lambda m: m.ClassifierPopulationGLM(2, feature_mask={"a": np.ones((3, 1, 2))}).fit(
            X, y[:, None]
        ),
    )
    tree_model = distglm.ClassifierGLM(2).fit(X_tree, y)
    ref_tree_model = nemos.glm.ClassifierGLM(2).fit(nemos.pytrees.FeaturePytree(**X_tree), y)
    array_model = distglm.ClassifierGLM(2).fit(X, y)
    for model, X_other in [(tree_model, X), (ref_tree_model, X), (array_model, X_tree)]:
        with pytest.raises(TypeError, match="structure"):
            model.predict(X_other)
    # distglm's structure errors stay ValueErrors too, as they were
    with pytest.raises(ValueError, match="same structure"):
        tree_model.predict_proba(X)


# (exception type, message part both libraries share, init_params from (coef shape, intercept
# shape)): the malformed init_params nemos 0.2.8's own tests pass to fit
_BAD_INIT_PARAMS = {
    "one element": (ValueError, "Params must have length two", lambda c, b: [[np.zeros(c)]]),
    "three elements": (
        ValueError,
        "Params must have length two",
        lambda c, b: (np.zeros(c), np.zeros(b), np.zeros(b)),
    ),
    "a number": (ValueError, "Params must have length two", lambda c, b: 0),
    "a dict": (
        TypeError,
        "GLM params must be a tuple/list of length two",
        lambda c, b: {"p1": np.zeros(c), "p2": np.zeros(b)},
    ),
    "an array of two rows": (
        TypeError,
        "GLM params must be a tuple/list of length two",
        lambda c, b: np.zeros((2, *b)),
    ),
    "a set": (TypeError, "GLM params must be a tuple/list of length two", lambda c, b: {0, 1}),
    "a dict coef for an array X": (
        TypeError,
        "X and coef have mismatched structure",
        lambda c, b: [{"p1": np.zeros(c)}, np.zeros(b)],
    ),
    "a FeaturePytree coef for an array X": (
        TypeError,
        "X and coef have mismatched structure",
        lambda c, b: [nemos.pytrees.FeaturePytree(p1=np.zeros(c)), np.zeros(b)],
    ),
    "a string intercept": (
        TypeError,
        "Failed to convert parameters to JAX arrays",
        lambda c, b: [np.zeros(c), ""],
    ),
    "a string coef": (
        TypeError,
        "Failed to convert parameters to JAX arrays",
        lambda c, b: ["", np.zeros(b)],
    ),
    "an empty coef": (
        ValueError,
        "Invalid parameter dimensionality",
        lambda c, b: (np.array([]), np.zeros(b)),
    ),
    "coef with an extra axis": (
        ValueError,
        "Invalid parameter dimensionality",
        lambda c, b: (np.zeros((*c, 1)), np.zeros(b)),
    ),
    "coef without the class axis": (
        ValueError,
        "Invalid parameter dimensionality",
        lambda c, b: (np.zeros(c[:-1]), np.zeros(b)),
    ),
    "intercept with an extra axis": (
        ValueError,
        "Invalid parameter dimensionality",
        lambda c, b: (np.zeros(c), np.zeros((*b, 1))),
    ),
    "a scalar intercept": (
        ValueError,
        "Invalid parameter dimensionality",
        lambda c, b: (np.zeros(c), np.float32(0.0)),
    ),
    "None for both": (ValueError, "Invalid parameter dimensionality", lambda c, b: (None, None)),
    "one feature too few": (
        ValueError,
        "Inconsistent number of features",
        lambda c, b: (np.zeros((c[0] - 1, *c[1:])), np.zeros(b)),
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_INIT_PARAMS))
@pytest.mark.parametrize("population", [False, True])
def test_malformed_init_params_raise_as_in_nemos(case, population):
    exc, match, make = _BAD_INIT_PARAMS[case]
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 4))
    y = np.arange(30) % 3
    name = "ClassifierPopulationGLM" if population else "ClassifierGLM"
    coef_shape, icpt_shape = ((4, 2, 3), (2, 3)) if population else ((4, 3), (3,))
    y = np.stack([y, y[::-1]], axis=1) if population else y
    params = make(coef_shape, icpt_shape)
    _both_raise(
        exc, match, lambda m: getattr(m, name)(3, solver_kwargs={"maxiter": 2}).fit(X, y, params)
    )
    # the batch API checks them the same way
    batch_model = getattr(distglm, name)(3).set_classes(np.arange(3))
    with pytest.raises(exc, match=match):
        batch_model.initialize_solver_and_state(X, y, params)


def _hand_set(module, mask):
    """A population model with a mask, then coef_/intercept_ (5 features, 3 outputs, 3 classes)
    set by hand, as nemos' own tests build one."""
    model = module.ClassifierPopulationGLM(3, feature_mask=mask)
    model.set_classes(np.arange(3))
    model.coef_ = np.zeros((5, 3, 3))
    model.intercept_ = np.zeros((3, 3))
    return model


@pytest.mark.parametrize("method", ["predict", "score"])
def test_feature_mask_is_checked_against_coef_at_predict_and_score(method):
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((20, 5)), rng.integers(0, 3, (20, 3))
    args = (X,) if method == "predict" else (X, y)
    _both_raise(
        ValueError,
        "Inconsistent feature mask shape",
        lambda m: getattr(_hand_set(m, np.ones((5, 3))), method)(*args),
    )
    _both_raise(
        TypeError,
        "feature_mask and (X|coef) must have the same structure",
        lambda m: getattr(_hand_set(m, {"a": np.ones((5, 3, 3))}), method)(*args),
    )
    # the right mask passes
    assert getattr(_hand_set(distglm, np.ones((5, 3, 3))), method)(*args) is not None


def test_error_messages_carry_nemos_wording():
    rng = np.random.default_rng(9)
    X, y = rng.standard_normal((30, 2)), np.arange(30) % 3
    _both_raise(
        ValueError, "The number of classes must be an integer", lambda m: m.ClassifierGLM(0)
    )
    _both_raise(
        ValueError, "Found only 2 unique class labels", lambda m: m.ClassifierGLM(3).fit(X, y % 2)
    )
    _both_raise(
        ValueError,
        "Found 4 unique class labels",
        lambda m: m.ClassifierGLM(3).fit(X, np.arange(30) % 4),
    )
    _both_raise(
        ValueError,
        "Unrecognized return type",
        lambda m: m.ClassifierGLM(3).fit(X, y).predict_proba(X, return_type="odds"),
    )
    _both_raise(
        ValueError,
        "'feature_mask' must contain only 0s and 1s",
        lambda m: m.ClassifierPopulationGLM(3, feature_mask=np.full((2, 1, 3), 0.5)),
    )
    X_tree = {"a": X[:, :1], "b": X[:, 1:]}
    model = distglm.ClassifierGLM(3).fit(X_tree, y)
    with pytest.raises(ValueError, match=r"X must be 2-dimensional.*X\['a'\]"):
        model.predict_proba({"a": X[:, 0], "b": X[:, 1:]})
