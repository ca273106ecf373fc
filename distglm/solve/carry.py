"""Carry a Newton fit's state to the next strength of a regularization path, with no pass.

Along a path only the penalty changes, so the derivatives of the data term that Newton holds
at the end of one strength (each output's objective, gradient and Hessian block at the final
parameters) are those at the start of the next: :func:`carry_newton_state` swaps the old
penalty's share for the new one's and proposes the next Newton directions at the coordinator.
The first pass of the next strength then already evaluates the Newton step from the warm start,
instead of re-taking the derivatives there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .newton import Newton
from .objective import PenalizedObjective
from .state import NewtonContext, NewtonState, Status

__all__ = ["carry_newton_state"]


def _penalty_share(penalty, theta):
    """Per-output value, gradient (zero for a non-smooth penalty) and curvature diagonal."""
    value = penalty.per_output(theta)
    if not penalty.smooth:
        return value, np.zeros_like(theta), np.zeros_like(theta)
    _, grad = penalty.value_and_grad(theta)
    return value, penalty.project(grad), penalty.curvature(theta.shape)


def carry_newton_state(
    solver: Newton,
    objective: PenalizedObjective,
    context: NewtonContext,
    theta: np.ndarray,
    state: NewtonState,
    old_penalty: Any,
) -> NewtonState:
    """The state a Newton fit of ``objective`` starts from at ``theta``, from ``state``.

    Parameters
    ----------
    solver : Newton
    objective : PenalizedObjective
        The new strength's objective (same data term, new penalty).
    context : NewtonContext
        ``solver.prepare(objective, theta)``.
    theta : array of shape (n_features + 1, n_outputs, n_classes)
        Where the previous fit ended.
    state : NewtonState
        The previous fit's final state (derivatives at ``theta`` for its ``known`` outputs).
    old_penalty : Penalty
        The previous fit's penalty.

    Returns
    -------
    NewtonState
        Every output active, iteration 0; outputs with known derivatives have their next
        direction and gap under the new penalty, the others are evaluated in the first pass.
    """
    if state.F is None or state.hess is None or state.known is None:
        return solver.init(context, theta)
    old_v, old_g, old_c = _penalty_share(old_penalty, theta)
    new_v, new_g, new_c = _penalty_share(objective.penalty, theta)
    P1, K, c = theta.shape
    D = P1 * c
    hess = state.hess.copy()
    diag = np.transpose(new_c - old_c, (1, 0, 2)).reshape(K, D)
    idx = np.arange(D)
    hess[:, idx, idx] += diag
    known = state.known.copy()
    ex: dict[str, Any] = {
        "F": state.F - old_v + new_v,
        "grad": state.grad - old_g + new_g,
        "hess": hess,
        "known": known,
        "active": np.ones(K, bool),
        "gaps": np.full(K, np.inf),
        "direction": np.zeros(theta.shape),
        "delta": np.zeros(K),
        "stride": context.stride,
        "ridge_diag": context.ridge_diag,
        "mask": context.mask,
        "mask_flat": context.mask_flat,
        "smooth": context.smooth,
    }
    ready = np.flatnonzero(known)
    if ready.size:
        solver._directions(objective, theta, ex, ready)
    t_next = np.ones(K)
    return NewtonState(
        iteration=0,
        value=float(np.sum(ex["F"])),
        grad=ex["grad"],
        gap=float(np.sum(ex["gaps"][np.isfinite(ex["gaps"])])),
        status=Status.RUNNING,
        trials_left=2,
        F=ex["F"],
        hess=hess,
        known=known,
        active=ex["active"],
        gaps=ex["gaps"],
        direction=ex["direction"],
        t_eval=np.where(known, t_next, 0.0),
        t_next=t_next,
        delta=ex["delta"],
    )
