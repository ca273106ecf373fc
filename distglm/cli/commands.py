"""The batch commands: ``info``, ``fit``, ``predict`` and ``score`` over a store of sessions."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Literal

import numpy as np

from .cluster import cluster_client

__all__ = ["run_fit", "run_info", "run_predict", "run_score"]


def _storage_options(args):
    text = getattr(args, "storage_options", None)
    if not text:
        return None
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--storage-options must be a JSON object; got {text!r} ({e}).") from e
    if not isinstance(opts, dict):
        raise ValueError(f"--storage-options must be a JSON object; got {text!r}.")
    return opts


def _open(args):
    from ..data import open_sessions

    return open_sessions(args.store, storage_options=_storage_options(args))


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def _ids(values, shown=2) -> str:
    values = [str(v) for v in np.asarray(values).tolist()]
    if len(values) <= shown:
        return ", ".join(values)
    return f"{values[0]}..{values[-1]}"


def session_table(sessions) -> list[dict]:
    """Per session: samples, outputs, chunking, dtypes and sizes (read from metadata only)."""
    rows = []
    for name, ds in sessions.items():
        X, y = ds["X"], ds["y"]
        rows.append(
            {
                "session": name,
                "samples": int(X.shape[0]),
                "outputs": [str(o) for o in np.asarray(y.coords["output"].values).tolist()],
                "chunk_rows": [int(c) for c in X.data.chunks[0]],
                "X_dtype": str(X.dtype),
                "y_dtype": str(y.dtype),
                "nbytes": int(X.nbytes + y.nbytes),
            }
        )
    return rows


def run_info(args, out=None) -> int:
    out = sys.stdout if out is None else out
    sessions = _open(args)
    rows = session_table(sessions)
    features = [] if sessions.features is None else [str(f) for f in sessions.features.tolist()]
    if args.json:
        payload = {
            "store": str(args.store),
            "n_sessions": len(rows),
            "n_samples": sum(r["samples"] for r in rows),
            "n_features": sessions.n_features,
            "features": features,
            "outputs": [str(o) for o in sessions.outputs.tolist()],
            "nbytes": sum(r["nbytes"] for r in rows),
            "sessions": rows,
        }
        json.dump(payload, out, indent=2)
        out.write("\n")
        return 0
    total = sum(r["nbytes"] for r in rows)
    print(f"store: {args.store}", file=out)
    print(
        f"{len(rows)} sessions, {sum(r['samples'] for r in rows):,} samples, "
        f"{sessions.n_features} features ({_ids(features) if features else 'unnamed'}), "
        f"{sessions.outputs.size} outputs ({_ids(sessions.outputs)}), {_size(total)} "
        "uncompressed",
        file=out,
    )
    print(
        f"  {'session':<16} {'samples':>10} {'outputs':>8}  {'ids':<18} {'chunks (rows)':<20}"
        f" {'X':<8} {'y':<8} {'size':>10}",
        file=out,
    )
    for r in rows:
        chunks = r["chunk_rows"]
        chunking = f"{len(chunks)} x {chunks[0]:,}" if chunks else "0"
        print(
            f"  {r['session']:<16} {r['samples']:>10,} {len(r['outputs']):>8}  "
            f"{_ids(r['outputs']):<18} {chunking:<20} {r['X_dtype']:<8} {r['y_dtype']:<8} "
            f"{_size(r['nbytes']):>10}",
            file=out,
        )
    return 0


def _feature_mask(path):
    if path is None:
        return None
    if not os.path.exists(path):
        raise FileNotFoundError(f"--feature-mask: no file at {path!r}.")
    if str(path).endswith(".npy"):
        return np.load(path, allow_pickle=False)
    import xarray as xr

    ds = xr.open_dataset(path, engine="zarr" if os.path.isdir(path) else None)
    names = list(ds.data_vars)
    if len(names) != 1:
        raise ValueError(
            f"--feature-mask {path!r} must hold one variable (dims feature, output[, class]); it "
            f"holds {names}."
        )
    return ds[names[0]].load()


def _strength(text):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--strength must be a number; got {text!r}.") from None


def run_fit(args, out=None) -> int:
    out = sys.stdout if out is None else out
    from ..estimator import ClassifierPopulationGLM

    sessions = _open(args)
    solver_kwargs = {}
    if args.tol is not None:
        solver_kwargs["tol"] = args.tol
    if args.maxiter is not None:
        solver_kwargs["maxiter"] = args.maxiter
    model = ClassifierPopulationGLM(
        n_classes=args.n_classes,
        regularizer=args.regularizer,
        regularizer_strength=None if args.strength is None else _strength(args.strength),
        solver_name=args.solver,
        solver_kwargs=solver_kwargs or None,
        feature_mask=_feature_mask(args.feature_mask),
    )
    if os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"--out {args.out!r} exists; pass --overwrite to replace it.")
    print(f"{sessions!r}", file=out)
    with cluster_client(args, out) as client:
        start = time.perf_counter()
        model.fit(
            sessions,
            client=client,
            # in a log file the INFO lines already show every pass and iteration
            progress=not args.no_progress
            and (sys.stderr.isatty() or args.log_level not in ("DEBUG", "INFO")),
            cache_bytes=args.cache_bytes,
            checkpoint=args.checkpoint,
        )
        seconds = time.perf_counter() - start
    model.save_params(args.out, overwrite=args.overwrite)
    last = model.fit_history_[-1] if model.fit_history_ else {}
    print(
        f"fit: {seconds:.2f} s, solver {model.solver_}, {len(model.fit_history_)} iterations, "
        f"{model.n_passes_} passes, objective {last.get('objective', float('nan')):.6f}, "
        f"gap {last.get('gap', float('nan')):.1e}",
        file=out,
    )
    print(f"saved: {args.out}", file=out)
    return 0


def _load(path):
    from ..persist import load_model

    return load_model(path)


def run_predict(args, out=None) -> int:
    out = sys.stdout if out is None else out
    import xarray as xr

    model = _load(args.model)
    sessions = _open(args)
    if os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"--out {args.out!r} exists; pass --overwrite to replace it.")
    with cluster_client(args, out):
        labels = model.predict(sessions)
        proba = model.predict_proba(sessions, return_type="proba")
        mode: Literal["w", "a"] = "w"
        for name in sessions:
            ds = xr.Dataset({"label": labels[name], "proba": proba[name]})
            ds["label"] = ds["label"].astype(str)  # a fixed-width string array Zarr can hold
            # written by the workers, chunk by chunk: nothing is gathered here
            ds.to_zarr(args.out, group=name, mode=mode, consolidated=False)
            mode = "a"
            print(
                f"  {name}: label {ds['label'].shape}, proba {ds['proba'].shape}",
                file=out,
            )
    print(f"predictions: {args.out} ({len(sessions)} groups)", file=out)
    return 0


def score_tables(model, sessions):
    """Per session and per output: entries, mean log-likelihood and McFadden's pseudo-R2.

    Each row's null model uses each output's class frequencies within the row's data; the
    ``all`` row equals ``model.score(sessions, score_type="pseudo-r2-McFadden")``.

    Returns
    -------
    per_session, per_output : list of dict
    total : dict
    """
    from ..data.lazy import LazyModel
    from ..scoring import log_frequencies

    lazy = LazyModel(
        np.asarray(model.coef_),
        np.asarray(model.intercept_),
        model.classes_,
        model.outputs_,
        True,
    )

    def row(ll, counts):
        n = int(counts.sum())
        null = float(np.sum(counts * log_frequencies(counts)))
        return {
            "entries": n,
            "log_likelihood": float(ll.sum() / max(n, 1)),
            "pseudo_r2_mcfadden": float(1.0 - ll.sum() / null) if null < 0 else float("nan"),
        }

    per_session, ll_all, counts_all = [], None, None
    for name in sessions:
        ll, counts = lazy.score_sums({name: sessions[name]})
        recorded = counts.sum(axis=1) > 0
        per_session.append({"session": name, **row(ll[recorded], counts[recorded])})
        ll_all = ll if ll_all is None else ll_all + ll
        counts_all = counts if counts_all is None else counts_all + counts
    assert ll_all is not None and counts_all is not None  # Sessions are never empty
    per_output = [
        {"output": str(o), **row(ll_all[j : j + 1], counts_all[j : j + 1])}
        for j, o in enumerate(np.asarray(model.outputs_).tolist())
    ]
    return per_session, per_output, {"session": "all", **row(ll_all, counts_all)}


def run_score(args, out=None) -> int:
    out = sys.stdout if out is None else out
    model = _load(args.model)
    sessions = _open(args)
    log = sys.stderr if args.json else out
    with cluster_client(args, log):
        per_session, per_output, total = score_tables(model, sessions)
    if args.json:
        json.dump({"sessions": per_session, "outputs": per_output, "all": total}, out, indent=2)
        out.write("\n")
        return 0
    head = f"{'entries':>10} {'log-likelihood':>15} {'McFadden R2':>12}"

    def line(key, r):
        return (
            f"  {key:<16} {r['entries']:>10,} {r['log_likelihood']:>15.5f} "
            f"{r['pseudo_r2_mcfadden']:>12.4f}"
        )

    print(f"  {'session':<16} {head}", file=out)
    for r in [*per_session, total]:
        print(line(r["session"], r), file=out)
    print(f"  {'output':<16} {head}", file=out)
    for r in per_output:
        print(line(r["output"], r), file=out)
    return 0
