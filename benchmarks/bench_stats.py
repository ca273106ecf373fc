"""The statistics pass on one chunk: distglm's ``chunk_stats`` beside the per-column reference.

The reference is the statistics pass as it was before label counts were vectorised (``np.unique``
then one ``np.bincount`` per output, ``[X, 1]`` concatenated in float64), and a plain read-like
reduction of the same arrays (``X.sum() + y.sum()``) as the floor. Both variants run
interleaved in one process, so the ratio holds on a busy machine.

A second table takes the same chunk from a Zarr store on disk (zarr's default codecs) and puts
each step a worker's statistics pass does with it (``ChunkWorker.load``) beside reading it:
the kept rows, the label counts, the float64 Gram matrix, the fingerprint, the padded copy
the worker keeps and, once the classes are merged, its labels' codes among them (``encode``,
of a chunk holding every class: its codes are kept as they are).
Their sum with the read, over the read, is what the statistics pass costs against one read of
the store where nothing overlaps (a worker whose reader thread and compute share one core with
nothing to spare); a fit's pass overlaps them as far as the cores allow. On a cluster, beside
one read of the whole store: ``bench_stats_pass.py``.

Run: ``python benchmarks/bench_stats.py [--rows 65536] [--features 50] [--outputs 20]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from distglm.data.checks import content_fingerprint
from distglm.data.counting import design_gram, label_counts
from distglm.data.stats import chunk_stats
from distglm.distribute.chunks import encode_held, hold_chunk
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
    med = interleaved(variants, args.repeats)
    ref = med["reference (unique + per-column)"]
    print(f"chunk {args.rows} x {args.features}, {args.outputs} outputs x {args.classes} classes")
    print(f"{'variant':34s} {'median ms':>10s} {'/ reference':>12s}")
    for name, ms in med.items():
        print(f"{name:34s} {ms:10.2f} {ms / ref:12.3f}")
    print(f"counts identical; gram max relative difference to the reference: {rel:.2e}")
    print()
    worker_steps(X, y, args.repeats)


def interleaved(variants, repeats):
    """Median milliseconds of each variant, run in turn ``repeats`` times."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) * 1e3 for name, v in times.items()}


def worker_steps(X, y, repeats):
    """The worker's statistics-pass steps on one chunk beside reading it from a Zarr store."""
    import zarr

    with tempfile.TemporaryDirectory() as folder:
        group = zarr.open_group(folder, mode="w")
        group.create_array("X", data=X, chunks=X.shape)
        group.create_array("y", data=y, chunks=y.shape)
        zx, zy = group["X"], group["y"]
        keep = kept_rows(X, y)
        labels = np.unique(y)
        held = hold_chunk(0, X, y, keep, labels, X.shape[0], np.float32)
        steps = {
            "read from the store (X and y)": lambda: (zx[:], zy[:]),
            "kept rows (NaN/Inf)": lambda: kept_rows(X, y),
            "label counts": lambda: label_counts(0, y),
            "Gram matrix, float64": lambda: design_gram(X),
            "fingerprint": lambda: content_fingerprint(X, y),
            "padded copy kept (hold_chunk)": lambda: hold_chunk(
                0, X, y, keep, labels, X.shape[0], np.float32
            ),
            "codes among the classes (encode)": lambda: encode_held(
                held, labels, X.shape[0], np.float32
            ),
        }
        med = interleaved(steps, repeats)
    read = med.pop("read from the store (X and y)")
    print("a worker's statistics pass on the same chunk read from a Zarr store on disk")
    print(f"{'step':34s} {'median ms':>10s} {'/ read':>8s}")
    print(f"{'read from the store (X and y)':34s} {read:10.2f} {1.0:8.3f}")
    for name, ms in med.items():
        print(f"{name:34s} {ms:10.2f} {ms / read:8.3f}")
    total = read + sum(med.values())
    print(f"{'read and every step':34s} {total:10.2f} {total / read:8.3f}")


if __name__ == "__main__":
    main()
