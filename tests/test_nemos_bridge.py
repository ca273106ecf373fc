"""The nemos 0.2.8 round trip: files nemos' ``save_params`` wrote, ``to_nemos``, ``from_nemos``.

Both directions are checked by behaviour against nemos itself: predictions equal, probabilities
and scores to float32 rounding, with string labels, a feature mask and dict-of-arrays X (nemos
takes those as a ``FeaturePytree``).
"""

from __future__ import annotations

import warnings

import nemos as nmo
import numpy as np
import pytest
import xarray as xr

import distglm
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.exceptions import FileFormatError

from helpers import softmax_labels

pytestmark = [pytest.mark.parity, pytest.mark.slow]

N, P, K, C = 400, 4, 2, 3
RNG = np.random.default_rng(11)
X = RNG.standard_normal((N, P)).astype(np.float32)
CODES = softmax_labels(RNG, X, RNG.standard_normal((P, K, C)), np.zeros((K, C)))
STRINGS = np.array(["left", "nogo", "right"])
XD = {"a": X[:, :3], "b": X[:, 3:]}
MASK = np.ones((P, K, C))
MASK[0, 1] = 0
MASK_D = {"a": MASK[:3], "b": MASK[3:]}
NEMOS_KW = {"tol": 1e-8, "maxiter": 40}  # convergence does not matter here


def _nemos_x(X):
    return nmo.pytrees.FeaturePytree(**X) if isinstance(X, dict) else X


def _agree(ours, theirs, X, y):
    """Our model and a nemos one predict alike (labels equal, the rest to float32 rounding)."""
    Xn = _nemos_x(X)
    assert np.array_equal(np.asarray(ours.predict(X)), np.asarray(theirs.predict(Xn)))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(Xn), atol=2e-6)
    np.testing.assert_allclose(
        ours.predict_proba(X, "proba"), theirs.predict_proba(Xn, return_type="proba"), atol=2e-6
    )
    for score_type in ("log-likelihood", "pseudo-r2-McFadden"):
        np.testing.assert_allclose(
            ours.score(X, y, score_type=score_type),
            theirs.score(Xn, y, score_type=score_type),
            rtol=2e-6,
        )


