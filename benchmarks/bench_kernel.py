"""One pass of the softmax loss/gradient kernel against a naive JAX pass and the matmuls alone.

Problem (DESIGN.md, "Anchors to beat"): ``distglm.cli.make_population(200_000, 50, 20, 3,
seed=0)``: 200,000 samples x 50 features, 20 outputs, 3 classes, float32.

Timed (median of ``--repeats`` calls after warm-up, each ending in ``block_until_ready``):

- ``distglm kernel``: ``jax.jit(nll_value_and_grad_sums)`` with the block size the library uses
  (``DEFAULT_BLOCK_ROWS``) on rows padded exactly as ``InMemoryData`` pads them (weight-0 rows
  up to a multiple of the block), i.e. the executable ``InMemoryData.value_and_grad`` calls;
- ``naive value_and_grad``: ``jax.jit(jax.value_and_grad(loss))`` with one-hot labels, the
  class axis last, no blocking (what a straightforward JAX GLM does, e.g. nemos);
- ``matmuls``: ``X @ W`` and ``X.T @ G`` (the two products any pass must do), alone and
  together in one jit; their sum is the floor the kernel is compared to (goal: < 2x).

Other block sizes are shown too, to check the library's default. XLA:CPU uses its own thread
pool; ``OPENBLAS_CORETYPE`` (see DESIGN.md) only concerns numpy's BLAS and is not relevant here.

Usage: ``python benchmarks/bench_kernel.py [--repeats 15] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from distglm.cli import make_population
from distglm.kernels.softmax import nll_value_and_grad_sums
from distglm.solve import InMemoryData


def median_time(fn, *args, repeats, warmup=2):
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def naive_loss(params, X, onehot):
    coef, intercept = params
    n, p = X.shape
    _, k, c = coef.shape
    eta = (X @ coef.reshape(p, k * c)).reshape(n, k, c) + intercept
    return -jnp.sum(onehot * jax.nn.log_softmax(eta, axis=-1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="20,000 samples instead of 200,000")
    args = parser.parse_args(argv)
    n, p, k, c = (20_000 if args.quick else 200_000), 50, 20, 3

    X, y, coef, intercept = make_population(n, p, k, c, seed=0)
    data = InMemoryData(X, y, c)  # pads rows like the library does
    (Xp, yp, wp), block = data.arrays, data.block_rows
    params = (jnp.asarray(0.5 * coef, jnp.float32), jnp.asarray(intercept, jnp.float32))

    kernel = jax.jit(nll_value_and_grad_sums, static_argnames="block_rows")
    naive = jax.jit(jax.value_and_grad(naive_loss))
    onehot = jnp.asarray(np.eye(c, dtype=np.float32)[y])
    Xj = jnp.asarray(X)
    W = jnp.asarray(coef.reshape(p, k * c), jnp.float32)
    G = jnp.asarray(np.random.default_rng(1).standard_normal((n, k * c)), jnp.float32)
    fwd = jax.jit(lambda X, W: X @ W)
    bwd = jax.jit(lambda X, G: X.T @ G)
    both = jax.jit(lambda X, W, G: (X @ W, X.T @ G))

    # sanity: the kernel and the naive pass agree
    lk, (gk, _) = kernel(params, Xp, yp, wp, block_rows=block)
    ln, (gn, _) = naive(params, Xj, onehot)
    assert abs(float(jnp.sum(lk)) - float(ln)) <= 1e-4 * abs(float(ln)), (jnp.sum(lk), ln)
    assert float(jnp.max(jnp.abs(gk - gn))) <= 1e-3 * float(jnp.max(jnp.abs(gn)))

    r = args.repeats
    rows = []
    t_fwd = median_time(fwd, Xj, W, repeats=r)
    t_bwd = median_time(bwd, Xj, G, repeats=r)
    t_both = median_time(both, Xj, W, G, repeats=r)
    floor = t_fwd[0] + t_bwd[0]
    rows.append(("X @ W", t_fwd))
    rows.append(("X.T @ G", t_bwd))
    rows.append(("X @ W + X.T @ G (one jit)", t_both))
    label = f"distglm kernel, block_rows={block} (library default, padded to {Xp.shape[0]})"
    rows.append((label, median_time(kernel, params, Xp, yp, wp, block, repeats=r)))
    rows.append(
        ("naive jax.value_and_grad, one-hot", median_time(naive, params, Xj, onehot, repeats=r))
    )
    for b in (2048, 4096, 16384, 32768, None):
        if b == block:
            continue
        d = InMemoryData(X, y, c, block_rows=b) if b is not None else None
        if d is None:
            args_b = (params, jnp.asarray(X), jnp.asarray(y, jnp.int32), jnp.ones(n, jnp.float32))
            bb = None
        else:
            args_b = (params, *d.arrays)
            bb = d.block_rows
        rows.append(
            (f"distglm kernel, block_rows={bb}", median_time(kernel, *args_b, bb, repeats=r))
        )

    print(
        f"bench_kernel: {n:,} x {p} features, {k} outputs x {c} classes, float32; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores "
        f"({platform.machine()}); median of {r} after 2 warm-up calls"
    )
    print(f"matmul floor = X @ W + X.T @ G timed separately = {1e3 * floor:.1f} ms\n")
    name_w = max(len(name) for name, _ in rows)
    print(f"{'what':<{name_w}}  {'median ms':>9}  {'min ms':>7}  {'max ms':>7}  {'/ matmuls':>9}")
    print("-" * (name_w + 42))
    for name, (med, lo, hi) in rows:
        print(
            f"{name:<{name_w}}  {1e3 * med:9.1f}  {1e3 * lo:7.1f}  {1e3 * hi:7.1f}  "
            f"{med / floor:8.2f}x"
        )
    ratio = rows[3][1][0] / floor
    print(
        f"\ngoal: distglm kernel < 2x the matmuls -> {ratio:.2f}x "
        f"({'met' if ratio < 2 else 'NOT met'}); "
        f"naive / distglm = {rows[4][1][0] / rows[3][1][0]:.2f}x"
    )


if __name__ == "__main__":
    main()
