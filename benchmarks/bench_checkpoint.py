"""What checkpointing every iteration costs: write time per iteration against the pass time.

Problem: ``distglm.cli.make_population(200_000, 50, 20, 3, seed=0)`` (``--quick``: 20,000
rows), Ridge 1e-3, fitted

- in memory with L-BFGS (the default) and with Newton (the largest solver state: one
  (D x D) Hessian block per output, D = 51 x 3), and
- from a Zarr store (X float32, y int8, 65,536-row chunks) on ``LocalCluster(n_workers=2,
  threads_per_worker=1)`` with the workers pinned to cores, with L-BFGS.

Each case runs a warm-up fit (compiles), then the same fit without and with
``checkpoint=...`` (written after every iteration). Every checkpoint write is timed by distglm
itself (the ``distglm`` logger's debug records "checkpoint ...: iteration i written in t s"
and, at the end, how long the fit waited for its writes), so the figures are exact, not
differences of noisy wall times. Writes run in a background thread while the next pass runs;
the fit waits only when a write is still in flight at the next iteration, and for the final
one. Printed per case: iterations and passes, median pass time (the fit's seconds over its
passes), median and largest write, write/pass ratio, the fit's wall time without and with
checkpoints, the writes' total time and the fit's wait, each as a share of the checkpointed
fit's time. PASS when the wait is under 5% of the fit time in every case (the writes' total is
printed beside it: what a synchronous write would have cost).

Usage: ``python benchmarks/bench_checkpoint.py [--quick] [--no-distributed]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import tempfile
import warnings

GOAL = 0.05
_WRITE = re.compile(r"written in ([0-9.]+) s")
_WAITED = re.compile(r"the fit waited ([0-9.]+) s")


class _Writes(logging.Handler):
    """Collects the write times distglm logs for each checkpoint, and the fit's wait."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seconds = []
        self.waited = None

    def emit(self, record):
        text = record.getMessage()
        if m := _WRITE.search(text):
            self.seconds.append(float(m.group(1)))
        if m := _WAITED.search(text):
            self.waited = float(m.group(1))


def _pass_seconds(model):
    """Median seconds per pass over the fit's iterations (from fit_history_)."""
    hist = model.fit_history_
    per = []
    prev_s, prev_p = 0.0, hist[0]["passes"] - 1
    for h in hist:
        dp = h["passes"] - prev_p
        if dp > 0:
            per.append((h["seconds"] - prev_s) / dp)
        prev_s, prev_p = h["seconds"], h["passes"]
    return statistics.median(per)


def _case(name, make, fit, tmp):
    """Warm-up, plain and checkpointed fits of one case; returns its table row."""

    handler = _Writes()
    logger = logging.getLogger("distglm")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit(make())  # compiles
            plain = fit(make())
            path = os.path.join(tmp, f"{name}.ckpt")
            handler.seconds.clear()
            ckpt = fit(make(), checkpoint=path, resume=False)
    finally:
        logger.removeHandler(handler)
    writes = handler.seconds
    assert len(writes) == len(ckpt.fit_history_) + 1, (len(writes), len(ckpt.fit_history_))
    size = os.path.getsize(path)
    pass_s = _pass_seconds(ckpt)
    share = handler.waited / ckpt.fit_time_
    return {
        "case": name,
        "iters": len(ckpt.fit_history_),
        "passes": ckpt.n_passes_,
        "pass_ms": 1e3 * pass_s,
        "write_ms": 1e3 * statistics.median(writes),
        "write_max_ms": 1e3 * max(writes),
        "ratio": statistics.median(writes) / pass_s,
        "fit_s": plain.fit_time_,
        "fit_ckpt_s": ckpt.fit_time_,
        "share": share,
        "writes_share": sum(writes) / ckpt.fit_time_,
        "kib": size / 1024,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--no-distributed", action="store_true")
    args = parser.parse_args(argv)

    import distglm
    from distglm.cli import make_population

    n = 20_000 if args.quick else 200_000
    X, y, _, _ = make_population(n, 50, 20, 3, seed=0)
    strength = 1e-3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for solver in ("LBFGS", "Newton"):

            def make(solver=solver):
                return distglm.ClassifierPopulationGLM(
                    3, regularizer_strength=strength, solver_name=solver
                )

            rows.append(_case(f"memory {solver}", make, lambda m, **kw: m.fit(X, y, **kw), tmp))
        if not args.no_distributed:
            import dask.array as da
            import xarray as xr
            from distributed import Client, LocalCluster

            store = os.path.join(tmp, "data.zarr")
            ds = xr.Dataset(
                {"X": (("sample", "feature"), X), "y": (("sample", "output"), y.astype("int8"))}
            )
            ds.chunk({"sample": 65_536 if not args.quick else 8_192}).to_zarr(store)
            Xd = da.from_zarr(store, component="X")
            yd = da.from_zarr(store, component="y")
            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                distglm.pin_workers_to_cores(client)

                def make():
                    return distglm.ClassifierPopulationGLM(3, regularizer_strength=strength)

                rows.append(
                    _case(
                        "Zarr, 2 workers, LBFGS",
                        make,
                        lambda m, **kw: m.fit(Xd, yd, client=client, **kw),
                        tmp,
                    )
                )
    print(
        f"bench_checkpoint: make_population({n:,}, 50, 20, 3, seed=0), Ridge {strength:g}, "
        "checkpoint written after every iteration"
    )
    head = (
        f"{'case':<24} {'iters':>5} {'passes':>6} {'pass ms':>8} {'write ms':>9} "
        f"{'max ms':>7} {'write/pass':>10} {'fit s':>7} {'ckpt fit s':>10} {'writes/fit':>10} "
        f"{'waited/fit':>10} {'file KiB':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:<24} {r['iters']:>5} {r['passes']:>6} {r['pass_ms']:>8.1f} "
            f"{r['write_ms']:>9.2f} {r['write_max_ms']:>7.2f} {r['ratio']:>10.3f} "
            f"{r['fit_s']:>7.2f} {r['fit_ckpt_s']:>10.2f} {100 * r['writes_share']:>9.2f}% "
            f"{100 * r['share']:>9.2f}% {r['kib']:>8.0f}"
        )
    worst = max(r["share"] for r in rows)
    verdict = "PASS" if worst < GOAL else "FAIL"
    print(
        f"{verdict}: the fits waited for their checkpoint writes {100 * worst:.2f}% of their "
        f"time at most (goal < {100 * GOAL:.0f}%)"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
