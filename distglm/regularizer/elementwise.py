"""Element-wise penalties: none, Ridge (L2), Lasso (L1) and the elastic net."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import (
    SMOOTH_SOLVERS,
    Regularizer,
    _map_leaves,
    _soft_threshold,
    _strength_leaves,
    _validate_strength_tree,
)

__all__ = ["ElasticNet", "Lasso", "Ridge", "UnRegularized"]


class UnRegularized(Regularizer):
    """No penalty: the penalty is 0 and the proximal operator is the identity."""

    allowed_solvers = SMOOTH_SOLVERS
    default_solver = "LBFGS"
    smooth = True
    has_strength = False

    def validate_strength(self, strength: Any) -> None:
        """Return ``None``: there is no strength to validate."""
        del strength
        return None

    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        del coef, strength
        return jnp.asarray(0.0)

    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        del strength, scaling
        return coef


class Ridge(Regularizer):
    """Squared L2 penalty ``0.5 * sum(strength * coef**2)``."""

    allowed_solvers = SMOOTH_SOLVERS
    default_solver = "LBFGS"
    smooth = True

    def precondition_strength(self, strength: Any) -> float:
        """The strength itself when it is one scalar (else 0: per-coefficient strengths are
        left to the solver)."""
        return float(strength) if np.ndim(strength) == 0 and not isinstance(strength, dict) else 0.0

    def residual_dof(
        self, n_samples: Any, coef: np.ndarray, rank: Any, n_classes: int
    ) -> np.ndarray:
        """``n - (n_classes - 1) (n_features + 1)`` for every output (no rank needed)."""
        cm1 = n_classes - 1
        return (np.asarray(n_samples) - cm1 * coef.shape[0] - cm1) * np.ones(coef.shape[1])

    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(coef)
        strengths = _strength_leaves(coef, strength)
        return sum(
            (0.5 * jnp.sum(s * jnp.square(c)) for c, s in zip(leaves, strengths, strict=True)),
            jnp.asarray(0.0),
        )

    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        return _map_leaves(
            lambda c, s: c / (1.0 + scaling * s), coef, _strength_leaves(coef, strength)
        )


class Lasso(Regularizer):
    """L1 penalty ``sum(strength * |coef|)``."""

    sparse = True

    def zero_strength(self, grad: np.ndarray, strength: Any) -> float | None:
        """``max |grad|``: the dual norm of L1 (the Lasso's lambda_max)."""
        del strength
        return float(np.max(np.abs(grad)))

    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(coef)
        strengths = _strength_leaves(coef, strength)
        return sum(
            (jnp.sum(s * jnp.abs(c)) for c, s in zip(leaves, strengths, strict=True)),
            jnp.asarray(0.0),
        )

    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        return _map_leaves(
            lambda c, s: _soft_threshold(c, scaling * s), coef, _strength_leaves(coef, strength)
        )


class ElasticNet(Regularizer):
    """Elastic-net penalty ``sum(s * (0.5 * (1 - r) * coef**2 + r * |coef|))``.

    The strength is a pair ``(s, r)``: ``s`` the overall strength and ``r`` in ``(0, 1]``
    the L1 ratio (``r = 1`` is the Lasso).
    """

    sparse = True

    def validate_strength(self, strength: Any) -> tuple[Any, Any]:
        """Validate ``None``, a strength ``s`` (ratio 0.5) or a pair ``(s, r)``.

        Returns
        -------
        :
            The pair ``(s, r)``, each a float, a float JAX array or a dict of those.

        Raises
        ------
        TypeError
            If a tuple of length other than 2 is given, or values are not numeric.
        ValueError
            If the ratio is outside ``(0, 1]`` or the strength is negative.
        """
        if strength is None:
            return 1.0, 0.5
        if isinstance(strength, tuple):
            if len(strength) != 2:
                raise TypeError(
                    "ElasticNet strength must be a number or a pair (strength, ratio); "
                    f"got a tuple of length {len(strength)}: {strength!r}."
                )
            value, ratio = strength
        else:
            value, ratio = strength, 0.5
        value = _validate_strength_tree(value)
        ratio_message = f"ElasticNet ratio must lie in (0, 1]; got {ratio!r}."
        try:
            ratio = _validate_strength_tree(ratio)
        except ValueError as err:
            raise ValueError(ratio_message) from err
        for r in jax.tree_util.tree_leaves(ratio):
            if isinstance(r, jax.core.Tracer):
                continue
            if np.any((np.asarray(r) <= 0) | (np.asarray(r) > 1)):
                raise ValueError(ratio_message)
        return value, ratio

    def zero_strength(self, grad: np.ndarray, strength: Any) -> float | None:
        """``max |grad| / ratio``: only the L1 part of the penalty can zero a coefficient."""
        ratio = strength[1]
        if not _is_scalar_ratio(ratio):
            raise ValueError(
                f"A path needs one ElasticNet ratio for every coefficient; got {ratio!r}."
            )
        return float(np.max(np.abs(grad))) / float(ratio)

    def with_strength(self, strength: Any, value: Any) -> Any:
        """``(value, ratio)``: the ratio is kept along a path."""
        return value, strength[1]

    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        value, ratio = strength
        leaves = jax.tree_util.tree_leaves(coef)
        svals = _strength_leaves(coef, value)
        rvals = _strength_leaves(coef, ratio)
        return sum(
            (
                jnp.sum(s * (0.5 * (1.0 - r) * jnp.square(c) + r * jnp.abs(c)))
                for c, s, r in zip(leaves, svals, rvals, strict=True)
            ),
            jnp.asarray(0.0),
        )

    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        value, ratio = strength

        def leaf_prox(c: jax.Array, s: Any, r: Any) -> jax.Array:
            return _soft_threshold(c, scaling * s * r) / (1.0 + scaling * s * (1.0 - r))

        return _map_leaves(
            leaf_prox, coef, _strength_leaves(coef, value), _strength_leaves(coef, ratio)
        )


def _is_scalar_ratio(ratio: Any) -> bool:
    return not isinstance(ratio, dict) and np.ndim(ratio) == 0
