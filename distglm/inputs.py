"""Validation and shaping of in-memory inputs: design layout, labels, NaN rows, parameters.

Nothing here does maths on the model; it turns what a user passes (arrays, dicts of arrays,
``(coef, intercept)`` tuples) into the canonical block layout the solvers use, and back.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from .exceptions import StructureMismatchError
from .pynapple_io import is_feature_pytree

__all__ = [
    "CoefView",
    "DesignLayout",
    "as_label_array",
    "check_dense_real",
    "design_and_codes",
    "kept_rows",
    "params_to_block",
    "theta_from_blocks",
]


def _to_numpy(x, what):
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - numpy raises many types here
        raise TypeError(
            f"{what} could not be converted to an array; got {type(x).__name__}."
        ) from e


def _shape(a, name: str) -> tuple:
    """The shape of an array-like, converting objects that only offer ``__array__``."""
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(_to_numpy(a, name))


def check_dense_real(a, name: str = "X") -> None:
    """Refuse sparse matrices and complex values in a design, naming the part and what came."""
    if scipy.sparse.issparse(a):
        raise TypeError(
            f"{name} is a sparse {type(a).__name__}; sparse input is not supported: pass a "
            f"dense array ({name}.toarray())."
        )
    dtype = getattr(a, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} must hold real numbers; got dtype {dtype}."
        )


def _mismatch(what):
    """The opening of a structure error, in the words nemos uses for coef and for masks."""
    if what == "coef":
        return "X and coef have mismatched structure"
    return f"{what} and X must have the same structure"


@dataclasses.dataclass(frozen=True)
class DesignLayout:
    """How a design (an array or a dict of 2-D arrays) maps onto one feature axis.

    Attributes
    ----------
    keys : tuple of str, or None
        Dict keys in the order their columns are stacked (sorted, as JAX orders dict leaves);
        None for a plain array.
    widths : tuple of int
        Number of features of each part.
    """

    keys: tuple | None
    widths: tuple

    @property
    def n_features(self) -> int:
        return int(sum(self.widths))

    @classmethod
    def from_design(cls, X) -> DesignLayout:
        """Infer the layout of ``X`` and check that it is 2-D with one sample axis."""
        check_dense_real(X)
        if isinstance(X, dict):
            if not X:
                raise ValueError("X is an empty dict; it needs at least one 2-D array.")
            keys = tuple(sorted(X))
            arrays = [X[k] for k in keys]
            names = [f"X[{k!r}]" for k in keys]
        else:
            keys, arrays, names = None, [X], ["X"]
        widths, n = [], None
        for name, a in zip(names, arrays, strict=True):
            check_dense_real(a, name)
            shape = _shape(a, name)
            if len(shape) != 2:
                raise ValueError(
                    f"X must be 2-dimensional (n_samples, n_features): {name} has shape {shape}. "
                    "Reshape your data: X[:, None] for one feature, X[None] for one sample."
                )
            if n is not None and shape[0] != n:
                raise ValueError(
                    f"All arrays of X must have the same number of samples; {name} has "
                    f"{shape[0]}, the first has {n}."
                )
            n = shape[0]
            widths.append(int(shape[1]))
        if sum(widths) == 0:
            raise ValueError(
                f"X has 0 feature(s) (shape=({n}, 0)) while a minimum of 1 is required."
            )
        return cls(keys, tuple(widths))

    @classmethod
    def from_coef(cls, coef) -> DesignLayout:
        """The layout a coefficient (an array or a dict of arrays, feature axis first) implies."""
        if isinstance(coef, dict):
            keys = tuple(sorted(coef))
            return cls(keys, tuple(int(np.shape(coef[k])[0]) for k in keys))
        return cls(None, (int(np.shape(coef)[0]),))

    def n_samples(self, X) -> int:
        leaf = X[self.keys[0]] if self.keys is not None else X
        return int(_shape(leaf, "X")[0])

    def check_same(self, X, fitted: DesignLayout, what="X") -> None:
        """Raise if ``X``'s structure or widths differ from the fitted layout."""
        other = DesignLayout.from_design(X)
        if other.keys != fitted.keys:

            def describe(keys):
                return "an array" if keys is None else f"a dict with keys {list(keys)}"

            raise StructureMismatchError(
                f"{what} must have the same structure as the data the model was fitted on: "
                f"expected {describe(fitted.keys)}, got {describe(other.keys)}."
            )
        if other.widths != fitted.widths:
            raise ValueError(
                f"Inconsistent number of features: the model has {fitted.n_features} "
                f"({list(fitted.widths)}), {what} has {other.n_features} ({list(other.widths)})."
            )

    def stack(self, X, dtype) -> np.ndarray:
        """The design as one ``(n_samples, n_features)`` array."""
        if self.keys is None:
            return _to_numpy(X, "X").astype(dtype, copy=False)
        return np.concatenate([_to_numpy(X[k], f"X[{k!r}]").astype(dtype) for k in self.keys], 1)

    def split(self, block):
        """Split a ``(n_features, ...)`` array into this layout's structure (array or dict)."""
        if self.keys is None:
            return block
        out, start = {}, 0
        for k, w in zip(self.keys, self.widths, strict=True):
            out[k] = block[start : start + w]
            start += w
        return out

    def join(self, tree, what="coef"):
        """Inverse of :meth:`split`: stack a structured coefficient into one block."""
        if self.keys is None:
            if isinstance(tree, dict):
                raise StructureMismatchError(
                    f"{_mismatch(what)}: {what} is a dict but X is an array; give {what} as an "
                    "array."
                )
            return tree
        if not isinstance(tree, dict) or tuple(sorted(tree)) != self.keys:
            got = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
            raise StructureMismatchError(
                f"{_mismatch(what)}: {what} must be a dict with the keys of X "
                f"{list(self.keys)}; got {got}."
            )
        return jnp.concatenate([jnp.asarray(tree[k]) for k in self.keys], axis=0)


