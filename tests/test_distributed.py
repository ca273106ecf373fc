"""Integration tests of the distributed fit: Zarr stores, Dask clusters, sessions, lazy outputs.

Most tests share one module-scoped two-worker ``LocalCluster`` and pass ``client=`` explicitly,
so which client is the process's default does not matter to them; the tests of client
resolution, of one worker against two and of a worker killed mid-fit start their own clusters.
Every distributed result is compared with an in-memory reference: the in-memory estimator on
the same numbers, or (for sessions, whose outputs are recorded on different rows) a float64
numpy objective with per-output weights minimised by scipy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import dask.array as da
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import xarray as xr
from distributed import Client, LocalCluster

import distglm
import distglm.estimator
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.regularizer import GroupLasso
from distglm.solve import InMemoryData

from helpers import raise_if_dask_computes

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N, P, K, C = 6000, 6, 3, 3
ROWS = 1000
LABELS = np.array(["left", "nogo", "right"])
TIGHT = {"tol": 1e-10, "maxiter": 3000}


# ---------------------------------------------------------------------------- helpers
def _cluster(n_workers):
    return LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    )


def _worker_addresses(client):
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _write_arrays(path, X, y, rows):
    """Write X (sample, feature) and y (sample, output) to a Zarr store; read them lazily."""
    ds = xr.Dataset({"X": (("sample", "feature"), X), "y": (("sample", "output"), y)})
    ds.chunk({"sample": rows}).to_zarr(str(path), mode="w")
    return da.from_zarr(str(path), component="X"), da.from_zarr(str(path), component="y")


def _objective(model):
    return model.fit_history_[-1]["objective"]


def _assert_rel(a, b, rtol):
    assert abs(a - b) <= rtol * abs(b), (a, b, abs(a - b) / abs(b))


def _centred(coef):
    """Coefficients with their mean over classes removed (invariant to a class shift)."""
    coef = np.asarray(coef, np.float64)
    return coef - coef.mean(axis=-1, keepdims=True)


def _check_history(model):
    """fit_history_, n_passes_ and fit_profile_ of a distributed fit agree with each other."""
    hist = model.fit_history_
    passes = [h["passes"] for h in hist]
    assert passes == sorted(passes) and passes[0] >= 2  # the statistics pass + >= 1 pass
    assert model.n_passes_ == passes[-1]
    prof = model.fit_profile_
    assert len(prof["passes"]) == model.n_passes_ - 1  # every pass but the statistics pass
    for entry in prof["passes"]:
        assert entry["seconds"] >= entry["compute"] >= 0
        assert entry["overhead"] == pytest.approx(entry["seconds"] - entry["compute"])
        assert entry["coordinator_cpu"] >= 0


def _block_from_model(model):
    coef = np.asarray(model.coef_, np.float64)
    icpt = np.asarray(model.intercept_, np.float64)
    return np.concatenate([coef, icpt[None]], axis=0)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client(cluster):
    """The session's cluster, through this module's default client."""
    with Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def one_worker():
    """A second, one-worker cluster and a client that is never the default one."""
    with _cluster(1) as cl, Client(cl, set_as_default=False) as c:
        yield cl, c


@pytest.fixture(scope="module")
def population():
    X, y, _, _ = make_population(N, P, K, C, seed=1)
    return X, y


@pytest.fixture(scope="module")
def store(population, tmp_path_factory):
    """The population data in one Zarr store per chunking: rows -> (X dask, y dask)."""
    X, y = population
    root = tmp_path_factory.mktemp("arrays")
    return {rows: _write_arrays(root / f"rows{rows}.zarr", X, y, rows) for rows in (1000, 1600)}


@pytest.fixture(scope="module")
def fitted(store, client):
    """A distributed Ridge fit on the population data (1000-row chunks)."""
    Xd, yd = store[ROWS]
    return ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(Xd, yd, client=client)


# --- multi-session data: overlapping outputs, string labels, uneven lengths and chunks
SESSIONS = {
    "s0": (["n2", "n0", "n1"], 3000, 1000),
    "s1": (["n1", "n3"], 2200, 700),
    "s2": (["n0", "n4", "n3"], 2700, 900),
}
ALL_OUTPUTS = ["n2", "n0", "n1", "n3", "n4"]  # the union in order of first appearance
FEATURES = [f"f{i}" for i in range(P)]
SESSION_RIDGE = 1e-3


def _session_arrays(seed, sessions, p=P):
    """Per session (X float32 (n, p), labels (n, k) strings) drawn from one softmax model."""
    rng = np.random.default_rng(seed)
    outputs = list(dict.fromkeys(o for outs, _, _ in sessions.values() for o in outs))
    coef = rng.normal(0.0, 0.5, (p, len(outputs), C))
    icpt = rng.normal(0.0, 0.3, (len(outputs), C))
    out = {}
    for s, (outs, n, _) in sessions.items():
        idx = [outputs.index(o) for o in outs]
        X = (rng.standard_normal((n, p)) + rng.normal(0, 0.3, p)).astype(np.float32)
        eta = np.einsum("np,pkc->nkc", X, coef[:, idx]) + icpt[idx]
        codes = np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)
        out[s] = (X, LABELS[codes])
    return out


def _write_sessions(path, arrays, sessions, features=FEATURES):
    for s, (X, labels) in arrays.items():
        outs, _, rows = sessions[s]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), labels)},
            coords={"feature": features, "output": outs},
        )
        ds.chunk({"sample": rows}).to_zarr(str(path), group=s)
    return str(path)


@pytest.fixture(scope="module")
def session_data(tmp_path_factory):
    arrays = _session_arrays(7, SESSIONS)
    path = _write_sessions(tmp_path_factory.mktemp("sessions") / "sessions.zarr", arrays, SESSIONS)
    return path, arrays


@pytest.fixture(scope="module")
def session_fit(session_data, client):
    path, _ = session_data
    sessions = distglm.open_sessions(path)
    model = ClassifierPopulationGLM(C, regularizer_strength=SESSION_RIDGE, solver_kwargs=TIGHT)
    return model.fit(sessions, client=client)


def _pooled(arrays, sessions):
    """Rows of every session pooled: X (N, p), codes (N, K), weights (N, K) 1 where recorded."""
    Xs, codes, weights = [], [], []
    for s, (X, labels) in arrays.items():
        outs = sessions[s][0]
        n = X.shape[0]
        cd = np.zeros((n, len(ALL_OUTPUTS)), np.int32)
        w = np.zeros((n, len(ALL_OUTPUTS)))
        for j, o in enumerate(outs):
            g = ALL_OUTPUTS.index(o)
            cd[:, g] = np.searchsorted(LABELS, labels[:, j])
            w[:, g] = 1.0
        Xs.append(X)
        codes.append(cd)
        weights.append(w)
    return np.concatenate(Xs), np.concatenate(codes), np.concatenate(weights)


def _reference_value_and_grad(theta, X, codes, W, ridge):
    """Float64 weighted objective: sum over outputs of each output's mean NLL + Ridge."""
    coef, icpt = theta[:-1], theta[-1]
    X = np.asarray(X, np.float64)
    eta = np.einsum("np,pkc->nkc", X, coef) + icpt
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    eta_y = np.take_along_axis(eta, codes[..., None], axis=-1)[..., 0]
    nk = W.sum(axis=0)
    value = np.sum((W * (lse - eta_y)).sum(axis=0) / nk) + 0.5 * ridge * np.sum(coef**2)
    onehot = np.eye(eta.shape[-1])[codes]
    resid = W[..., None] * (np.exp(eta - lse[..., None]) - onehot) / nk[None, :, None]
    grad = np.concatenate([np.einsum("np,nkc->pkc", X, resid) + ridge * coef, resid.sum(0)[None]])
    return value, grad


