"""Limited-memory BFGS, preconditioned by the per-output curvature model of the softmax loss.

Convergence is judged by an estimate of the objective gap, the larger of the Newton decrements in
the preconditioner's metric (``g' M^-1 g / 2``) and in the L-BFGS model's: the solver stops when it
is at most ``tol * max(1, |F|)`` at two successive iterates. One estimate can understate the gap 3x
(measured on the 200,000 x 50 x 20 x 3 problem, float32, against the float64 optimum: true gap over
estimate 0.7-3.1 near the optimum), and which iterate first falls below ``tol`` depends on the sums'
rounding (in memory or from chunks); over two iterates the gap fell within ``tol`` on every fit
measured, at the cost of one more step. Near the optimum the change of the objective falls below the
rounding of its float32 sums before the gradient does, so the line search then reads the decrease
from the gradient (approximate Wolfe conditions) and the stopping rule never reads it from the
rounded value. All arithmetic is float64 numpy on the parameters only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .checks import check_finite, check_finite_objective
from .precondition import BlockPreconditioner
from .state import LBFGSContext, LBFGSState, Status

__all__ = ["LBFGS"]


class LBFGS:
    """Limited-memory BFGS with a backtracking Armijo line search. Implements
    :class:`~distglm.solve.protocols.Solver`.

    Parameters
    ----------
    tol : float
        Stop when the estimated gap is at most ``tol * max(1, |F|)`` before and after a step.
    maxiter : int
    history_size : int
        Number of (s, y) pairs kept.
    precondition : bool
        Use :class:`~distglm.solve.precondition.BlockPreconditioner`, built from the data
        term's second moment.
    max_linesearch : int
        Trial steps per iteration before giving up on a decrease.
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

    def prepare(self, objective, theta, ridge=0.0, mask=None) -> LBFGSContext:
        if not self.precondition:
            return LBFGSContext(None)
        return LBFGSContext(
            BlockPreconditioner(
                objective.gram(), theta.shape[2], theta.shape, ridge=ridge, mask=mask
            )
        )

    def init(self, context, theta) -> LBFGSState:
        return LBFGSState()

    @staticmethod
    def _apply_h0(precond, q):
        return q if precond is None else precond.solve(q)

    def batch_step(self, objective, context, theta, state):
        """A step on a new batch: the value and gradient held in ``state`` are another
        batch's, so they are recomputed; the curvature pairs are kept."""
        return self.step(
            objective, context, theta, dataclasses.replace(state, value=None, grad=None)
        )

    def _two_loop(self, precond, pairs, g):
        """``H g`` for the L-BFGS inverse-Hessian model ``H`` of ``pairs``, with
        ``H0 = gamma * M^-1`` scaled by the newest pair."""
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
        return r

    def _gap(self, precond, pairs, g):
        """The estimated objective gap at gradient ``g``: the larger of the Newton decrements
        in the curvature model's metric (``g' M^-1 g / 2``) and in the L-BFGS model's
        (``g' H g / 2``). ``M`` is taken at equally likely classes and so overstates the
        curvature (understates the gap, 2-5x near the optimum here); ``H`` has learnt the
        curvature along the recent steps."""
        model = 0.5 * float(np.vdot(g, self._apply_h0(precond, g)))
        if not pairs:
            return model
        return max(model, 0.5 * float(np.vdot(g, self._two_loop(precond, pairs, g))))

    def step(self, objective, context, theta, state):
        precond = context.precond
        pairs = state.pairs()
        # gap_before: the estimate at the start of the step, the first of the two the stopping
        # rule reads; the last step's own, unless the value and gradient are taken anew (a
        # first step, or a batch step on new data)
        if state.value is None or state.grad is None:
            f, g = objective.value_and_grad(theta)
            check_finite_objective(f, g)
            gap_before = self._gap(precond, pairs, g)
        else:
            f, g, gap_before = state.value, state.grad, state.gap
        within_before = gap_before <= self.tol * max(1.0, abs(f))
        d = -self._two_loop(precond, pairs, g)
        slope = np.vdot(g, d)
        if not slope < 0:  # not a descent direction: restart from the preconditioned gradient
            pairs = []
            d = -self._apply_h0(precond, g)
            slope = np.vdot(g, d)
        # Backtracking line search; the trial that is accepted carries its gradient. A trial is
        # accepted on Armijo's sufficient decrease or, where the change of the objective is
        # within the rounding of its (float32) sums, on the approximate Wolfe conditions of
        # Hager and Zhang, which read the decrease from the gradient's slope along d (exact
        # for a quadratic) and so do not depend on that rounding.
        resolution = objective.precision * max(1.0, abs(f))
        t, accepted = 1.0, False
        for _ in range(self.max_linesearch):
            new = objective.prox(theta + t * d, t)
            f_new, g_new = objective.value_and_grad(new)
            # the kernels are overflow-safe, so a non-finite value means NaN data or parameters
            check_finite_objective(f_new, g_new)
            if f_new <= f + 1e-4 * t * slope:
                accepted = True
                break
            slope_new = np.vdot(g_new, d)
            if f_new <= f + resolution and 0.9 * slope <= slope_new <= -0.8 * slope:
                accepted = True
                break
            # minimiser of the quadratic through f, slope and f_new, kept in [0.1, 0.5] t
            t *= max(0.1, min(0.5, -slope * t / (2 * (f_new - f - slope * t))))
        if not accepted:
            # No trial decreased the objective, even as read from the gradient: the gradient
            # is at the precision of its sums. Converged if the gap is within tol there.
            gap = self._gap(precond, pairs, g)
            converged = gap <= self.tol * max(1.0, abs(f))
            status = Status.CONVERGED if converged else Status.STALLED
            return theta, self._state(state, f, g, gap, status, pairs)
        check_finite(new, "parameters")
        s = new - theta
        yv = g_new - g
        sy = np.vdot(s, yv)
        if sy > 1e-12 * max(np.vdot(yv, yv), 1e-300):
            pairs.append((s, yv, 1.0 / sy))
            pairs = pairs[-self.history_size :]
        gap = self._gap(precond, pairs, g_new)
        converged = (within_before and gap <= self.tol * max(1.0, abs(f_new))) or np.array_equal(
            new, theta
        )
        status = Status.CONVERGED if converged else Status.RUNNING
        return new, self._state(state, f_new, g_new, gap, status, pairs)

    @staticmethod
    def _state(state, value, grad, gap, status, pairs) -> LBFGSState:
        stacked = (
            (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
            if pairs
            else (None, None)
        )
        return LBFGSState(
            iteration=state.iteration + 1,
            value=value,
            grad=grad,
            gap=gap,
            status=status,
            pairs_s=stacked[0],
            pairs_y=stacked[1],
            pairs_rho=np.asarray([p[2] for p in pairs]) if pairs else None,
        )
