"""The fit driver: one path from a model spec and a data term to a fitted result.

In-memory and distributed fits both come here: :func:`run_fit` builds the objective (the data
term plus the penalty, applied once), picks the solver, runs it with the callbacks, checks the
result and returns a :class:`FitResult` value, from which the estimator sets its attributes in
one place.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .solve import (
    IterationRecord,
    PenalizedObjective,
    Solver,
    SolverState,
    minimize,
    warn_not_converged,
)
from .solve.protocols import DataTerm
from .spec import ModelSpec

__all__ = [
    "BatchContext",
    "FitResult",
    "ResumePoint",
    "init_batches",
    "initial_theta",
    "run_fit",
    "step_batch",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes
    ----------
    theta : float64 array of shape (n_features + 1, n_outputs, n_classes)
        Coefficient rows, then the intercept row (feature mask and prox applied).
    state : SolverState
        The solver's final state.
    records : tuple of IterationRecord
        One per iteration.
    solver : str
        The solver that ran (what ``"auto"`` chose).
    n_passes : int
        Passes over the data this call made, the statistics pass included when it made one.
    history_before : tuple of dict
        The history of the iterations a resumed fit continued (empty for a fresh fit).
    """

    theta: np.ndarray
    state: SolverState
    records: tuple[IterationRecord, ...]
    solver: str
    n_passes: int
    history_before: tuple[dict[str, Any], ...] = ()

    @property
    def converged(self) -> bool:
        return self.state.converged

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per iteration, of the whole fit (a resumed one's earlier iterations included):
        objective, grad_norm, gap, seconds, passes (cumulative)."""
        return [*map(dict, self.history_before), *(r.as_dict() for r in self.records)]


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted fit stopped, to continue from (read from its checkpoint).

    Attributes
    ----------
    theta : float64 array of shape (n_features + 1, n_outputs, n_classes)
        The parameters after the last saved iteration.
    state : SolverState
        The solver's state then (its context is rebuilt from the objective).
    solver : str
        The solver that ran (``"auto"``'s choice is kept, whatever it would choose now).
    history : tuple of dict
        The saved iterations' ``fit_history_`` entries.
    passes : int
        Passes the saved iterations made in all (their last cumulative count).
    seconds : float
        Their time, which the new records' seconds continue from.
    """

    theta: np.ndarray
    state: SolverState
    solver: str
    history: tuple[dict[str, Any], ...] = ()
    passes: int = 0
    seconds: float = 0.0


def initial_theta(n_features: int, class_counts, n_samples) -> np.ndarray:
    """Zero coefficients and intercepts at the centred log class frequencies.

    Parameters
    ----------
    n_features : int
    class_counts : int array of shape (n_outputs, n_classes)
    n_samples : int array of shape (n_outputs,)

    Returns
    -------
    float64 array of shape (n_features + 1, n_outputs, n_classes)
    """
    counts = np.asarray(class_counts, np.float64)
    freq = counts / np.asarray(n_samples, np.float64)[:, None]
    logf = np.log(np.clip(freq, np.finfo(float).eps, None))
    intercept = logf - logf.mean(axis=1, keepdims=True)
    return np.concatenate([np.zeros((n_features, *counts.shape)), intercept[None]], axis=0)


def run_fit(
    spec: ModelSpec,
    data: DataTerm,
    theta0: np.ndarray,
    *,
    callbacks: Sequence[Callable[[IterationRecord], None]] = (),
    start: ResumePoint | None = None,
) -> FitResult:
    """Minimise the penalised objective of ``spec`` over ``data`` from ``theta0``.

    Parameters
    ----------
    spec : ModelSpec
    data : DataTerm
        In memory or distributed.
    theta0 : array of shape (n_features + 1, n_outputs, n_classes)
    callbacks : sequence of callables(IterationRecord)
        Called after every iteration, in order (progress, logs, checkpoints).
    start : ResumePoint, optional
        Continue an interrupted fit from its saved parameters and solver state (``theta0`` is
        then unused): the solver it ran, its context rebuilt, and the records' passes and
        seconds continuing the saved ones.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        If the solver ends at non-finite parameters, or ``start``'s state is not of the
        solver's kind.
    """
    objective = PenalizedObjective(data, spec.penalty)
    if start is not None:
        spec = dataclasses.replace(spec, solver_name=start.solver)
        theta0 = start.theta
    theta = objective.prox(np.asarray(theta0, np.float64), 0.0)
    solver = spec.solver(data, theta.shape)
    context = solver.prepare(objective, theta, ridge=spec.ridge, mask=spec.mask)
    state = None
    if start is not None:
        state = start.state
        expected = type(solver.init(context, theta))
        if type(state) is not expected:
            raise ValueError(
                f"The saved solver state is a {type(state).__name__}; {solver.name} needs a "
                f"{expected.__name__}."
            )

    def notify(record: IterationRecord) -> None:
        logger.info(
            "%s iteration %d: objective %.8g, gap %.2e, %d passes, %.2f s, %s",
            record.solver,
            record.iteration,
            record.objective,
            record.gap,
            record.passes,
            record.seconds,
            record.status,
        )
        for callback in callbacks:
            callback(record)

    result = minimize(
        solver,
        objective,
        theta,
        state=state,
        context=context,
        callback=notify,
        passes_offset=data.stat_passes + (start.passes if start else 0),
        seconds_offset=start.seconds if start else 0.0,
    )
    final = objective.prox(result.theta, 0.0)
    if not np.all(np.isfinite(final)):
        raise ValueError(
            "The solver returned NaN or Inf parameters, so the solution is invalid. Try "
            "rescaling the features or a larger regularizer_strength."
        )
    warn_not_converged(result, solver, stacklevel=4)
    return FitResult(
        theta=final,
        state=result.state,
        records=result.records,
        solver=solver.name,
        n_passes=objective.n_passes + data.stat_passes,
        history_before=start.history if start else (),
    )


@dataclasses.dataclass(frozen=True)
class BatchContext:
    """What a loop of ``update`` calls steps with: the solver chosen on the first batch and
    its context (preconditioner, step bound), carried by the states the loop hands out."""

    solver: Solver
    context: Any


def init_batches(spec: ModelSpec, data: DataTerm, theta: np.ndarray) -> SolverState:
    """The state an ``update`` loop starts from, with its :class:`BatchContext` attached.

    The solver and its context are chosen and derived on this first batch, as a fit would.
    """
    objective = PenalizedObjective(data, spec.penalty)
    solver = spec.solver(data, theta.shape)
    theta = objective.prox(np.asarray(theta, np.float64), 0.0)
    context = solver.prepare(objective, theta, ridge=spec.ridge, mask=spec.mask)
    state = solver.init(context, theta)
    return dataclasses.replace(state, context=BatchContext(solver, context))


def step_batch(spec: ModelSpec, data: DataTerm, theta: np.ndarray, state: SolverState):
    """One solver step on a new batch ``data``; returns ``(theta, state)``.

    Raises
    ------
    RuntimeError
        If ``state`` does not come from :func:`init_batches` or an earlier step.
    """
    if not (isinstance(state, SolverState) and isinstance(state.context, BatchContext)):
        raise RuntimeError(
            "update needs a solver state: call initialize_optimizer_and_state first."
        )
    run = state.context
    objective = PenalizedObjective(data, spec.penalty)
    theta, new = run.solver.batch_step(objective, run.context, theta, state)
    return theta, dataclasses.replace(new, context=run)
