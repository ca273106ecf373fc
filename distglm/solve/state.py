"""Explicit solver state and the checks every solver shares."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["SolverState"]


@dataclasses.dataclass
class SolverState:
    """Explicit solver state, owned by the caller.

    Attributes
    ----------
    iteration : int
        Steps taken so far.
    value : float or None
        Objective (smooth + non-smooth) at the current parameters, when known.
    grad : array or None
        Gradient of the smooth part at the current parameters (or at the extrapolated point
        for the accelerated methods), when known.
    gap : float
        Estimated objective gap after the last step (``inf`` before the first).
    converged : bool
    extra : dict
        Solver-specific memory (L-BFGS pairs, momentum, step bound).
    """

    iteration: int = 0
    value: float | None = None
    grad: np.ndarray | None = None
    gap: float = math.inf
    converged: bool = False
    extra: dict = dataclasses.field(default_factory=dict)


#: Relative objective gap below which float32 sums cannot resolve further progress (objectives
#: may say otherwise through a ``precision`` attribute, e.g. with float64 kernels).
_PRECISION_FLOOR = 1e-6


def _check_finite_objective(value, grad):
    if not (np.isfinite(value) and np.all(np.isfinite(grad))):
        raise ValueError(
            f"The objective became non-finite ({value}) during the fit, so the solution is "
            "invalid: the data or the parameters contain NaN or Inf. Check the inputs, or try "
            "rescaling the features or a larger regularizer_strength."
        )


def _check_finite(theta, what):
    if not np.all(np.isfinite(theta)):
        raise ValueError(
            f"The solver produced non-finite {what} (NaN or Inf), so the solution is invalid. "
            "Try rescaling the features, a larger regularizer_strength, or another solver."
        )
