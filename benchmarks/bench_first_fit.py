"""First fit on a fresh 2-worker cluster: without the compilation cache, cold cache, warm cache.

The problem is ``distglm.cli.make_population(200_000, 50, 20, 3, seed=0)`` written once to a
Zarr store (X float32, y int8, 65,536-row chunks). Each variant runs in a fresh Python process
that starts ``LocalCluster(n_workers=2, threads_per_worker=1)`` (before the clock) and fits the
store twice at Ridge 1e-3: the first fit (actor start, JAX import on the workers, compiles) and
a warm fit on the same cluster. Variants, interleaved round by round:

- ``off``: ``DISTGLM_COMPILE_CACHE=0`` (the reference: every process compiles);
- ``cold``: the cache on, in an empty folder (compiles, and writes them);
- ``warm``: the cache on, in the folder the ``cold`` run of the same round filled;
- ``warm+preload``: as ``warm``, with the workers started with ``distglm.WORKER_PRELOAD`` (they
  import JAX and distglm as the cluster starts, before the clock, instead of in the first fit).

It also reports the executables the cold run wrote (the kernel variants a first fit compiles,
client and workers together), the statistics pass against one read of the store on the same
cluster (``(X.sum() + y.sum()).compute()``), and PASS/FAIL for the goal: first fit with a warm
cache and the preload at most 1 s slower than the warm fit.

Run: ``python benchmarks/bench_first_fit.py [--rounds 1] [--dir /tmp/distglm_bench_first_fit]``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N, P, K, C = 200_000, 50, 20, 3
CHUNK_ROWS = 65_536
GOAL_S = 1.0


def write_store(path):
    import zarr

    from distglm.cli import make_population

    X, y, _, _ = make_population(N, P, K, C, seed=0)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("X", data=np.asarray(X, np.float32), chunks=(CHUNK_ROWS, P))
    group.create_array("y", data=np.asarray(y, np.int8), chunks=(CHUNK_ROWS, K))


def start_cluster(preload):
    """``LocalCluster(2, 1)`` in worker processes, with ``distglm.WORKER_PRELOAD`` or not, and
    its client."""
    from distributed import Client, LocalCluster

    import distglm

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        preload=[distglm.WORKER_PRELOAD] if preload else [],
    )
    return cluster, Client(cluster)


def child(store, out, preload):
    """One variant: fresh cluster, two fits and a read; results as JSON to ``out``."""
    import warnings

    warnings.simplefilter("ignore")
    import dask.array as da

    import distglm

    cluster, client = start_cluster(preload)
    result = {}
    try:
        X = da.from_zarr(store, component="X")
        y = da.from_zarr(store, component="y")
        for label in ("first", "warm"):
            m = distglm.ClassifierPopulationGLM(
                n_classes=C, regularizer="Ridge", regularizer_strength=1e-3
            )
            t = time.perf_counter()
            m.fit(X, y, client=client)
            result[label] = time.perf_counter() - t
            result[label + "_statistics"] = float(m.fit_profile_["statistics_seconds"])
            result[label + "_passes"] = int(m.n_passes_)
        reads = []
        for _ in range(3):
            t = time.perf_counter()
            (X.sum() + y.sum()).compute()
            reads.append(time.perf_counter() - t)
        result["read_once"] = float(np.median(reads))
    finally:
        client.close()
        cluster.close()
    Path(out).write_text(json.dumps(result))


def run_variant(store, env_value, out, preload=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION")}
    env["DISTGLM_COMPILE_CACHE"] = env_value
    cmd = [sys.executable, __file__, "--child", str(store), "--out", str(out)]
    cmd += ["--preload"] if preload else []
    subprocess.run(cmd, env=env, check=True)
    return json.loads(Path(out).read_text())


def cache_entries(folder):
    """Executables in a cache folder, counted by jitted function name."""
    names = [p.name for p in Path(folder).iterdir() if p.name.endswith("-cache")]
    return collections.Counter(n.rsplit("-", 2)[0] for n in names)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/distglm_bench_first_fit")
    ap.add_argument("--child")
    ap.add_argument("--out")
    ap.add_argument("--preload", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.out, args.preload)
    root = Path(args.dir)
    store = root / "store.zarr"
    if not store.exists():
        root.mkdir(parents=True, exist_ok=True)
        write_store(store)
    rows = collections.defaultdict(list)
    entries = None
    for r in range(args.rounds):
        folder = root / f"cache_{r}"
        shutil.rmtree(folder, ignore_errors=True)
        rows["off"].append(run_variant(store, "0", root / "off.json"))
        rows["cold"].append(run_variant(store, str(folder), root / "cold.json"))
        entries = cache_entries(folder)
        rows["warm"].append(run_variant(store, str(folder), root / "warm.json"))
        rows["warm+preload"].append(
            run_variant(store, str(folder), root / "preload.json", preload=True)
        )
    print(
        f"first fit on a fresh LocalCluster(2, 1), {N} x {P} x {K} x {C}, Ridge 1e-3, "
        f"{args.rounds} round(s), medians"
    )
    print(
        f"{'compile cache':14s} {'first fit s':>12s} {'warm fit s':>11s} {'first-warm':>11s} "
        f"{'stats 1st s':>12s} {'stats warm':>11s} {'read once':>10s} {'first/off':>10s}"
    )
    med = {v: {k: float(np.median([x[k] for x in rs])) for k in rs[0]} for v, rs in rows.items()}
    for v in ("off", "cold", "warm", "warm+preload"):
        m = med[v]
        print(
            f"{v:14s} {m['first']:12.2f} {m['warm']:11.2f} {m['first'] - m['warm']:11.2f} "
            f"{m['first_statistics']:12.2f} {m['warm_statistics']:11.2f} "
            f"{m['read_once']:10.3f} {m['first'] / med['off']['first']:10.2f}"
        )
    total = sum(entries.values()) if entries else 0
    print(f"executables a first fit compiled (cold cache, client + workers): {total}")
    for name, n in sorted(entries.items()):
        print(f"  {n:3d}  {name}")
    gap = med["warm+preload"]["first"] - med["warm+preload"]["warm"]
    verdict = "PASS" if gap <= GOAL_S else "FAIL"
    print(
        f"{verdict}: first fit, warm cache and preload, {gap:.2f} s slower than a warm fit "
        f"(goal <= {GOAL_S:.1f} s)"
    )
    ratio = med["warm"]["warm_statistics"] / med["warm"]["read_once"]
    print(f"statistics pass (warm fit) / read once: {ratio:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
