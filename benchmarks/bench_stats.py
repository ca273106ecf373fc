"""The statistics pass on one chunk: distglm's ``chunk_stats`` beside the per-column reference.

The reference is the statistics pass as it was before label counts were vectorised (``np.unique``
then one ``np.bincount`` per output, ``[X, 1]`` concatenated in float64), and a plain read-like
reduction of the same arrays (``X.sum() + y.sum()``) as the floor. Both variants run
interleaved in one process, so the ratio holds on a busy machine.

Run: ``python benchmarks/bench_stats.py [--rows 65536] [--features 50] [--outputs 20]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distglm.data.stats import chunk_stats
from distglm.inputs import kept_rows


def reference_stats(X, y):
    """The statistics of one chunk, computed as the library did before (the reference)."""
    keep = kept_rows(X, y)
    yk = y[keep]
    labels, inverse = np.unique(yk, return_inverse=True)
    inverse = inverse.reshape(yk.shape)
    counts = np.zeros((labels.size, y.shape[1]), dtype=np.int64)
    for j in range(y.shape[1]):
        counts[:, j] = np.bincount(inverse[:, j], minlength=labels.size)
    Xk = np.asarray(X[keep], np.float64)
    Z = np.concatenate([Xk, np.ones((Xk.shape[0], 1))], axis=1)
    return labels, counts, Z.T @ Z


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--outputs", type=int, default=20)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.features)).astype(np.float32)
    y = rng.integers(0, args.classes, (args.rows, args.outputs)).astype(np.int8)
    variants = {
        "read (X.sum() + y.sum())": lambda: float(X.sum()) + float(y.sum()),
        "reference (unique + per-column)": lambda: reference_stats(X, y),
        "distglm chunk_stats": lambda: chunk_stats(0, X, y),
    }
    st, _ = chunk_stats(0, X, y)
    labels, counts, gram = reference_stats(X, y)
    assert np.array_equal(st.labels, labels) and np.array_equal(st.counts, counts)
    rel = float(np.abs(st.gram - gram).max() / np.abs(gram).max())
    times = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {name: float(np.median(v)) * 1e3 for name, v in times.items()}
    ref = med["reference (unique + per-column)"]
    print(f"chunk {args.rows} x {args.features}, {args.outputs} outputs x {args.classes} classes")
    print(f"{'variant':34s} {'median ms':>10s} {'/ reference':>12s}")
    for name, ms in med.items():
        print(f"{name:34s} {ms:10.2f} {ms / ref:12.3f}")
    print(f"counts identical; gram max relative difference to the reference: {rel:.2e}")


if __name__ == "__main__":
    main()
