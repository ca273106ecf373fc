"""Labelled results: to_xarray, summary, the fitted repr, and the plots (rendered to PNG)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import distglm
from distglm.scoring import null_log_likelihood_per_sample


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 4)).astype(np.float32)
    coef = np.zeros((4, 2, 3))
    coef[0, 0] = [1.5, 0.0, -1.5]  # output "u0" depends on feature 0
    coef[2, 1] = [-1.0, 1.0, 0.0]  # output "u1" on feature 2
    eta = np.einsum("np,pkc->nkc", X, coef)
    p = np.exp(eta) / np.exp(eta).sum(-1, keepdims=True)
    codes = (p.cumsum(-1) > rng.random((600, 2, 1))).argmax(-1)
    labels = np.array(["left", "nogo", "right"])[codes]
    y = xr.DataArray(labels, dims=("sample", "output"), coords={"output": ["u0", "u1"]})
    model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-3).fit(X, y)
    return model, X, labels


def test_to_xarray_labels_every_axis(fitted):
    model, _, _ = fitted
    ds = model.to_xarray()
    assert ds["coef"].dims == ("feature", "output", "class")
    assert ds["intercept"].dims == ("output", "class")
    assert list(ds["output"].values) == ["u0", "u1"]
    assert list(ds["class"].values) == ["left", "nogo", "right"]
    np.testing.assert_array_equal(ds["coef"].values, np.asarray(model.coef_))
    np.testing.assert_array_equal(ds["intercept"].values, np.asarray(model.intercept_))
    single = distglm.ClassifierGLM(2).fit(np.eye(4).repeat(10, 0), np.tile([0, 1], 20))
    assert single.to_xarray()["coef"].shape == (4, 1, 2)
    with pytest.raises(RuntimeError, match="not fitted"):
        distglm.ClassifierGLM(2).to_xarray()


def test_to_xarray_of_a_dict_design_names_each_column():
    rng = np.random.default_rng(1)
    X = {"a": rng.standard_normal((200, 2)), "b": rng.standard_normal((200, 1))}
    model = distglm.ClassifierGLM(2).fit(X, (X["a"][:, 0] > 0).astype(int))
    assert list(model.to_xarray()["feature"].values) == ["a[0]", "a[1]", "b[0]"]


def test_summary_gives_per_output_r2_and_the_right_features(fitted):
    model, X, labels = fitted
    summary = model.summary(X, labels)
    assert summary.converged and summary.n_passes == model.n_passes_
    assert [o.output for o in summary.outputs] == ["u0", "u1"]
    assert summary.outputs[0].top_features[0][0] == 0
    assert summary.outputs[1].top_features[0][0] == 2
    # per-output McFadden R2 from first principles
    lp = np.asarray(model.predict_proba(X, return_type="log-proba"), np.float64)
    codes = np.asarray(model._encoder.encode(labels))
    ll = np.take_along_axis(lp, codes[..., None], -1)[..., 0].mean(0)
    null = null_log_likelihood_per_sample(codes, 3).mean(0)
    np.testing.assert_allclose([o.mcfadden_r2 for o in summary.outputs], 1 - ll / null, rtol=1e-5)
    text = str(summary)
    assert "McFadden R2" in text and "u1" in text and "converged" in text
    assert all(o.mcfadden_r2 is None for o in model.summary().outputs)


def test_repr_says_what_was_fitted(fitted):
    model, _, _ = fitted
    unfitted = repr(distglm.ClassifierPopulationGLM(3))
    assert "fitted" not in unfitted
    text = repr(model)
    assert text.startswith(unfitted.split("(")[0])
    assert "2 output(s) x 3 classes" in text and "4 features" in text
    assert f"{model.n_passes_} passes" in text and "converged" in text


def _not_blank(path):
    import matplotlib.image as mpimg

    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100
    assert pixels[..., :3].std() > 0.05, f"{path} looks blank"


def test_plots_render_to_png(fitted, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from distglm import plot

    model, X, labels = fitted
    paths = plot.save_demo_plots(model, {"s1": 0.2, "s2": 0.35}, tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "convergence.png",
        "coefficients.png",
        "scores.png",
    ]
    for path in paths:
        _not_blank(path)
    ax = plot.scores(model.summary(X, labels))
    assert len(ax.patches) == 2
    with pytest.raises(ValueError, match=r"summary\(X, y\)"):
        plot.scores(model.summary())
    assert plot.coefficients(model, "u1").get_title() == "coefficients of output u1"


def test_per_output_scores_in_memory_match_one_output_at_a_time(fitted):
    model, X, labels = fitted
    y = xr.DataArray(labels, dims=("sample", "output"), coords={"output": ["u0", "u1"]})
    for score_type in ("log-likelihood", "pseudo-r2-McFadden"):
        per = model.score(X, y, score_type=score_type, per_output=True)
        assert per.dims == ("output",) and list(per["output"].values) == ["u0", "u1"]
        summary = model.summary(X, labels)
        if score_type == "pseudo-r2-McFadden":
            expected = [o.mcfadden_r2 for o in summary.outputs]
            np.testing.assert_allclose(per.values, expected, rtol=1e-5)
        plain = model.score(X, labels, score_type=score_type, per_output=True)
        np.testing.assert_allclose(np.asarray(plain), per.values, rtol=1e-6)
    # the mean log-likelihood over both outputs is the mean of the per-output means
    np.testing.assert_allclose(
        float(model.score(X, labels)),
        float(np.mean(model.score(X, labels, per_output=True))),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="per_session"):
        model.score(X, labels, per_session=True)
