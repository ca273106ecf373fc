"""A worker's gradient and Newton passes over its chunks, in process, beside their kernels.

``ChunkWorker.value_and_grad`` is what every distributed pass runs on each worker: each
session's parameters cut out and handed to the jitted kernel, the kernel on each chunk, its sums
back to the host and added with compensation into one buffer. The reference is the kernel alone
on the same chunk (``VALUE_AND_GRAD``, the tuple form every version of the worker has had), its
parameters already on the device and its sums copied to the host: what a pass costs with
nothing around it. On the small chunks of many-worker runs (``bench_workers.py``:
256 rows a worker) the difference is most of a pass; on real chunks it vanishes under the
kernel's compute.

The second table does the same for a Newton pass (``ChunkWorker.newton``, every output
evaluated, three trial steps, the Hessian from every row) beside ``NEWTON_PASS`` alone.

Each pass and its kernel run interleaved in one process (medians of ``--repeats`` blocks of
calls), so the ratio holds on a busy machine.

Run: ``python benchmarks/bench_worker_pass.py [--repeats 30]``
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import jax
import jax.numpy as jnp
import numpy as np

from distglm.cli import make_population
from distglm.data.plan import plan_data
from distglm.distribute.worker import ChunkWorker
from distglm.kernels.compiled import NEWTON_PASS, VALUE_AND_GRAD

#: (rows, features, outputs, classes) of one chunk
SIZES = [(256, 8, 4, 3), (4096, 50, 20, 3), (32768, 50, 20, 3)]


def _worker(rows, p, k, c):
    X, y, _, _ = make_population(rows, p, k, c, seed=0)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(rows, p))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(rows, k))
    plan = plan_data(Xd, yd)
    worker = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows, n_classes=c)
    for status, _ in (worker.load(plan.chunks), worker.encode(np.arange(c))):
        assert status == "ok", status
    return worker


def _timed(fn, calls):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def _gradient(worker, theta, X, y, w):
    on_device = (jnp.asarray(theta[:-1]), jnp.asarray(theta[-1]))

    def kernel():
        loss, (gc, gb) = VALUE_AND_GRAD(on_device, X, y, w, block_rows=worker._block)
        return [np.asarray(a) for a in (loss, gc, gb)]

    def worker_pass():
        status, _ = worker.value_and_grad(theta)
        assert status == "ok"

    return kernel, worker_pass


def _newton(worker, theta, X, y, w):
    k = theta.shape[1]
    payload = np.stack([theta, 0.01 * theta])
    outputs, t_eval = np.arange(k), np.ones(k)
    steps = np.array([[1.0], [0.5], [0.25]]) * np.ones(k)
    dev = [jnp.asarray(a, np.float32) for a in (theta[:-1], theta[-1], payload[1, :-1])]
    dev += [jnp.asarray(payload[1, -1], np.float32), jnp.asarray(outputs, np.int32)]
    st, te = jnp.asarray(steps, np.float32), jnp.asarray(t_eval, np.float32)

    def kernel():
        sums = NEWTON_PASS(
            tuple(dev[:2]), tuple(dev[2:4]), X, y, w, dev[4], st, te, hess_stride=1,
            block_rows=worker._block,
        )  # fmt: skip
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(sums)]

    def worker_pass():
        status, _ = worker.newton(payload, outputs, steps, t_eval, 1)
        assert status == "ok"

    return kernel, worker_pass


def measure(rows, p, k, c, repeats, which):
    worker = _worker(rows, p, k, c)
    theta = np.random.default_rng(1).normal(0, 0.1, (p + 1, k, c)).astype(np.float32)
    ((_, _, X, y, w),) = list(worker._chunks())
    kernel, worker_pass = which(worker, theta, X, y, w)

    calls = max(5, int(20_000 / rows * 10))
    for fn in (kernel, worker_pass):
        _timed(fn, calls)  # compile and warm
    got = {"kernel": [], "pass": []}
    for _ in range(repeats):
        got["kernel"].append(_timed(kernel, calls))
        got["pass"].append(_timed(worker_pass, calls))
    return {name: np.median(np.asarray(v), axis=0) for name, v in got.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    for name, which, method, reference in (
        ("gradient", _gradient, "value_and_grad", "the kernel alone (parameters on the device"),
        ("Newton", _newton, "newton", "NEWTON_PASS alone (its arguments on the device"),
    ):
        print(
            f"a worker's {name} pass (ChunkWorker.{method}) on one chunk in process, beside "
            f"{reference}, sums to the host); medians of {args.repeats} blocks"
        )
        print(
            f"{'chunk (rows x p x k x c)':>26} {'kernel us':>10} {'pass us':>9} "
            f"{'pass/kernel':>12} {'kernel CPU us':>14} {'pass CPU us':>12}"
        )
        for rows, p, k, c in SIZES:
            r = measure(rows, p, k, c, args.repeats, which)
            kw, kc = r["kernel"] * 1e6
            pw, pc = r["pass"] * 1e6
            print(
                f"{f'{rows} x {p} x {k} x {c}':>26} {kw:10.1f} {pw:9.1f} {pw / kw:12.2f}"
                f" {kc:14.1f} {pc:12.1f}"
            )


if __name__ == "__main__":
    main()
