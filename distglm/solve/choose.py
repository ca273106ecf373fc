"""Which solver a fit runs: the registry, ``solver_name="auto"``'s rule, and construction."""

from __future__ import annotations

import inspect

from ..exceptions import UnknownSolverOptionError
from .costs import ProblemFacts, predicted_costs
from .first_order import AcceleratedGradient, ProximalGradient
from .lbfgs import LBFGS
from .newton import Newton
from .protocols import Solver

__all__ = [
    "AUTO_KWARGS",
    "SOLVERS",
    "ProblemFacts",
    "check_solver_kwargs",
    "choose_solver",
    "make_solver",
]


SOLVERS = {
    "LBFGS": LBFGS,
    "GradientDescent": AcceleratedGradient,
    "ProximalGradient": ProximalGradient,
    "Newton": Newton,
}


#: solver_kwargs "auto" accepts: the ones every solver it may pick understands
AUTO_KWARGS = ("maxiter", "tol")

#: "auto" never uses Newton past this many bytes of the coordinator's Hessian blocks
#: (``n_outputs D^2`` float64)
AUTO_NEWTON_MAX_BYTES = 2 << 30


def choose_solver(facts: ProblemFacts) -> str:
    """The solver ``solver_name="auto"`` picks: the cheapest predicted fit.

    Per-output Newton (:class:`~distglm.solve.newton.Newton`) takes the fewest passes, and
    each of its passes costs more than a gradient pass (a Hessian sample, and the
    coordinator's solves); L-BFGS (smooth penalties) or FISTA (``ProximalGradient``,
    non-smooth ones) take more, cheaper passes. :func:`~distglm.solve.costs.predicted_costs`
    prices both from the problem's shape, the device and the measured read time of streamed
    chunks (a pass that reads the store costs the same read for every solver, which favours
    the solver with fewer passes); the cheaper one is chosen.

    Newton is never a candidate past 2 GiB of Hessian blocks (``n_outputs D^2`` float64,
    ``D = (n_features + 1) n_classes``), or for a penalty that is not a sum over outputs (a
    GroupLasso whose groups span outputs).

    Measured (``benchmarks/bench_auto.py``, in memory on 2 CPU cores): see
    ``benchmarks/results/bench_auto.txt``.

    Parameters
    ----------
    facts : ProblemFacts

    Returns
    -------
    str
    """
    newton = facts.separable and facts.n_outputs * facts.n_params**2 * 8 <= AUTO_NEWTON_MAX_BYTES
    costs = predicted_costs(facts, newton=newton)
    return min(costs.values(), key=lambda c: c.seconds).solver


def check_solver_kwargs(name: str, solver_kwargs: dict | None = None) -> None:
    """Raise ``ValueError`` unless ``name`` is a solver (or ``"auto"``) that accepts every
    keyword of ``solver_kwargs`` (:class:`~distglm.exceptions.UnknownSolverOptionError`, also a
    ``NameError`` as in nemos, naming the unknown ones); builds nothing that needs the data."""
    kwargs = dict(solver_kwargs or {})
    if name == "auto":
        bad = sorted(set(kwargs) - set(AUTO_KWARGS))
        if bad:
            raise UnknownSolverOptionError(
                f"solver_kwargs {bad} are not accepted with solver_name='auto', which only "
                f"passes on {list(AUTO_KWARGS)}; name a solver to set its other options."
            )
        return
    _build(name, kwargs)


#: nemos' names of options distglm's solvers take under another name
NEMOS_OPTION_NAMES = {"LBFGS": {"memory_size": "history_size"}}


def _build(name, kwargs):
    if name not in SOLVERS:
        raise ValueError(
            f"Unknown solver {name!r}; available solvers are {sorted(SOLVERS)} and 'auto'."
        )
    aliases = NEMOS_OPTION_NAMES.get(name, {})
    kwargs = {aliases.get(k, k): v for k, v in kwargs.items()}
    accepted = set(inspect.signature(SOLVERS[name]).parameters)
    unknown = set(kwargs) - accepted
    if unknown:
        raise UnknownSolverOptionError(
            f"kwargs {unknown} in solver_kwargs not a kwarg for {name}: it accepts "
            f"{sorted(accepted | set(aliases))}."
        )
    return SOLVERS[name](**kwargs)


def make_solver(
    name: str, solver_kwargs: dict | None = None, *, facts: ProblemFacts | None = None
) -> Solver:
    """Build a solver by name with its keyword arguments (``tol``, ``maxiter``, ...).

    ``name="auto"`` resolves through :func:`choose_solver` by ``facts``, which it then needs.

    Raises
    ------
    ValueError
        For an unknown name, keywords the solver does not take, or ``"auto"`` without facts.
    """
    kwargs = dict(solver_kwargs or {})
    if name == "auto":
        check_solver_kwargs(name, kwargs)
        if facts is None:
            raise ValueError(
                "solver_name='auto' chooses by the problem (its shape, penalty, device and the "
                "time its passes read); pass facts=ProblemFacts(...)."
            )
        name = choose_solver(facts)
    return _build(name, kwargs)