@dataclasses.dataclass(frozen=True)
class CoefView:
    """Callable converting the solver's coefficient block to the user's structure (or back).

    ``view(block)`` maps a (n_features, n_outputs, n_classes) block to an array or dict like
    X's, without the output axis for a single-output model; ``view.inverse`` maps back. Views
    are hashable and compared by value (bound methods are compared by identity), so they can
    be static arguments of jitted functions and equal views share one compilation.

    Attributes
    ----------
    layout : DesignLayout
    population : bool
        False for a single-output model, whose coefficients have no output axis.
    to_block : bool
        True for the inverse direction (user structure -> block).
    """

    layout: DesignLayout
    population: bool
    to_block: bool = False

    @property
    def inverse(self) -> CoefView:
        return dataclasses.replace(self, to_block=not self.to_block)

    def __call__(self, x):
        if self.to_block:
            block = jnp.asarray(self.layout.join(x))
            return block if self.population else block[:, None, :]
        if not self.population:
            x = x[:, 0, :]
        return self.layout.split(x)


def kept_rows(X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """The rows a fit or a score uses: finite in ``X`` and, for float labels, in ``y``.

    The one rule for dropped rows: in-memory fits and scores, the statistics pass, streamed
    re-reads and the lazy scores all use it.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_outputs), optional

    Returns
    -------
    bool array of shape (n_samples,)
    """
    finite = np.isfinite(X)
    finite_y = (
        np.isfinite(y.reshape(y.shape[0], -1)) if y is not None and y.dtype.kind == "f" else None
    )
    # the common case, every value finite, found without a per-row reduction
    if finite.all() and (finite_y is None or finite_y.all()):
        return np.ones(X.shape[0], dtype=bool)
    ok = finite.all(axis=1)
    if finite_y is not None:
        ok &= finite_y.all(axis=1)
    return ok


def as_label_array(y, n_samples: int | None, population: bool) -> np.ndarray:
    """Labels as a numpy array of shape (n_samples,) or (n_samples, n_outputs), checked."""
    if isinstance(y, jax.Array):
        y = np.asarray(y)
    y = _to_numpy(y, "y")
    want = 2 if population else 1
    if y.ndim != want:
        shape = "(n_samples, n_outputs)" if population else "(n_samples,)"
        raise ValueError(f"y must be {want}-dimensional {shape}; got shape {y.shape}.")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(
            f"X and y must have the same number of samples; X has {n_samples}, y has {y.shape[0]}."
        )
    return y


def params_to_block(params, layout: DesignLayout, n_classes: int, population: bool, n_outputs=None):
    """Validate user parameters ``(coef, intercept)`` and return them as blocks.

    Parameters
    ----------
    params : (coef, intercept)
        ``coef`` like X's structure with leaves (n_features, [n_outputs,] n_classes);
        ``intercept`` of shape ([n_outputs,] n_classes).
    layout : DesignLayout
    n_classes : int
    population : bool
        Whether the parameters have an output axis.
    n_outputs : int, optional
        The labels' output count, checked when given.

    Returns
    -------
    block : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    """
    coef, intercept = _coef_and_intercept(params)
    c = n_classes
    if layout.keys is None and (isinstance(coef, dict) or is_feature_pytree(coef)):
        raise StructureMismatchError(
            "X and coef have mismatched structure: X is an array, so coef must be an array "
            f"too; got {type(coef).__name__}."
        )
    if is_feature_pytree(coef):
        coef = dict(coef.data)
    block = _param_array(layout.join(coef), "coef")
    intercept = _param_array(intercept, "intercept")
    want_ndim = 3 if population else 2
    shape_txt = "(n_features, n_outputs, n_classes)" if population else "(n_features, n_classes)"
    icpt_txt = "(n_outputs, n_classes)" if population else "(n_classes,)"
    if block.ndim != want_ndim or intercept.ndim != want_ndim - 1:
        raise ValueError(
            f"Invalid parameter dimensionality: coef must be an array (or a dict of arrays "
            f"like X) of shape {shape_txt} and intercept of shape {icpt_txt}; got "
            f"{tuple(block.shape)} and {tuple(intercept.shape)}."
        )
    if block.shape[-1] != c or intercept.shape[-1] != c:
        raise ValueError(
            f"The last axis of coef and intercept must be n_classes={c}; got coef "
            f"{tuple(block.shape)} and intercept {tuple(intercept.shape)}."
        )
    if block.shape[0] != layout.n_features:
        raise ValueError(
            f"Inconsistent number of features: coef has {block.shape[0]}, X has "
            f"{layout.n_features}."
        )
    if not population:
        return block[:, None, :], intercept[None, :]
    if block.shape[1] != intercept.shape[0]:
        raise ValueError(
            f"coef has {block.shape[1]} outputs but intercept has {intercept.shape[0]}."
        )
    if n_outputs is not None and block.shape[1] != n_outputs:
        raise ValueError(
            f"Inconsistent number of outputs: coef has {block.shape[1]}, y has {n_outputs}."
        )
    return block, intercept


def _coef_and_intercept(params):
    """``params`` split into ``(coef, intercept)``, refused with nemos' exception types.

    As in nemos, the length is checked first: anything without two elements (a number, a
    tuple of three) is a ValueError; two elements in something other than a tuple or list (a
    dict, a set, an array of two rows) are a TypeError.
    """
    try:
        length = len(params)
    except TypeError:
        length = None
    if length != 2:
        got = type(params).__name__ + ("" if length is None else f" of length {length}")
        raise ValueError(f"Params must have length two: a (coef, intercept) pair; got {got}.")
    if not isinstance(params, (tuple, list)):
        raise TypeError(
            "GLM params must be a tuple/list of length two, a (coef, intercept) pair; got "
            f"{type(params).__name__}."
        )
    return params


def _param_array(x, what):
    """``x`` as a JAX array; a value that is not numeric array-like is a TypeError."""
    if x is None:
        raise ValueError(f"Invalid parameter dimensionality: {what} must be an array; got None.")
    try:
        arr = jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"Failed to convert parameters to JAX arrays: {what} must be a numeric array-like; "
            f"got {type(x).__name__} ({err})."
        ) from err
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_):
        raise TypeError(
            f"Failed to convert parameters to JAX arrays: {what} must be numeric; got dtype "
            f"{arr.dtype}."
        )
    return arr


