"""``distglm demo``: a generated multi-session store, fitted on a LocalCluster."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["run_demo"]


def run_demo(args) -> int:
    """``distglm demo``: generate, write, fit on a LocalCluster, summarise."""
    import tempfile

    from distributed import Client

    import distglm

    from ..distribute.client import local_cluster
    from .generate import make_sessions

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
            local_cluster(args.workers) as cluster,
            Client(cluster) as client,
        ):
            distglm.pin_workers_to_cores(client)
            print(f"LocalCluster: {args.workers} worker processes, 1 thread each")
            print(f"dashboard: {client.dashboard_link}", flush=True)
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
            n_out = np.asarray(model.outputs_).size
            print(f"classes_: {[str(c) for c in model.classes_]}; outputs_: {n_out}")
            predictions = model.predict(opened)
            print("per session:  accuracy   McFadden R2")
            session_r2 = {}
            for name, ds in opened.items():
                acc = float((predictions[name] == ds["y"]).mean().compute())
                r2 = float(model.score({name: ds}, score_type="pseudo-r2-McFadden"))
                session_r2[name] = r2
                print(f"  {name:<10} {acc:9.3f} {r2:12.4f}")
            r2_all = float(model.score(opened, score_type="pseudo-r2-McFadden"))
            print(f"  {'all':<10} {'':9} {r2_all:12.4f}")
            _write_plots(model, session_r2, args)
        order = [ids.index(o) for o in np.asarray(model.outputs_).tolist()]
        est = np.asarray(model.coef_)
        true = coef[:, order] - coef[:, order].mean(axis=2, keepdims=True)
        corr = np.corrcoef(est.ravel(), true.ravel())[0, 1]
        err = np.sqrt(np.mean((est - true) ** 2)) / np.sqrt(np.mean(true**2))
        print(
            f"recovered vs true (class-centred) coefficients: correlation {corr:.3f}, "
            f"relative RMS error {err:.3f}"
        )
    return 0


def _write_plots(model, session_r2, args) -> None:
    """The demo's plots, where matplotlib is installed (the ``plot`` extra)."""
    import importlib.util
    import os

    if importlib.util.find_spec("matplotlib") is None:
        print("plots: skipped (matplotlib is not installed: pip install 'distglm[plot]')")
        return
    from distglm.plot import save_demo_plots

    folder = args.plots or os.path.join(os.getcwd(), "distglm-demo-plots")
    paths = save_demo_plots(model, session_r2, folder)
    print(f"plots: {', '.join(paths)}")
