"""Short GPU check: a distributed fit from a generated Zarr store on one GPU worker.

Self-contained and short, for a machine lent with a GPU (it also runs, on the CPU, where there
is none, and says so):

1. ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is set before JAX is imported, here and on the
   worker (this process's environment, which the worker inherits, plus
   ``distributed.nanny.pre-spawn-environ`` and, for a plain LocalCluster, its ``env``), so
   neither process grabs 75% of the GPU's memory up front.
2. ``make_population(--rows, 50, 20, 3, seed=0)`` (1,000,000 rows by default) is written to a
   Zarr store (float32 X, int8 y, ``--chunk-rows`` rows per chunk) in a temporary directory.
3. A one-worker cluster starts before the clock: ``dask_cuda.LocalCUDACluster(n_workers=1)`` if
   dask_cuda imports (and ``--no-cuda`` is not given), else ``LocalCluster(n_workers=1,
   threads_per_worker=1)``. The worker's ``jax.devices()`` is printed.
4. "Read once": ``dask.compute(X.sum(), y.sum())`` on the cluster (the second of two).
5. ``ClassifierPopulationGLM(n_classes=3, regularizer="Ridge", regularizer_strength=1e-3)`` is
   fitted from the store with L-BFGS, then Newton (first and warm), Newton with the Hessian on
   every row, and Newton with every chunk streamed (``cache_bytes=0``), printing wall time,
   passes, and the median pass split into the worker's time, its reads and the overhead, from
   ``fit_profile_``; for streamed fits, the median pass over "read once".
6. For comparison L-BFGS and Newton run in this process, in memory, on the CPU
   (``jax.default_device(cpu)``); ``--no-cpu`` skips it.

Usage: ``python benchmarks/gpu_check.py [--rows 1000000] [--chunk-rows 65536]
[--strength 1e-3] [--no-cuda] [--no-cpu]``. Prints to stdout only.
"""

from __future__ import annotations

import os

# Before anything imports JAX (distglm does): no up-front grab of 75% of the GPU's memory.
os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

P, K, C = 50, 20, 3


def _print(*args):
    print(*args, flush=True)


def write_store(X, y, path, chunk_rows):
    """X (float32) and y (int8) in a Zarr group at ``path``, chunked along rows."""
    import zarr

    group = zarr.open_group(path, mode="w")
    group.create_array("X", data=np.asarray(X, np.float32), chunks=(chunk_rows, X.shape[1]))
    group.create_array("y", data=np.asarray(y, np.int8), chunks=(chunk_rows, y.shape[1]))


def start_cluster(use_cuda):
    """A one-worker cluster (LocalCUDACluster when available) and its client."""
    import warnings

    import dask
    from distributed import Client, LocalCluster

    warnings.filterwarnings("ignore", message="Port .* is already in use")  # HTTP server port

    key = "distributed.nanny.pre-spawn-environ"  # a dotted key per variable would replace it
    dask.config.set({key: {**dask.config.get(key, default={}), **WORKER_ENV}})
    cluster, kind = None, None
    if use_cuda:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as e:
            _print(f"dask_cuda not importable ({e}); using LocalCluster(n_workers=1)")
        else:
            # Its worker spec replaces any env= with CUDA_VISIBLE_DEVICES, so WORKER_ENV
            # reaches the worker through pre-spawn-environ and this process's environment.
            cluster = LocalCUDACluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
            kind = "dask_cuda.LocalCUDACluster(n_workers=1, threads_per_worker=1)"
    if cluster is None:
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=dict(WORKER_ENV),
        )
        kind = "distributed.LocalCluster(n_workers=1, threads_per_worker=1)"
    return cluster, Client(cluster), kind


def _worker_jax():
    import jax

    return {
        "devices": [str(d) for d in jax.devices()],
        "platforms": sorted({d.platform for d in jax.devices()}),
        "backend": jax.default_backend(),
        "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "jax": jax.__version__,
    }


def _passes_table(passes):
    _print("    pass   seconds ms   compute ms   overhead ms")
    for i, p in enumerate(passes):
        _print(
            f"    {i:4d} {1e3 * p['seconds']:12.2f} {1e3 * p['compute']:12.2f} "
            f"{1e3 * p['overhead']:13.2f}"
        )


def _pass_summary(passes):
    sec = np.array([p["seconds"] for p in passes])
    comp = np.array([p["compute"] for p in passes])
    over = np.array([p["overhead"] for p in passes])
    return (
        f"{len(passes)} passes, {sec.sum():.2f} s; median pass {1e3 * np.median(sec):.2f} ms "
        f"= compute {1e3 * np.median(comp):.2f} + overhead {1e3 * np.median(over):.2f} ms "
        f"(max overhead {1e3 * over.max():.2f} ms)"
    )