# ---------------------------------------------------------------------------- 1. vs in memory
_GROUPS = np.zeros((3, P, K, C))
for _g in range(3):
    _GROUPS[_g, 2 * _g : 2 * _g + 2] = 1.0

REGULARIZED_CASES = {
    "UnRegularized": {"regularizer": "UnRegularized"},
    "Ridge": {"regularizer": "Ridge", "regularizer_strength": 1e-3},
    "Lasso": {"regularizer": "Lasso", "regularizer_strength": 1e-3},
    "ElasticNet": {"regularizer": "ElasticNet", "regularizer_strength": (2e-3, 0.5)},
    "GroupLasso": {"regularizer": GroupLasso(mask=_GROUPS), "regularizer_strength": 2e-2},
    "Ridge-GradientDescent": {
        "regularizer": "Ridge",
        "regularizer_strength": 1e-3,
        "solver_name": "GradientDescent",
    },
}


@pytest.mark.parametrize("case", list(REGULARIZED_CASES))
def test_distributed_fit_equals_in_memory(case, population, store, client):
    X, y = population
    Xd, yd = store[ROWS]
    kw = REGULARIZED_CASES[case]
    dist = ClassifierPopulationGLM(C, **kw).fit(Xd, yd, client=client)
    mem = ClassifierPopulationGLM(C, **kw).fit(X, y)
    assert dist.solver_name == mem.solver_name
    _assert_rel(_objective(dist), _objective(mem), 1e-6)
    coef_d, coef_m = np.asarray(dist.coef_), np.asarray(mem.coef_)
    assert coef_d.shape == (P, K, C)
    if case == "UnRegularized":  # the likelihood is invariant to a shift over classes
        coef_d, coef_m = _centred(coef_d), _centred(coef_m)
    np.testing.assert_allclose(coef_d, coef_m, atol=2e-3)
    if case == "GroupLasso":  # the groups the in-memory fit zeroes are zeroed here too
        for g in range(3):
            sel = _GROUPS[g].astype(bool)
            assert (np.abs(coef_m[sel]).max() == 0) == (np.abs(coef_d[sel]).max() == 0)
    np.testing.assert_array_equal(dist.classes_, np.arange(C))
    np.testing.assert_array_equal(dist.outputs_, np.arange(K))
    _check_history(dist)
    prof = dist.fit_profile_
    assert prof["n_chunks"] == N // ROWS and prof["chunk_rows"] == ROWS
    assert prof["workers"] == _worker_addresses(client)
    assert prof["recoveries"] == 0 and prof["n_dropped"] == {"": 0}


