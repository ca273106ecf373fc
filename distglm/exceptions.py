"""Exception types raised by distglm."""

from __future__ import annotations

__all__ = [
    "CheckpointMismatchError",
    "ChunkReadTimeout",
    "FileFormatError",
    "FitTooLargeError",
    "NotFittedError",
    "SchedulerLost",
    "StoreChangedError",
    "StructureMismatchError",
    "UnknownSolverOptionError",
    "WorkerLost",
    "WorkerMemoryError",
]


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs fitted parameters is called on an unfitted model.

    It derives from both :class:`ValueError` and :class:`AttributeError` so that code
    written against either convention (scikit-learn uses both) catches it.
    """


class FileFormatError(ValueError):
    """A saved model or checkpoint cannot be read: truncated, damaged, modified after it was
    written, written by a newer distglm, or not a distglm file at all. The message says which."""


class CheckpointMismatchError(ValueError):
    """A checkpoint belongs to another fit: its data, its model's parameters or the distglm
    version differ from this fit's. The message names the part that differs; fit with
    ``resume=False`` to start over (the checkpoint is then replaced)."""


class UnknownSolverOptionError(NameError, ValueError):
    """``solver_kwargs`` names an option the solver does not take. A :class:`NameError`, as
    nemos raises for it, and a :class:`ValueError`, as for distglm's other bad arguments."""


class StructureMismatchError(TypeError, ValueError):
    """X, coef or feature_mask differ in structure (an array where a dict is expected, or
    dicts with other keys). A :class:`TypeError`, as nemos raises for it, and a
    :class:`ValueError`, as for distglm's other mismatches."""


class ChunkReadTimeout(TimeoutError):
    """Reading one chunk took longer than its deadline (``distglm.deadline.read_floor``, or
    ``distglm.deadline.factor`` times the worker's median read): the store stalled. The
    message names the session, the chunk's rows and its path."""


class StoreChangedError(ValueError):
    """A chunk read during a fit differs from what the fit's statistics pass read: the store
    was modified mid-fit. The message names the session, the chunk's rows and its path."""


class WorkerLost(RuntimeError):
    """Raised when the fit cannot go on: workers were lost and could not be replaced."""


class SchedulerLost(WorkerLost):
    """Raised when the scheduler no longer answers."""


class WorkerMemoryError(WorkerLost, MemoryError):
    """A worker was restarted by its nanny for exceeding its memory limit. The message gives
    its resident size, its memory limit and distglm's chunk-cache budget there; lower
    ``cache_bytes`` or give the workers more memory."""


class FitTooLargeError(MemoryError, ValueError):
    """Something the fit would build does not fit where it would live (a worker or this
    process); raised before any pass, with the figure and the limit."""
