"""Optimisers against the Objective protocol, convergence and per-iteration history."""

from .objective import InMemoryData, Objective, PenalizedObjective, Penalty
from .precondition import BlockPreconditioner, lipschitz_bound
from .solvers import (
    LBFGS,
    SOLVERS,
    AcceleratedGradient,
    FitResult,
    ProximalGradient,
    SolverState,
    make_solver,
    minimize,
    warn_not_converged,
)

__all__ = [
    "LBFGS",
    "SOLVERS",
    "AcceleratedGradient",
    "BlockPreconditioner",
    "FitResult",
    "InMemoryData",
    "Objective",
    "PenalizedObjective",
    "Penalty",
    "ProximalGradient",
    "SolverState",
    "lipschitz_bound",
    "make_solver",
    "minimize",
    "warn_not_converged",
]
