"""The usage examples of the API contract (nemos' classifier docstrings), run against distglm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distglm

X4 = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
Y4 = jnp.array([0, 0, 1, 1])
X6 = jnp.array([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [4.0, 5.0], [5.0, 6.0], [6.0, 7.0]])


pytestmark = pytest.mark.slow


def test_set_classes_then_batched_updates():
    model = distglm.ClassifierGLM(3)
    X = np.random.default_rng(0).standard_normal((100, 5))
    X_batch1, y_batch1 = X[:5], np.array([0, 1, 0, 1, 0])  # class 2 missing from the batch
    with pytest.raises(RuntimeError, match="set_classes"):
        model.initialize_params(X_batch1, y_batch1)
    assert model.set_classes(np.array([0, 1, 2])) is model
    init_params = model.initialize_params(X_batch1, y_batch1)
    state = model.initialize_optimizer_and_state(init_params, X_batch1, y_batch1)
    (coef, intercept), state = model.update(init_params, state, X_batch1, y_batch1)
    assert coef.shape == (5, 3) and intercept.shape == (3,)


def test_classifier_glm_examples():
    model = distglm.ClassifierGLM(n_classes=2).fit(X4, Y4)
    assert model.coef_.shape == (2, 2)
    assert model.predict(X4).shape == (4,)
    assert model.predict_proba(X4, return_type="proba").shape == (4, 2)
    assert model.predict_proba(X4, return_type="log-proba").shape == (4, 2)
    simulated_y, _ = model.simulate(jax.random.key(0), X4)
    assert simulated_y.shape == (4,)
    model.score(X4, Y4)
    coef, intercept = distglm.ClassifierGLM(n_classes=2).set_classes(Y4).initialize_params(X4, Y4)
    assert coef.shape == (2, 2) and intercept.shape == (2,)

    y_str = np.array(["cat", "cat", "dog", "dog"])
    model = distglm.ClassifierGLM(n_classes=2).fit(X4, y_str)
    np.testing.assert_array_equal(model.classes_, np.array(["cat", "dog"]))
    assert model.classes_.dtype == np.dtype("<U3")
    np.testing.assert_array_equal(model.predict(X4), y_str)

    y6 = jnp.array([0, 0, 1, 1, 2, 2])
    assert distglm.ClassifierGLM(n_classes=3).fit(X6, y6).coef_.shape == (2, 3)
    model = distglm.ClassifierGLM(n_classes=2, regularizer="Ridge", regularizer_strength=0.5)
    assert repr(model.regularizer) == "Ridge()"
    X_dict = {"feature_1": X6[:, :1], "feature_2": X6[:, 1:]}
    assert type(distglm.ClassifierGLM(n_classes=3).fit(X_dict, y6).coef_) is dict


def test_classifier_population_glm_examples():
    y = jnp.array([[0, 0], [0, 1], [1, 0], [1, 2], [2, 1], [2, 2]])
    model = distglm.ClassifierPopulationGLM(n_classes=3).fit(X6, y)
    assert model.coef_.shape == (2, 2, 3)
    assert model.predict(X6).shape == (6, 2)
    assert model.predict_proba(X6, return_type="proba").shape == (6, 2, 3)
    model.score(X6, y)

    y_str = np.array([["a", "a"], ["a", "b"], ["b", "a"], ["b", "c"], ["c", "b"], ["c", "c"]])
    model = distglm.ClassifierPopulationGLM(n_classes=3).fit(X6, y_str)
    np.testing.assert_array_equal(model.classes_, np.array(["a", "b", "c"]))
    assert model.predict(X6).shape == (6, 2)

    feature_mask = jnp.array([[[1, 1, 1], [0, 0, 0]], [[1, 1, 1], [1, 1, 1]]])
    model = distglm.ClassifierPopulationGLM(n_classes=3, feature_mask=feature_mask).fit(X6, y)
    assert np.all(np.asarray(model.coef_)[0, 1] == 0.0)
    assert (
        repr(
            distglm.ClassifierPopulationGLM(
                3, regularizer="Ridge", regularizer_strength=0.5
            ).regularizer
        )
        == "Ridge()"
    )
    X_dict = {"feature_1": X6[:, :1], "feature_2": X6[:, 1:]}
    assert type(distglm.ClassifierPopulationGLM(n_classes=3).fit(X_dict, y).coef_) is dict