# ---------------------------------------------------------------------------- 2. determinism
def test_same_chunking_identical_for_one_and_two_workers(store, client, one_worker):
    _, client1 = one_worker
    Xd, yd = store[ROWS]
    fits = {}
    for name, c in (("two", client), ("one", client1)):
        m = ClassifierPopulationGLM(C, regularizer_strength=1e-3)
        fits[name] = m.fit(Xd, yd, client=c)
        assert len(m.fit_profile_["workers"]) == (2 if name == "two" else 1)
    np.testing.assert_array_equal(np.asarray(fits["one"].coef_), np.asarray(fits["two"].coef_))
    np.testing.assert_array_equal(
        np.asarray(fits["one"].intercept_), np.asarray(fits["two"].intercept_)
    )
    objectives = {k: [h["objective"] for h in m.fit_history_] for k, m in fits.items()}
    assert objectives["one"] == objectives["two"]


def test_different_chunkings_close(store, population, client):
    X, y = population
    base = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(*store[ROWS], client=client)
    # chunks of 1600 rows (the last one 1200) and a rechunk to 2500 (the last one 1000)
    Xd, yd = store[1600]
    other = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(Xd, yd, client=client)
    assert other.fit_profile_["n_chunks"] == 4 and other.fit_profile_["chunk_rows"] == 1600
    X3, y3 = da.from_array(X, chunks=(2500, -1)), da.from_array(y, chunks=(2500, -1))
    third = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(X3, y3, client=client)
    assert third.fit_profile_["n_chunks"] == 3

    # the optima, judged by one float64 objective (free of the kernels' float32 sums)
    ones = np.ones(y.shape)

    def f64(m):
        return _reference_value_and_grad(_block_from_model(m), X, y, ones, 1e-3)[0]

    for m in (other, third):
        _assert_rel(_objective(m), _objective(base), 1e-6)  # as reported, float32 sums
        _assert_rel(f64(m), f64(base), 1e-7)
        np.testing.assert_allclose(np.asarray(m.coef_), np.asarray(base.coef_), atol=2e-3)


