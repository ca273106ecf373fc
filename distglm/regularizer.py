"""Penalties on GLM coefficients and their proximal operators.

The definitions follow nemos 0.2.8 so that fitted models agree with it. Coefficients
``coef`` are a pytree (an array or a dict of arrays) whose leaves have the feature axis
first, e.g. ``(n_features, n_outputs, n_classes)``. The intercept is never penalised and
is never passed here.

``validate_strength`` runs eagerly on user input; ``penalty`` and ``prox`` are pure JAX
and may be traced by ``jax.jit`` with an already validated strength.
"""

from __future__ import annotations

import abc
import math
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "Lasso",
    "Regularizer",
    "Ridge",
    "UnRegularized",
    "resolve_regularizer",
]

# nemos' solvers, then distglm's few-pass solver and the automatic choice (see distglm.solve)
_SMOOTH_SOLVERS = ("LBFGS", "GradientDescent", "ProximalGradient", "Newton", "auto")
_PROX_SOLVERS = ("ProximalGradient", "Newton", "auto")


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

    allowed_solvers: tuple[str, ...] = _PROX_SOLVERS
    default_solver: str = "ProximalGradient"
    smooth: bool = False

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


class UnRegularized(Regularizer):
    """No penalty: the penalty is 0 and the proximal operator is the identity."""

    allowed_solvers = _SMOOTH_SOLVERS
    default_solver = "LBFGS"
    smooth = True

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

    allowed_solvers = _SMOOTH_SOLVERS
    default_solver = "LBFGS"
    smooth = True

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


