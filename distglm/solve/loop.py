"""The iteration loop: a solver's steps on an objective until it stops, with one record each."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .protocols import Solver
from .state import SolverState

__all__ = ["IterationRecord", "SolveResult", "minimize", "warn_not_converged"]


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """What one iteration of a fit reports (to ``fit(callback=...)`` and ``fit_history_``).

    Attributes
    ----------
    iteration : int
        Steps taken so far (1 after the first).
    objective : float
        Objective (data term plus penalty) after the step.
    grad_norm : float
        Norm of the smooth part's gradient there.
    gap : float
        The solver's estimate of the objective gap.
    seconds : float
        Since the loop started.
    passes : int
        Passes over the data so far, cumulative (the statistics pass included where there is
        one).
    solver : str
    tol : float
        The solver's tolerance on the relative gap.
    maxiter : int
    status : str
        ``"running"``, ``"converged"`` or ``"stalled"``.
    theta : array of shape (n_features + 1, n_outputs, n_classes)
        The parameters after the step (coefficient rows, then the intercept).
    state : SolverState
        The solver's state after the step.
    """

    iteration: int
    objective: float
    grad_norm: float
    gap: float
    seconds: float
    passes: int
    solver: str
    tol: float
    maxiter: int
    status: str
    theta: np.ndarray = dataclasses.field(repr=False)
    state: SolverState = dataclasses.field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The scalar fields, as one entry of ``fit_history_``."""
        return {
            "iteration": self.iteration,
            "objective": self.objective,
            "grad_norm": self.grad_norm,
            "gap": self.gap,
            "seconds": self.seconds,
            "passes": self.passes,
        }


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """What :func:`minimize` returns: final parameters, state, and one record per iteration."""

    theta: np.ndarray
    state: SolverState
    records: tuple[IterationRecord, ...]

    @property
    def converged(self) -> bool:
        return self.state.converged

    @property
    def n_iter(self) -> int:
        """Iterations of the solver in all, those of the state resumed from included."""
        return self.state.iteration

    @property
    def history(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.records]


def minimize(
    solver: Solver,
    objective: Any,
    theta0: np.ndarray,
    *,
    state: SolverState | None = None,
    context: Any = None,
    ridge: float = 0.0,
    mask: Any = None,
    callback: Callable[[IterationRecord], None] | None = None,
    passes_offset: int = 0,
    seconds_offset: float = 0.0,
) -> SolveResult:
    """Run ``solver`` on ``objective`` from ``theta0`` until it stops or reaches ``maxiter``.

    Parameters
    ----------
    solver : Solver
    objective : Objective
    theta0 : array of shape (n_features + 1, n_outputs, n_classes)
    state : SolverState, optional
        Continue from this state (a resumed fit); by default ``solver.init``'s.
    context : optional
        The solver's context; by default ``solver.prepare(objective, theta0, ridge, mask)``.
    ridge, mask : passed to ``solver.prepare`` (the curvature model, the feature mask).
    callback : callable(IterationRecord) -> None, optional
        Called after each iteration.
    passes_offset : int
        Added to ``objective.n_passes`` in the records (passes made before this loop).
    seconds_offset : float
        Added to the records' seconds (the time of the iterations a resumed fit continues).

    Returns
    -------
    SolveResult
    """
    theta = objective.prox(np.asarray(theta0, np.float64), 0.0)
    if context is None:
        context = solver.prepare(objective, theta, ridge=ridge, mask=mask)
    if state is None:
        state = solver.init(context, theta)
    records = []
    start = time.perf_counter()
    while state.iteration < solver.maxiter and not state.done:
        theta, state = solver.step(objective, context, theta, state)
        record = IterationRecord(
            iteration=state.iteration,
            objective=float(state.value if state.value is not None else np.nan),
            grad_norm=float(np.linalg.norm(state.grad)) if state.grad is not None else np.nan,
            gap=float(state.gap),
            seconds=time.perf_counter() - start + seconds_offset,
            passes=int(objective.n_passes) + passes_offset,
            solver=solver.name,
            tol=solver.tol,
            maxiter=solver.maxiter,
            status=state.status.value,
            theta=theta,
            state=state,
        )
        records.append(record)
        if callback is not None:
            callback(record)
    return SolveResult(theta, state, tuple(records))


def warn_not_converged(result: SolveResult, solver: Solver, stacklevel: int = 3) -> None:
    """Emit a RuntimeWarning when a fit stopped without converging."""
    if not result.converged:
        warnings.warn(
            f"The fit did not converge: {solver.name} stopped after maxiter={solver.maxiter} "
            f"iterations with an estimated objective gap of {result.state.gap:.3g} (tol="
            f"{solver.tol:g}). Raise 'maxiter' or 'tol' in solver_kwargs, or strengthen the "
            "regularizer.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
