"""The group Lasso: one L2 norm per group of coefficients."""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import Regularizer, _is_scalar, _validate_strength_tree

__all__ = ["GroupLasso"]


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

    sparse = True

    def __init__(self, mask: Any = None) -> None:
        self.mask = mask

    def check_coefficients(self, coef: Any) -> None:
        """Check the mask fits ``coef``; warn when an array design has no mask (each
        (output, class) column of coefficients is then one group of all features)."""
        if self._mask is None and not isinstance(coef, dict):
            warnings.warn(
                "GroupLasso has no mask: each (output, class) column of coef is one group "
                "of all features. Pass GroupLasso(mask=...) to group features.",
                UserWarning,
                stacklevel=4,
            )
        self.group_mask(coef)

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

    def zero_strength(self, grad: np.ndarray, strength: Any) -> float | None:
        """``max_g ||grad_g||_2 / sqrt(|g|)``: the dual norm of the group penalty."""
        del strength
        norms, sizes, _ = self._group_norms(jnp.asarray(grad))
        return float(np.max(np.asarray(norms) / np.sqrt(sizes)))

    def per_output_strength(self, values: np.ndarray, coef_shape: tuple[int, ...]) -> Any:
        """One strength per group: the default groups are (output, class) pairs in order."""
        if self._mask is not None:
            raise NotImplementedError(
                "Per-output strengths need GroupLasso's default groups (one per output and "
                "class); this one has a user mask. Pass per_output=False."
            )
        return np.repeat(np.asarray(values, np.float64), coef_shape[2])

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
                out.append(c * f.astype(c.dtype)[None])
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
