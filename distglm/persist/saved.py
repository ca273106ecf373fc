"""A checkpoint on disk: what it records of a fit and its data, and reading it back.

:mod:`~distglm.persist.checkpoint` writes checkpoints during a fit; this module defines their
content (:class:`FitData`, what is recorded of the data; :class:`SavedFit`, a checkpoint read
back) and :func:`read_checkpoint`. A checkpoint is one ``.npz`` of JSON metadata and arrays
(:mod:`~distglm.persist.bundle`), read with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ..data.stats import DataStats
from ..exceptions import FileFormatError
from ..fit import FitResult, ResumePoint
from ..solve import state_from_record
from .bundle import read_bundle
from .codec import decode, encode

__all__ = ["CHECKPOINT_KIND", "FitData", "SavedFit", "data_record", "read_checkpoint"]

CHECKPOINT_KIND = "distglm-checkpoint"


@dataclasses.dataclass(frozen=True)
class FitData:
    """What a checkpoint records about a fit's data.

    Attributes
    ----------
    fingerprint : dict
        The data part of the fingerprint (:mod:`~distglm.persist.fingerprint`).
    classes : array of shape (n_classes,)
        The class encoding.
    outputs : array of shape (n_outputs,)
    features : array of shape (n_features,) or None
    stats : DataStats, optional
        Distributed data: the statistics pass's merged results.
    chunk_kept : int array of shape (n_chunks,), optional
        Distributed data: each chunk's kept rows, in chunk-id order (checked on re-read).
    unit_rows : int, optional
        Distributed data: the rows its blocks were split into (the chunks ``chunk_kept``
        counts); None: not split.
    """

    fingerprint: dict
    classes: np.ndarray
    outputs: np.ndarray
    features: np.ndarray | None = None
    stats: DataStats | None = None
    chunk_kept: np.ndarray | None = None
    unit_rows: int | None = None


@dataclasses.dataclass(frozen=True)
class SavedFit:
    """A checkpoint read back.

    Attributes
    ----------
    complete : bool
        Whether the fit it records finished.
    fingerprint : dict
        ``{"data": ..., "model": ..., "version": ...}``.
    point : ResumePoint
        Parameters, solver state, solver, history, passes and seconds so far.
    data : FitData
        The class encoding, outputs, features and (distributed) the statistics.
    """

    complete: bool
    fingerprint: dict
    point: ResumePoint
    data: FitData

    @property
    def iteration(self) -> int:
        """Iterations the checkpoint holds."""
        return int(self.point.state.iteration)

    def result(self) -> FitResult:
        """The fit's result, as a completed checkpoint holds it (no pass made now)."""
        p = self.point
        return FitResult(p.theta, p.state, (), p.solver, 0, history_before=p.history)


def _stats_node(stats: DataStats, arrays: dict) -> Any:
    return encode(
        {f.name: getattr(stats, f.name) for f in dataclasses.fields(DataStats)},
        arrays,
        "stats",
    )


def _stats_from(node: Any, arrays: dict) -> DataStats:
    values = decode(node, arrays, "stats")
    return DataStats(**values)


def data_record(data: FitData, arrays: dict) -> dict:
    """The metadata recording ``data`` (its arrays added to ``arrays``)."""
    return {
        "fingerprint": data.fingerprint,
        "classes": encode(np.asarray(data.classes), arrays, "classes"),
        "outputs": encode(np.asarray(data.outputs), arrays, "outputs"),
        "features": encode(data.features, arrays, "features"),
        "stats": None if data.stats is None else _stats_node(data.stats, arrays),
        "chunk_kept": encode(data.chunk_kept, arrays, "chunk_kept"),
        "unit_rows": data.unit_rows,
    }


def read_checkpoint(path) -> SavedFit:
    """Read a checkpoint.

    Raises
    ------
    FileFormatError
        If the file is missing, damaged, cut short, of a newer format, or no checkpoint.
    """
    path = Path(path)
    meta, arrays = read_bundle(path, CHECKPOINT_KIND)
    try:
        d = meta["data"]
        data = FitData(
            fingerprint=d["fingerprint"],
            classes=decode(d["classes"], arrays, "classes"),
            outputs=decode(d["outputs"], arrays, "outputs"),
            features=decode(d["features"], arrays, "features"),
            stats=None if d["stats"] is None else _stats_from(d["stats"], arrays),
            chunk_kept=decode(d["chunk_kept"], arrays, "chunk_kept"),
            unit_rows=d.get("unit_rows"),  # absent from checkpoints written before splits
        )
        state = state_from_record(
            decode(meta["state"]["meta"], arrays, "state"),
            decode(meta["state"]["arrays"], arrays, "state"),
        )
        point = ResumePoint(
            theta=np.asarray(decode(meta["theta"], arrays, "theta"), np.float64),
            state=state,
            solver=str(meta["solver"]),
            history=tuple(decode(meta["history"], arrays, "history")),
            passes=int(meta["passes"]),
            seconds=float(meta["seconds"]),
        )
        fingerprint = {
            "data": meta["fingerprint"]["data"],
            "model": meta["fingerprint"]["model"],
            "version": meta["fingerprint"]["version"],
            "model_text": meta["fingerprint"].get("model_text", {}),
        }
        return SavedFit(meta["status"] == "complete", fingerprint, point, data)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, FileFormatError):
            raise
        raise FileFormatError(f"{path}: a malformed checkpoint ({type(e).__name__}: {e}).") from e
