"""The finiteness checks every solver makes, and the precision floor of float32 sums."""

from __future__ import annotations

import numpy as np

__all__ = ["PRECISION_FLOOR", "check_finite", "check_finite_objective"]

#: Relative objective gap below which float32 sums cannot resolve further progress (objectives
#: say otherwise through their ``precision``, e.g. with float64 kernels).
PRECISION_FLOOR = 1e-6


def check_finite_objective(value, grad) -> None:
    """Raise ``ValueError`` naming the non-finite quantity if the objective or gradient is."""
    value_ok = bool(np.all(np.isfinite(value)))
    grad_ok = bool(np.all(np.isfinite(grad)))
    if value_ok and grad_ok:
        return
    if not value_ok:
        v = np.asarray(value)
        bad = np.flatnonzero(~np.isfinite(v.ravel()))
        shown = v.ravel()[bad[:5]].tolist()
        what = (
            f"objective ({bad.size} of {v.size} entries NaN/Inf, e.g. {shown})"
            if v.ndim
            else f"objective ({value})"
        )
    else:
        g = np.asarray(grad)
        n_bad = int((~np.isfinite(g)).sum())
        what = (
            f"gradient ({n_bad} of {g.size} entries NaN/Inf, e.g. "
            f"{g[~np.isfinite(g)][:3].tolist()}; the objective is {value})"
        )
    raise ValueError(
        f"The {what} became non-finite during the fit, so the solution is invalid: the data or "
        "the parameters contain NaN or Inf. Check the inputs, or try rescaling the features or "
        "a larger regularizer_strength."
    )


def check_finite(theta, what) -> None:
    """Raise ``ValueError`` if ``theta`` (parameters or a step) has NaN or Inf."""
    if not np.all(np.isfinite(theta)):
        raise ValueError(
            f"The solver produced non-finite {what} (NaN or Inf), so the solution is invalid. "
            "Try rescaling the features, a larger regularizer_strength, or another solver."
        )
