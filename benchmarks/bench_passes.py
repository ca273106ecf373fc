"""Passes and wall time to a 1e-6 relative objective gap: distglm's solvers, nemos, scikit-learn.

Cases (``--cases``; ``--quick`` uses 20,000 rows instead of 200,000):

- ``pop-1``, ``pop-1e-3``: ``distglm.cli.make_population(200_000, 50, 20, 3, seed=0)`` (standard
  normal float32 features, 20 outputs, 3 classes) at Ridge strength 1.0 and 1e-3;
- ``ill-1``, ``ill-1e-3``: ``distglm.cli.make_ill_conditioned(200_000, 50, 20, 3, seed=0)``
  (AR(1) features with neighbour correlation 0.95, scaled over 3 decades) at 1.0 and 1e-3.

Methods, each library in its own fresh subprocess per case (``OPENBLAS_NUM_THREADS=1`` there,
as in ``bench_inmemory.py``; ``--blas-threads env`` keeps the environment's setting):

- distglm ``ClassifierPopulationGLM(3, regularizer="Ridge", regularizer_strength=s,
  solver_name=NAME, solver_kwargs={"tol": 1e-10, "maxiter": M})`` for NAME in Newton, LBFGS,
  GradientDescent, ProximalGradient and "auto" (the row names the solver it picked,
  ``model.solver_``), in that order in one process. ``tol=1e-10`` is below what the float32
  kernels resolve, so each solver runs until its own precision floor (or ``maxiter``) and the
  trajectory shows when it crossed the target. M is 100 for Newton/auto, 500 for LBFGS; for the
  two first-order solvers (FISTA with a fixed step; for Ridge GradientDescent and
  ProximalGradient take the same iterates) M = min(``--fo-maxiter`` (2000), ``--fo-seconds``
  (60) / the seconds per pass of LBFGS's fit on the same case, at least 50), so that the
  ill-conditioned cases, where they crawl, cost at most about a minute per fit; the row shows
  the cap, and ``>N`` passes (N the passes made) when it came before the target.
- nemos 0.2.8 ``ClassifierPopulationGLM`` with its defaults (``GradientDescent[optimistix]``,
  maxiter 500, tol 1e-4), and scikit-learn ``LogisticRegression(lbfgs, tol=1e-6,
  max_iter=1000, C=1/(s*n))`` one output at a time: the fit functions of ``bench_inmemory.py``.
  They expose no passes: the table gives their iterations (nemos' solver steps; sklearn's
  ``n_iter_`` summed over outputs), their fit time and their final gap only.

Timing. Every library is imported before any clock starts. distglm: "first s" is the first
fit of a solver in the process; Newton runs first (default ``--solvers`` order), so its first
fit includes the XLA compile of its kernels (LBFGS's, that of the value-and-gradient kernel).
Every other time comes from a warm fit, the second fit of that solver in the process (the
first-order solvers are warmed up by a 3-iteration fit). "fit s" is ``model.fit_time_`` (the
whole fit: validation, copy to the device, the statistics pass, the solver). "s to 1e-6" is
``fit_time_ - (seconds of the last history entry - seconds of the entry that reached the
target)``: the fit's setup plus the solver's clock at that entry. nemos and scikit-learn: the
second fit in the process when the first took at most ``--warm-budget`` seconds (30), else the
first, marked ``*`` (nemos' then includes its compile, a few seconds of a long fit).

How the gap is judged. The objective is nemos' (loss + penalty): the mean NLL over samples
summed over outputs + 0.5*s*||coef||^2, the intercept unpenalised.

1. Every method's final coef/intercept is scored here by one float64 numpy function
   (``bench_inmemory.objective``), the same for all.
2. The reference optimum is the lowest of these, refined by a float64 Newton method from that
   point (per output, exact float64 gradient over all rows, Hessian on every s-th row, at least
   25,000 rows, pseudo-inverse solve, backtracking), kept only if it is lower: every library
   here computes in float32, so the refinement gives a reference below all of them and each
   method's "final gap" is its own distance to the optimum (``--no-refine`` skips it).
3. "final gap" = (float64 objective of the final parameters - reference) / |reference|.
4. "passes to 1e-6" uses ``fit_history_``: its objectives are distglm's float32-kernel sums, which
   differ from the float64 value at the same parameters by up to about 1e-7 relative (2e-9
   to 1e-7 on ``--quick``; a nearly constant offset near the optimum; printed per case). The
   offset is measured at the final parameters (the last history entry minus the float64 value
   there, for LBFGS and Newton, whose last entry is taken at the parameters they return; for
   the FISTA solvers, whose entries are taken at the extrapolated point, distglm's float32
   objective ``InMemoryData.value`` at the returned parameters minus the float64 value) and
   subtracted from every entry. The first entry whose
   corrected objective is within ``--target`` (1e-6) relative of the reference gives the passes
   (cumulative, the statistics pass included) and the time. A row whose history reached the
   target but whose float64 final gap is above it is marked ``?``. Checked once against the
   float64 objective of every iterate (recorded by a patched solver step, outside this script)
   on ``--quick ill-1``: the same pass for Newton and LBFGS, one pass later for FISTA, whose
   entries are at the extrapolated point (slightly above the iterate's value).

Ratios divide distglm's time to the target by the reference library's whole fit time; where
that library's final gap is above the target it never reached it, and the ratio flatters it.

Run time on 2 cores: ``--quick`` about 6 minutes (over half of it nemos and scikit-learn on
the ill-conditioned cases). The full size is estimated (from ``--quick`` and the recorded
``bench_inmemory`` timings) at roughly 25 minutes: distglm about 5 (the capped first-order fits
on the ill-conditioned cases), nemos about 8 (its 1e-3 and ill-conditioned fits run 270-500
steps of ~0.3 s) and scikit-learn about 10 (``ill-1e-3`` hits max_iter on most outputs).
``--libs distglm`` gives distglm's rows alone. Timings on a shared machine are noisy.

Usage: ``python benchmarks/bench_passes.py [--quick] [--cases pop-1 ill-1e-3]
[--libs distglm nemos sklearn] [--solvers Newton LBFGS ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_inmemory import N_FULL, N_QUICK, C, K, P, _fit_nemos, _fit_sklearn, objective
from threadpoolctl import threadpool_limits

#: case -> (generator in distglm.cli, Ridge strength)
CASES = {
    "pop-1": ("make_population", 1.0),
    "pop-1e-3": ("make_population", 1e-3),
    "ill-1": ("make_ill_conditioned", 1.0),
    "ill-1e-3": ("make_ill_conditioned", 1e-3),
}
SOLVERS = ("Newton", "LBFGS", "GradientDescent", "ProximalGradient", "auto")
FIRST_ORDER = ("GradientDescent", "ProximalGradient")
TOL = 1e-10
MAXITER = {"Newton": 100, "auto": 100, "LBFGS": 500}
REFS = {"nemos": _fit_nemos, "sklearn": _fit_sklearn}


def _data(case, n):
    from distglm import cli

    X, y, _, _ = getattr(cli, CASES[case][0])(n, P, K, C, seed=0)
    return X, y


# ------------------------------------------------------------------ workers
def _fit_distglm(X, y, s, name, maxiter):
    import distglm

    m = distglm.ClassifierPopulationGLM(
        C,
        regularizer="Ridge",
        regularizer_strength=s,
        solver_name=name,
        solver_kwargs={"tol": TOL, "maxiter": int(maxiter)},
    )
    m.fit(X, y)
    return m


def _worker_distglm(X, y, s, args):
    import distglm  # noqa: F401  (imported before any clock)
    from distglm.solve import InMemoryData

    data32 = InMemoryData(X, y, C)  # the library's float32 objective, default block size
    rows, arrays, per_pass = {}, {}, None
    for name in args.solvers:
        first = None
        if name in FIRST_ORDER:
            maxiter = args.fo_maxiter
            if per_pass:
                maxiter = int(min(args.fo_maxiter, max(50, args.fo_seconds / per_pass)))
            _fit_distglm(X, y, s, name, 3)  # compiles this shape's kernels
        else:
            maxiter = MAXITER[name]
            t0 = time.perf_counter()
            _fit_distglm(X, y, s, name, maxiter)
            first = time.perf_counter() - t0
        m = _fit_distglm(X, y, s, name, maxiter)
        if name == "LBFGS" or (per_pass is None and name == "Newton"):
            per_pass = m.fit_time_ / max(m.n_passes_, 1)
        coef = np.asarray(m.coef_, np.float64)
        intercept = np.asarray(m.intercept_, np.float64)
        theta = np.concatenate([coef, intercept[None]], axis=0)
        hist = m.fit_history_
        rows[name] = {
            "solver": m.solver_,
            "maxiter": maxiter,
            "first": first,
            "fit": m.fit_time_,
            "passes": int(m.n_passes_),
            "iterations": len(hist),
            "f32_final": data32.value(theta) + 0.5 * s * float(np.sum(coef**2)),
            "hist_objective": [h["objective"] for h in hist],
            "hist_passes": [int(h["passes"]) for h in hist],
            "hist_seconds": [h["seconds"] for h in hist],
        }
        arrays[f"{name}_coef"], arrays[f"{name}_intercept"] = coef, intercept
    return rows, arrays


def _worker_ref(lib, X, y, s, args):
    if lib == "nemos":
        import nemos  # noqa: F401
    else:
        import sklearn.linear_model  # noqa: F401
    fit = REFS[lib]
    t0 = time.perf_counter()
    coef, intercept, info = fit(X, y, s)
    first = time.perf_counter() - t0
    row = dict(info, first=first, fit=first, warm=False)
    if first <= args.warm_budget:
        t0 = time.perf_counter()
        coef, intercept, info = fit(X, y, s)
        row.update(info, fit=time.perf_counter() - t0, warm=True)
    return {lib: row}, {f"{lib}_coef": coef, f"{lib}_intercept": intercept}


def worker(args):
    import warnings

    warnings.simplefilter("ignore")  # not-converged warnings of capped fits
    X, y = _data(args.case, args.n)
    s = CASES[args.case][1]
    if args.worker == "distglm":
        rows, arrays = _worker_distglm(X, y, s, args)
    else:
        rows, arrays = _worker_ref(args.worker, X, y, s, args)
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as f:
        json.dump(rows, f)


def run_worker(lib, case, n, tmp, args):
    out = os.path.join(tmp, f"{lib}_{case}")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--case", case]
    cmd += ["--n", str(n), "--out", out, "--solvers", *args.solvers]
    cmd += ["--fo-maxiter", str(args.fo_maxiter), "--fo-seconds", repr(args.fo_seconds)]
    cmd += ["--warm-budget", repr(args.warm_budget)]
    env = dict(os.environ)
    if args.blas_threads != "env":
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = args.blas_threads
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"[{lib} {case}] failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return {}
    with open(out + ".json") as f:
        rows = json.load(f)
    z = np.load(out + ".npz")
    for name, row in rows.items():
        row["coef"], row["intercept"] = z[f"{name}_coef"], z[f"{name}_intercept"]
    return rows


# ------------------------------------------------------------------ float64 reference
def _per_output(theta, X, y, s, with_grad, chunk=20_000):
    """Float64 objective per output (K,), and its gradient, at theta (P+1, K, C)."""
    n = X.shape[0]
    W = theta.reshape(P + 1, K * C)
    f = np.zeros(K)
    g = np.zeros_like(theta) if with_grad else None
    for a in range(0, n, chunk):
        Xc = np.asarray(X[a : a + chunk], np.float64)
        yc = y[a : a + chunk, :, None]
        eta = (Xc @ W[:-1] + W[-1]).reshape(-1, K, C)
        mx = eta.max(axis=-1, keepdims=True)
        e = np.exp(eta - mx)
        z = e.sum(axis=-1, keepdims=True)
        f += np.sum(mx[..., 0] + np.log(z[..., 0]) - np.take_along_axis(eta, yc, -1)[..., 0], 0)
        if with_grad:
            r = e / z
            np.put_along_axis(r, yc, np.take_along_axis(r, yc, -1) - 1.0, -1)
            r = r.reshape(-1, K * C)
            g[:-1] += (Xc.T @ r).reshape(P, K, C)
            g[-1] += r.sum(axis=0).reshape(K, C)
    f = f / n + 0.5 * s * np.sum(theta[:-1] ** 2, axis=(0, 2))
    if with_grad:
        g /= n
        g[:-1] += s * theta[:-1]
    return f, g


def _hessian(theta, X, s, rows):
    """Per-output Hessian (K, D, D), D = (P+1)*C, index (feature, class), on every s-th row."""
    step = max(1, X.shape[0] // rows)
    Xh = np.asarray(X[::step], np.float64)
    Xh = np.concatenate([Xh, np.ones((Xh.shape[0], 1))], axis=1)
    eta = (Xh @ theta.reshape(P + 1, K * C)).reshape(-1, K, C)
    p = np.exp(eta - eta.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    H = np.zeros((K, P + 1, C, P + 1, C))
    for a in range(C):
        for b in range(a, C):
            w = p[..., a] * (float(a == b) - p[..., b]) / Xh.shape[0]  # (rows, K)
            for k in range(K):
                block = Xh.T @ (Xh * w[:, k, None])
                H[k, :, a, :, b] = block
                H[k, :, b, :, a] = block
    idx = np.arange(P)
    for a in range(C):
        H[:, idx, a, idx, a] += s
    return H.reshape(K, (P + 1) * C, (P + 1) * C)


def refine(coef, intercept, X, y, s, max_iter=8, hess_rows=25_000):
    """Float64 Newton from (coef, intercept); returns (coef, intercept, iterations)."""
    theta = np.concatenate(
        [np.asarray(coef, np.float64).reshape(P, K, C), np.asarray(intercept).reshape(1, K, C)]
    ).astype(np.float64)
    D = (P + 1) * C
    it = 0
    while it < max_iter:
        it += 1
        f, g = _per_output(theta, X, y, s, True)
        gk = np.transpose(g, (1, 0, 2)).reshape(K, D)
        lam, V = np.linalg.eigh(_hessian(theta, X, s, hess_rows))
        inv = np.where(lam > 1e-12 * lam[:, -1:], 1.0 / np.maximum(lam, 1e-300), 0.0)
        d = -np.einsum("kij,kj->ki", V, inv * np.einsum("kji,kj->ki", V, gk))
        slope = np.einsum("kd,kd->k", gk, d)  # <= 0
        direction = np.transpose(d.reshape(K, P + 1, C), (1, 0, 2))
        # outputs whose predicted decrease is at float64 rounding are done
        todo = -0.5 * slope > 1e-15 * np.maximum(1.0, np.abs(f))
        t = np.where(todo, 1.0, 0.0)
        for _ in range(12):
            if not todo.any():
                break
            f_new, _ = _per_output(theta + t[None, :, None] * direction, X, y, s, False)
            ok = todo & (f_new <= f + 1e-4 * t * slope)
            todo &= ~ok
            t = np.where(todo, 0.5 * t, t)
        t = np.where(todo, 0.0, t)  # no decrease the float64 sums resolve
        theta += t[None, :, None] * direction
        if -0.5 * slope.sum() <= 1e-13 * abs(f.sum()):
            break
    return theta[:-1], theta[-1], it


# ------------------------------------------------------------------ driver
def _judge(row, f64, ref, target):
    """Passes and seconds to the target from the bias-corrected history (see the docstring)."""
    obj = np.asarray(row["hist_objective"])
    if obj.size == 0:
        return None, None, 0.0
    anchor = row["f32_final"] if row["solver"] in FIRST_ORDER else obj[-1]
    bias = anchor - f64
    gaps = (obj - bias - ref) / abs(ref)
    hit = np.flatnonzero(gaps <= target)
    if hit.size == 0:
        return None, None, bias
    i = int(hit[0])
    seconds = row["fit"] - (row["hist_seconds"][-1] - row["hist_seconds"][i])
    return row["hist_passes"][i], seconds, bias


def _f(x, spec, width):
    return f"{'-':>{width}}" if x is None else f"{format(x, spec):>{width}}"


def report(case, n, results, X, y, args):
    s = CASES[case][1]
    for row in results.values():
        row["f64"] = objective(row["coef"], row["intercept"], X, y, s)
    best_key = min(results, key=lambda k: results[k]["f64"])
    best = results[best_key]["f64"]
    ref, note = best, f"reference = best final objective ({best_key}); refinement off"
    if not args.no_refine:
        t0 = time.perf_counter()
        rb = results[best_key]
        coef, intercept, iters = refine(rb["coef"], rb["intercept"], X, y, s)
        refined = objective(coef, intercept, X, y, s)
        ref = min(best, refined)
        note = (
            f"reference = float64 Newton from {best_key}'s final point, {iters} iterations "
            f"({time.perf_counter() - t0:.1f} s): {ref:.10f}, "
            f"{(best - ref) / abs(ref):.1e} relative below the best method"
        )
    gen = CASES[case][0]
    print(f"== {case}: {gen}({n:,}, {P}, {K}, {C}, seed=0), Ridge {s:g}")
    print(f"   {note}")
    tgt = f"{args.target:g}"
    head = (
        f"{'method':<36} {'passes→' + tgt:>12} {'s→' + tgt:>8} {'passes':>6} {'iters':>6} "
        f"{'fit s':>7} {'first s':>7} {'final gap':>9} {'/nemos':>7} {'/sklearn':>8}"
    )
    print(head)
    print("-" * len(head))
    refs = {k: results[k] for k in ("nemos", "sklearn") if k in results}
    for name, row in results.items():
        gap = (row["f64"] - ref) / abs(ref)
        if name in REFS:
            label = f"{name} {row['solver'].split(' (')[0]}"
            fit = f"{row['fit']:.2f}" + ("" if row["warm"] else "*")
            print(
                f"{label:<36} {'-':>12} {'-':>8} {'-':>6} {_f(row.get('iterations'), 'd', 6)} "
                f"{fit:>7} {row['first']:7.2f} {gap:9.1e} {'-':>7} {'-':>8}"
            )
            continue
        passes, secs, bias = _judge(row, row["f64"], ref, args.target)
        label = f"distglm {name}"
        if name == "auto":
            label += f" (→{row['solver']})"
        if name in FIRST_ORDER:
            label += f" (cap {row['maxiter']})"
        flag = "?" if passes is not None and gap > args.target else ""
        p_txt = f">{row['passes']}" if passes is None else f"{passes}{flag}"
        ratios = []
        for ref_name, width in (("nemos", 7), ("sklearn", 8)):
            r = refs.get(ref_name)
            ratio = None if (secs is None or r is None) else f"{secs / r['fit']:.3f}x"
            ratios.append(_f(ratio, "", width))
        print(
            f"{label:<36} {p_txt:>12} {_f(secs, '.2f', 8)} {row['passes']:6d} "
            f"{row['iterations']:6d} {row['fit']:7.2f} {_f(row['first'], '.2f', 7)} "
            f"{gap:9.1e} {ratios[0]} {ratios[1]}"
        )
        row["bias"] = bias
    biases = [f"{k} {r['bias'] / abs(ref):+.1e}" for k, r in results.items() if "bias" in r]
    if biases:
        print(f"   float32 history offset at the final point (relative): {', '.join(biases)}")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} rows")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--libs", nargs="+", choices=["distglm", *REFS], default=["distglm", *REFS])
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--target", type=float, default=1e-6, help="relative gap (1e-6)")
    parser.add_argument("--fo-maxiter", type=int, default=2000)
    parser.add_argument(
        "--fo-seconds", type=float, default=60.0, help="first-order solvers' time cap per fit"
    )
    parser.add_argument(
        "--warm-budget", type=float, default=30.0, help="nemos/sklearn: refit when faster"
    )
    parser.add_argument("--no-refine", action="store_true", help="skip the float64 Newton")
    parser.add_argument("--blas-threads", default="1", help="workers' OPENBLAS_NUM_THREADS")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    n = N_QUICK if args.quick else N_FULL
    import jax
    import nemos
    import sklearn

    import distglm

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bench_passes: {n:,} rows x {P} features, {K} outputs x {C} classes; "
        f"{platform.machine()}, {os.cpu_count()} cores (load {load}), jax {jax.__version__} on "
        f"{jax.default_backend()}; distglm {distglm.__version__}, nemos {nemos.__version__}, "
        f"scikit-learn {sklearn.__version__}; one fresh subprocess per library and case, "
        f"OPENBLAS_NUM_THREADS={args.blas_threads} in workers"
    )
    print(
        f"target: relative gap {args.target:g} to the float64 reference. distglm tol "
        f"{TOL:g}; times are warm fits (first s: the process's first fit of that solver, "
        f"Newton's includes XLA compile); * = nemos/sklearn first fit (over the warm budget)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            results = {}
            for lib in args.libs:
                results.update(run_worker(lib, case, n, tmp, args))
            if results:
                X, y = _data(case, n)
                if args.blas_threads == "env":
                    report(case, n, results, X, y, args)
                else:  # the float64 scoring here, as in the workers
                    with threadpool_limits(limits=int(args.blas_threads)):
                        report(case, n, results, X, y, args)
                sys.stdout.flush()


if __name__ == "__main__":
    main()