# ---------------------------------------------------------------------------- 3. sessions
def test_multi_session_fit_matches_weighted_reference(session_data, session_fit):
    path, arrays = session_data
    model = session_fit
    np.testing.assert_array_equal(model.outputs_, ALL_OUTPUTS)
    np.testing.assert_array_equal(model.classes_, LABELS)
    assert np.asarray(model.coef_).shape == (P, len(ALL_OUTPUTS), C)
    prof = model.fit_profile_
    assert prof["n_chunks"] == 3 + 4 + 3 and prof["chunk_rows"] == 1000
    assert prof["n_dropped"] == {"s0": 0, "s1": 0, "s2": 0}
    _check_history(model)

    Xall, codes, W = _pooled(arrays, SESSIONS)
    theta_d = _block_from_model(model)

    # the distributed objective is the in-memory one with per-output weights
    data = InMemoryData(Xall, codes, C, weights=W)
    coef_d = theta_d[:-1]
    mem_value = data.value(theta_d) + 0.5 * SESSION_RIDGE * np.sum(coef_d**2)
    ref_at_d, grad_at_d = _reference_value_and_grad(theta_d, Xall, codes, W, SESSION_RIDGE)
    _assert_rel(mem_value, ref_at_d, 1e-6)
    _assert_rel(_objective(model), ref_at_d, 1e-6)

    # the float64 reference optimum (scipy)
    shape = theta_d.shape

    def fun(t):
        v, g = _reference_value_and_grad(t.reshape(shape), Xall, codes, W, SESSION_RIDGE)
        return v, g.ravel()

    res = scipy.optimize.minimize(
        fun,
        np.zeros(theta_d.size),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-16},
    )
    ref_opt = res.fun
    _assert_rel(_objective(model), ref_opt, 1e-6)
    assert ref_at_d - ref_opt <= 1e-6 * abs(ref_opt)
    # near-stationarity: a point within 1e-6 |F*| of the optimum of an L-smooth objective has
    # |grad|^2 <= 2 L 1e-6 |F*|; L from Boehning's bound on each output's softmax curvature
    Z = np.concatenate([Xall, np.ones((Xall.shape[0], 1))], axis=1).astype(np.float64)
    curv = [np.linalg.eigvalsh((Z * w[:, None]).T @ Z / w.sum())[-1] for w in W.T]
    L = 0.5 * max(curv) + SESSION_RIDGE
    assert np.sum(grad_at_d**2) <= 2 * L * 1e-6 * abs(ref_opt)
    np.testing.assert_allclose(
        theta_d[:-1], res.x.reshape(shape)[:-1], atol=5e-3
    )  # coefficients (intercepts are only defined up to a shift over classes)

    # whole-dataset score over sessions: mean log-likelihood over recorded entries
    ll_ref = -float(np.sum(W * _nll(theta_d, Xall, codes)) / W.sum())
    assert float(model.score(distglm.open_sessions(path), None)) == pytest.approx(ll_ref, rel=1e-5)


def _nll(theta, X, codes):
    coef, icpt = theta[:-1], theta[-1]
    eta = np.einsum("np,pkc->nkc", np.asarray(X, np.float64), coef) + icpt
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    return lse - np.take_along_axis(eta, codes[..., None], axis=-1)[..., 0]


def test_multi_session_predict(session_data, session_fit):
    path, arrays = session_data
    model = session_fit
    sessions = distglm.open_sessions(path)
    pred = model.predict(sessions)
    proba = model.predict_proba(sessions, return_type="proba")
    assert isinstance(pred, dict) and list(pred) == list(SESSIONS)
    coef = np.asarray(model.coef_)
    icpt = np.asarray(model.intercept_)
    for s, (outs, n, _) in SESSIONS.items():
        p = pred[s]
        assert isinstance(p, xr.DataArray) and isinstance(p.data, da.Array)
        assert p.dims[1] == "output" and p.shape == (n, len(outs))
        np.testing.assert_array_equal(p.coords["output"].values, outs)
        assert proba[s].dims[1:] == ("output", "class") and isinstance(proba[s].data, da.Array)
        np.testing.assert_array_equal(proba[s].coords["class"].values, LABELS)
        # against the fitted parameters applied in numpy to the session's outputs
        idx = [ALL_OUTPUTS.index(o) for o in outs]
        eta = np.einsum("np,pkc->nkc", arrays[s][0], coef[:, idx]) + icpt[idx]
        probs = np.exp(eta - eta.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        np.testing.assert_allclose(proba[s].values, probs, atol=1e-5)
        agree = np.mean(p.values == LABELS[np.argmax(eta, axis=-1)])
        assert agree > 0.999


# ---------------------------------------------------------------------------- 4. lost worker
def _fit_within(seconds, model, *args, **kwargs):
    """``model.fit(*args, **kwargs)`` in a daemon thread; fail the test if it hangs."""
    outcome = {}

    def target():
        try:
            model.fit(*args, **kwargs)
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"The fit did not finish within {seconds} s: it hangs.")
    if "error" in outcome:
        raise outcome["error"]
    return model


