"""The penalty interface and the strength checks every penalty shares.

The definitions follow nemos 0.2.8 so that fitted models agree with it. Coefficients
``coef`` are a pytree (an array or a dict of arrays) whose leaves have the feature axis
first, e.g. ``(n_features, n_outputs, n_classes)``. The intercept is never penalised and
is never passed here.

``validate_strength`` runs eagerly on user input; ``penalty`` and ``prox`` are pure JAX
and may be traced by ``jax.jit`` with an already validated strength. What a fit needs to know
about a penalty beyond its value and prox (its curvature for the preconditioner, the residual
degrees of freedom, checks against the coefficients' structure) are methods here, so callers
never switch on the penalty's type.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PROX_SOLVERS", "SMOOTH_SOLVERS", "Regularizer"]

# nemos' solvers, then distglm's few-pass solver and the automatic choice (see distglm.solve)
SMOOTH_SOLVERS = ("LBFGS", "GradientDescent", "ProximalGradient", "Newton", "auto")
PROX_SOLVERS = ("ProximalGradient", "Newton", "auto")


# ---------------------------------------------------------------------------- helpers
def _is_scalar(x: Any) -> bool:
    return np.ndim(x) == 0


def _check_strength_leaf(value: Any, original: Any) -> Any:
    """Validate one strength leaf: a float for scalars, a float JAX array otherwise."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, (np.ndarray, jax.Array)) and value.dtype == bool
    ):
        raise TypeError(f"Regularizer strength must be numeric; got the boolean {original!r}.")
    if not isinstance(value, (int, float, np.number, np.ndarray, jax.Array, list, tuple)):
        raise TypeError(
            f"Regularizer strength must be a number or an array of numbers; got {original!r}."
        )
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Regularizer strength must be a number or an array of numbers; got {original!r}."
        ) from err
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"Regularizer strength must be finite and >= 0; got {original!r}.")
    return float(arr) if arr.ndim == 0 else jnp.asarray(arr)


def _validate_strength_tree(strength: Any) -> Any:
    """Validate a strength given as None, a scalar, an array or a dict of those."""
    if strength is None:
        return 1.0
    if isinstance(strength, dict):
        return {k: _check_strength_leaf(v, strength) for k, v in strength.items()}
    return _check_strength_leaf(strength, strength)


def _strength_leaves(coef: Any, strength: Any) -> list[Any]:
    """Align a validated strength with the leaves of ``coef``.

    Parameters
    ----------
    coef :
        Coefficient pytree.
    strength :
        A scalar, an array of the shape of every leaf, or (for dict ``coef``) a dict
        with the same keys whose values are scalars or arrays of the leaf's shape.

    Returns
    -------
    :
        One strength per leaf of ``coef``, in tree order.
    """
    leaves, treedef = jax.tree_util.tree_flatten(coef)
    if isinstance(strength, dict):
        if not isinstance(coef, dict) or set(strength) != set(coef):
            coef_keys = sorted(coef) if isinstance(coef, dict) else "an array"
            raise ValueError(
                f"Strength keys {sorted(strength)} do not match the coefficients ({coef_keys})."
            )
        per_leaf = treedef.flatten_up_to(strength)
    else:
        per_leaf = [strength] * len(leaves)
    for s, leaf in zip(per_leaf, leaves, strict=True):
        if not _is_scalar(s) and tuple(np.shape(s)) != tuple(leaf.shape):
            raise ValueError(
                f"Strength of shape {tuple(np.shape(s))} does not match the coefficient "
                f"shape {tuple(leaf.shape)}; give a scalar or an array of the coefficient shape."
            )
    return per_leaf


def _soft_threshold(u: jax.Array, t: Any) -> jax.Array:
    return jnp.sign(u) * jax.nn.relu(jnp.abs(u) - t)


def _map_leaves(fn: Any, coef: Any, *per_leaf: list[Any]) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(coef)
    return treedef.unflatten([fn(*args) for args in zip(leaves, *per_leaf, strict=True)])


