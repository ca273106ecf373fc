"""The cross-validated search over a Dask cluster against the same search in memory.

Three sessions in one Zarr store (uneven lengths and chunks, the same outputs); the distributed
search (fold weights derived on the workers from each chunk's session and row range) must give
the in-memory search's held-out scores, chosen strengths and refit, with the in-memory folds
given as a ``PredefinedSplit`` of the same rows.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import xarray as xr
from distributed import Client
from sklearn.model_selection import PredefinedSplit

import distglm
from distglm.folds import block_folds

from helpers import softmax_labels

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

P, C = 4, 3
SESSIONS = {"a": (900, 300), "b": (700, 250), "c": (800, 400)}  # rows, chunk rows
OUTPUTS = ["n0", "n1"]
STRENGTHS = [1.0, 0.1, 0.01, 0.001]
EXACT = {"solver_name": "Newton", "solver_kwargs": {"tol": 1e-14}}


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The store's path, and its rows pooled in session order: X (n, P), y (n, 2), session."""
    rng = np.random.default_rng(3)
    W = np.zeros((P, 2, C))
    W[:, 0] = rng.normal(scale=1.5, size=(P, C))  # output n0 follows X, n1 is nearly noise
    W[0, 1] = [0.2, 0.0, -0.2]
    path = tmp_path_factory.mktemp("cv") / "sessions.zarr"
    Xs, ys, groups = [], [], []
    for i, (name, (n, rows)) in enumerate(SESSIONS.items()):
        X = rng.normal(size=(n, P))
        y = softmax_labels(rng, X, W, np.zeros((2, C)))
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"output": OUTPUTS},
        )
        ds.chunk({"sample": rows}).to_zarr(str(path), group=name)
        Xs.append(X)
        ys.append(y)
        groups.append(np.full(n, i))
    return str(path), np.concatenate(Xs), np.concatenate(ys), np.concatenate(groups)


def _in_memory_folds(cv, groups):
    if cv == "session":
        return groups
    return np.concatenate([block_folds(int(np.sum(groups == s)), cv) for s in np.unique(groups)])


@pytest.mark.parametrize(("cv", "cache_bytes"), [("session", None), (3, None), (3, 1)])
def test_distributed_search_equals_in_memory(cv, cache_bytes, data, client):
    """In memory against cached chunks, and against chunks streamed every pass (a 1-byte
    cache)."""
    path, X, y, groups = data
    with jax.enable_x64(True):
        memory = distglm.ClassifierPopulationGLMCV(
            C, strengths=STRENGTHS, cv=PredefinedSplit(_in_memory_folds(cv, groups)), **EXACT
        ).fit(X, y)
        sessions = distglm.open_sessions(path)
        dist = distglm.ClassifierPopulationGLMCV(C, strengths=STRENGTHS, cv=cv, **EXACT)
        dist.fit(sessions, client=client, cache_bytes=cache_bytes)
    assert (cache_bytes is not None) == dist.best_estimator_.fit_profile_["streamed"]
    np.testing.assert_allclose(
        dist.cv_results_["score"].values, memory.cv_results_["score"].values, rtol=1e-6
    )
    np.testing.assert_array_equal(
        dist.cv_results_["n_held_out"].values, memory.cv_results_["n_held_out"].values
    )
    np.testing.assert_array_equal(dist.strength_, memory.strength_)
    assert dist.strength_[0] != dist.strength_[1]  # the outputs disagree
    assert list(dist.cv_results_["output"].values) == OUTPUTS
    np.testing.assert_allclose(dist.path_["coef"], memory.path_["coef"], atol=1e-6)
    np.testing.assert_allclose(dist.best_estimator_.coef_, memory.best_estimator_.coef_, atol=1e-6)
    # the path's passes (the statistics pass counted with the first strength) and the refit's
    passes = dist.path_["n_passes"].values
    assert dist.n_passes_ == passes.sum() + dist.best_estimator_.n_passes_
    assert passes[0] == memory.path_["n_passes"].values[0] + 1


def test_default_grid_float32_and_an_open_session(data, client):
    path, X, y, groups = data
    sessions = distglm.open_sessions(path)
    memory = distglm.ClassifierPopulationGLMCV(C, strengths=5, cv=PredefinedSplit(groups)).fit(X, y)
    with distglm.open_data(sessions, n_classes=C, client=client) as opened:
        dist = distglm.ClassifierPopulationGLMCV(C, strengths=5, cv="session").fit(opened)
    # float32 sums on both sides: the grids to float32 rounding, the scores to 1e-4
    np.testing.assert_allclose(dist.path_["strength"], memory.path_["strength"], rtol=1e-5)
    np.testing.assert_allclose(
        dist.cv_results_["score"].values, memory.cv_results_["score"].values, rtol=1e-4
    )
    np.testing.assert_allclose(dist.strength_, memory.strength_, rtol=1e-6)  # the same choice
    assert dist.best_estimator_.n_passes_ <= 2


def test_distributed_search_refuses_what_it_does_not_support(data, client):
    path, *_ = data
    sessions = distglm.open_sessions(path)
    with pytest.raises(NotImplementedError, match="per-output Newton"):
        distglm.ClassifierPopulationGLMCV(C, solver_name="LBFGS").fit(sessions, client=client)
    with pytest.raises(ValueError, match="splitter"):
        distglm.ClassifierPopulationGLMCV(C, cv=PredefinedSplit([0, 1])).fit(
            sessions, client=client
        )


