"""Typed, frozen solver states and contexts, and their round trip through plain values.

A solver's **state** is everything an iteration changes: it is a frozen dataclass, replaced,
never mutated, and it converts to JSON-able scalars plus numpy arrays and back
(:func:`state_to_record`, :func:`state_from_record`), which is what saving and resuming a fit
write and read. A solver's **context** is what it derives once from the problem before the first
iteration (a preconditioner, a step bound, a Hessian row stride): also frozen, never saved, and
rebuilt from the objective when a fit resumes.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import numpy as np

__all__ = [
    "FirstOrderContext",
    "FirstOrderState",
    "LBFGSContext",
    "LBFGSState",
    "NewtonContext",
    "NewtonState",
    "SolverState",
    "Status",
    "state_from_record",
    "state_to_record",
]


class Status(enum.StrEnum):
    """Where a solver stands after a step."""

    #: more steps would make progress
    RUNNING = "running"
    #: the estimated gap is within the tolerance
    CONVERGED = "converged"
    #: the decrease left is below what the objective's arithmetic resolves, and the gap is
    #: not within the tolerance: more steps would chase rounding
    STALLED = "stalled"


@dataclasses.dataclass(frozen=True)
class SolverState:
    """What every solver's state holds.

    Attributes
    ----------
    iteration : int
        Steps taken so far.
    value : float or None
        Objective (smooth + non-smooth) at the current parameters, when known.
    grad : array of shape (n_features + 1, n_outputs, n_classes), or None
        Gradient of the smooth part at the current parameters (or at the extrapolated point
        for the accelerated methods), when known.
    gap : float
        Estimated objective gap after the last step (``inf`` before the first).
    status : Status
    context : object, optional
        What an ``update`` loop steps with (the solver and its context), attached by the
        estimator to the states it hands out; derived from the problem, so never saved and
        not compared.
    """

    iteration: int = 0
    value: float | None = None
    grad: np.ndarray | None = None
    gap: float = math.inf
    status: Status = Status.RUNNING
    context: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def converged(self) -> bool:
        """Whether the last step met the tolerance."""
        return self.status is Status.CONVERGED

    @property
    def done(self) -> bool:
        """Whether the solver has stopped (converged or stalled)."""
        return self.status is not Status.RUNNING


@dataclasses.dataclass(frozen=True)
class LBFGSState(SolverState):
    """L-BFGS: the last ``m`` curvature pairs, oldest first.

    Attributes
    ----------
    pairs_s, pairs_y : arrays of shape (m, n_features + 1, n_outputs, n_classes) or None
        Parameter and gradient differences.
    pairs_rho : array of shape (m,) or None
        ``1 / (s' y)`` of each pair.
    """

    pairs_s: np.ndarray | None = None
    pairs_y: np.ndarray | None = None
    pairs_rho: np.ndarray | None = None

    def pairs(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """The pairs as ``(s, y, rho)`` tuples, oldest first."""
        s, y, rho = self.pairs_s, self.pairs_y, self.pairs_rho
        if s is None or y is None or rho is None:
            return []
        return [(s[i], y[i], float(rho[i])) for i in range(s.shape[0])]


@dataclasses.dataclass(frozen=True)
class FirstOrderState(SolverState):
    """(Proximal) accelerated gradient: the momentum.

    Attributes
    ----------
    t : float
        FISTA's momentum parameter.
    z : array of shape (n_features + 1, n_outputs, n_classes) or None
        The extrapolated point the next gradient is taken at.
    """

    t: float = 1.0
    z: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class NewtonState(SolverState):
    """Per-output Newton: what each output knows and where it is going.

    Attributes
    ----------
    F : array of shape (n_outputs,) or None
        Each output's objective at the current parameters (None before the first pass).
    hess : array of shape (n_outputs, D, D) or None
        Hessian blocks at the current parameters, for the outputs whose derivatives are known.
    known, active : bool arrays of shape (n_outputs,)
        Outputs whose derivatives at the current point are known; outputs still being fitted.
    gaps : array of shape (n_outputs,)
        Each output's estimated gap.
    direction : array of shape (n_features + 1, n_outputs, n_classes)
        The step proposed for the next pass.
    t_eval, t_next, delta : arrays of shape (n_outputs,)
        Step where the next pass takes derivatives (0: here), step expected to be accepted
        next, and the first-order decrease predicted along the direction.
    trials_left : int
        Passes that still evaluate the trial steps.
    """

    F: np.ndarray | None = None
    hess: np.ndarray | None = None
    known: np.ndarray | None = None
    active: np.ndarray | None = None
    gaps: np.ndarray | None = None
    direction: np.ndarray | None = None
    t_eval: np.ndarray | None = None
    t_next: np.ndarray | None = None
    delta: np.ndarray | None = None
    trials_left: int = 0


@dataclasses.dataclass(frozen=True)
class LBFGSContext:
    """L-BFGS's preconditioner (``None`` without one)."""

    precond: Any = None


@dataclasses.dataclass(frozen=True)
class FirstOrderContext:
    """The fixed step ``1 / L`` of the first-order methods."""

    L: float


@dataclasses.dataclass(frozen=True)
class NewtonContext:
    """What Newton derives from the problem once.

    Attributes
    ----------
    stride : int
        The Hessian is estimated on every ``stride``-th row.
    ridge_diag : array of shape (n_features + 1, n_outputs, n_classes)
        Diagonal Hessian of the smooth penalty.
    mask : array of shape (n_features, n_outputs, n_classes) or None
    mask_flat : array of shape (n_outputs, D) or None
        The mask per output block, intercept row included (ones).
    smooth : bool
        Whether the penalty is smooth (Newton) or not (proximal Newton).
    """

    stride: int
    ridge_diag: np.ndarray
    mask: np.ndarray | None
    mask_flat: np.ndarray | None
    smooth: bool


_STATE_TYPES: dict[str, type[SolverState]] = {
    cls.__name__: cls for cls in (SolverState, LBFGSState, FirstOrderState, NewtonState)
}


def state_to_record(state: SolverState) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a state into JSON-able metadata and named numpy arrays.

    Returns
    -------
    meta : dict
        ``{"type": class name, field: scalar or None, ...}`` (floats stay floats, so ``inf``
        needs a JSON writer that allows it, or the caller's encoding).
    arrays : dict of str -> numpy array
        The array fields that are set.
    """
    meta: dict[str, Any] = {"type": type(state).__name__}
    arrays: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(state):
        if field.name == "context":
            continue  # derived from the problem: rebuilt, never saved
        value = getattr(state, field.name)
        if isinstance(value, np.ndarray):
            arrays[field.name] = value
            meta[field.name] = "array"
        elif isinstance(value, Status):
            meta[field.name] = value.value
        elif value is None or isinstance(value, (bool, int, float, str)):
            meta[field.name] = value
        else:
            meta[field.name] = float(value)
    return meta, arrays


def state_from_record(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SolverState:
    """Rebuild a state from :func:`state_to_record`'s output.

    Raises
    ------
    ValueError
        If the type is unknown, or a field is missing or of the wrong kind.
    """
    kind = meta.get("type")
    if kind not in _STATE_TYPES:
        raise ValueError(
            f"Unknown solver state type {kind!r}; expected one of {sorted(_STATE_TYPES)}."
        )
    cls = _STATE_TYPES[kind]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name == "context":
            continue
        if field.name not in meta:
            raise ValueError(f"The {kind} record has no field {field.name!r}.")
        value = meta[field.name]
        if value == "array":
            if field.name not in arrays:
                raise ValueError(f"The {kind} record names array {field.name!r} but has none.")
            value = np.asarray(arrays[field.name])
        elif field.name == "status":
            value = Status(value)
        values[field.name] = value
    return cls(**values)
