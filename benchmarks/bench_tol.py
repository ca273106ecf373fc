"""What ``tol`` buys: each solver's true objective gap at its stop, beside its own estimate.

Problem: ``distglm.cli.make_population(n, 50, 20, 3, seed=0)`` (200,000 rows; ``--quick``:
40,000) in memory, float32 kernels, at Ridge ``--ridge`` (1e-3) and Lasso ``--lasso`` (1e-3),
fitted with each solver that takes the penalty at each ``--tols`` value.

The reference optimum of each penalty is a float64 fit (``jax.enable_x64``) by Newton at tol
1e-13, checked against a second float64 fit by L-BFGS (Ridge) or ProximalGradient (Lasso) at
tol 1e-13; each gap is the float64 objective at the fit's coefficients less the reference's,
relative. "est" is the solver's own estimate at its last step (``solver_state_.gap / |F|``), and
"true / tol" says whether the fit ended within its ``tol`` (at most 1).

Usage: ``python benchmarks/bench_tol.py [--quick] [--tols 1e-6 1e-8] [--ridge 1e-3]
[--lasso 1e-3] [--solvers LBFGS GradientDescent ProximalGradient Newton]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

SMOOTH_ONLY = ("LBFGS", "GradientDescent")


def objective64(theta, X, y, ridge, lasso):
    """The penalised objective in float64 numpy; ``theta`` (p + 1, K, C), intercept last."""
    coef, icpt = theta[:-1], theta[-1]
    n, p = X.shape
    K, C = coef.shape[1:]
    eta = (X @ coef.reshape(p, K * C)).reshape(n, K, C) + icpt
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    eta_y = np.take_along_axis(eta, y[..., None], axis=-1)[..., 0]
    nll = np.sum((lse - eta_y).mean(axis=0))
    return nll + 0.5 * ridge * np.sum(coef**2) + lasso * np.sum(np.abs(coef))


def theta_of(model):
    return np.concatenate(
        [np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)[None]]
    )


def main(argv=None):
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-6, 1e-8])
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--lasso", type=float, default=1e-3)
    ap.add_argument(
        "--solvers", nargs="+", default=["LBFGS", "GradientDescent", "ProximalGradient", "Newton"]
    )
    args = ap.parse_args(argv)
    import jax

    import distglm
    from distglm.cli import make_population

    n = 40_000 if args.quick else 200_000
    X, y, _, _ = make_population(n, 50, 20, 3, seed=0)
    X64 = X.astype(np.float64)

    def fit(penalty, strength, solver, tol, maxiter=20000):
        model = distglm.ClassifierPopulationGLM(
            3,
            regularizer=penalty,
            regularizer_strength=strength,
            solver_name=solver,
            solver_kwargs={"tol": tol, "maxiter": maxiter},
        )
        t = time.perf_counter()
        model.fit(X, y)
        return model, time.perf_counter() - t

    print(
        f"bench_tol: make_population({n:,}, 50, 20, 3, seed=0) in memory, float32 kernels; "
        f"jax {jax.__version__}"
    )
    print(
        f"{'penalty':>12s} {'solver':>16s} {'tol':>7s} {'passes':>6s} {'true gap':>10s} "
        f"{'est':>10s} {'true/est':>8s} {'true/tol':>8s} {'seconds':>8s}"
    )
    for penalty, strength, check in (
        ("Ridge", args.ridge, "LBFGS"),
        ("Lasso", args.lasso, "ProximalGradient"),
    ):
        ridge, lasso = (strength, 0.0) if penalty == "Ridge" else (0.0, strength)

        def F(model, ridge=ridge, lasso=lasso):
            return objective64(theta_of(model), X64, y, ridge, lasso)

        with jax.enable_x64(True):
            ref = fit(penalty, strength, "Newton", 1e-13)[0]
            other = fit(penalty, strength, check, 1e-13)[0]
        f_star = min(F(ref), F(other))
        agree = abs(F(ref) - F(other)) / abs(f_star)
        label = f"{penalty} {strength:g}"
        for solver in args.solvers:
            if penalty != "Ridge" and solver in SMOOTH_ONLY:
                continue
            for tol in args.tols:
                model, secs = fit(penalty, strength, solver, tol)
                true = (F(model) - f_star) / abs(f_star)
                st = model.solver_state_
                est = float(st.gap) / max(1.0, abs(float(st.value)))
                print(
                    f"{label:>12s} {solver:>16s} {tol:7.0e} {model.n_passes_:6d} {true:10.3e} "
                    f"{est:10.3e} {true / max(est, 1e-300):8.2f} {true / tol:8.2f} {secs:8.2f}",
                    flush=True,
                )
        print(
            f"{'':>12s} (reference: float64 Newton and {check} at tol 1e-13 agree to "
            f"{agree:.1e} relative)"
        )


if __name__ == "__main__":
    main()
