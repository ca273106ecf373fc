"""The statistics pass: what each chunk reports on first read, and the merge at the coordinator.

One read of every chunk gathers the label set (the shared class encoding), class counts per
output (the initial intercepts), the rows dropped for NaN/Inf, sample counts per output and the
second moment of the design (the preconditioner's curvature model). Workers produce one
:class:`ChunkStats` per chunk with :func:`chunk_stats`; :func:`merge_stats` combines them in
chunk-id order and raises errors that name the session where a problem was found.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..encoding import label_codes
from ..inputs import kept_rows
from .checks import report_dropped
from .counting import design_gram, label_counts

__all__ = ["ChunkStats", "DataStats", "chunk_stats", "merge_stats"]

_MAX_LISTED = 10


@dataclasses.dataclass
class ChunkStats:
    """What one chunk reports in the statistics pass.

    Attributes
    ----------
    chunk_id : int
    n_rows, n_dropped : int
        Rows read, and rows dropped for NaN/Inf in X or y.
    labels : array of shape (n_labels,)
        Distinct labels among the kept rows, sorted.
    counts : int array of shape (n_labels, n_session_outputs)
        How often each label occurs in each output's column.
    gram : float64 array of shape (n_features + 1, n_features + 1)
        ``[X, 1]' [X, 1]`` summed over the kept rows.
    fingerprint : int
        :func:`~distglm.data.checks.content_fingerprint` of the chunk as read (0: not taken);
        every later read of the chunk must give the same, or the store changed.
    """

    chunk_id: int
    n_rows: int
    n_dropped: int
    labels: np.ndarray
    counts: np.ndarray
    gram: np.ndarray
    fingerprint: int = 0


@dataclasses.dataclass
class DataStats:
    """The merged statistics of a dataset.

    Attributes
    ----------
    classes : array of shape (n_classes,)
        Sorted union of the labels.
    class_counts : int array of shape (n_outputs, n_classes)
    n_samples : int array of shape (n_outputs,)
        Kept samples per output (the normaliser of each output's mean loss).
    n_dropped : dict
        Rows dropped for NaN/Inf, per session.
    n_rows : int
        Kept rows in total.
    gram : float64 array of shape (n_features + 1, n_features + 1)
        Second moment of ``[X, 1]`` over all kept rows (normalised by their number).
    session_grams : float64 array of shape (n_sessions, n_features + 1, n_features + 1)
        ``[X, 1]' [X, 1]`` summed over each session's kept rows (not normalised).
    """

    classes: np.ndarray
    class_counts: np.ndarray
    n_samples: np.ndarray
    n_dropped: dict
    n_rows: int
    gram: np.ndarray
    session_grams: np.ndarray

    def design_rank(self) -> int:
        """Rank of the design over all kept rows (from the second moment)."""
        return int(np.linalg.matrix_rank(self.gram[:-1, :-1] * self.n_rows, hermitian=True))

    def output_grams(self, plan) -> np.ndarray:
        """Each output's second moment of ``[X, 1]`` over the samples where it was recorded.

        Returns
        -------
        float64 array of shape (n_outputs, n_features + 1, n_features + 1)
        """
        out = np.zeros((plan.n_outputs, *self.gram.shape))
        for s, outs in enumerate(plan.session_outputs):
            out[outs] += self.session_grams[s]
        return out / self.n_samples[:, None, None]


def chunk_stats(chunk_id: int, X: np.ndarray, y: np.ndarray) -> tuple[ChunkStats, np.ndarray]:
    """Statistics of one chunk, and the mask of its kept rows.

    Parameters
    ----------
    chunk_id : int
    X : array of shape (rows, n_features)
    y : array of shape (rows, n_session_outputs), labels of any type

    Returns
    -------
    ChunkStats, bool array of shape (rows,)
    """
    keep = kept_rows(X, y)
    every = bool(keep.all())  # then no copies of the kept rows
    labels, counts = label_counts(chunk_id, y if every else y[keep])
    gram = design_gram(X, None if every else keep)
    stats = ChunkStats(chunk_id, int(y.shape[0]), int((~keep).sum()), labels, counts, gram)
    return stats, keep


def _label_kind(labels: np.ndarray) -> str:
    k = labels.dtype.kind
    return "number" if k in "iufb" else ("string" if k in "US" else f"{labels.dtype}")


def _fmt(values) -> str:
    items = [v.item() if isinstance(v, np.generic) else v for v in list(values)]
    shown = ", ".join(repr(v) for v in items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def merge_stats(
    plan, stats: list[ChunkStats], n_classes: int, drop_empty_sessions: bool = False
) -> DataStats:
    """Merge per-chunk statistics (in chunk-id order) and check the label set.

    Parameters
    ----------
    plan : DataPlan
    stats : list of ChunkStats, one per chunk of ``plan`` (any order)
    n_classes : int
    drop_empty_sessions : bool
        Whether a session whose rows are all dropped for NaN/Inf is left out (with a warning)
        rather than refused.

    Returns
    -------
    DataStats

    Raises
    ------
    ValueError
        If the labels across all chunks are not exactly ``n_classes`` distinct values (the
        message lists where each unexpected label was found), label types differ between
        sessions, a session has no row left (unless ``drop_empty_sessions``), or an output
        has no usable sample (the message names the sessions recording it).
    """
    by_id = {s.chunk_id: s for s in stats}
    missing = [c.chunk_id for c in plan.chunks if c.chunk_id not in by_id]
    if missing:
        raise RuntimeError(f"Statistics are missing for chunks {missing}.")
    ordered = [by_id[c.chunk_id] for c in plan.chunks]
    kinds = {}
    for spec, st in zip(plan.chunks, ordered, strict=True):
        if st.labels.size:
            kinds.setdefault(_label_kind(st.labels), spec)
    if len(kinds) > 1:
        parts = "; ".join(f"{k} labels in {spec.describe()}" for k, spec in kinds.items())
        raise ValueError(f"Class labels must all be of one type; found {parts}.")
    nonempty = [st.labels for st in ordered if st.labels.size]
    classes = np.unique(np.concatenate(nonempty)) if nonempty else np.asarray([])
    if classes.size != n_classes:
        # where each label occurs, rarest first, so a typo in one chunk stands out
        where = {}
        for spec, st in zip(plan.chunks, ordered, strict=True):
            for lab, cnt in zip(st.labels.tolist(), st.counts.sum(axis=1).tolist(), strict=True):
                w = where.setdefault(lab, {"count": 0, "chunks": []})
                w["count"] += cnt
                w["chunks"].append(spec)
        rare = sorted(where, key=lambda lab: (where[lab]["count"], str(lab)))
        lines = []
        for lab in rare[: max(3, classes.size - n_classes)]:
            specs = where[lab]["chunks"]
            places = ", ".join(s.describe() for s in specs[:3])
            more = f" and {len(specs) - 3} more chunks" if len(specs) > 3 else ""
            lines.append(f"{lab!r} ({where[lab]['count']} samples) in {places}{more}")
        raise ValueError(
            f"The data holds {classes.size} distinct class labels {_fmt(classes)}, but "
            f"n_classes={n_classes}. Rarest: " + "; ".join(lines) + "."
        )
    K = plan.n_outputs
    class_counts = np.zeros((K, n_classes), dtype=np.int64)
    n_samples = np.zeros(K, dtype=np.int64)
    n_dropped = {s: 0 for s in plan.sessions}
    session_rows = {s: 0 for s in plan.sessions}
    session_grams = np.zeros((len(plan.sessions), *ordered[0].gram.shape))
    n_rows = 0
    for spec, st in zip(plan.chunks, ordered, strict=True):
        outs = plan.session_outputs[spec.session_index]
        kept = st.n_rows - st.n_dropped
        codes, _ = label_codes(classes, st.labels)
        np.add.at(class_counts, (outs[None, :], codes[:, None]), st.counts)
        n_samples[outs] += kept
        n_dropped[spec.session] += st.n_dropped
        session_rows[spec.session] += st.n_rows
        session_grams[spec.session_index] += st.gram
        n_rows += kept
    report_dropped(n_dropped, session_rows, drop_empty_sessions)
    empty = np.flatnonzero(n_samples == 0)
    if empty.size:
        recorded = [
            f"{s!r} ({n_dropped[s]} of {session_rows[s]} rows dropped)"
            for s, outs in zip(plan.sessions, plan.session_outputs, strict=True)
            if np.isin(outs, empty).any()
        ]
        raise ValueError(
            f"Output(s) {_fmt(plan.outputs[empty])} have no samples left after dropping rows "
            f"with NaN or Inf; recorded by session(s) " + ", ".join(recorded) + "."
        )
    gram = session_grams.sum(axis=0) / max(n_rows, 1)
    return DataStats(classes, class_counts, n_samples, n_dropped, n_rows, gram, session_grams)