class GroupLasso(Regularizer):
    """Group-L1 penalty ``sum_g s_g * sqrt(|g|) * ||coef_g||_2``.

    Parameters
    ----------
    mask :
        Pytree like ``coef`` whose leaves have shape ``(n_groups, *coef_leaf.shape)`` and
        hold 1 where a coefficient belongs to a group, 0 elsewhere. Coefficients in no
        group are not penalised. ``None`` (default) puts all features of each trailing
        index (e.g. each (output, class) pair) of each leaf in its own group.

    Notes
    -----
    The strength is per group: a scalar or a 1-D array of length ``n_groups``.
    ``|g|`` is the number of coefficients in group ``g``.
    """

    def __init__(self, mask: Any = None) -> None:
        self.mask = mask

    @property
    def mask(self) -> Any:
        """The group mask, a pytree of float numpy arrays, or ``None``."""
        return self._mask

    @mask.setter
    def mask(self, mask: Any) -> None:
        self._mask = None if mask is None else self._check_mask(mask)

    @staticmethod
    def _check_mask(mask: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(mask)
        if not leaves:
            raise ValueError(f"The group mask has no arrays; got {mask!r}.")
        try:
            leaves = [np.asarray(m, dtype=float) for m in leaves]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"The group mask must be castable to float arrays; got {mask!r}."
            ) from err
        ndims = [m.ndim for m in leaves]
        if min(ndims) < 2:
            raise ValueError(
                "Group mask arrays need >= 2 dimensions (n_groups, n_features, ...); "
                f"got arrays with {ndims} dimensions."
            )
        n_groups = {m.shape[0] for m in leaves}
        if len(n_groups) != 1:
            raise ValueError(
                "All group mask arrays must have the same first dimension (n_groups); "
                f"got {sorted(n_groups)}."
            )
        if any(np.any((m != 0) & (m != 1)) for m in leaves):
            raise ValueError("Group mask entries must be 0 or 1; found other values.")
        if all(not np.any(m) for m in leaves):
            raise ValueError("The group mask is all zeros: no coefficient is in any group.")
        if any(np.any(m.sum(axis=0) > 1) for m in leaves):
            raise ValueError("The group mask puts some coefficients in more than one group.")
        return treedef.unflatten(leaves)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        del deep
        return {"mask": self._mask}

    def validate_strength(self, strength: Any) -> Any:
        """Validate ``None`` (1.0), a scalar, or a 1-D array with one entry per group."""
        if isinstance(strength, dict):
            raise TypeError(
                "GroupLasso strength is per group: a scalar or a 1-D array; "
                f"got a dict {strength!r}."
            )
        value = _validate_strength_tree(strength)
        if not _is_scalar(value) and np.ndim(value) != 1:
            raise ValueError(
                "GroupLasso strength must be a scalar or a 1-D array with one entry per "
                f"group; got shape {np.shape(value)}."
            )
        return value

    def group_mask(self, coef: Any) -> Any:
        """Group mask for ``coef``.

        Parameters
        ----------
        coef :
            Coefficient pytree, leaves of shape ``(n_features, ...)``.

        Returns
        -------
        :
            Pytree like ``coef`` of numpy float arrays of shape
            ``(n_groups, *coef_leaf.shape)``: the user mask after a shape check, or the
            default mask with one group per trailing index of each leaf, leaves in tree
            order.

        Raises
        ------
        ValueError
            If the user mask does not fit ``coef``.
        """
        leaves, treedef = jax.tree_util.tree_flatten(coef)
        if self._mask is not None:
            mask_leaves, mask_def = jax.tree_util.tree_flatten(self._mask)
            if mask_def != treedef:
                raise ValueError(
                    f"The group mask structure {mask_def} does not match the coefficient "
                    f"structure {treedef}."
                )
            for m, c in zip(mask_leaves, leaves, strict=True):
                if m.shape[1:] != tuple(c.shape):
                    raise ValueError(
                        f"Group mask of shape {m.shape} does not fit coefficients of shape "
                        f"{tuple(c.shape)}; expected (n_groups, *{tuple(c.shape)})."
                    )
            return self._mask
        sizes = [math.prod(c.shape[1:]) for c in leaves]
        total = sum(sizes)
        out, offset = [], 0
        for c, size in zip(leaves, sizes, strict=True):
            m = np.zeros((total, c.shape[0], size))
            idx = np.arange(size)
            m[offset + idx, :, idx] = 1.0
            out.append(m.reshape((total, *c.shape)))
            offset += size
        return treedef.unflatten(out)

    @staticmethod
    def _per_group(strength: Any, n_groups: int) -> Any:
        if _is_scalar(strength):
            return strength
        if tuple(np.shape(strength)) != (n_groups,):
            raise ValueError(
                f"GroupLasso strength of shape {tuple(np.shape(strength))} does not match "
                f"the {n_groups} groups of the mask; expected a scalar or shape ({n_groups},)."
            )
        return jnp.asarray(strength)

    def _group_norms(self, coef: Any) -> tuple[jax.Array, np.ndarray, Any]:
        """Euclidean norm and size of each group, and the mask (None for the default)."""
        leaves = jax.tree_util.tree_leaves(coef)
        if self._mask is None:
            norms = jnp.concatenate(
                [jnp.sqrt(jnp.sum(jnp.square(c), axis=0)).reshape(-1) for c in leaves]
            )
            sizes = np.concatenate(
                [np.full(math.prod(c.shape[1:]), c.shape[0], dtype=float) for c in leaves]
            )
            return norms, sizes, None
        masks = jax.tree_util.tree_leaves(self.group_mask(coef))
        n_groups = masks[0].shape[0]
        sq = sum(
            jnp.asarray(m.reshape(n_groups, -1), dtype=c.dtype) @ jnp.square(c).reshape(-1)
            for m, c in zip(masks, leaves, strict=True)
        )
        sizes = sum(m.reshape(n_groups, -1).sum(axis=1) for m in masks)
        return jnp.sqrt(sq), sizes, masks

    def penalty(self, coef: Any, strength: Any) -> jax.Array:
        norms, sizes, _ = self._group_norms(coef)
        s = self._per_group(strength, sizes.shape[0])
        return jnp.sum(s * jnp.sqrt(sizes) * norms)

    def prox(self, coef: Any, strength: Any, scaling: Any = 1.0) -> Any:
        norms, sizes, masks = self._group_norms(coef)
        s = self._per_group(strength, sizes.shape[0])
        threshold = scaling * s * jnp.sqrt(sizes)
        safe_norms = jnp.where(norms > 0, norms, 1.0)
        factor = jnp.where(norms > 0, jax.nn.relu(1.0 - threshold / safe_norms), 0.0)
        leaves, treedef = jax.tree_util.tree_flatten(coef)
        out = []
        if masks is None:
            offset = 0
            for c in leaves:
                size = math.prod(c.shape[1:])
                f = factor[offset : offset + size].reshape(c.shape[1:])
                out.append(c * f.astype(c.dtype))
                offset += size
        else:
            for c, m in zip(leaves, masks, strict=True):
                m2 = m.reshape(m.shape[0], -1)
                grouped = jnp.asarray(m2.sum(axis=0) > 0).reshape(c.shape)
                leaf_factor = (factor.astype(c.dtype) @ jnp.asarray(m2, dtype=c.dtype)).reshape(
                    c.shape
                )
                out.append(jnp.where(grouped, c * leaf_factor, c))
        return treedef.unflatten(out)


# ---------------------------------------------------------------------------- resolution
_BY_NAME: MappingProxyType[str, type[Regularizer]] = MappingProxyType(
    {
        "UnRegularized": UnRegularized,
        "Ridge": Ridge,
        "Lasso": Lasso,
        "ElasticNet": ElasticNet,
        "GroupLasso": GroupLasso,
    }
)


def resolve_regularizer(reg: Regularizer | str | None) -> Regularizer:
    """Return a :class:`Regularizer` for an instance, a class name, or ``None``.

    Parameters
    ----------
    reg :
        A :class:`Regularizer` (returned as is), one of ``"UnRegularized"``, ``"Ridge"``,
        ``"Lasso"``, ``"ElasticNet"``, ``"GroupLasso"``, or ``None`` (no penalty).

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For any other type.
    """
    if reg is None:
        return UnRegularized()
    if isinstance(reg, Regularizer):
        return reg
    if isinstance(reg, str):
        if reg not in _BY_NAME:
            raise ValueError(f"Unknown regularizer {reg!r}; expected one of {list(_BY_NAME)}.")
        return _BY_NAME[reg]()
    raise TypeError(
        f"Regularizer must be a Regularizer instance, one of {list(_BY_NAME)} or None; got {reg!r}."
    )