def test_time_blocks_over_sessions_recording_different_outputs(tmp_path, client):
    """cv=k with overlapping outputs: each output is held out, fold by fold, on block f of the
    sessions that recorded it."""
    rng = np.random.default_rng(5)
    layout = {"a": (["n0", "n1"], 600), "b": (["n1", "n2"], 500)}
    path = str(tmp_path / "overlap.zarr")
    for name, (outs, n) in layout.items():
        X = rng.normal(size=(n, P))
        y = softmax_labels(rng, X, rng.normal(size=(P, len(outs), C)), np.zeros((len(outs), C)))
        X[7, 0] = np.nan  # a dropped row, in block 0 of each session
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"output": outs},
        )
        ds.chunk({"sample": 200}).to_zarr(path, group=name)
    sessions = distglm.open_sessions(path)
    search = distglm.ClassifierPopulationGLMCV(C, strengths=[0.1, 0.01], cv=2)
    search.fit(sessions, client=client)
    held = search.cv_results_["n_held_out"].to_pandas()
    # block 0 of a 600-row session: 300 rows, one dropped; of a 500-row one: 250, one dropped
    assert held.loc[0].to_dict() == {"n0": 299, "n1": 299 + 249, "n2": 249}
    assert held.loc[1].to_dict() == {"n0": 300, "n1": 300 + 250, "n2": 250}
    assert np.all(np.isfinite(search.cv_results_["score"].values))
    assert search.best_estimator_.coef_.shape == (P, 3, C)


def test_leave_one_session_out_over_sessions_recording_different_outputs(tmp_path, client):
    """cv="session" where sessions record different outputs: an output recorded in one
    session only is held out by 3 time blocks inside it (the fit says so), one missing from
    a session has no score in that session's fold; every score equals a brute-force
    reference (a separate fit of that output on its training rows, scored on its held-out
    rows) to 1e-6, and the choices are its choices."""
    rng = np.random.default_rng(11)
    layout = {"a": (["n0", "n1", "n4"], 420), "b": (["n1", "n2", "n4"], 360), "c": (["n1"], 390)}
    path = str(tmp_path / "sessions.zarr")
    rows = {}  # output -> list of (X, y, fold) per session recording it
    for s, (name, (outs, n)) in enumerate(layout.items()):
        X = rng.normal(size=(n, P))
        W = rng.normal(scale=[[1.5], [0.3], [0.8]][s % 3][0], size=(P, len(outs), C))
        y = softmax_labels(rng, X, W, np.zeros((len(outs), C)))
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"output": outs},
        )
        ds.chunk({"sample": 150}).to_zarr(path, group=name)
        for j, o in enumerate(outs):
            single = o in ("n0", "n2")
            fold = block_folds(n, 3) if single else np.full(n, s)
            rows.setdefault(o, []).append((X, y[:, j], fold))
    strengths = [1.0, 0.05, 0.002]
    with jax.enable_x64(True):
        search = distglm.ClassifierPopulationGLMCV(C, strengths=strengths, cv="session", **EXACT)
        search.fit(distglm.open_sessions(path), client=client)
        res = search.cv_results_
        assert res.attrs["fallback_outputs"] == ["n0", "n2"]
        for o, parts in rows.items():
            X = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            fold = np.concatenate([p[2] for p in parts])
            for f in range(3):
                held = fold == f
                got = res["score"].sel(output=o, fold=f).values
                assert res["n_held_out"].sel(output=o, fold=f) == held.sum()
                if not held.any():  # n4 in session c's fold
                    assert np.all(np.isnan(got))
                    continue
                for i, value in enumerate(strengths):
                    alone = distglm.ClassifierGLM(C, regularizer_strength=value, **EXACT)
                    alone.fit(X[~held], y[~held])
                    lp = np.asarray(alone.predict_proba(X[held], "log-proba"))
                    want = np.take_along_axis(lp, y[held][:, None].astype(int), axis=1).mean()
                    np.testing.assert_allclose(got[i], want, rtol=1e-6, err_msg=f"{o} {f} {i}")
        mean = res["score"].mean("fold", skipna=True)
        np.testing.assert_array_equal(
            search.strength_, np.asarray(strengths)[mean.argmax("strength").values]
        )
        assert np.isfinite(res["mean_score"].values).all()


def test_single_output_search_on_dask_arrays_equals_in_memory(data, client):
    """ClassifierGLMCV on a dask array (one session, cut into k time blocks)."""
    import dask.array as da

    _, X, y, _ = data
    with jax.enable_x64(True):
        memory = distglm.ClassifierGLMCV(C, strengths=STRENGTHS, cv=3, **EXACT).fit(X, y[:, 0])
        dist = distglm.ClassifierGLMCV(C, strengths=STRENGTHS, cv=3, **EXACT)
        dist.fit(
            da.from_array(X, chunks=(500, P)), da.from_array(y[:, 0], chunks=500), client=client
        )
    np.testing.assert_allclose(
        dist.cv_results_["score"].values, memory.cv_results_["score"].values, rtol=1e-6
    )
    assert dist.strength_ == memory.strength_
    np.testing.assert_allclose(dist.best_estimator_.coef_, memory.best_estimator_.coef_, atol=1e-6)
