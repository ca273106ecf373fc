"""Optimisers against the declared Objective, the in-memory data term, the penalty, and the
iteration loop.

- :mod:`~distglm.solve.protocols`: ``DataTerm``, ``Objective``, ``Solver``.
- :mod:`~distglm.solve.state`: typed, frozen solver states and contexts.
- :mod:`~distglm.solve.memory`: ``InMemoryData``; :mod:`~distglm.solve.means`: sums to means.
- :mod:`~distglm.solve.penalty` and :mod:`~distglm.solve.objective`: the penalty, applied once.
- :mod:`~distglm.solve.lbfgs`, :mod:`~distglm.solve.first_order`, :mod:`~distglm.solve.newton`:
  the solvers; :mod:`~distglm.solve.choose`: which one runs (priced by
  :mod:`~distglm.solve.costs`); :mod:`~distglm.solve.loop`: the loop.
"""

from .choose import SOLVERS, check_solver_kwargs, choose_solver, make_solver
from .costs import PassFacts, ProblemFacts, SolverCost, predicted_costs
from .first_order import AcceleratedGradient, ProximalGradient
from .lbfgs import LBFGS
from .loop import IterationRecord, SolveResult, minimize, warn_not_converged
from .memory import InMemoryData
from .newton import Newton
from .objective import PenalizedObjective
from .penalty import Penalty
from .precondition import BlockPreconditioner, lipschitz_bound
from .protocols import DataTerm, Objective, Solver
from .state import (
    FirstOrderState,
    LBFGSState,
    NewtonState,
    SolverState,
    Status,
    state_from_record,
    state_to_record,
)

__all__ = [
    "LBFGS",
    "SOLVERS",
    "AcceleratedGradient",
    "BlockPreconditioner",
    "DataTerm",
    "FirstOrderState",
    "InMemoryData",
    "IterationRecord",
    "LBFGSState",
    "Newton",
    "NewtonState",
    "Objective",
    "PassFacts",
    "PenalizedObjective",
    "Penalty",
    "ProblemFacts",
    "ProximalGradient",
    "SolveResult",
    "Solver",
    "SolverCost",
    "SolverState",
    "Status",
    "check_solver_kwargs",
    "choose_solver",
    "lipschitz_bound",
    "make_solver",
    "minimize",
    "predicted_costs",
    "state_from_record",
    "state_to_record",
    "warn_not_converged",
]
