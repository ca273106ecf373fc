"""Choosing the Ridge strength by 5-fold CV over 10 strengths, in memory: passes and time.

Problem: ``distglm.cli.make_population(n, 50, K, 3, seed=0)`` (``--quick``: n=5,000, K=5;
default n=200,000, K=20). Folds are 5 contiguous blocks of rows; the grid is distglm's default
(10 strengths over 4 decades). Side by side, in this process, after one warm-up fit:

- distglm ``ClassifierPopulationGLMCV`` (one warm-started path by per-output Newton advancing
  every fold and the full-data path in each pass, its state carried from strength to strength,
  converged (output, fold) columns dropping out, the held-out sums taken in the same passes;
  per-output choice and the refit);
- a loop of separate cold distglm fits, one per (strength, fold), scored on the held-out rows
  (the brute force), plus the refit: its passes are the sum of the fits' passes;
- scikit-learn ``LogisticRegressionCV`` one output at a time, with the same folds and the grid
  as ``Cs = 1 / (strength * n_train)`` (its objective is ``1/strength`` times ours);
- with ``--nemos``, nemos 0.2.8 ``ClassifierPopulationGLM`` (its default solver) in
  scikit-learn's ``GridSearchCV`` over the same strengths and folds, scored by nemos' own
  ``score`` (one strength for all outputs: ``GridSearchCV`` cannot choose per output);
- one cold distglm fit on all data at the weakest strength to tol 1e-6 (the issue's unit);
- with ``--out-of-core``, the same search distributed: the rows written to a Zarr store as one
  session (32 chunks), fitted on a ``LocalCluster(2, 1)`` whose workers' cache budgets hold
  1/16 of the store each (the store is 8x their budgets together), so every pass streams most
  chunks from disk; its passes include the statistics pass.

The search is timed twice: its first call compiles its kernels (the Newton pass on the stacked
columns, per output bucket), the second runs compiled.

Usage: ``python benchmarks/bench_cv.py [--quick] [--nemos] [--no-loop] [--out-of-core]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import distglm
from distglm.cli import make_population
from distglm.folds import plan_folds
from distglm.path import default_strengths

P, C, FOLDS = 50, 3, 5


def _brute_force(X, y, strengths, index):
    passes, scores = 0, np.empty((len(strengths), FOLDS, y.shape[1]))
    for i, s in enumerate(strengths):
        for f in range(FOLDS):
            held = index == f
            m = distglm.ClassifierPopulationGLM(C, regularizer_strength=float(s))
            m.fit(X[~held], y[~held])
            passes += m.n_passes_
            lp = np.asarray(m.predict_proba(X[held], "log-proba"))
            scores[i, f] = np.take_along_axis(lp, y[held][:, :, None], 2)[:, :, 0].mean(0)
    best = np.asarray(strengths)[np.argmax(scores.mean(1), axis=0)]
    refit = distglm.ClassifierPopulationGLM(
        C,
        regularizer_strength=distglm.regularizer.Ridge().per_output_strength(
            best, (P, *y.shape[1:], C)
        ),
    ).fit(X, y)
    return passes + refit.n_passes_, best


def _sklearn(X, y, strengths, index):
    from sklearn.linear_model import LogisticRegressionCV

    n_train = int(np.sum(index != 0))
    splits = [(np.flatnonzero(index != f), np.flatnonzero(index == f)) for f in range(FOLDS)]
    Cs = 1.0 / (np.asarray(strengths) * n_train)
    best = []
    for k in range(y.shape[1]):
        m = LogisticRegressionCV(Cs=Cs, cv=splits, scoring="neg_log_loss", max_iter=1000)
        m.fit(X, y[:, k])
        best.append(1.0 / (float(m.C_[0]) * n_train))
    return np.asarray(best)


def _nemos(X, y, strengths, index):
    import nemos
    from sklearn.model_selection import GridSearchCV

    splits = [(np.flatnonzero(index != f), np.flatnonzero(index == f)) for f in range(FOLDS)]
    model = nemos.glm.ClassifierPopulationGLM(n_classes=C, regularizer="Ridge")
    grid = GridSearchCV(model, {"regularizer_strength": [float(s) for s in strengths]}, cv=splits)
    grid.fit(X, y)
    return float(grid.best_params_["regularizer_strength"])


def _out_of_core(X, y, strengths):
    """The search over a Zarr store 8x the workers' cache budgets: (seconds, passes, strengths,
    streamed)."""
    import tempfile

    import xarray as xr
    from distributed import Client, LocalCluster

    n, K = y.shape
    with tempfile.TemporaryDirectory() as folder:
        store = f"{folder}/sessions.zarr"
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X.astype(np.float32)), "y": (("sample", "output"), y)},
            coords={"output": [f"u{k}" for k in range(K)]},
        )
        ds.chunk({"sample": -(-n // 32)}).to_zarr(store, group="session0")
        decoded = X.shape[0] * (X.shape[1] * 4 + K)
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            distglm.pin_workers_to_cores(client)
            t = time.perf_counter()
            search = distglm.ClassifierPopulationGLMCV(C, strengths=strengths, cv=FOLDS)
            search.fit(distglm.open_sessions(store), client=client, cache_bytes=decoded // 16)
            seconds = time.perf_counter() - t
    streamed = search.best_estimator_.fit_profile_["streamed"]
    return seconds, search.n_passes_, search.strength_, streamed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nemos", action="store_true", help="add nemos in GridSearchCV")
    parser.add_argument("--no-loop", action="store_true", help="skip the loop of separate fits")
    parser.add_argument(
        "--out-of-core", action="store_true", help="add the search over a store 8x the cache"
    )
    args = parser.parse_args()
    n, K = (5_000, 5) if args.quick else (200_000, 20)
    X, y, _, _ = make_population(n, P, K, C, seed=0)
    X, y = np.asarray(X), np.asarray(y)
    index = plan_folds([n], FOLDS).index
    strengths = default_strengths(distglm.ClassifierPopulationGLM(C), X, y)
    distglm.ClassifierPopulationGLM(C).fit(X[:500], y[:500])  # compile once

    rows = []
    t = time.perf_counter()
    cold = distglm.ClassifierPopulationGLM(
        C, regularizer_strength=float(strengths[-1]), solver_kwargs={"tol": 1e-6}
    ).fit(X, y)
    rows.append(("one cold fit, weakest strength", time.perf_counter() - t, cold.n_passes_))
    t = time.perf_counter()
    search = distglm.ClassifierPopulationGLMCV(C, strengths=strengths, cv=FOLDS).fit(X, y)
    rows.append(("distglm ClassifierPopulationGLMCV", time.perf_counter() - t, search.n_passes_))
    t = time.perf_counter()
    again = distglm.ClassifierPopulationGLMCV(C, strengths=strengths, cv=FOLDS).fit(X, y)
    rows.append(("  the same search, compiled", time.perf_counter() - t, again.n_passes_))
    brute_best = None
    if not args.no_loop:
        t = time.perf_counter()
        brute_passes, brute_best = _brute_force(X, y, strengths, index)
        rows.append(("loop of separate distglm fits", time.perf_counter() - t, brute_passes))
    print(*(f"{name}: {sec:.2f} s, {passes} passes" for name, sec, passes in rows), sep="\n")
    print(flush=True)
    t = time.perf_counter()
    sk_best = _sklearn(X, y, strengths, index)
    rows.append(("sklearn LogisticRegressionCV per output", time.perf_counter() - t, None))
    nemos_best = None
    if args.nemos:
        t = time.perf_counter()
        nemos_best = _nemos(X, y, strengths, index)
        rows.append(("nemos 0.2.8 in GridSearchCV (one strength)", time.perf_counter() - t, None))

    ooc_best = None
    if args.out_of_core:
        sec, passes, ooc_best, streamed = _out_of_core(X, y, strengths)
        assert streamed, "the out-of-core search did not stream"
        rows.append(("  distributed, store 8x the cache budgets", sec, passes))

    print(f"n={n} features={P} outputs={K} classes={C}: {len(strengths)} strengths x {FOLDS} folds")
    base_t, base_p = rows[1][1], rows[1][2]
    print(f"{'method':42s} {'seconds':>9s} {'x distglm':>9s} {'passes':>7s} {'x cold fit':>10s}")
    for name, sec, passes in rows:
        p = "-" if passes is None else f"{passes:d}"
        ratio = "-" if passes is None else f"{passes / rows[0][2]:.1f}"
        print(f"{name:42s} {sec:9.2f} {sec / base_t:9.2f} {p:>7s} {ratio:>10s}")
    print(f"passes of the search / one cold fit: {base_p / rows[0][2]:.1f}")
    sk_same = np.mean(np.isclose(search.strength_, sk_best))
    if brute_best is not None:
        same = np.mean(search.strength_ == brute_best)
        print(f"chosen strengths equal to the brute force: {same:.0%}")
    print(f"chosen strengths equal to sklearn's: {sk_same:.0%}")
    if ooc_best is not None:
        same = np.mean(np.isclose(ooc_best, search.strength_, rtol=1e-6))
        print(f"out-of-core choices equal to the in-memory search's: {same:.0%}")
    if nemos_best is not None:
        shared = distglm.ClassifierPopulationGLMCV(
            C, strengths=strengths, cv=FOLDS, per_output=False, refit=False
        ).fit(X, y)
        print(
            f"nemos' one strength: {nemos_best:.4g}; distglm's (per_output=False): "
            f"{float(shared.strength_[0]):.4g}"
        )


if __name__ == "__main__":
    main()
