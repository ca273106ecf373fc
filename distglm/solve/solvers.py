"""Solvers over an :class:`~distglm.solve.objective.Objective`, in explicit-state style.

Each solver is a small object with ``init(objective, theta) -> state`` and
``step(objective, theta, state) -> (theta, state)``; :func:`minimize` loops over ``step``. State
is a plain dataclass held by the caller (the coordinator), never inside the objective, so the
same solver drives the in-memory and the distributed objective, and ``update`` can step with a
different batch each call. All arithmetic here is float64 numpy on the parameters only.

Convergence is judged by an estimate of the objective gap: for L-BFGS the Newton decrement in
the preconditioner's metric, ``g' M^-1 g / 2``, and for the first-order methods
``||G||^2 / (2 L)`` with ``G`` the (proximal) gradient mapping. A solver stops when this is at
most ``tol * max(1, |F|)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import numpy as np

from .newton import Newton, default_hessian_rows
from .precondition import BlockPreconditioner, lipschitz_bound
from .state import _PRECISION_FLOOR, SolverState, _check_finite, _check_finite_objective

__all__ = [
    "LBFGS",
    "SOLVERS",
    "AcceleratedGradient",
    "FitResult",
    "ProximalGradient",
    "SolverState",
    "make_solver",
    "minimize",
]


class LBFGS:
    """Limited-memory BFGS, preconditioned by the per-output curvature model.

    Parameters
    ----------
    tol : float
        Stop when the estimated gap is at most ``tol * max(1, |F|)``.
    maxiter : int
    history_size : int
        Number of (s, y) pairs kept.
    precondition : bool
        Use :class:`~distglm.solve.precondition.BlockPreconditioner` (needs ``objective.gram``).
    """

    name = "LBFGS"

    def __init__(
        self, tol=1e-8, maxiter=500, history_size=10, precondition=True, max_linesearch=12
    ):
        self.tol = float(tol)
        self.max_linesearch = int(max_linesearch)
        self.maxiter = int(maxiter)
        self.history_size = int(history_size)
        self.precondition = bool(precondition)

    def init(self, objective, theta, ridge=0.0, mask=None):
        extra = {"pairs": [], "precond": None}
        if self.precondition and hasattr(objective, "gram"):
            extra["precond"] = BlockPreconditioner(
                objective.gram(), theta.shape[2], theta.shape, ridge=ridge, mask=mask
            )
        return SolverState(extra=extra)

    def _apply_h0(self, precond, q):
        return q if precond is None else precond.solve(q)

    def step(self, objective, theta, state):
        extra = dict(state.extra)
        precond = extra["precond"]
        if state.value is None or state.grad is None:
            f, g = objective.value_and_grad(theta)
            _check_finite_objective(f, g)
        else:
            f, g = state.value, state.grad
        pairs = list(extra["pairs"])
        # two-loop recursion with H0 = gamma * M^-1
        q = g.copy()
        alphas = []
        for s, yv, rho in reversed(pairs):
            a = rho * np.vdot(s, q)
            alphas.append(a)
            q -= a * yv
        if pairs:
            s, yv, _ = pairs[-1]
            hy = self._apply_h0(precond, yv)
            gamma = np.vdot(s, yv) / np.vdot(yv, hy)
        else:
            gamma = 1.0
        r = gamma * self._apply_h0(precond, q)
        for (s, yv, rho), a in zip(pairs, reversed(alphas), strict=True):
            b = rho * np.vdot(yv, r)
            r += s * (a - b)
        d = -r
        slope = np.vdot(g, d)
        if not slope < 0:  # not a descent direction: restart from the preconditioned gradient
            pairs = []
            d = -self._apply_h0(precond, g)
            slope = np.vdot(g, d)
        # backtracking Armijo line search; the trial that is accepted carries its gradient
        t, accepted = 1.0, False
        for _ in range(self.max_linesearch):
            new = objective.prox(theta + t * d, t)
            f_new, g_new = objective.value_and_grad(new)
            # the kernels are overflow-safe, so a non-finite value means NaN data or parameters
            _check_finite_objective(f_new, g_new)
            if f_new <= f + 1e-4 * t * slope:
                accepted = True
                break
            # minimiser of the quadratic through f, slope and f_new, kept in [0.1, 0.5] t
            t *= max(0.1, min(0.5, -slope * t / (2 * (f_new - f - slope * t))))
        floor = getattr(objective, "precision", _PRECISION_FLOOR) * max(1.0, abs(f))
        if not accepted or (f - f_new <= 1e-7 * max(1.0, abs(f)) and state.gap <= floor):
            # The decrease left is below the precision of the objective (float32 sums): stop,
            # converged if the gap is at that precision floor, otherwise not.
            if not accepted:
                new, f_new, g_new = theta, f, g
            gap = 0.5 * float(np.vdot(g_new, self._apply_h0(precond, g_new)))
            extra["stalled"] = True
            converged = gap <= max(self.tol * max(1.0, abs(f_new)), floor)
            return new, SolverState(state.iteration + 1, f_new, g_new, gap, converged, extra)
        _check_finite(new, "parameters")
        s = new - theta
        yv = g_new - g
        sy = np.vdot(s, yv)
        if sy > 1e-12 * max(np.vdot(yv, yv), 1e-300):
            pairs.append((s, yv, 1.0 / sy))
            pairs = pairs[-self.history_size :]
        extra["pairs"] = pairs
        gap = 0.5 * float(np.vdot(g_new, self._apply_h0(precond, g_new)))
        converged = gap <= self.tol * max(1.0, abs(f_new)) or np.array_equal(new, theta)
        return new, SolverState(state.iteration + 1, f_new, g_new, gap, converged, extra)


class ProximalGradient:
    """FISTA (accelerated proximal gradient) with a fixed step from a curvature bound.

    The step is ``1 / L`` with ``L`` Böhning's bound on the softmax curvature plus the Ridge
    strength, so no pass is spent on a line search; momentum restarts when it points uphill
    (O'Donoghue & Candès' gradient restart).

    Parameters
    ----------
    tol, maxiter : see :class:`LBFGS`.
    acceleration : bool
        ``False`` gives plain (proximal) gradient descent.
    """

    name = "ProximalGradient"

    def __init__(self, tol=1e-8, maxiter=5000, acceleration=True):
        self.tol = float(tol)
        self.maxiter = int(maxiter)
        self.acceleration = bool(acceleration)

    def init(self, objective, theta, ridge=0.0, mask=None):
        L = lipschitz_bound(objective.gram(), ridge)
        return SolverState(extra={"L": L, "t": 1.0, "z": theta.copy()})

    def step(self, objective, theta, state):
        extra = dict(state.extra)
        L, t, z = extra["L"], extra["t"], extra["z"]
        if state.grad is None:
            z = theta
            t = 1.0
        fz, gz = objective.value_and_grad(z)
        new = objective.prox(z - gz / L, 1.0 / L)
        _check_finite(new, "parameters")
        mapping = L * (z - new)
        gap = float(np.vdot(mapping, mapping)) / (2 * L)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2 if self.acceleration else 1.0
        if self.acceleration and np.vdot(z - new, new - theta) > 0:
            t_new, z_new = 1.0, new.copy()  # restart momentum
        else:
            z_new = new + ((t - 1) / t_new) * (new - theta)
        extra.update(t=t_new, z=z_new)
        value = fz + objective.nonsmooth(z)
        converged = gap <= self.tol * max(1.0, abs(value))
        return new, SolverState(state.iteration + 1, value, gz, gap, converged, extra)


class AcceleratedGradient(ProximalGradient):
    """Nesterov-accelerated gradient descent for smooth objectives (FISTA with no prox)."""

    name = "GradientDescent"


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


def make_solver(name: str, solver_kwargs: dict | None = None, *, auto: dict | None = None):
    """Build a solver by name with its keyword arguments (``tol``, ``maxiter``, ...).

    ``name="auto"`` resolves through :func:`choose_solver` with the keyword arguments ``auto``
    (without them it only checks ``solver_kwargs``, and returns None).
    """
    kwargs = dict(solver_kwargs or {})
    if name == "auto":
        bad = sorted(set(kwargs) - set(AUTO_KWARGS))
        if bad:
            raise ValueError(
                f"solver_kwargs {bad} are not accepted with solver_name='auto', which only "
                f"passes on {list(AUTO_KWARGS)}; name a solver to set its other options."
            )
        if auto is None:
            return None
        name = choose_solver(**auto)
    if name not in SOLVERS:
        raise ValueError(
            f"Unknown solver {name!r}; available solvers are {sorted(SOLVERS)} and 'auto'."
        )
    try:
        return SOLVERS[name](**kwargs)
    except TypeError as e:
        import inspect

        accepted = sorted(inspect.signature(SOLVERS[name].__init__).parameters)[1:]
        raise ValueError(
            f"solver_kwargs {sorted(kwargs)} are not all accepted by {name}; "
            f"it accepts {[a for a in accepted if a != 'self']}."
        ) from e


@dataclasses.dataclass
class FitResult:
    """What :func:`minimize` returns."""

    theta: np.ndarray
    state: SolverState
    history: list[dict[str, Any]]
    converged: bool
    n_iter: int


def minimize(solver, objective, theta0, state=None, ridge=0.0, mask=None, callback=None):
    """Run ``solver`` on ``objective`` from ``theta0`` until convergence or ``maxiter``.

    Parameters
    ----------
    solver : LBFGS, ProximalGradient or AcceleratedGradient
    objective : Objective
    theta0 : array of shape (n_features + 1, n_outputs, n_classes)
    state : SolverState, optional
        Resume from this state.
    ridge, mask : passed to ``solver.init`` (curvature model, feature mask).
    callback : callable(dict) -> None, optional
        Called with each history entry.

    Returns
    -------
    FitResult
        ``history`` has one entry per iteration: ``objective``, ``grad_norm``, ``gap``,
        ``seconds`` (since start) and ``passes`` (cumulative, from ``objective.n_passes``).
    """
    theta = objective.prox(np.asarray(theta0, np.float64), 0.0)
    if state is None:
        state = solver.init(objective, theta, ridge=ridge, mask=mask)
    history = []
    start = time.perf_counter()
    while (
        state.iteration < solver.maxiter
        and not state.converged
        and not state.extra.get("stalled", False)
    ):
        theta, state = solver.step(objective, theta, state)
        entry = {
            "iteration": state.iteration,
            "objective": float(state.value),
            "grad_norm": float(np.linalg.norm(state.grad)),
            "gap": float(state.gap),
            "seconds": time.perf_counter() - start,
            "passes": int(objective.n_passes),
        }
        history.append(entry)
        if callback is not None:
            callback(entry)
    return FitResult(theta, state, history, bool(state.converged), state.iteration)


def warn_not_converged(result: FitResult, solver) -> None:
    """Emit a RuntimeWarning when a fit stopped at ``maxiter`` without converging."""
    if not result.converged:
        warnings.warn(
            f"The fit did not converge: {solver.name} stopped after maxiter={solver.maxiter} "
            f"iterations with an estimated objective gap of {result.state.gap:.3g} (tol="
            f"{solver.tol:g}). Raise 'maxiter' or 'tol' in solver_kwargs, or strengthen the "
            "regularizer.",
            RuntimeWarning,
            stacklevel=3,
        )
