"""Feature masks: which coefficients a population model uses (1) or holds at exactly 0 (0).

A mask is given as an array of ``coef_``'s shape, a dict like X's, or an ``xarray.DataArray``
with ``feature`` and ``output`` (and optionally ``class``) dims, aligned to the data by its
labels. :func:`check_feature_mask` validates what a user sets; :func:`mask_block` turns it into
the solvers' ``(n_features, n_outputs, n_classes)`` block for one dataset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .exceptions import StructureMismatchError
from .inputs import DesignLayout

__all__ = ["check_feature_mask", "mask_block"]


def _check_binary(values):
    if np.any((values != 0) & (values != 1)):
        bad = np.unique(values[(values != 0) & (values != 1)])[:5].tolist()
        raise ValueError(f"'feature_mask' must contain only 0s and 1s; found {bad}.")


def check_feature_mask(mask):
    """Validate a feature mask as set on the estimator; return it in canonical form.

    Parameters
    ----------
    mask : None, array of shape (n_features, n_outputs, n_classes), dict of such arrays, or
        xarray.DataArray with dims ``feature``, ``output`` (and optionally ``class``)

    Returns
    -------
    None, a float JAX array, a dict of them, or the DataArray

    Raises
    ------
    ValueError
        If a value is not 0 or 1, or a DataArray's dims are wrong. Shapes are checked
        against the data at fit (:func:`mask_block`), where nemos checks them.
    """
    if mask is None:
        return None
    if isinstance(mask, xr.DataArray):
        missing = {"feature", "output"} - set(mask.dims)
        extra = set(mask.dims) - {"feature", "output", "class"}
        if missing or extra:
            raise ValueError(
                "A DataArray feature_mask needs dims 'feature' and 'output' (and optionally "
                f"'class'); got dims {mask.dims}."
            )
        _check_binary(np.asarray(mask.values, dtype=float))
        return mask
    for m in jax.tree_util.tree_leaves(mask):
        m = np.asarray(m, dtype=float)
        _check_binary(m)
    if isinstance(mask, dict):
        return {k: jnp.asarray(v, float) for k, v in mask.items()}
    return jnp.asarray(mask, float)


def mask_block(mask, layout: DesignLayout, n_outputs: int, n_classes: int, labels=None):
    """The mask as the solvers' block, checked against the data.

    Parameters
    ----------
    mask : the output of :func:`check_feature_mask`
    layout : DesignLayout
        The design's structure.
    n_outputs, n_classes : int
    labels : (features, outputs), optional
        The data's feature and output labels (either may be None), by which a DataArray mask
        is aligned.

    Returns
    -------
    float array of shape (n_features, n_outputs, n_classes), or None
    """
    if mask is None:
        return None
    if isinstance(mask, xr.DataArray):
        return _aligned(mask, layout, n_outputs, n_classes, labels)
    if (layout.keys is None) != (not isinstance(mask, dict)):
        raise StructureMismatchError(
            "feature_mask and X must have the same structure: "
            f"feature_mask is {'a dict' if isinstance(mask, dict) else 'an array'}, "
            f"X is {'a dict' if layout.keys is not None else 'an array'}."
        )
    block = np.asarray(layout.join(mask, "feature_mask"))
    want = (layout.n_features, n_outputs, n_classes)
    if block.shape != want:
        raise ValueError(
            "Inconsistent feature mask shape: feature_mask must match coef's shape "
            "(n_features, n_outputs, n_classes) = "
            f"{want}; got {block.shape}."
        )
    return block


def _aligned(mask, layout, n_outputs, n_classes, labels):
    """A DataArray mask selected by the data's feature and output labels."""
    features, outputs = labels if labels is not None else (None, None)
    for dim, want, size in (
        ("feature", features, layout.n_features),
        ("output", outputs, n_outputs),
    ):
        if want is None or dim not in mask.coords:
            if mask.sizes[dim] != size:
                raise ValueError(
                    f"feature_mask has {mask.sizes[dim]} entries along {dim!r} but the data "
                    f"has {size} (and no {dim} labels to align them by)."
                )
            continue
        have = set(np.asarray(mask.coords[dim].values).tolist())
        absent = [v for v in np.asarray(want).tolist() if v not in have]
        if absent:
            raise ValueError(f"feature_mask has no {dim} {absent[:8]} (the data's {dim} labels).")
        mask = mask.sel({dim: np.asarray(want)})
    order = ["feature", "output"] + (["class"] if "class" in mask.dims else [])
    values = np.asarray(mask.transpose(*order).values, dtype=float)
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], n_classes, axis=2)
    want_shape = (layout.n_features, n_outputs, n_classes)
    if values.shape != want_shape:
        raise ValueError(f"feature_mask must match coef's shape {want_shape}; got {values.shape}.")
    return values