@pytest.mark.parametrize("fresh_is_default", [True, False], ids=["default", "not-default"])
def test_worker_killed_mid_fit_recovers(store, client, fresh_is_default):
    """SIGKILL one worker of a fresh cluster after the second iteration of a fit on it.

    The fresh cluster's client is passed as ``client=``; it is either the process's default
    client or not (the module's client then is).
    """
    Xd, yd = store[ROWS]
    kw = {"regularizer_strength": 1e-4, "solver_kwargs": TIGHT}
    undisturbed = ClassifierPopulationGLM(C, **kw).fit(Xd, yd, client=client)
    assert undisturbed.fit_profile_["recoveries"] == 0
    assert len(undisturbed.fit_history_) > 3

    with _cluster(2) as cl, Client(cl, set_as_default=fresh_is_default) as fresh:
        pids = fresh.run(os.getpid)
        victim = pids[sorted(pids)[0]]
        killed = []

        def kill_at_iteration_2(record):
            """A fit callback: SIGKILLs one worker after iteration 2."""
            if record.iteration == 2 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        model = ClassifierPopulationGLM(C, **kw)
        _fit_within(60, model, Xd, yd, client=fresh, callback=kill_at_iteration_2)
        assert killed == [victim]
        assert len(model.fit_history_) > 2  # the fit went on after the kill
        assert model.fit_profile_["recoveries"] >= 1
        assert victim not in fresh.run(os.getpid).values()
    np.testing.assert_allclose(
        np.asarray(model.coef_), np.asarray(undisturbed.coef_), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(model.intercept_), np.asarray(undisturbed.intercept_), rtol=1e-6, atol=1e-6
    )


# ---------------------------------------------------------------------------- 5. bad labels
def test_statistics_pass_names_misspelt_label(tmp_path, client):
    sessions = {"s1": (["n0", "n1"], 1500, 500), "s2": (["n1", "n2"], 2000, 500)}
    arrays = _session_arrays(3, sessions)
    arrays["s2"][1][1234, 1] = "lfet"  # one label in the third chunk of s2
    path = _write_sessions(tmp_path / "typo.zarr", arrays, sessions)
    model = ClassifierPopulationGLM(C)
    with pytest.raises(ValueError, match="lfet") as info:
        model.fit(distglm.open_sessions(path), client=client)
    msg = str(info.value)
    # s1 has three chunks, so other labels' locations (the first three chunks) are all in s1
    assert "s2" in msg, msg


def test_more_labels_than_n_classes(population, client):
    X, y = population
    y4 = y.copy()
    y4[4321, 2] = 3  # a fourth class in one chunk
    Xd, yd = da.from_array(X, chunks=(ROWS, -1)), da.from_array(y4, chunks=(ROWS, -1))
    with pytest.raises(ValueError, match="n_classes=3") as info:
        ClassifierPopulationGLM(C).fit(Xd, yd, client=client)
    # refused by the worker that read it, at that chunk (not after the whole pass)
    first = 4321 // ROWS * ROWS
    assert "4 distinct labels" in str(info.value)
    assert f"rows {first}-{first + ROWS} (chunk {4321 // ROWS}) brought [3]" in str(info.value)