def theta_from_blocks(block, intercept) -> np.ndarray:
    """The solvers' float64 parameters: coefficient rows, then the intercept row."""
    return np.concatenate(
        [np.asarray(block, np.float64), np.asarray(intercept, np.float64)[None]], axis=0
    )


def design_and_codes(X, y, encode, population: bool, method: str, dtype):
    """An in-memory dataset as the kernels take it, rows with NaN/Inf dropped.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), or a dict of 2-D arrays
    y : array of shape (n_samples,) or (n_samples, n_outputs)
    encode : callable(labels) -> int codes
        The label encoder's ``encode``.
    population : bool
        Whether ``y`` is 2-D.
    method : str
        Named in the error when no row is left.
    dtype : numpy dtype of the stacked design

    Returns
    -------
    layout : DesignLayout
    X : array of shape (n_kept, n_features)
    codes : int32 array of shape (n_kept, n_outputs)
    """
    layout = DesignLayout.from_design(X)
    Xs = layout.stack(X, dtype)
    y = as_label_array(y, Xs.shape[0], population)
    ok = kept_rows(Xs, y)
    if not ok.any():
        raise ValueError(
            f"{method}: every sample has a NaN or Inf in X or y; nothing is left to use."
        )
    if not ok.all():
        Xs, y = Xs[ok], y[ok]
    codes = np.asarray(encode(y), dtype=np.int32)
    return layout, Xs, codes if population else codes[:, None]
