"""Work units smaller than a Zarr chunk: a warm fit with the chunks split to balance the
workers, against the same fit with the chunks whole (the reference: ``distglm.balance.split``
False, how every fit ran before the split existed).

Problem: ``distglm.cli.make_population(200_000, 50, 20, 3, seed=0)`` (``bench_inmemory``'s),
written as X float32 and y int8 to a Zarr group in chunks of 65,536 rows: 4 chunks, the last of
3,392 rows, so over 2 workers one holds 131,072 rows and the other 68,928 unsplit, and 98,304
against 101,696 with units of 32,768 rows. One ``LocalCluster(2, 1, processes=True)``, workers
pinned to their cores; a fit of each setting first (the compiles of both unit shapes), then
``--rounds`` rounds of one fit of each setting in turn (the order alternates), Ridge
``--strength``. Per fit: wall time, the statistics pass, the median pass at the coordinator and
the slowest worker's median compute a pass, passes, the final objective; medians over rounds.

Usage: ``python benchmarks/bench_balance.py [--rounds 3] [--strength 1e-3] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_inmemory  # the problem constants
from bench_distributed import write_store

CHUNK_ROWS = 65_536


def fit_once(X, y, client, split, strength):
    import dask.config

    import distglm

    model = distglm.ClassifierPopulationGLM(
        n_classes=bench_inmemory.C, regularizer="Ridge", regularizer_strength=strength
    )
    with dask.config.set({"distglm.balance.split": split}):
        t = time.perf_counter()
        model.fit(X, y, client=client)
        wall = time.perf_counter() - t
    prof = model.fit_profile_
    passes = prof["passes"]
    return {
        "wall": wall,
        "stats": float(prof["statistics_seconds"]),
        "pass_ms": 1e3 * float(np.median([p["seconds"] for p in passes])),
        "compute_ms": 1e3 * float(np.median([p["compute"] for p in passes])),
        "passes": len(passes),
        "objective": float(model.fit_history_[-1]["objective"]),
        "unit_rows": prof["unit_rows"],
        "chunks": sorted(c["cached_chunks"] for c in prof["cache"].values()),
        "reads": sum(c["block_reads"] for c in prof["cache"].values()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strength", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import dask.array as da
    from distributed import Client, LocalCluster

    import distglm
    from distglm.cli import make_population

    X, y, _, _ = make_population(
        bench_inmemory.N_FULL, bench_inmemory.P, bench_inmemory.K, bench_inmemory.C, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(X, y, os.path.join(tmp, "data.zarr"), CHUNK_ROWS)
        del X, y
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            distglm.pin_workers_to_cores(client)
            Xd, yd = da.from_zarr(store, component="X"), da.from_zarr(store, component="y")
            for split in (False, True):  # compile both shapes
                fit_once(Xd, yd, client, split, args.strength)
            runs: dict[bool, list] = {False: [], True: []}
            for r in range(args.rounds):
                for split in (False, True) if r % 2 == 0 else (True, False):
                    runs[split].append(fit_once(Xd, yd, client, split, args.strength))
    print(
        f"{bench_inmemory.N_FULL:,} x {bench_inmemory.P} x {bench_inmemory.K} x "
        f"{bench_inmemory.C}, chunks of {CHUNK_ROWS:,} rows, {args.workers} workers, "
        f"Ridge {args.strength:g}, {args.rounds} rounds (medians)"
    )
    keys = ("wall", "stats", "pass_ms", "compute_ms")
    med = {s: {k: float(np.median([r[k] for r in runs[s]])) for k in keys} for s in runs}
    head = (
        f"{'split':>6} {'unit rows':>9} {'chunks/worker':>13} {'reads':>5} {'passes':>6} "
        f"{'fit s':>7} {'stats s':>7} {'pass ms':>8} {'compute ms':>10} {'objective':>14}"
    )
    print(head)
    for s in (False, True):
        last = runs[s][-1]
        print(
            f"{'on' if s else 'off':>6} {last['unit_rows'] or '-'!s:>9} "
            f"{'/'.join(map(str, last['chunks'])):>13} {last['reads']:>5} {last['passes']:>6} "
            f"{med[s]['wall']:7.3f} {med[s]['stats']:7.3f} {med[s]['pass_ms']:8.2f} "
            f"{med[s]['compute_ms']:10.2f} {last['objective']:14.10f}"
        )
    print(
        "on/off: "
        + ", ".join(f"{k} {med[True][k] / med[False][k]:.3f}" for k in keys)
        + "  (below 1: the split is faster)"
    )
    for s in (False, True):
        print(
            f"  split {'on' if s else 'off'}, every round: "
            + "; ".join(
                f"fit {r['wall']:.3f} s, pass {r['pass_ms']:.2f} ms, compute {r['compute_ms']:.2f}"
                for r in runs[s]
            )
        )


if __name__ == "__main__":
    main()
