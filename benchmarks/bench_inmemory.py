"""In-memory fits: distglm beside nemos 0.2.8 and scikit-learn, time / objective / peak memory.

Problem recipe (DESIGN.md, "Anchors to beat"): ``X, y, _, _ = distglm.cli.make_population(
200_000, 50, 20, 3, seed=0)``: X float32 (200,000 x 50, standard normal), y integer codes
(200,000 x 20 outputs, 3 classes) drawn from a softmax model with N(0, 0.3) coefficients.
``--quick`` uses 20,000 samples. Ridge strengths 1.0 (the anchor) and 1e-3.

For each strength, each library runs in its own fresh subprocess (so the first fit pays the
imports' and XLA's compile costs exactly as a user would, and peak memory is that process's
``VmHWM``, its own peak RSS; ``ru_maxrss`` would carry over the driver's peak across exec):

- distglm ``ClassifierPopulationGLM(n_classes=3, regularizer="Ridge", regularizer_strength=s)``
  with its default solver (preconditioned L-BFGS, tol 1e-8);
- nemos 0.2.8 ``ClassifierPopulationGLM`` with the same arguments and its default solver;
- scikit-learn ``LogisticRegression(C=1/(s*n), solver="lbfgs", tol=1e-6, max_iter=1000)``, one
  output at a time (its objective ``C*sum(loss) + ||w||^2/2`` is ``1/s`` times ours).

"first" is the first fit in the process, "warm" a second fit of a new estimator in the same
process. The objective is computed here, the same way for all, in float64 numpy from each
fit's coef/intercept: mean NLL over samples summed over outputs + 0.5*s*||coef||^2 (the
intercept unpenalised). "gap" is relative to the best objective of the three. A "baseline"
subprocess that only imports numpy and generates the data gives the RSS every worker starts
from. Workers run with ``OPENBLAS_NUM_THREADS=1`` (``--blas-threads``; see ``BLAS_THREADS``).
Timings on a shared 2-core machine are noisy; run on a quiet machine for anchors.

Usage: ``python benchmarks/bench_inmemory.py [--quick] [--strengths 1.0 1e-3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

N_FULL, N_QUICK, P, K, C = 200_000, 20_000, 50, 20, 3
SKLEARN_TOL, SKLEARN_MAXITER = 1e-6, 1000
#: numpy/OpenBLAS threads in the workers (set by --blas-threads; None leaves the environment).
#: On a shared 2-core machine OpenBLAS with 2 threads was measured 3-60x slower than with 1 on
#: scikit-learn's fits (DESIGN.md notes the same for numpy's transposed product); JAX's XLA:CPU
#: does not use OpenBLAS, so this only matters for scikit-learn (and distglm's tiny solves).
BLAS_THREADS = "1"


def _data(n):
    from distglm.cli import make_population

    X, y, _, _ = make_population(n, P, K, C, seed=0)
    return X, y


def _rss_mib():
    """Peak RSS of this process since it started (MiB).

    ``VmHWM`` from /proc: ``ru_maxrss`` is preserved across ``execve``, so a subprocess would
    report its parent's peak when that is higher (the driver's, after it generated the data).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------ fits (in a worker process)
def _fit_distglm(X, y, s):
    import distglm

    m = distglm.ClassifierPopulationGLM(n_classes=C, regularizer="Ridge", regularizer_strength=s)
    m.fit(X, y)
    info = {
        "solver": f"{m.solver_name} (distglm, tol={m.solver_kwargs.get('tol', 1e-8)})",
        "iterations": len(m.fit_history_),
        "passes": int(m.n_passes_),
    }
    return np.asarray(m.coef_), np.asarray(m.intercept_), info


def _fit_nemos(X, y, s):
    import nemos

    m = nemos.glm.ClassifierPopulationGLM(n_classes=C, regularizer="Ridge", regularizer_strength=s)
    m.fit(X, y)
    n_iter = None
    state = getattr(m, "solver_state_", None)
    for attr in ("iter_num", "num_steps", "num_accepted_steps"):
        value = getattr(state, attr, None)
        if value is not None:
            n_iter = int(np.asarray(value))
            break
    info = {"solver": f"{m.solver_name} (nemos default)", "iterations": n_iter, "passes": None}
    return np.asarray(m.coef_), np.asarray(m.intercept_), info


def _fit_sklearn(X, y, s):
    from sklearn.linear_model import LogisticRegression

    n = X.shape[0]
    coef = np.zeros((X.shape[1], y.shape[1], C))
    intercept = np.zeros((y.shape[1], C))
    iters = []
    for j in range(y.shape[1]):
        m = LogisticRegression(
            C=1.0 / (s * n), solver="lbfgs", tol=SKLEARN_TOL, max_iter=SKLEARN_MAXITER
        )
        m.fit(X, y[:, j])
        coef[:, j, :] = m.coef_.T
        intercept[j] = m.intercept_
        iters.append(int(m.n_iter_[0]))
    info = {
        "solver": f"lbfgs per output (tol={SKLEARN_TOL:g})",
        "iterations": int(np.sum(iters)),
        "passes": None,
    }
    return coef, intercept, info


FITS = {"distglm": _fit_distglm, "nemos": _fit_nemos, "sklearn": _fit_sklearn}


