"""A multi-session store larger than this machine's memory, fitted with ``solver_name="auto"``.

Writes (once; reused while its parameters match) a Zarr store of ``--sessions`` sessions, each
``X`` (sample, feature) float32 and ``y`` (sample, output) int8 labels 0..C-1 from one true
softmax model, with about 60% of ``--outputs`` outputs per session overlapping between
neighbours, totalling ``--gib`` GiB decoded (default 26 GiB: over this machine's 24 GiB).
Sessions are generated and written chunk by chunk, so writing needs little memory.

Then, on ``LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=--memory-limit)``, it
reads the store once (``dask.compute`` of every session's ``X.sum()`` and ``y.sum()``: the
reference), fits it with ``solver_name="auto"`` at Ridge ``--strength``, and reports: the
solver chosen, passes, the statistics pass, the median pass beside one read, each worker's peak
resident memory, and the whole fit time.

Not part of CI. Measured here (2 cores, ``--outputs 20``, recorded in
``benchmarks/results/bench_scale.txt``): the write took 11 min, the fit 21 min (8 passes, Newton);
with the default 100 outputs expect the write and the passes' compute to be several times that.
Run it in the background, e.g.
``nohup python benchmarks/bench_scale.py > /tmp/bench_scale/log.txt 2>&1 &``.
``--gib 0.05`` checks the script in a minute.

Run: ``python benchmarks/bench_scale.py [--gib 26] [--dir /tmp/bench_scale] [--sessions 64]
[--features 64] [--outputs 100] [--classes 3] [--chunk-rows 65536] [--memory-limit 4GiB]
[--cache-bytes 0.5]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

SEED = 0


def _params(args):
    keys = ("gib", "sessions", "features", "outputs", "classes", "chunk_rows")
    return {k: getattr(args, k) for k in keys}


def _session_outputs(s, n_sessions, n_outputs):
    width = max(1, round(0.6 * n_outputs))
    first = (s * max(1, n_outputs // max(n_sessions, 1))) % n_outputs
    return [(first + j) % n_outputs for j in range(width)]


def write_store(path, args):
    """Write the store chunk by chunk (skipped when a complete one with these parameters exists)."""
    import dask
    import dask.array as da
    import xarray as xr

    marker = Path(path) / "distglm_bench_scale.json"
    if marker.exists() and json.loads(marker.read_text()) == _params(args):
        return False
    rng = np.random.default_rng(SEED)
    p, K, C = args.features, args.outputs, args.classes
    coef = rng.normal(0.0, 0.3, (p, K, C)).astype(np.float32)
    intercept = rng.normal(0.0, 0.3, (K, C)).astype(np.float32)
    outs = [_session_outputs(s, args.sessions, K) for s in range(args.sessions)]
    row_bytes = 4 * p + len(outs[0])
    rows = int(args.gib * 2**30 / row_bytes / args.sessions)
    rows = max(args.chunk_rows, rows // args.chunk_rows * args.chunk_rows)

    def labels(block, out, block_info=None):
        seed = (SEED, block_info[0]["chunk-location"][0], int(out[0]))
        g = np.random.default_rng(seed)
        eta = np.einsum("np,pkc->nkc", block, coef[:, out]) + intercept[out]
        return np.argmax(eta + g.gumbel(size=eta.shape), axis=-1).astype(np.int8)

    for s, out in enumerate(outs):
        X = da.random.default_rng(SEED + 1 + s).standard_normal(
            (rows, p), dtype=np.float32, chunks=(args.chunk_rows, p)
        )
        y = X.map_blocks(labels, out, chunks=(args.chunk_rows, len(out)), dtype=np.int8)
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={"feature": [f"f{i:02d}" for i in range(p)], "output": out},
        )
        with dask.config.set(scheduler="threads", num_workers=2):
            ds.to_zarr(str(path), group=f"session{s:03d}", mode="w")
    marker.write_text(json.dumps(_params(args)))
    return True


def main(argv=None):
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gib", type=float, default=26.0)
    ap.add_argument("--dir", default="/tmp/bench_scale")
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--outputs", type=int, default=100)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--memory-limit", default="4GiB")
    ap.add_argument("--strength", type=float, default=1e-3)
    ap.add_argument(
        "--cache-bytes",
        default=None,
        help="each worker's chunk-cache budget (a fraction of its limit, or bytes); default: "
        "distglm's default budget",
    )
    args = ap.parse_args(argv)
    import dask
    from distributed import Client, LocalCluster

    import distglm

    store = Path(args.dir) / f"store_{args.gib:g}gib.zarr"
    t = time.perf_counter()
    wrote = write_store(store, args)
    write_s = time.perf_counter() - t
    sessions = distglm.open_sessions(str(store))
    n_rows = sum(ds["X"].shape[0] for ds in sessions.values())
    decoded = sum(ds["X"].nbytes + ds["y"].nbytes for ds in sessions.values())
    print(
        f"store {store}: {len(sessions)} sessions, {n_rows:,} rows x {args.features} features, "
        f"{len(sessions.outputs)} outputs x {args.classes} classes, {decoded / 2**30:.2f} GiB "
        f"decoded; " + (f"written in {write_s:.1f} s" if wrote else "reused")
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        distglm.pin_workers_to_cores(client)
        sums = [ds[v].sum() for ds in sessions.values() for v in ("X", "y")]
        t = time.perf_counter()
        dask.compute(*sums)
        read_s = time.perf_counter() - t
        print(f"read once: {read_s:.2f} s ({decoded / 2**20 / read_s:.0f} MiB/s decoded)")
        model = distglm.ClassifierPopulationGLM(
            n_classes=args.classes,
            regularizer="Ridge",
            regularizer_strength=args.strength,
            solver_name="auto",
        )
        t = time.perf_counter()
        cache = args.cache_bytes
        if cache is not None:
            cache = float(cache) if "." in cache else cache
        model.fit(sessions, client=client, progress=True, cache_bytes=cache)
        fit_s = time.perf_counter() - t
        prof = model.fit_profile_
        passes = prof["passes"]
        med = float(np.median([q["seconds"] for q in passes[1:] or passes]))
        print(f"{'what':34s} {'seconds':>10s} {'/ read once':>12s}")
        print(f"{'read the store once':34s} {read_s:10.2f} {1.0:12.2f}")
        stats = float(prof["statistics_seconds"])
        print(f"{'statistics pass':34s} {stats:10.2f} {stats / read_s:12.2f}")
        print(f"{'one pass of the fit (median)':34s} {med:10.2f} {med / read_s:12.2f}")
        print(f"{'whole fit':34s} {fit_s:10.2f} {fit_s / read_s:12.2f}")
        print(
            f"solver state {type(getattr(model, 'solver_state_', None)).__name__}"
            f", {model.n_passes_} passes (statistics pass included), {prof['n_chunks']} chunks, "
            f"objective {model.fit_history_[-1]['objective']:.8f}"
        )
        print(f"worker peak memory (memory limit {args.memory_limit}):")
        for addr, info in sorted(prof["cache"].items()):
            peak = (info["memory_end"]["peak"] or 0) / 2**20
            start = (info["memory_start"]["rss"] or 0) / 2**20
            print(f"  {addr}: start {start:.0f} MiB, peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