# ---------------------------------------------------------------------------- 6. laziness
def test_prediction_is_lazy(fitted, session_fit, session_data, store, population):
    X, _ = population
    Xd, _ = store[ROWS]
    path, arrays = session_data
    with raise_if_dask_computes():
        with pytest.raises(RuntimeError, match="Too many computes"):  # the guard works
            da.ones(3).sum().compute()
        pred = fitted.predict(Xd)
        logp = fitted.predict_proba(Xd)
        proba = fitted.predict_proba(Xd, return_type="proba")
        sessions = distglm.open_sessions(path)
        spred = session_fit.predict(sessions)
        sproba = session_fit.predict_proba(sessions, return_type="proba")
        draws, draw_logp = fitted.simulate(jax.random.key(0), Xd)
    assert all(isinstance(a, da.Array) for a in (pred, logp, proba, draws, draw_logp))
    assert pred.shape == (N, K) and proba.shape == (N, K, C)
    assert all(isinstance(sessions[s]["X"].data, da.Array) for s in SESSIONS)
    assert all(isinstance(v, xr.DataArray) and isinstance(v.data, da.Array) for v in spred.values())
    assert all(isinstance(v.data, da.Array) for v in sproba.values())

    np.testing.assert_array_equal(pred.compute(), np.asarray(fitted.predict(X)))
    np.testing.assert_allclose(logp.compute(), np.asarray(fitted.predict_proba(X)), atol=1e-5)
    np.testing.assert_allclose(
        proba.compute(), np.asarray(fitted.predict_proba(X, return_type="proba")), atol=1e-5
    )
    drawn = draws.compute()
    assert drawn.shape == (N, K) and np.isin(drawn, fitted.classes_).all()
    np.testing.assert_array_equal(drawn, fitted.simulate(jax.random.key(0), Xd)[0].compute())
    np.testing.assert_allclose(draw_logp.compute(), logp.compute())
    # sessions: against the in-memory model with the session's outputs' parameters
    for s, (outs, _, _) in SESSIONS.items():
        idx = [ALL_OUTPUTS.index(o) for o in outs]
        mem = ClassifierPopulationGLM(C)
        mem.classes_ = LABELS
        mem.coef_ = np.asarray(session_fit.coef_)[:, idx]
        mem.intercept_ = np.asarray(session_fit.intercept_)[idx]
        Xs = arrays[s][0]
        np.testing.assert_array_equal(spred[s].values, np.asarray(mem.predict(Xs)))
        np.testing.assert_allclose(
            sproba[s].values, np.asarray(mem.predict_proba(Xs, return_type="proba")), atol=1e-5
        )


# ---------------------------------------------------------------------------- 7. xarray
def test_xarray_inputs_and_labelled_feature_mask(population, client):
    X, codes = population
    y = LABELS[codes]  # string classes, so class coordinates are not a default range
    features = [f"f{i}" for i in range(P)]
    outputs = ["a", "b", "c"]
    t = np.arange(N) * 0.01
    Xx = xr.DataArray(
        X, dims=("sample", "feature"), coords={"sample": t, "feature": features}
    ).chunk({"sample": ROWS})
    yx = xr.DataArray(y, dims=("sample", "output"), coords={"sample": t, "output": outputs}).chunk(
        {"sample": ROWS}
    )
    keep = np.ones((P, K))
    keep[0, 0] = keep[3, 2] = keep[5, 0] = keep[5, 1] = 0
    mask = xr.DataArray(keep, dims=("feature", "output"), coords={"feature": features})
    mask = mask.assign_coords(output=outputs).sel(
        feature=features[::-1], output=["c", "a", "b"]
    )  # labels in another order than the data's
    assert not np.array_equal(mask.values, keep)

    kw = {"regularizer_strength": 1e-3}
    model = ClassifierPopulationGLM(C, feature_mask=mask, **kw).fit(Xx, yx, client=client)
    coef = np.asarray(model.coef_)
    assert np.all(coef[keep == 0] == 0.0)
    assert np.all(np.abs(coef[keep == 1]).max(axis=-1) > 0)
    np.testing.assert_array_equal(model.outputs_, outputs)
    np.testing.assert_array_equal(model.features_, features)

    mem_mask = np.repeat(keep[:, :, None], C, axis=2)
    mem = ClassifierPopulationGLM(C, feature_mask=mem_mask, **kw).fit(X, y)
    _assert_rel(_objective(model), _objective(mem), 1e-6)
    np.testing.assert_allclose(coef, np.asarray(mem.coef_), atol=2e-3)

    proba = model.predict_proba(Xx, return_type="proba")
    assert isinstance(proba, xr.DataArray) and isinstance(proba.data, da.Array)
    assert proba.dims == ("sample", "output", "class")
    np.testing.assert_array_equal(proba.coords["output"].values, outputs)
    np.testing.assert_array_equal(model.classes_, LABELS)
    np.testing.assert_array_equal(proba.coords["class"].values, LABELS)
    np.testing.assert_array_equal(proba.coords["sample"].values, t)
    np.testing.assert_allclose(
        proba.values, np.asarray(model.predict_proba(X, return_type="proba")), atol=1e-5
    )
    pred = model.predict(Xx)
    assert pred.dims == ("sample", "output")
    np.testing.assert_array_equal(pred.values, np.asarray(model.predict(X)))


