"""Does ``solver_name="auto"`` pick the faster solver? Each candidate's warm fit beside auto's.

For every case, in memory, float32 kernels, default ``tol``: the warm fit time (the second fit
in this process; the first compiles) and the passes of each solver ``"auto"`` chooses among
(L-BFGS and Newton for Ridge; ProximalGradient and proximal Newton for Lasso), then ``"auto"``
itself: the solver it picked, its warm time, and that time over the faster candidate's. "setup"
is the part of the fit outside its iterations (checks, label encoding, padding, the second
moment: the same for every solver), "s/pass" the iterations' seconds over the passes. The
model's predicted seconds per pass and passes (:func:`distglm.solve.predicted_costs`) are shown
beside the measured ones, so its constants can be checked on this machine.

Cases: ``make_population`` at 200,000 and 2,000,000 rows x 50 features x 20 outputs x 3 classes
(Ridge and Lasso 1e-3); a small block (200,000 x 10 x 5 x 3) and a large one (50,000 x 200 x 5
x 5, D = 1,005), Ridge 1e-3.

PASS when auto's warm fit is within 1.25x the faster candidate's in every case (the candidates'
times vary by ~10% run to run on this machine).

Usage: ``python benchmarks/bench_auto.py [--quick]`` (``--quick``: the 2,000,000-row cases
left out).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

#: (name, rows, features, outputs, classes, regularizer)
CASES = [
    ("pop-200k-ridge", 200_000, 50, 20, 3, "Ridge"),
    ("pop-200k-lasso", 200_000, 50, 20, 3, "Lasso"),
    ("pop-2M-ridge", 2_000_000, 50, 20, 3, "Ridge"),
    ("pop-2M-lasso", 2_000_000, 50, 20, 3, "Lasso"),
    ("small-200k-ridge", 200_000, 10, 5, 3, "Ridge"),
    ("wide-50k-ridge", 50_000, 200, 5, 5, "Ridge"),
]
SLACK = 1.25


def warm_fit(X, y, n_classes, regularizer, solver):
    """(seconds of the second fit, passes, seconds in its iterations, solver that ran) for
    one solver name; the rest of the fit (checks, encoding, padding, the second moment) is
    the same for every solver."""
    import distglm

    kw = {"regularizer": regularizer, "regularizer_strength": 1e-3, "solver_name": solver}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distglm.ClassifierPopulationGLM(n_classes, **kw).fit(X, y)
        model = distglm.ClassifierPopulationGLM(n_classes, **kw)
        start = time.perf_counter()
        model.fit(X, y)
    seconds = time.perf_counter() - start
    return seconds, int(model.n_passes_), float(model.fit_history_[-1]["seconds"]), model.solver_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the 2M-row cases")
    args = parser.parse_args(argv)

    import jax

    from distglm.cli import make_population
    from distglm.solve import ProblemFacts, predicted_costs

    print(
        f"bench_auto: {platform.machine()}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}; warm fits (second in this process), default tol"
    )
    header = (
        f"{'case':18} {'solver':17} {'fit s':>7} {'setup s':>7} {'passes':>6} {'s/pass':>7} "
        f"{'model s/pass':>12} {'model passes':>12} {'model s':>8}"
    )
    verdicts = []
    for name, n, p, k, c, reg in CASES:
        if args.quick and n > 1_000_000:
            continue
        X, y = make_population(n, p, k, c, seed=0)[:2]
        facts = ProblemFacts(
            smooth=reg == "Ridge", n_features=p, n_classes=c, n_outputs=k, n_rows=n
        )
        model = predicted_costs(facts)
        print(f"\n== {name}: {n:,} x {p} x {k} x {c}, {reg} 1e-3")
        print(header)
        print("-" * len(header))
        candidates = ("LBFGS", "Newton") if reg == "Ridge" else ("ProximalGradient", "Newton")
        times = {}
        for solver in candidates:
            seconds, passes, iterating, _ = warm_fit(X, y, c, reg, solver)
            times[solver] = seconds
            m = model[solver]
            print(
                f"{name:18} {solver:17} {seconds:7.2f} {seconds - iterating:7.2f} {passes:6d} "
                f"{iterating / passes:7.3f} {m.per_pass:12.3f} {m.passes:12.0f} {m.seconds:8.2f}"
            )
        seconds, passes, iterating, picked = warm_fit(X, y, c, reg, "auto")
        best = min(times, key=times.get)
        ratio = seconds / times[best]
        print(
            f"{name:18} {'auto -> ' + picked:17} {seconds:7.2f} {seconds - iterating:7.2f} "
            f"{passes:6d} {iterating / passes:7.3f}   faster: {best}; auto / it = {ratio:.2f}x"
        )
        verdicts.append((name, picked, best, ratio))
    print()
    for name, picked, best, ratio in verdicts:
        ok = ratio <= SLACK
        print(
            f"{'PASS' if ok else 'FAIL'}: {name}: auto picked {picked}, the faster was {best}; "
            f"auto's fit {ratio:.2f}x the faster's (goal <= {SLACK}x)"
        )


if __name__ == "__main__":
    main()
