"""Checkpointed fits: the coordinator's whole state after every iteration, and resuming it.

``fit(..., checkpoint=path)`` gives the fit a :class:`Checkpointing`. Before the fit it reads
an existing checkpoint (:meth:`Checkpointing.begin`) and checks its fingerprint against this
fit's data, model parameters and distglm version
(:func:`~distglm.persist.fingerprint.check_fingerprint`). The fit then runs through the fit
driver with a :class:`CheckpointWriter` among its callbacks, which writes, after every
iteration (or every ``checkpoint_every`` seconds): the parameters, the typed solver state, the
iteration and pass counters, the history, the class encoding, the feature mask, the outputs and
features, the data's fingerprint and, for distributed data, the statistics pass's results
(merged statistics and each chunk's kept rows) so that a resumed fit need not read the store
for them. Each write goes to a temporary file that is renamed over the previous checkpoint
(:mod:`~distglm.persist.bundle`): a kill during a write leaves the previous one intact. When
the fit ends the checkpoint is marked complete; resuming a complete one returns its result at
once.

A checkpoint is one ``.npz`` file (whatever the path's suffix) of JSON metadata and arrays,
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import FileFormatError
from ..fit import FitResult, run_fit
from ..solve import IterationRecord, state_to_record
from .bundle import check_target, remove_stale_temps, write_bundle
from .codec import encode
from .fingerprint import (
    check_fingerprint,
    memory_fingerprint,
    model_fingerprint,
    plan_fingerprint,
    stats_fingerprint,
)
from .saved import CHECKPOINT_KIND, FitData, SavedFit, data_record, read_checkpoint

__all__ = [
    "CHECKPOINT_KIND",
    "CheckpointWriter",
    "Checkpointing",
    "FitData",
    "SavedFit",
    "memory_fit_data",
    "plan_fingerprint",
    "read_checkpoint",
    "session_fit_data",
]

logger = logging.getLogger("distglm")


def _version() -> str:
    from .. import __version__

    return __version__


class CheckpointWriter:
    """The fit callback that writes the checkpoint (after every iteration, or every
    ``every`` seconds), and marks it complete when the fit ends.

    A write is prepared at the callback (references to the iteration's parameters and frozen
    state, which the solvers never modify afterwards) and written by one background thread
    while the fit goes on with its next pass; at most one write is in flight (the next waits
    for it), and an error in a write is raised at the next callback. The final write, marked
    complete, is made before :meth:`finish` returns.

    Parameters
    ----------
    path : Path
    base : dict
        The metadata every write repeats (class, parameters, fingerprint, data record).
    base_arrays : dict
        Its arrays.
    every : float or None
        Seconds between writes; None writes after every iteration.
    before : ResumePoint, optional
        The saved fit this one continues (its history starts the new one's).

    Attributes
    ----------
    write_seconds : list of float
        How long each write took (in the background thread).
    waited_seconds : float
        How long the fit waited for writes in all (what checkpointing cost it).
    """

    def __init__(self, path: Path, base: dict, base_arrays: dict, every, before=None):
        check_target(path, True, CHECKPOINT_KIND)  # never replace what is not a checkpoint
        self.path = path
        self.base = base
        self.base_arrays = base_arrays
        self.every = None if every is None else float(every)
        self.history: list[Any] = []
        if before is not None:
            self.history = [encode(h, {}, "history") for h in before.history]
        self.last_write = time.monotonic()
        self.write_seconds: list[float] = []
        self.waited_seconds = 0.0
        self._thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="distglm-checkpoint"
        )
        self._pending: concurrent.futures.Future | None = None

    def _prepare(self, theta, state, solver, passes, seconds, status) -> tuple[dict, dict]:
        arrays = dict(self.base_arrays)
        meta_s, arrays_s = state_to_record(state)
        meta = dict(self.base)
        meta.update(
            status=status,
            solver=solver,
            iteration=int(state.iteration),
            passes=int(passes),
            seconds=float(seconds),
            history=list(self.history),
            theta=encode(np.asarray(theta, np.float64), arrays, "theta"),
            state={
                "meta": encode(meta_s, arrays, "state"),
                "arrays": encode(arrays_s, arrays, "state"),
            },
        )
        return meta, arrays

    def _write(self, meta: dict, arrays: dict) -> None:
        start = time.perf_counter()
        write_bundle(
            self.path,
            meta,
            arrays,
            kind=CHECKPOINT_KIND,
            overwrite=True,
            npz=True,
            checked=True,
            sync_dir=meta["status"] == "complete",
        )
        elapsed = time.perf_counter() - start
        self.write_seconds.append(elapsed)
        logger.debug(
            "checkpoint %s: iteration %d (%s) written in %.6f s",
            self.path,
            meta["iteration"],
            meta["status"],
            elapsed,
        )

    def _wait(self) -> None:
        """Wait for the write in flight (raising its error, if it failed)."""
        if self._pending is None:
            return
        start = time.perf_counter()
        try:
            self._pending.result()
        finally:
            self._pending = None
            self.waited_seconds += time.perf_counter() - start

    def __call__(self, record: IterationRecord) -> None:
        self.history.append(encode(record.as_dict(), {}, "history"))
        if self.every is None or time.monotonic() - self.last_write >= self.every:
            self._wait()
            meta, arrays = self._prepare(
                record.theta, record.state, record.solver, record.passes, record.seconds, "running"
            )
            self.last_write = time.monotonic()
            self._pending = self._thread.submit(self._write, meta, arrays)

    def finish(self, result: FitResult) -> None:
        """Write the fit's final parameters and state, marked complete (before returning)."""
        history = result.history
        passes = history[-1]["passes"] if history else 0
        seconds = history[-1]["seconds"] if history else 0.0
        self.history = [encode(h, {}, "history") for h in history]
        try:
            self._wait()
            meta, arrays = self._prepare(
                result.theta, result.state, result.solver, passes, seconds, "complete"
            )
            start = time.perf_counter()
            self._write(meta, arrays)
            self.waited_seconds += time.perf_counter() - start
        finally:
            self.close()
        logger.debug(
            "checkpoint %s: %d writes in %.6f s; the fit waited %.6f s for them",
            self.path,
            len(self.write_seconds),
            sum(self.write_seconds),
            self.waited_seconds,
        )

    def close(self) -> None:
        """Let the write in flight finish (a fit that stops early leaves its last checkpoint
        complete on disk), and stop the thread."""
        try:
            self._wait()
        finally:
            self._thread.shutdown(wait=True)


class Checkpointing:
    """One fit's checkpoint: what it resumes from, and the callback that writes it.

    Parameters
    ----------
    path : str or path
    every : float or None
        ``checkpoint_every``: seconds between writes (None: after every iteration).
    resume : bool
        Continue from an existing checkpoint at ``path`` (checked against this fit); False
        starts over and replaces it.
    model : the estimator (its class and constructor parameters are fingerprinted)
    """

    def __init__(self, path, every, resume, model):
        if every is not None and not (isinstance(every, (int, float)) and every >= 0):
            raise ValueError(
                f"checkpoint_every must be None (every iteration) or seconds >= 0; got {every!r}."
            )
        self.path = Path(path)
        self.every = every
        self.resume = bool(resume)
        self.model_class = type(model).__name__
        self.model, self.model_text = model_fingerprint(model)
        arrays: dict[str, np.ndarray] = {}
        from .model import params_record

        self.params = params_record(model, arrays)
        self.params_arrays = arrays

    def fingerprint(self, data_fingerprint: dict) -> dict:
        return {
            "data": data_fingerprint,
            "model": self.model,
            "model_text": self.model_text,
            "version": _version(),
        }

    def begin(self, data_fingerprint: dict) -> SavedFit | None:
        """The checkpoint to resume from, checked against this fit; None to start fresh.

        Raises
        ------
        CheckpointMismatchError
            If the checkpoint's data, model parameters or distglm version differ.
        FileFormatError
            If it cannot be read.
        """
        if not self.resume or not self.path.exists():
            return None
        try:
            saved = read_checkpoint(self.path)
        except FileFormatError as e:
            raise FileFormatError(
                f"Cannot resume from the checkpoint: {e} Fit with resume=False to start over "
                "(the checkpoint is then replaced)."
            ) from None
        check_fingerprint(saved.fingerprint, self.fingerprint(data_fingerprint), self.path)
        logger.info(
            "Resuming from the checkpoint %s at iteration %d (%s)",
            self.path,
            saved.iteration,
            "complete" if saved.complete else f"{saved.point.passes} passes so far",
        )
        return saved

    def run(
        self,
        spec,
        data,
        theta0,
        callbacks: Sequence[Callable[[IterationRecord], None]],
        saved: SavedFit | None,
        fit_data: FitData,
    ) -> FitResult:
        """Run the fit with the checkpoint written as it goes (or return a complete one's
        result at once)."""
        if saved is not None and saved.complete:
            return saved.result()
        arrays = dict(self.params_arrays)
        base = {
            "distglm_version": _version(),
            "class": self.model_class,
            "params": self.params,
            "fingerprint": self.fingerprint(fit_data.fingerprint),
            "data": data_record(fit_data, arrays),
            "mask": encode(spec.mask, arrays, "mask"),
        }
        remove_stale_temps(self.path)
        writer = CheckpointWriter(
            self.path, base, arrays, self.every, saved.point if saved else None
        )
        try:
            result = run_fit(
                spec,
                data,
                theta0,
                callbacks=[writer, *callbacks],
                start=saved.point if saved else None,
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the fit's own error is the one to raise
                writer.close()
            raise
        writer.finish(result)
        return result


def memory_fit_data(layout, X, codes, classes, outputs, dtype) -> FitData:
    """What a checkpoint records of in-memory data: kept rows ``X`` (n, p), codes (n, k)."""
    return FitData(memory_fingerprint(layout, X, codes, classes, dtype), classes, outputs)


def session_fit_data(session) -> FitData:
    """What a checkpoint records of a data session's data: its plan, statistics, chunks."""
    fp = plan_fingerprint(session.plan, session.pool.dtype)
    fp["counts"] = stats_fingerprint(session.stats)
    plan = session.plan
    return FitData(
        fp,
        session.classes,
        plan.outputs,
        plan.features,
        session.stats,
        session.chunk_kept,
        plan.unit_rows,
    )
