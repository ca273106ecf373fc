"""A worker's resident memory through the statistics pass and the encoding, on the issue's
shape: 50 chunks (65,536 rows x 28 features float32, 4 outputs of ``<U5`` string labels)
cached under a 400 MiB budget, one :class:`~distglm.distribute.ChunkWorker` driven directly
in this process (no cluster).

Printed: the budget, the chunks cached, this process's resident size after starting the
worker (JAX up), after the load (statistics pass: chunks held) and after the encoding, and
the peak (VmHWM). Run it with ``PYTHONPATH`` on another checkout to compare versions (a
version whose worker does not take ``n_classes`` is started without it).

Usage: ``python benchmarks/bench_encode_memory.py [--chunks 50] [--rows 65536]
[--features 28] [--outputs 4] [--budget 400MiB]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np

MIB = 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--rows", type=int, default=65_536)
    ap.add_argument("--features", type=int, default=28)
    ap.add_argument("--outputs", type=int, default=4)
    ap.add_argument("--budget", default="400MiB")
    args = ap.parse_args(argv)

    import dask.array as da

    from distglm.data import merge_stats, plan_data
    from distglm.distribute.runtime import process_memory
    from distglm.distribute.worker import ChunkWorker

    n = args.chunks * args.rows
    labels = np.array(["left", "nogo", "right"])
    X = da.random.default_rng(0).standard_normal((n, args.features), chunks=(args.rows, -1))
    X = X.astype("float32")
    codes = da.random.default_rng(1).integers(0, 3, (n, args.outputs), chunks=(args.rows, -1))
    y = codes.map_blocks(lambda b: labels[b], dtype=labels.dtype)  # made as read, like X
    plan = plan_data(X, y)
    base = (plan.session_outputs, plan.chunk_rows, plan.block_rows)
    try:
        w = ChunkWorker(*base, cache_bytes=args.budget, n_features=args.features, n_classes=3)
    except TypeError:  # a version before the worker took the classes
        w = ChunkWorker(*base, cache_bytes=args.budget)
    start = process_memory()["rss"]
    status, stats = w.load(plan.chunks)
    assert status == "ok", stats
    loaded = process_memory()["rss"]
    status, _ = w.encode(merge_stats(plan, stats, 3).classes)
    assert status == "ok"
    mem = process_memory()
    info = w.info()[1]
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    ).stdout.strip()[:60]
    print(f"version: {commit}")
    print(
        f"{args.chunks} chunks of {args.rows:,} x {args.features} float32 + {args.outputs} <U5 "
        f"labels ({(X.nbytes + y.nbytes) / args.chunks / MIB:.1f} MiB each as read); budget "
        f"{w.cache_bytes / MIB:,.0f} MiB, cached {len(info['cached'])} chunks "
        f"({info['nbytes'] / MIB:,.0f} MiB of arrays), streamed {len(info['streamed'])}"
    )
    print(
        f"RSS MiB: worker started {start / MIB:,.0f}, after load {loaded / MIB:,.0f}, after "
        f"encode {mem['rss'] / MIB:,.0f}, peak {mem['peak'] / MIB:,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
