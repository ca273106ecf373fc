"""Which solver a fit runs: the registry, ``solver_name="auto"``'s rule, and construction."""

from __future__ import annotations

import dataclasses
import inspect

from ..exceptions import UnknownSolverOptionError
from .first_order import AcceleratedGradient, ProximalGradient
from .lbfgs import LBFGS
from .newton import Newton, default_hessian_rows
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

#: "auto" uses (proximal) Newton for non-smooth penalties on cached data while one output's
#: parameters (features + 1) x classes are at most this many, or ...
AUTO_NEWTON_MAX_CACHED = 512
#: ... this many when chunks are streamed from the store (every pass is then a read of it)
AUTO_NEWTON_MAX_STREAMED = 2048
#: and while the coordinator's Hessian blocks (n_outputs D^2 float64) fit in this many bytes
AUTO_NEWTON_MAX_BYTES = 2 << 30


def choose_solver(smooth, n_params, n_outputs, streamed=False, n_rows=None, separable=True):
    """The solver ``solver_name="auto"`` picks.

    Per-output Newton (:class:`~distglm.solve.newton.Newton`) needs the fewest passes; its pass
    costs more (trial steps, and a Hessian sample of ``64 D`` rows by default at ``D^2 / 2``
    multiply-adds per row and output, ``D = (n_features + 1) * n_classes``), and the
    coordinator solves ``n_outputs`` systems of size ``D``. Measured on 200,000 x 50 features,
    20 outputs x 3 classes (``benchmarks/bench_passes.py``): to a 1e-6 gap, Newton takes 3-6
    passes and L-BFGS 4-15, but in memory L-BFGS's passes are about 3x cheaper and it was
    faster in wall time (0.46-1.27 s against 0.96-2.07 s); for Lasso/ElasticNet, proximal
    Newton took 8 passes and 3.3 s against FISTA's 104-124 passes and 8-11 s.

    - Chunks streamed from the store (every pass re-reads it): Newton, up to ``D = 2048``.
    - Data cached (in memory or in the workers' caches), smooth penalty: L-BFGS,
      preconditioned by the second moment of the design.
    - Data cached, non-smooth penalty (Lasso, ElasticNet, GroupLasso): proximal Newton up to
      ``D = 512`` when the data has at least 16 times the Hessian's sample of rows (on fewer
      rows the Hessian costs more than FISTA's extra passes), else ``ProximalGradient``.
    - Never Newton past 2 GiB of Hessian blocks (``n_outputs D^2`` float64), or for a penalty
      that is not a sum over outputs (a GroupLasso whose groups span outputs).

    Parameters
    ----------
    smooth : bool
        Whether the penalty is smooth (UnRegularized, Ridge).
    n_params : int
        ``(n_features + 1) * n_classes``, the size of one output's Hessian block.
    n_outputs : int
    streamed : bool
        Whether some chunks do not fit the workers' caches.
    n_rows : int, optional
        Rows of data (unknown: the data is taken as large).
    separable : bool
        Whether the penalty is a sum over outputs: Newton steps each output on its own.

    Returns
    -------
    str
    """
    fits = separable and n_outputs * n_params**2 * 8 <= AUTO_NEWTON_MAX_BYTES
    if streamed:
        newton = fits and n_params <= AUTO_NEWTON_MAX_STREAMED
    elif smooth:
        newton = False
    else:
        large = n_rows is None or n_rows >= 16 * default_hessian_rows(n_params)
        newton = fits and n_params <= AUTO_NEWTON_MAX_CACHED and large
    if newton:
        return "Newton"
    return "LBFGS" if smooth else "ProximalGradient"


@dataclasses.dataclass(frozen=True)
class ProblemFacts:
    """What ``solver_name="auto"`` decides by (the arguments of :func:`choose_solver`)."""

    smooth: bool
    n_params: int
    n_outputs: int
    streamed: bool = False
    n_rows: int | None = None
    separable: bool = True


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
                "solver_name='auto' chooses by the problem (its shape, penalty and whether the "
                "data is streamed); pass facts=ProblemFacts(...)."
            )
        name = choose_solver(**dataclasses.asdict(facts))
    return _build(name, kwargs)
