"""What a fit is, apart from its data: classes, penalty (with the mask) and solver choice.

The estimator turns its constructor parameters into a :class:`ModelSpec` once the data's shape
is known (:func:`model_spec`); the fit driver needs nothing else from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .inputs import CoefView, DesignLayout
from .regularizer import Regularizer
from .solve import Penalty, ProblemFacts, Solver, make_solver

__all__ = ["ModelSpec", "kernel_dtype", "model_spec"]


def kernel_dtype() -> np.dtype:
    """The kernels' float type: float64 when ``jax_enable_x64`` is on, else float32."""
    return np.dtype(np.float64 if jax.config.read("jax_enable_x64") else np.float32)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model to fit, whatever the data.

    Attributes
    ----------
    n_classes : int
    penalty : Penalty
        The regularizer at its strength on the coefficient block, with the feature mask.
    solver_name : str
        A solver name or ``"auto"``.
    solver_kwargs : Mapping
    ridge : float
        L2 curvature the penalty adds to every coefficient (the preconditioner's model).
    """

    n_classes: int
    penalty: Penalty
    solver_name: str
    solver_kwargs: Mapping[str, Any]
    ridge: float

    @property
    def mask(self) -> np.ndarray | None:
        """The feature mask block (n_features, n_outputs, n_classes), or None."""
        return self.penalty.mask

    def solver(self, data, shape) -> Solver:
        """The solver for a data term and parameters of ``shape`` (``"auto"`` decides here)."""
        P1, K, c = shape
        facts = ProblemFacts(
            smooth=self.penalty.smooth,
            n_features=P1 - 1,
            n_classes=c,
            n_outputs=K,
            n_rows=data.n_rows,
            separable=self.penalty.is_separable(tuple(shape)),
            block_rows=data.block_rows,
            passes=data.pass_facts,
        )
        return make_solver(self.solver_name, dict(self.solver_kwargs), facts=facts)


def model_spec(
    *,
    n_classes: int,
    regularizer: Regularizer,
    strength: Any,
    solver_name: str,
    solver_kwargs: Mapping[str, Any],
    layout: DesignLayout,
    n_outputs: int,
    population: bool,
    mask: np.ndarray | None = None,
) -> ModelSpec:
    """Build the spec of a fit on data of this layout and output count.

    Parameters
    ----------
    n_classes : int
    regularizer : Regularizer
    strength : the regularizer's validated strength
    solver_name : str
    solver_kwargs : Mapping
    layout : DesignLayout
        The design's structure (the penalty sees coefficients in the user's structure).
    n_outputs : int
    population : bool
        False for a single-output model (its coefficients have no output axis).
    mask : array of shape (n_features, n_outputs, n_classes), optional
        The feature mask block.
    """
    view = CoefView(layout, population)
    regularizer.check_coefficients(view(jnp.zeros((layout.n_features, n_outputs, n_classes))))
    penalty = Penalty(regularizer, strength, view, view.inverse, mask)
    return ModelSpec(
        n_classes=int(n_classes),
        penalty=penalty,
        solver_name=solver_name,
        solver_kwargs=dict(solver_kwargs),
        ridge=regularizer.precondition_strength(strength),
    )
