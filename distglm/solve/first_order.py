"""First-order methods: FISTA (accelerated proximal gradient) and accelerated gradient descent.

The step is ``1 / L`` with ``L`` Böhning's bound on the softmax curvature plus the Ridge
strength, so no pass is spent on a line search; in a fit, momentum restarts when it points
uphill (O'Donoghue & Candès' gradient restart), while the batch loop (``update``) carries it
without restarts, as nemos does. The gap estimate is ``||G||^2 / (2 L)`` with ``G`` the
(proximal) gradient mapping.
"""

from __future__ import annotations

import math
import typing

import numpy as np

from .checks import check_finite
from .precondition import lipschitz_bound
from .state import FirstOrderContext, FirstOrderState, Status

__all__ = ["AcceleratedGradient", "ProximalGradient"]


class _FISTA:
    """FISTA with a fixed step from a curvature bound (the shared body of the two final
    solvers below). Implements :class:`~distglm.solve.protocols.Solver`.

    Parameters
    ----------
    tol : float
        Stop when the estimated gap is at most ``tol * max(1, |F|)``.
    maxiter : int
    acceleration : bool
        ``False`` gives plain (proximal) gradient descent.
    stepsize : float
        A fixed step, as nemos' option of that name; ``<= 0`` (the default) takes ``1 / L``
        from the curvature bound, where nemos runs a line search.
    """

    name = ""

    def __init__(self, tol=1e-8, maxiter=5000, acceleration=True, stepsize=0.0):
        self.tol = float(tol)
        self.maxiter = int(maxiter)
        self.acceleration = bool(acceleration)
        self.stepsize = float(stepsize)

    def prepare(self, objective, theta, ridge=0.0, mask=None) -> FirstOrderContext:
        if self.stepsize > 0:
            return FirstOrderContext(1.0 / self.stepsize)
        return FirstOrderContext(lipschitz_bound(objective.gram(), ridge))

    def init(self, context, theta) -> FirstOrderState:
        return FirstOrderState()

    def batch_step(self, objective, context, theta, state):
        """A step on a new batch, as nemos' ``update`` takes it: the momentum (``z``, ``t``)
        carries over from the last batch and the gradient is taken at ``z`` on the new one;
        the momentum never restarts (nemos' FISTA has no restart), so with a fixed
        ``stepsize`` the iterates are nemos'."""
        return self._advance(objective, context, theta, state, restart=False)

    def step(self, objective, context, theta, state):
        return self._advance(objective, context, theta, state, restart=True)

    def _advance(self, objective, context, theta, state, restart):
        L = context.L
        if state.z is None:
            z, t = theta, 1.0
        else:
            z, t = state.z, state.t
        fz, gz = objective.value_and_grad(z)
        new = objective.prox(z - gz / L, 1.0 / L)
        check_finite(new, "parameters")
        mapping = L * (z - new)
        gap = float(np.vdot(mapping, mapping)) / (2 * L)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2 if self.acceleration else 1.0
        if self.acceleration and restart and np.vdot(z - new, new - theta) > 0:
            t_new, z_new = 1.0, new.copy()  # restart momentum
        else:
            z_new = new + ((t - 1) / t_new) * (new - theta)
        value = fz + objective.nonsmooth(z)
        converged = gap <= self.tol * max(1.0, abs(value))
        return new, FirstOrderState(
            iteration=state.iteration + 1,
            value=value,
            grad=gz,
            gap=gap,
            status=Status.CONVERGED if converged else Status.RUNNING,
            t=t_new,
            z=z_new,
        )


@typing.final
class ProximalGradient(_FISTA):
    """FISTA, accelerated proximal gradient: the solver of the non-smooth penalties.

    Parameters
    ----------
    tol, maxiter, acceleration, stepsize : see :class:`_FISTA`.
    """

    name = "ProximalGradient"


@typing.final
class AcceleratedGradient(_FISTA):
    """Nesterov-accelerated gradient descent for smooth objectives (FISTA with no prox).

    Parameters
    ----------
    tol, maxiter, acceleration, stepsize : see :class:`_FISTA`.
    """

    name = "GradientDescent"