# ---------------------------------------------------------------------------- 8. score
@pytest.mark.parametrize("score_type", ["log-likelihood", "pseudo-r2-McFadden"])
@pytest.mark.parametrize("aggregate", [jnp.mean, np.sum])
def test_score_over_dask_equals_in_memory(fitted, population, store, score_type, aggregate):
    X, y = population
    Xd, yd = store[ROWS]
    dist = float(fitted.score(Xd, yd, score_type=score_type, aggregate_sample_scores=aggregate))
    mem = float(fitted.score(X, y, score_type=score_type, aggregate_sample_scores=aggregate))
    assert dist == pytest.approx(mem, rel=1e-5)


def test_score_over_dask_rejects_other_aggregators(fitted, store):
    Xd, yd = store[ROWS]
    with pytest.raises(ValueError, match="mean or a sum"):
        fitted.score(Xd, yd, aggregate_sample_scores=jnp.median)


# ---------------------------------------------------------------------------- 9. clients
def test_client_given_is_used(store, client, one_worker):
    _, client1 = one_worker
    from distributed import default_client

    assert default_client() is not client1
    m = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(*store[ROWS], client=client1)
    assert m.fit_profile_["workers"] == _worker_addresses(client1)


def test_default_client_is_used(store, client, one_worker):
    cluster1, client1 = one_worker
    from distributed import default_client

    assert default_client() is not client1
    with Client(cluster1) as newest:  # the default client from now on
        assert default_client() is newest
        m = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(*store[ROWS])
        assert m.fit_profile_["workers"] == _worker_addresses(client1)
    assert len(_worker_addresses(client)) == 2


_EMBEDDED = textwrap.dedent(
    """
    import json, logging, sys, warnings
    import dask.array as da
    from distributed import default_client
    import distglm
    from distglm.cli import make_population

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("distglm").addHandler(handler)
    logging.getLogger("distglm").setLevel(logging.INFO)
    X, y, _, _ = make_population(3000, 4, 2, 3, seed=5)
    Xd, yd = da.from_array(X, chunks=(1000, -1)), da.from_array(y, chunks=(1000, -1))
    try:
        default_client()
        had_client = True
    except ValueError:
        had_client = False
    m = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-3).fit(Xd, yd)
    try:
        default_client()
        left_client = True
    except ValueError:
        left_client = False
    print(json.dumps({
        "had_client": had_client,
        "left_client": left_client,
        "workers": len(m.fit_profile_["workers"]),
        "objective": m.fit_history_[-1]["objective"],
    }))
    """
)


def test_no_client_starts_embedded_local_cluster():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _EMBEDDED],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "LocalCluster" in proc.stderr
    assert not out["had_client"] and not out["left_client"]
    assert out["workers"] >= 1
    X, y, _, _ = make_population(3000, 4, 2, 3, seed=5)
    mem = ClassifierPopulationGLM(3, regularizer_strength=1e-3).fit(X, y)
    _assert_rel(out["objective"], _objective(mem), 1e-6)


# ---------------------------------------------------------------------------- 10. compile once
def test_each_worker_compiles_once_per_session_output_count(tmp_path, client):
    # a feature count no other test uses, so every compilation here is new on the workers
    p = 9
    sessions = {
        "a": (["u0", "u1", "u2", "u3"], 2300, 1000),  # chunks 1000, 1000, 300
        "b": (["u1", "u4"], 1700, 800),  # chunks 800, 800, 100
        "c": (["u0", "u4", "u5", "u6"], 1100, 1000),  # chunks 1000, 100
    }
    arrays = _session_arrays(11, sessions, p=p)
    path = _write_sessions(tmp_path / "compile.zarr", arrays, sessions, [f"g{i}" for i in range(p)])

    def cache_sizes():
        from distglm.kernels.compiled import VALUE_AND_GRAD_FLAT

        return VALUE_AND_GRAD_FLAT._cache_size()

    before = client.run(cache_sizes)
    model = ClassifierPopulationGLM(C, regularizer_strength=1e-3)
    model.fit(distglm.open_sessions(path), client=client)
    assert model.fit_profile_["chunk_rows"] == 1000 and model.fit_profile_["n_chunks"] == 8
    after = client.run(cache_sizes)
    new = {w: after[w] - before[w] for w in after}
    distinct_counts = len({len(outs) for outs, _, _ in sessions.values()})  # 4 and 2
    assert all(n <= distinct_counts for n in new.values()), new
    assert sum(new.values()) >= distinct_counts, new


