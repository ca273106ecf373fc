"""The ``distglm`` command.

``distglm demo`` writes a generated multi-session Zarr store (sessions with overlapping output
ids and string class labels) to a temporary folder, starts a ``LocalCluster``, fits one
``ClassifierPopulationGLM`` over all sessions with a progress bar, and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["main", "make_population", "make_sessions"]


def make_population(n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3):
    """Generate a softmax population problem with known coefficients.

    Parameters
    ----------
    n_samples, n_features, n_outputs, n_classes : int
    seed : int
    scale : float
        Standard deviation of the true coefficients.

    Returns
    -------
    X : float32 array of shape (n_samples, n_features), standard normal
    y : int array of shape (n_samples, n_outputs)
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(np.float32)
    coef = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    eta = np.einsum("np,pkc->nkc", X, coef) + intercept
    y = np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)
    return X, y, coef, intercept


def make_ill_conditioned(
    n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3, rho=0.95, decades=3.0
):
    """Like :func:`make_population`, with correlated and badly scaled features.

    Features follow an AR(1) sequence along the feature axis (correlation ``rho`` between
    neighbours) and are then scaled by factors spread log-uniformly over ``decades`` decades,
    so the design's second moment has a condition number in the millions: the case where
    unpreconditioned first-order solvers crawl.

    Returns
    -------
    X, y, coef, intercept : as :func:`make_population` (``coef`` on the scaled features).
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_samples, n_features))
    X0 = np.empty_like(Z)
    X0[:, 0] = Z[:, 0]
    for j in range(1, n_features):
        X0[:, j] = rho * X0[:, j - 1] + np.sqrt(1 - rho**2) * Z[:, j]
    scales = 10.0 ** np.linspace(-decades / 2, decades / 2, n_features)
    coef0 = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    eta = np.einsum("np,pkc->nkc", X0, coef0) + intercept
    y = np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)
    return (X0 * scales).astype(np.float32), y, coef0 / scales[:, None, None], intercept


def make_sessions(
    n_sessions, n_samples, n_features, n_outputs, n_classes, seed=0, scale=0.3, chunk_rows=None
):
    """Generate recording sessions that share a feature space and overlapping outputs.

    Each session records a contiguous (wrapping) window of about 60% of the outputs, so
    neighbouring sessions share outputs; labels are strings. One true model generates all.

    Parameters
    ----------
    n_sessions, n_samples, n_features, n_outputs, n_classes : int
        ``n_samples`` is per session (sessions get 60%-140% of it, so lengths differ).
    seed : int
    scale : float
        Standard deviation of the true coefficients.
    chunk_rows : int, optional
        Row chunking of the Datasets (dask-backed) when given.

    Returns
    -------
    sessions : dict of str -> xarray.Dataset
        ``X`` (sample, feature) float32, ``y`` (sample, output) strings, coords ``feature``
        and ``output``.
    coef : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    output_ids : list of str
    labels : array of shape (n_classes,)
    """
    import xarray as xr

    rng = np.random.default_rng(seed)
    labels = np.array(
        ["left", "nogo", "right"][:n_classes]
        if n_classes <= 3
        else [f"class{i}" for i in range(n_classes)]
    )
    coef = rng.normal(0.0, scale, (n_features, n_outputs, n_classes))
    intercept = rng.normal(0.0, 0.3, (n_outputs, n_classes))
    ids = [f"unit{j:02d}" for j in range(n_outputs)]
    width = max(1, round(0.6 * n_outputs))
    sessions = {}
    for s in range(n_sessions):
        first = (s * max(1, n_outputs // max(n_sessions, 1))) % n_outputs
        outs = [(first + j) % n_outputs for j in range(width)]
        n = int(n_samples * rng.uniform(0.6, 1.4))
        X = rng.standard_normal((n, n_features)).astype(np.float32)
        eta = np.einsum("np,pkc->nkc", X, coef[:, outs]) + intercept[outs]
        y = labels[np.argmax(eta + rng.gumbel(size=eta.shape), axis=-1)]
        ds = xr.Dataset(
            {"X": (("sample", "feature"), X), "y": (("sample", "output"), y)},
            coords={
                "feature": [f"f{i:02d}" for i in range(n_features)],
                "output": [ids[j] for j in outs],
            },
        )
        sessions[f"session{s}"] = ds.chunk({"sample": chunk_rows}) if chunk_rows else ds
    return sessions, coef, intercept, ids, labels


def _demo(args):
    import logging
    import tempfile
    import warnings

    from distributed import Client, LocalCluster

    import distglm

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="zarr")  # string dtypes lack a Zarr v3 spec
    sessions, coef, _, ids, _ = make_sessions(
        args.sessions,
        args.samples,
        args.features,
        args.outputs,
        args.classes,
        seed=args.seed,
        chunk_rows=args.chunk_rows,
    )
    with tempfile.TemporaryDirectory(prefix="distglm-demo-") as tmp:
        store = args.store or f"{tmp}/sessions.zarr"
        for name, ds in sessions.items():
            ds.to_zarr(store, group=name, mode="w")
        opened = distglm.open_sessions(store)
        print(f"distglm {distglm.__version__}: wrote {opened!r}")
        print(f"  store: {store}")
        for name, ds in opened.items():
            print(
                f"  {name}: {ds['X'].shape[0]:,} samples, outputs "
                f"{ds['y'].coords['output'].values[0]}..{ds['y'].coords['output'].values[-1]}"
                f" ({ds['y'].shape[1]}), chunks of {ds['X'].data.chunks[0][0]:,} rows"
            )
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            distglm.pin_workers_to_cores(client)
            print(f"LocalCluster: {args.workers} worker processes, 1 thread each")
            model = distglm.ClassifierPopulationGLM(
                n_classes=args.classes, regularizer="Ridge", regularizer_strength=args.strength
            )
            print(f"fitting Ridge {args.strength:g} over the union of {len(ids)} outputs:")
            start = time.perf_counter()
            model.fit(opened, client=client, progress=True)
            elapsed = time.perf_counter() - start
            prof = model.fit_profile_
            passes = prof["passes"]
            per_pass = np.median([p["seconds"] for p in passes]) * 1e3
            overhead = np.median([p["overhead"] for p in passes]) * 1e3
            print(
                f"fit: {elapsed:.2f} s, {len(model.fit_history_)} iterations, "
                f"{model.n_passes_} passes over the data (statistics pass included), "
                f"{prof['n_chunks']} chunks on {len(prof['workers'])} workers"
            )
            print(
                f"  statistics pass {prof['statistics_seconds']:.2f} s; per pass {per_pass:.1f} "
                f"ms (coordinator overhead {overhead:.1f} ms); objective "
                f"{model.fit_history_[-1]['objective']:.6f}"
            )
            print(f"classes_: {[str(c) for c in model.classes_]}; outputs_: {len(model.outputs_)}")
            predictions = model.predict(opened)
            print("per session:  accuracy   McFadden R2")
            for name, ds in opened.items():
                acc = float((predictions[name] == ds["y"]).mean().compute())
                r2 = float(model.score({name: ds}, score_type="pseudo-r2-McFadden"))
                print(f"  {name:<10} {acc:9.3f} {r2:12.4f}")
            r2_all = float(model.score(opened, score_type="pseudo-r2-McFadden"))
            print(f"  {'all':<10} {'':9} {r2_all:12.4f}")
        order = [ids.index(o) for o in model.outputs_.tolist()]
        est = np.asarray(model.coef_)
        true = coef[:, order] - coef[:, order].mean(axis=2, keepdims=True)
        corr = np.corrcoef(est.ravel(), true.ravel())[0, 1]
        err = np.sqrt(np.mean((est - true) ** 2)) / np.sqrt(np.mean(true**2))
        print(
            f"recovered vs true (class-centred) coefficients: correlation {corr:.3f}, "
            f"relative RMS error {err:.3f}"
        )
    return 0


def main(argv=None):
    """Entry point of the ``distglm`` command."""
    parser = argparse.ArgumentParser(prog="distglm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="write a generated multi-session Zarr store, fit it on a LocalCluster, summarise",
    )
    demo.add_argument("--sessions", type=int, default=4)
    demo.add_argument("--samples", type=int, default=50_000, help="per session (on average)")
    demo.add_argument("--features", type=int, default=20)
    demo.add_argument("--outputs", type=int, default=10, help="distinct output ids in total")
    demo.add_argument("--classes", type=int, default=3)
    demo.add_argument("--strength", type=float, default=1e-3)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--chunk-rows", type=int, default=16_384)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--store", default=None, help="write the store here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
