"""What a checkpoint belongs to: fingerprints of the data, the model's parameters and distglm.

A fingerprint is plain JSON, so comparing a checkpoint's with a fit's is comparing values, and
a mismatch names the part that differs. The **data** part describes in-memory data by its
shape, layout, classes and a BLAKE2 digest of the rows a fit uses; distributed data by its
plan (sessions, outputs, features, layout, every chunk's rows, the padded chunk size) and,
once known, the statistics pass's counts. The **model** part holds one digest per constructor
parameter (and the estimator's class); the **version** part is distglm's version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..exceptions import CheckpointMismatchError
from .codec import plain_array

__all__ = [
    "check_fingerprint",
    "memory_fingerprint",
    "model_fingerprint",
    "plan_fingerprint",
    "stats_fingerprint",
]


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.reshape(-1).view(np.uint8).data)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _labels(values) -> list | None:
    """Labels (classes, outputs, features) as a JSON list."""
    return None if values is None else plain_array(values, "labels").tolist()


def _layout(layout) -> dict:
    return {
        "keys": None if layout.keys is None else list(layout.keys),
        "widths": list(layout.widths),
    }


def memory_fingerprint(layout, X: np.ndarray, codes: np.ndarray, classes, dtype) -> dict:
    """The data part for an in-memory fit: the kept rows ``X`` (n, p) and their codes (n, k)."""
    return {
        "kind": "memory",
        "layout": _layout(layout),
        "rows": int(X.shape[0]),
        "outputs": int(codes.shape[1]),
        "classes": _labels(classes),
        "dtype": str(np.dtype(dtype)),
        "X": _digest(np.asarray(X)),
        "y": _digest(np.asarray(codes)),
    }


def plan_fingerprint(plan, dtype) -> dict:
    """The data part for a distributed fit, from its plan (nothing is read)."""
    return {
        "kind": plan.kind,
        "layout": _layout(plan.layout),
        "sessions": list(plan.sessions),
        "outputs": _labels(plan.outputs),
        "features": _labels(plan.features),
        "session_outputs": [np.asarray(o).tolist() for o in plan.session_outputs],
        # the source blocks, not the units they may be split into (a split depends on the
        # cluster's workers; the checkpoint records it beside the fingerprint)
        "chunks": [[int(s), int(a), int(b)] for s, a, b in plan.source],
        "chunk_rows": int(plan.source_chunk_rows),
        "block_rows": plan.block_rows,
        "dtype": str(np.dtype(dtype)),
    }


def stats_fingerprint(stats) -> dict:
    """The statistics pass's counts: classes, samples per output, rows kept and dropped."""
    return {
        "classes": _labels(stats.classes),
        "n_samples": np.asarray(stats.n_samples).tolist(),
        "n_rows": int(stats.n_rows),
        "n_dropped": {str(k): int(v) for k, v in stats.n_dropped.items()},
        "class_counts": _digest(np.asarray(stats.class_counts, np.int64)),
    }


def _refs(node: Any):
    if isinstance(node, dict):
        if "array" in node and isinstance(node["array"], str):
            yield node["array"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def model_fingerprint(model) -> tuple[dict, dict]:
    """The model part: the class and a digest of each constructor parameter; and, for
    messages only, each parameter's value as short text."""
    from .model import params_record

    arrays: dict[str, np.ndarray] = {}
    record = params_record(model, arrays)
    out, text = {"class": type(model).__name__}, {"class": type(model).__name__}
    for key, node in record.items():
        refs = list(_refs(node))
        out[key] = _digest(node, *(arrays[name] for name in refs))
        text[key] = _short(node) if not refs else "(arrays)"
    return out, text


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _describe(saved: Any, now: Any) -> str:
    if isinstance(saved, list) and isinstance(now, list) and len(saved) != len(now):
        return f"{len(saved)} in the checkpoint, {len(now)} in this fit"
    return f"checkpoint: {_short(saved)}; this fit: {_short(now)}"


def check_fingerprint(saved: dict, now: dict, path) -> None:
    """Raise unless the checkpoint at ``path`` (fingerprint ``saved``) belongs to this fit.

    The data's statistics counts are compared when both sides know them (a fit resuming from
    a checkpoint reuses the saved ones; its workers check each chunk's kept rows as they read
    it).

    Raises
    ------
    CheckpointMismatchError
        Naming the part that differs: the distglm version, a model parameter, or a part of
        the data (its layout, rows, chunks, outputs, classes, digests or counts).
    """
    hint = "Fit with resume=False to start over (the checkpoint is then replaced)."
    if saved.get("version") != now["version"]:
        raise CheckpointMismatchError(
            f"The checkpoint {path} was written by distglm {saved.get('version')}; this is "
            f"distglm {now['version']}. {hint}"
        )
    model_s, model_n = saved.get("model", {}), now["model"]
    text_s, text_n = saved.get("model_text", {}), now.get("model_text", {})
    for key in sorted(set(model_s) | set(model_n)):
        if model_s.get(key) != model_n.get(key):
            what = "class" if key == "class" else f"parameter {key!r}"
            raise CheckpointMismatchError(
                f"The checkpoint {path} is of another model: its {what} differs (checkpoint: "
                f"{text_s.get(key, '?')}; this fit: {text_n.get(key, '?')}). {hint}"
            )
    data_s, data_n = saved.get("data", {}), now["data"]
    # in the fingerprint's order: structure (kind, layout, rows, chunks) before digests
    for key in [*data_n, *(k for k in data_s if k not in data_n)]:
        if key == "counts" and (key not in data_s or key not in data_n):
            continue
        a, b = data_s.get(key), data_n.get(key)
        if key == "counts" and a != b:
            parts = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise CheckpointMismatchError(
                f"The checkpoint {path} is of other data: the statistics pass's "
                f"{', '.join(parts)} differ. {hint}"
            )
        if a != b:
            raise CheckpointMismatchError(
                f"The checkpoint {path} is of other data: the data's {key} differ "
                f"({_describe(a, b)}). {hint}"
            )