# ---------------------------------------------------------------------------- base class
class Regularizer(abc.ABC):
    """Base class of the penalties.

    Attributes
    ----------
    allowed_solvers : tuple of str
        Solver names that can minimise a loss with this penalty.
    default_solver : str
        Solver used when none is named.
    smooth : bool
        Whether the penalty is differentiable everywhere.
    """

    allowed_solvers: tuple[str, ...] = PROX_SOLVERS
    default_solver: str = "ProximalGradient"
    smooth: bool = False
    #: whether the penalty takes a strength (UnRegularized takes none)
    has_strength: bool = True
    #: whether the penalty sets coefficients to exactly 0 (degrees of freedom count the rest)
    sparse: bool = False

    def precondition_strength(self, strength: Any) -> float:
        """The L2 curvature the penalty adds to every coefficient, for the curvature model of
        the preconditioner: a scalar, 0 where there is none (or it is not one scalar)."""
        del strength
        return 0.0

    def residual_dof(
        self, n_samples: Any, coef: np.ndarray, rank: Any, n_classes: int
    ) -> np.ndarray:
        """Residual degrees of freedom of each output, as nemos counts them.

        Parameters
        ----------
        n_samples : int array of shape (n_outputs,)
            Samples each output was fitted on.
        coef : array of shape (n_features, n_outputs, n_classes)
            The fitted coefficients.
        rank : callable
            Returns the rank of the design (only called where it is needed: unpenalised).
        n_classes : int

        Returns
        -------
        array of shape (n_outputs,)
        """
        cm1 = n_classes - 1
        n_samples = np.asarray(n_samples)
        if self.sparse:
            return n_samples - np.sum(~np.isclose(coef, 0.0), axis=(0, 2)) - cm1
        return (n_samples - rank() * cm1 - cm1) * np.ones(coef.shape[1])

    def zero_strength(self, grad: np.ndarray, strength: Any) -> float | None:
        """The smallest strength at which all-zero coefficients are optimal.

        Parameters
        ----------
        grad : array of shape (n_features, n_outputs, n_classes)
            Gradient of the data term (sum over outputs of each output's mean NLL) at the
            intercept-only model.
        strength :
            The current strength (its parts other than the overall strength are kept).

        Returns
        -------
        float, or None for a penalty that never sets coefficients to exactly 0.
        """
        del grad, strength
        return None

    def with_strength(self, strength: Any, value: Any) -> Any:
        """``strength`` with its overall strength replaced by ``value`` (a path's step)."""
        del strength
        return value

    def per_output_strength(self, values: np.ndarray, coef_shape: tuple[int, ...]) -> Any:
        """One strength per output, as this penalty takes it for coefficients of a shape.

        Parameters
        ----------
        values : array of shape (n_outputs,)
        coef_shape : (n_features, n_outputs, n_classes)

        Returns
        -------
        array of shape ``coef_shape`` (output ``k``'s coefficients all at ``values[k]``).
        """
        values = np.asarray(values, np.float64)
        return np.broadcast_to(values[None, :, None], coef_shape).copy()

    def check_coefficients(self, coef: Any) -> None:
        """Check that the penalty applies to coefficients of this structure and shape.

        Parameters
        ----------
        coef :
            Zero coefficients in the user's structure (an array or a dict of arrays).
        """
        del coef

    def check_solver(self, solver_name: str) -> None:
        """Raise ``ValueError`` if ``solver_name`` cannot be used with this penalty."""
        if solver_name not in self.allowed_solvers:
            raise ValueError(
                f"Solver {solver_name!r} cannot be used with {type(self).__name__}; "
                f"allowed solvers are {self.allowed_solvers}."
            )

    def validate_strength(self, strength: Any) -> Any:
        """Check a user strength and put it in canonical form.

        Parameters
        ----------
        strength :
            ``None`` (meaning 1.0), a non-negative number, an array of the coefficient
            shape, or for dict coefficients a dict of those.

        Returns
        -------
        :
            A Python float, a float JAX array, or a dict of those.

        Raises
        ------
        TypeError
            If the strength is not numeric.
        ValueError
            If it is negative or not finite.
        """
        return _validate_strength_tree(strength)

    @abc.abstractmethod
    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        """Penalty value, a JAX scalar.

        Parameters
        ----------
        coef :
            Coefficient pytree, leaves of shape ``(n_features, ...)``.
        strength :
            Output of :meth:`validate_strength`.
        """

    @abc.abstractmethod
    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        """Proximal operator ``argmin_x 0.5 ||x - coef||^2 + scaling * penalty(x)``.

        Parameters
        ----------
        coef :
            Coefficient pytree, leaves of shape ``(n_features, ...)``.
        strength :
            Output of :meth:`validate_strength`.
        scaling :
            Step size multiplying the penalty, a scalar.

        Returns
        -------
        :
            Pytree with the structure and shapes of ``coef``.
        """

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name."""
        del deep
        return {}

    def set_params(self, **params: Any) -> Regularizer:
        """Set constructor parameters; returns ``self``."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}=..." if v is not None and not _is_scalar(v) else f"{k}={v!r}"
            for k, v in self.get_params().items()
        )
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.get_params(), other.get_params()
        if mine.keys() != theirs.keys():
            return False
        for key, value in mine.items():
            a_leaves, a_def = jax.tree_util.tree_flatten(value)
            b_leaves, b_def = jax.tree_util.tree_flatten(theirs[key])
            if a_def != b_def or not all(
                np.array_equal(a, b) for a, b in zip(a_leaves, b_leaves, strict=True)
            ):
                return False
        return True

    def __hash__(self) -> int:
        return hash(type(self))
