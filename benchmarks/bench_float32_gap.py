"""How close float32 fits stop to the float64 optimum: in memory, and distributed from Zarr.

Problem: ``distglm.cli.make_population(200_000, 50, 20, 3, seed)`` (``--quick``: 40,000 rows),
Ridge 1e-3, L-BFGS, at each ``--tols`` value. The store is written in chunks of
``--chunk-rows`` (10,000) rows; the distributed fit runs on ``LocalCluster(2, 1)``.

The reference is the float64 optimum: scipy's L-BFGS-B on a float64 numpy objective (sum over
outputs of the mean NLL + 0.5 s ||coef||^2), started from the in-memory fit and run to a
projected gradient of 1e-13. Each fit's gap is ``(F64(fit) - F*) / |F*|``, with ``F64`` the
same float64 objective at the fit's (float32) coefficients, so the figures do not depend on the
float32 sums themselves. "est" is the solver's own gap estimate at its last step
(``solver_state_.gap / |F|``) and "passes" the objective evaluations.

Goal (issue: float32 distributed fits reach the in-memory fit's gap at the same ``tol``): the
distributed gap is at most the larger of the in-memory gap and ``tol``.

``--trace FIRST LAST`` also prints, for each seed, the iterates ``FIRST..LAST`` of both fits
(one fit with ``maxiter=k`` per iterate, ``tol=1e-14``): the true gap, the solver's estimate and
their ratio, which is how far one estimate can understate the gap (L-BFGS therefore stops on two
successive estimates within ``tol``).

Usage: ``python benchmarks/bench_float32_gap.py [--quick] [--seeds 0 1] [--tols 1e-8 1e-9]
[--chunk-rows 10000] [--trace 10 21]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import scipy.optimize

RIDGE = 1e-3


def objective64(theta, X, y, C):
    """Float64 objective and gradient; ``theta`` of shape (p + 1, K, C), intercept last."""
    coef, icpt = theta[:-1], theta[-1]
    n, p = X.shape
    K = coef.shape[1]
    eta = (X @ coef.reshape(p, K * C)).reshape(n, K, C) + icpt
    m = eta.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(eta - m).sum(axis=-1))
    eta_y = np.take_along_axis(eta, y[..., None], axis=-1)[..., 0]
    value = np.sum((lse - eta_y).mean(axis=0)) + 0.5 * RIDGE * np.sum(coef**2)
    resid = np.exp(eta - lse[..., None])
    np.put_along_axis(resid, y[..., None], np.take_along_axis(resid, y[..., None], -1) - 1, -1)
    resid /= n
    g_coef = (X.T @ resid.reshape(n, K * C)).reshape(p, K, C) + RIDGE * coef
    return value, np.concatenate([g_coef, resid.sum(0)[None]])


def theta_of(model):
    return np.concatenate(
        [np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)[None]]
    )


def optimum(X64, y, C, start):
    shape = start.shape

    def fun(t):
        v, g = objective64(t.reshape(shape), X64, y, C)
        return v, g.ravel()

    res = scipy.optimize.minimize(
        fun,
        start.ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10000, "maxcor": 30, "gtol": 1e-13, "ftol": 1e-18},
    )
    return float(res.fun)


def gap_of(model, X64, y, f_star):
    """The fit's relative gap to ``f_star`` and the solver's own relative estimate."""
    f = objective64(theta_of(model), X64, y, 3)[0]
    st = model.solver_state_
    return (f - f_star) / abs(f_star), float(st.gap) / max(1.0, abs(float(st.value)))


def trace(seed, ks, fit, X64, y, f_star):
    """Print the true gap and the estimate at iterates ``ks`` of both fits."""
    print(
        f"{'seed':>4s} {'where':>8s} {'iter':>4s} {'passes':>6s} {'true gap':>10s} {'est':>10s} "
        f"{'true/est':>8s}"
    )
    for where in ("memory", "cluster"):
        for k in ks:
            model = fit(where, 1e-14, k)
            true, est = gap_of(model, X64, y, f_star)
            print(
                f"{seed:4d} {where:>8s} {k:4d} {model.n_passes_:6d} {true:10.3e} {est:10.3e} "
                f"{true / est:8.2f}",
                flush=True,
            )
    print()


def main(argv=None):
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tols", type=float, nargs="+", default=[1e-8, 1e-9])
    ap.add_argument("--chunk-rows", type=int, default=10_000)
    ap.add_argument("--trace", type=int, nargs=2, metavar=("FIRST", "LAST"))
    args = ap.parse_args(argv)
    import dask.array as da
    import xarray as xr
    from distributed import Client, LocalCluster

    import distglm
    from distglm.cli import make_population

    n = 40_000 if args.quick else 200_000
    rows = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for seed in args.seeds:
            X, y, _, _ = make_population(n, 50, 20, 3, seed=seed)
            path = f"{tmp}/s{seed}.zarr"
            ds = xr.Dataset({"X": (("sample", "feature"), X), "y": (("sample", "output"), y)})
            ds.chunk({"sample": args.chunk_rows}).to_zarr(path, mode="w")
            Xd, yd = da.from_zarr(path, component="X"), da.from_zarr(path, component="y")
            X64 = X.astype(np.float64)

            def fit(where, tol, maxiter=500, X=X, y=y, Xd=Xd, yd=yd):
                model = distglm.ClassifierPopulationGLM(
                    3,
                    regularizer="Ridge",
                    regularizer_strength=RIDGE,
                    solver_name="LBFGS",
                    solver_kwargs={"tol": tol, "maxiter": maxiter},
                )
                if where == "memory":
                    return model.fit(X, y)
                return model.fit(Xd, yd, client=client)

            fits = {}
            for tol in args.tols:
                for where in ("memory", "cluster"):
                    t = time.perf_counter()
                    model = fit(where, tol)
                    fits[tol, where] = (model, time.perf_counter() - t)
            f_star = min(
                optimum(X64, y, 3, theta_of(fits[min(args.tols), "memory"][0])),
                *(objective64(theta_of(m), X64, y, 3)[0] for m, _ in fits.values()),
            )
            for (tol, where), (model, secs) in fits.items():
                true, est = gap_of(model, X64, y, f_star)
                rows.append((seed, tol, where, true, est, model.n_passes_, secs))
            if args.trace:
                trace(seed, range(args.trace[0], args.trace[1] + 1), fit, X64, y, f_star)
    print(
        f"{'seed':>4s} {'tol':>7s} {'where':>8s} {'gap to F64*':>12s} {'est':>10s} "
        f"{'passes':>6s} {'seconds':>8s}"
    )
    for r in rows:
        print(f"{r[0]:4d} {r[1]:7.0e} {r[2]:>8s} {r[3]:12.3e} {r[4]:10.3e} {r[5]:6d} {r[6]:8.2f}")
    print()
    print(f"{'seed':>4s} {'tol':>7s} {'memory gap':>12s} {'cluster gap':>12s} {'ratio':>7s}  goal")
    by = {(r[0], r[1], r[2]): r[3] for r in rows}
    for seed in args.seeds:
        for tol in args.tols:
            gm, gd = by[seed, tol, "memory"], by[seed, tol, "cluster"]
            ok = gd <= max(gm, tol)
            print(
                f"{seed:4d} {tol:7.0e} {gm:12.3e} {gd:12.3e} {gd / max(gm, 1e-300):7.2f}  "
                f"{'PASS' if ok else 'FAIL'} (cluster <= max(memory, tol))"
            )


if __name__ == "__main__":
    main()