def _fit_line(label, wall, m):
    prof = m.fit_profile_
    passes = prof["passes"][1:] or prof["passes"]
    med = {
        key: 1e3 * float(np.median([p[key] for p in passes]))
        for key in ("seconds", "compute", "read", "overhead")
    }
    _print(
        f"  {label:<34} {m.solver_:<7} {wall:7.2f} s {m.n_passes_:4d} passes  pass "
        f"{med['seconds']:8.1f} ms (worker {med['compute']:8.1f}, read {med['read']:7.1f}, "
        f"overhead {med['overhead']:5.1f})  stats {prof['statistics_seconds']:5.2f} s  "
        f"objective {m.fit_history_[-1]['objective']:.8f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65_536)
    parser.add_argument("--strength", type=float, default=1e-3)
    parser.add_argument("--no-cuda", action="store_true", help="plain LocalCluster")
    parser.add_argument("--no-cpu", action="store_true", help="skip the in-memory CPU fit")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    import jax

    import distglm
    from distglm.cli import make_population

    s = args.strength
    _print(
        f"gpu_check: distglm {distglm.__version__}, jax {jax.__version__}; "
        f"make_population({args.rows:,}, {P}, {K}, {C}, seed=0), Ridge {s:g}; "
        f"XLA_PYTHON_CLIENT_PREALLOCATE={os.environ['XLA_PYTHON_CLIENT_PREALLOCATE']}"
    )
    _print(f"this process: jax.devices() = {jax.devices()}, {os.cpu_count()} CPU cores")
    t0 = time.perf_counter()
    X, y, _, _ = make_population(args.rows, P, K, C, seed=0)
    _print(f"data generated in {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "population.zarr")
        t0 = time.perf_counter()
        write_store(X, y, store, args.chunk_rows)
        _print(
            f"store written in {time.perf_counter() - t0:.1f} s ({args.chunk_rows:,}-row chunks)"
        )

        t0 = time.perf_counter()
        cluster, client, kind = start_cluster(not args.no_cuda)
        try:
            info = next(iter(client.run(_worker_jax).values()))
            _print(
                f"cluster: {kind}, started in {time.perf_counter() - t0:.1f} s (before the clock)"
            )
            _print(
                f"worker: jax {info['jax']}, jax.devices() = {info['devices']}, default "
                f"backend {info['backend']}, XLA_PYTHON_CLIENT_PREALLOCATE="
                f"{info['preallocate']}, CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']}"
            )
            on_gpu = "gpu" in info["platforms"] or "cuda" in info["platforms"]
            if not on_gpu:
                _print(
                    "NO GPU: the worker's JAX sees only "
                    f"{'/'.join(info['platforms'])} devices; every distributed figure below "
                    "is a CPU figure."
                )
            Xd = da.from_zarr(store, component="X")
            yd = da.from_zarr(store, component="y")
            for _ in range(2):
                t = time.perf_counter()
                dask.compute(Xd.sum(), yd.sum())
                read_once = time.perf_counter() - t
            _print(f"read the store once (dask.compute of X.sum(), y.sum()): {read_once:.2f} s")
            _print(
                "distributed fits (wall, passes incl. the statistics pass, median pass after "
                "the first: wall / worker / its reads / overhead):"
            )
            runs = [
                ("LBFGS, cached", "LBFGS", None, None),
                ("Newton, cached (first)", "Newton", None, None),
                ("Newton, cached", "Newton", None, None),
                ("Newton, cached, Hessian on all rows", "Newton", {"hessian_rows": 0}, None),
                ("Newton, streamed (cache_bytes=0)", "Newton", None, 0),
                ("Newton, all rows, streamed", "Newton", {"hessian_rows": 0}, 0),
            ]
            fits = {}
            for label, solver, kw, cache in runs:
                m = distglm.ClassifierPopulationGLM(
                    n_classes=C,
                    regularizer="Ridge",
                    regularizer_strength=s,
                    solver_name=solver,
                    solver_kwargs=kw,
                )
                t = time.perf_counter()
                m.fit(Xd, yd, client=client, cache_bytes=cache)
                fits[label] = m
                _fit_line(label, time.perf_counter() - t, m)
                if cache == 0:
                    per_pass = float(
                        np.median([p["seconds"] for p in m.fit_profile_["passes"][1:]])
                    )
                    _print(f"    streamed: median pass / read once = {per_pass / read_once:.2f}")
            _print("Newton, cached, every pass:")
            _passes_table(fits["Newton, cached"].fit_profile_["passes"])
        finally:
            client.close()
            cluster.close()

    if args.no_cpu:
        return
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        for solver in ("LBFGS", "Newton"):
            m = distglm.ClassifierPopulationGLM(
                n_classes=C, regularizer="Ridge", regularizer_strength=s, solver_name=solver
            )
            t = time.perf_counter()
            m.fit(X, y)
            wall = time.perf_counter() - t
            _print(
                f"in-memory {solver} fit on this process's CPU: {wall:.2f} s, {m.n_passes_} "
                f"passes, objective {m.fit_history_[-1]['objective']:.8f}"
            )
    if not on_gpu:
        _print("NO GPU was seen on the worker: this run compared CPU with CPU.")


if __name__ == "__main__":
    sys.exit(main())