def _fit_nemos(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(_nemos_x(X), y)


# ---------------------------------------------------------------------------- nemos files
NEMOS_FILES = {
    "single, strings, Ridge": (
        lambda: nmo.glm.ClassifierGLM(
            C, regularizer="Ridge", regularizer_strength=0.1, solver_kwargs=NEMOS_KW
        ),
        X,
        STRINGS[CODES[:, 0]],
    ),
    "single, bools, UnRegularized": (
        lambda: nmo.glm.ClassifierGLM(2, solver_name="LBFGS", solver_kwargs=NEMOS_KW),
        X,
        CODES[:, 0] == 1,
    ),
    "population, floats, ElasticNet pair, mask": (
        lambda: nmo.glm.ClassifierPopulationGLM(
            C,
            regularizer="ElasticNet",
            regularizer_strength=(0.05, 0.3),
            solver_name="ProximalGradient",
            feature_mask=MASK,
            solver_kwargs=NEMOS_KW,
        ),
        X,
        CODES * 0.5,
    ),
    "population, ints, dict X, dict mask": (
        lambda: nmo.glm.ClassifierPopulationGLM(
            C,
            regularizer="Lasso",
            regularizer_strength=0.01,
            solver_name="ProximalGradient",
            feature_mask=MASK_D,
            solver_kwargs=NEMOS_KW,
        ),
        XD,
        CODES * 10 - 5,
    ),
}


@pytest.mark.parametrize("case", sorted(NEMOS_FILES))
def test_files_nemos_saved_load(case, tmp_path):
    make, Xin, y = NEMOS_FILES[case]
    theirs = _fit_nemos(make(), Xin, y)
    path = tmp_path / "nemos.npz"
    theirs.save_params(path)
    ours = distglm.load_model(path)
    assert type(ours).__name__ == type(theirs).__name__
    assert type(ours.regularizer).__name__ == type(theirs.regularizer).__name__
    assert ours.classes_.dtype == np.asarray(theirs.classes_).dtype
    assert np.array_equal(ours.classes_, theirs.classes_)
    assert ours.solver_name == theirs.solver_name.split("[")[0]
    if isinstance(Xin, dict):
        assert sorted(ours.coef_) == sorted(theirs.coef_)
    np.testing.assert_array_equal(
        np.asarray(ours.dof_resid_, float), np.asarray(theirs.dof_resid_, float)
    )
    assert ours.solver_state_ is None and ours.fit_history_ is None
    _agree(ours, theirs, Xin, y)


def test_nemos_group_lasso_file_is_refused_for_its_pickled_mask(tmp_path):
    mask = np.zeros((2, P, K, C))
    mask[0, :2], mask[1, 2:] = 1, 1
    theirs = nmo.glm.ClassifierPopulationGLM(
        C,
        regularizer=nmo.regularizer.GroupLasso(mask=mask),
        regularizer_strength=0.1,
        solver_name="ProximalGradient",
        solver_kwargs={"maxiter": 20},
    )
    _fit_nemos(theirs, X, CODES)
    theirs.save_params(tmp_path / "g.npz")
    with pytest.raises(FileFormatError, match=r"regularizer.*mask.*pickled Python object"):
        distglm.load_model(tmp_path / "g.npz")


# ---------------------------------------------------------------------------- live models
def test_to_nemos_and_back_with_strings_mask_and_dict_x():
    ours = ClassifierPopulationGLM(
        C, regularizer_strength=1e-2, feature_mask=MASK_D, solver_kwargs={"tol": 1e-9}
    ).fit(XD, STRINGS[CODES])
    theirs = ours.to_nemos()
    assert isinstance(theirs, nmo.glm.ClassifierPopulationGLM)
    assert isinstance(theirs.coef_, dict) and sorted(theirs.coef_) == ["a", "b"]
    assert theirs.solver_name.startswith("LBFGS") and theirs.solver_kwargs == {"tol": 1e-9}
    _agree(ours, theirs, XD, STRINGS[CODES])
    back = ClassifierPopulationGLM.from_nemos(theirs)
    assert all(np.array_equal(back.coef_[k], ours.coef_[k]) for k in ("a", "b"))
    assert np.array_equal(back.predict_proba(XD), ours.predict_proba(XD))
    assert np.array_equal(back.predict(XD), ours.predict(XD))
    assert back.regularizer == ours.regularizer and back.regularizer_strength == 1e-2


def test_from_nemos_fitted_population_and_single():
    theirs = _fit_nemos(
        nmo.glm.ClassifierPopulationGLM(
            C,
            regularizer="Ridge",
            regularizer_strength=0.05,
            feature_mask=MASK_D,
            solver_kwargs=NEMOS_KW,
        ),
        XD,
        STRINGS[CODES],
    )
    ours = ClassifierPopulationGLM.from_nemos(theirs)
    _agree(ours, theirs, XD, STRINGS[CODES])
    assert ours.fit_history_ is None and ours.n_passes_ is None
    again = ours.to_nemos()
    _agree(ours, again, XD, STRINGS[CODES])

    single = _fit_nemos(nmo.glm.ClassifierGLM(C, solver_kwargs=NEMOS_KW), X, STRINGS[CODES[:, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything crosses: nothing to warn about
        plain = ClassifierGLM.from_nemos(single)
    _agree(plain, single, X, STRINGS[CODES[:, 0]])
    unfitted = ClassifierGLM.from_nemos(nmo.glm.ClassifierGLM(4, regularizer="Lasso"))
    assert unfitted.coef_ is None and unfitted.n_classes == 4
    with pytest.raises(TypeError, match=r"takes a nemos.glm.ClassifierGLM"):
        ClassifierGLM.from_nemos(theirs)


def test_what_does_not_cross_warns():
    ours = ClassifierPopulationGLM(
        C,
        solver_name="Newton",
        solver_kwargs={"hessian_rows": 0, "tol": 1e-8},
        feature_mask=xr.DataArray(
            MASK[:, :, 0], dims=("feature", "output"), coords={"output": ["n0", "n1"]}
        ),
    )
    y = xr.DataArray(STRINGS[CODES], dims=("sample", "output"), coords={"output": ["n0", "n1"]})
    ours.fit(X, y)
    with pytest.warns(UserWarning) as record:
        theirs = ours.to_nemos()
    messages = " | ".join(str(w.message) for w in record)
    assert "nemos has no 'Newton' solver" in messages and "['hessian_rows']" in messages
    assert theirs.solver_kwargs == {"tol": 1e-8}
    np.testing.assert_array_equal(np.asarray(theirs.feature_mask)[:, :, 0], MASK[:, :, 0])
    _agree(ours, theirs, X, STRINGS[CODES])
    bfgs = nmo.glm.ClassifierGLM(C, solver_name="BFGS", solver_kwargs={"stepsize": 0.1})
    with pytest.warns(UserWarning) as record:
        ours = ClassifierGLM.from_nemos(bfgs)
    messages = " | ".join(str(w.message) for w in record)
    assert "'BFGS[optimistix]' has no distglm counterpart" in messages
    assert "solver_kwargs ['stepsize'] are not options of distglm's LBFGS" in messages
    assert ours.solver_name == "LBFGS" and ours.solver_kwargs == {}