# ---------------------------------------------------------------------------- 11. NaN rows
def test_nan_rows_are_dropped(population, tmp_path, client):
    X, y = population
    Xn = X.copy()
    bad = np.array([2100, 2101, 2350, 2999])  # all in the third chunk
    Xn[bad, np.arange(bad.size) % P] = np.nan
    Xn[2500, :] = np.inf
    Xd, yd = _write_arrays(tmp_path / "nan.zarr", Xn, y, ROWS)
    dist = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(Xd, yd, client=client)
    assert dist.fit_profile_["n_dropped"] == {"": 5}
    ok = np.ones(N, bool)
    ok[[*bad, 2500]] = False
    mem = ClassifierPopulationGLM(C, regularizer_strength=1e-3).fit(X[ok], y[ok])
    _assert_rel(_objective(dist), _objective(mem), 1e-6)
    np.testing.assert_allclose(np.asarray(dist.coef_), np.asarray(mem.coef_), atol=2e-3)
    np.testing.assert_allclose(np.asarray(dist.intercept_), np.asarray(mem.intercept_), atol=2e-3)


# ---------------------------------------------------------------------------- 12. one output
def test_single_output_classifier_with_1d_dask_labels(population, client):
    X, y = population
    y1 = LABELS[y[:, 1]]
    Xd, yd = da.from_array(X, chunks=(ROWS, -1)), da.from_array(y1, chunks=ROWS)
    dist = ClassifierGLM(C, regularizer_strength=1e-3).fit(Xd, yd, client=client)
    mem = ClassifierGLM(C, regularizer_strength=1e-3).fit(X, y1)
    assert np.asarray(dist.coef_).shape == (P, C) and np.asarray(dist.intercept_).shape == (C,)
    np.testing.assert_array_equal(dist.classes_, LABELS)
    _assert_rel(_objective(dist), _objective(mem), 1e-6)
    np.testing.assert_allclose(np.asarray(dist.coef_), np.asarray(mem.coef_), atol=2e-3)
    pred = dist.predict(Xd)
    assert isinstance(pred, da.Array) and pred.shape == (N,)
    np.testing.assert_array_equal(pred.compute(), np.asarray(dist.predict(X)))
    assert float(dist.score(Xd, yd)) == pytest.approx(float(dist.score(X, y1)), rel=1e-5)


@pytest.mark.cluster
@pytest.mark.slow
def test_per_output_and_per_session_scores_from_one_pass(session_fit, session_data):
    path, arrays = session_data
    model = session_fit
    sessions = distglm.open_sessions(path)
    ll_sum = dict.fromkeys(ALL_OUTPUTS, 0.0)
    n = dict.fromkeys(ALL_OUTPUTS, 0)
    order = list(np.asarray(model.outputs_))
    coef, icpt = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
    classes = list(model.classes_)
    for s, (X, labels) in arrays.items():
        idx = [order.index(o) for o in SESSIONS[s][0]]
        eta = np.einsum("np,pkc->nkc", X.astype(np.float64), coef[:, idx]) + icpt[idx]
        lp = eta - np.log(np.exp(eta).sum(-1, keepdims=True))
        codes = np.vectorize(classes.index)(labels)
        ll = np.take_along_axis(lp, codes[..., None], -1)[..., 0]
        for j, o in enumerate(SESSIONS[s][0]):
            ll_sum[o] += ll[:, j].sum()
            n[o] += ll.shape[0]
    per_output = model.score(sessions, per_output=True)
    assert list(per_output["output"].values) == order
    expected = [ll_sum[o] / n[o] for o in order]
    np.testing.assert_allclose(per_output.values, expected, rtol=1e-5)
    per_session = model.score(sessions, score_type="pseudo-r2-McFadden", per_session=True)
    assert set(per_session) == set(SESSIONS)
    for s in SESSIONS:
        alone = model.score({s: sessions[s]}, score_type="pseudo-r2-McFadden")
        np.testing.assert_allclose(float(per_session[s]), float(alone), rtol=1e-6)
    both = model.score(sessions, per_session=True, per_output=True)
    assert list(both["s1"]["output"].values) == SESSIONS["s1"][0]