def worker(lib, strength, n, out_path):
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    X, y = _data(n)
    data_s = time.perf_counter() - t0
    result = {"lib": lib, "strength": strength, "data_seconds": data_s}
    if lib != "baseline":
        fit = FITS[lib]
        t0 = time.perf_counter()
        coef, intercept, info = fit(X, y, strength)
        result["first"] = time.perf_counter() - t0
        result["rss_after_first_mib"] = _rss_mib()
        t0 = time.perf_counter()
        coef, intercept, info = fit(X, y, strength)
        result["warm"] = time.perf_counter() - t0
        result.update(info)
        np.savez(out_path + ".npz", coef=coef, intercept=intercept)
    result["peak_rss_mib"] = _rss_mib()
    with open(out_path + ".json", "w") as f:
        json.dump(result, f)


# ------------------------------------------------------------------ driver
def objective(coef, intercept, X, y, s, chunk=20_000):
    """Mean NLL over samples, summed over outputs, + 0.5*s*||coef||^2; float64 numpy."""
    coef = np.asarray(coef, np.float64).reshape(X.shape[1], y.shape[1], C)
    intercept = np.asarray(intercept, np.float64).reshape(y.shape[1], C)
    total = 0.0
    for a in range(0, X.shape[0], chunk):
        Xc = np.asarray(X[a : a + chunk], np.float64)
        eta = np.einsum("np,pkc->nkc", Xc, coef) + intercept
        m = eta.max(axis=-1, keepdims=True)
        lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
        eta_y = np.take_along_axis(eta, y[a : a + chunk, :, None], axis=-1)[..., 0]
        total += float(np.sum(lse - eta_y))
    return total / X.shape[0] + 0.5 * s * float(np.sum(coef**2))


def run_worker(lib, strength, n, tmp):
    out = os.path.join(tmp, f"{lib}_{strength:g}")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        lib,
        "--strength",
        repr(strength),
        "--n",
        str(n),
        "--out",
        out,
    ]
    env = dict(os.environ)
    if BLAS_THREADS is not None:
        env.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)
        env.setdefault("OMP_NUM_THREADS", BLAS_THREADS)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"[{lib} s={strength:g}] failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    with open(out + ".json") as f:
        res = json.load(f)
    if lib != "baseline":
        z = np.load(out + ".npz")
        res["coef"], res["intercept"] = z["coef"], z["intercept"]
    return res


def _fmt(x, spec):
    return format("-", ">" + spec.rstrip("d")) if x is None else format(x, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} samples")
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 1e-3])
    parser.add_argument("--libs", nargs="+", default=["distglm", "nemos", "sklearn"])
    parser.add_argument(
        "--blas-threads",
        default="1",
        help="OPENBLAS_NUM_THREADS for the workers ('env' keeps the environment's); default 1",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--strength", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.strength, args.n, args.out)
        return

    n = N_QUICK if args.quick else N_FULL
    global BLAS_THREADS
    BLAS_THREADS = None if args.blas_threads == "env" else args.blas_threads
    import jax
    import nemos
    import sklearn

    import distglm

    print(
        f"bench_inmemory: make_population({n:,}, {P}, {K}, {C}, seed=0), float32 X; "
        f"{os.cpu_count()} cores; distglm {distglm.__version__}, nemos {nemos.__version__}, "
        f"scikit-learn {sklearn.__version__}, jax {jax.__version__}; one fresh subprocess per "
        f"library and strength; OPENBLAS_NUM_THREADS={BLAS_THREADS or 'from env'} in workers"
    )
    X, y = _data(n)
    with tempfile.TemporaryDirectory() as tmp:
        base = run_worker("baseline", 0.0, n, tmp)
        print(
            f"baseline worker (numpy + data generation only): peak RSS "
            f"{base['peak_rss_mib']:.0f} MiB; X is {X.nbytes / 2**20:.0f} MiB\n"
        )
        for s in args.strengths:
            results = {}
            for lib in args.libs:
                res = run_worker(lib, s, n, tmp)
                if res is not None:
                    res["objective"] = objective(res["coef"], res["intercept"], X, y, s)
                    results[lib] = res
            if not results:
                continue
            best = min(r["objective"] for r in results.values())
            print(f"Ridge strength {s:g} (objective = sum_k mean NLL + 0.5*s*||coef||^2)")
            head = (
                f"{'library':<8} {'first s':>8} {'warm s':>8} {'objective':>13} "
                f"{'rel gap':>9} {'peak MiB':>8} {'iters':>6} {'passes':>6}  solver"
            )
            print(head)
            print("-" * (len(head) + 30))
            for lib, r in results.items():
                gap = (r["objective"] - best) / abs(best)
                print(
                    f"{lib:<8} {r['first']:8.2f} {r['warm']:8.2f} {r['objective']:13.6f} "
                    f"{gap:9.1e} {r['peak_rss_mib']:8.0f} {_fmt(r.get('iterations'), '6d')} "
                    f"{_fmt(r.get('passes'), '6d')}  {r['solver']}"
                )
            d = results.get("distglm")
            for ref in ("nemos", "sklearn"):
                if d is None or ref not in results:
                    continue
                o = results[ref]
                print(
                    f"distglm / {ref:<7}: time first {d['first'] / o['first']:.2f}x, "
                    f"warm {d['warm'] / o['warm']:.2f}x, peak RSS "
                    f"{d['peak_rss_mib'] / o['peak_rss_mib']:.2f}x"
                )
            print()


if __name__ == "__main__":
    main()
