"""Regularization paths: warm-started fits from strong to weak penalties.

A path fits one estimator at a decreasing sequence of strengths, each fit starting from the
previous one's coefficients, so the later fits take few passes. The default grid starts, for
the sparse penalties (Lasso, ElasticNet, GroupLasso), at the smallest strength that sets every
coefficient to zero: the dual norm of the data term's gradient at the intercept-only model, as
glmnet computes it. Smooth penalties (Ridge) never zero a coefficient; their grid starts at
:data:`RIDGE_START` times the largest absolute gradient entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from .inputs import as_label_array
from .solve import InMemoryData
from .spec import kernel_dtype

__all__ = [
    "DEFAULT_DECADES",
    "DEFAULT_N_STRENGTHS",
    "RIDGE_START",
    "PathFits",
    "default_strengths",
    "explicit_strengths",
    "path_fits",
    "regularization_path",
    "strengths_from_gradient",
    "warm_start",
]

#: strengths of the default grid, and the decades it spans
DEFAULT_N_STRENGTHS = 10
DEFAULT_DECADES = 4
#: a smooth penalty's grid starts at this multiple of the largest absolute gradient entry
RIDGE_START = 10.0


def _labels(model, X, y):
    """``y`` as an array of shape (n,) or (n, n_outputs), and the model with its classes."""
    y_arr = as_label_array(y, len(X), model._population)
    finite = y_arr[np.isfinite(y_arr)] if y_arr.dtype.kind == "f" else y_arr
    model.set_classes(finite)
    return y_arr


def _intercept_only_gradient(model, X, y) -> np.ndarray:
    """Gradient of the data term at the intercept-only model, (n_features, n_outputs, C)."""
    probe = model.__sklearn_clone__()
    y_arr = _labels(probe, X, y)
    layout, Xs, codes = probe._prepare(X, y_arr, "fit")
    theta0 = probe._initial(layout, codes)
    data = InMemoryData(Xs, codes, probe.n_classes, dtype=kernel_dtype())
    _, grad = data.value_and_grad(theta0)
    return np.asarray(grad)[:-1]


def default_strengths(model, X, y, n_strengths: int = DEFAULT_N_STRENGTHS) -> np.ndarray:
    """The default grid: ``n_strengths`` strengths log-spaced over 4 decades, decreasing.

    Parameters
    ----------
    model : ClassifierGLM or ClassifierPopulationGLM
        Its regularizer (and, for ElasticNet, its ratio) sets the grid's start.
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_outputs)
    n_strengths : int

    Returns
    -------
    float64 array of shape (n_strengths,)

    Raises
    ------
    ValueError
        For a penalty without a strength (UnRegularized).
    """
    _check_has_strength(model)
    return strengths_from_gradient(model, _intercept_only_gradient(model, X, y), n_strengths)


def _check_has_strength(model) -> None:
    reg = model.regularizer
    if not reg.has_strength:
        raise ValueError(
            f"{type(reg).__name__} has no strength to choose; use a penalised regularizer "
            "(Ridge, Lasso, ElasticNet, GroupLasso)."
        )


def strengths_from_gradient(model, grad, n_strengths: int = DEFAULT_N_STRENGTHS) -> np.ndarray:
    """The default grid from the data term's gradient at the intercept-only model.

    Parameters
    ----------
    model : ClassifierGLM or ClassifierPopulationGLM
    grad : array of shape (n_features, n_outputs, n_classes)
        The coefficient rows of the gradient (a distributed search takes it in one pass).
    n_strengths : int

    Returns
    -------
    float64 array of shape (n_strengths,), decreasing.

    Raises
    ------
    ValueError
        For a penalty without a strength (UnRegularized), or ``n_strengths < 1``.
    """
    _check_has_strength(model)
    reg = model.regularizer
    if int(n_strengths) < 1:
        raise ValueError(f"Expected at least one strength; got n_strengths={n_strengths!r}.")
    grad = np.asarray(grad)
    start = reg.zero_strength(grad, model.regularizer_strength)
    if start is None:
        start = RIDGE_START * float(np.max(np.abs(grad)))
    start = max(start, np.finfo(np.float64).tiny)
    return np.geomspace(start, start * 10.0**-DEFAULT_DECADES, int(n_strengths))


def explicit_strengths(strengths) -> np.ndarray | None:
    """``strengths`` as a decreasing float64 array, or None when a default grid is asked for
    (None or an int)."""
    if strengths is None or (
        isinstance(strengths, int | np.integer) and not isinstance(strengths, bool)
    ):
        return None
    values = np.asarray(strengths, np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"strengths must be a non-empty list of finite values >= 0, or an int; got "
            f"{strengths!r}."
        )
    return np.sort(values)[::-1]


def _resolve_strengths(model, X, y, strengths) -> np.ndarray:
    values = explicit_strengths(strengths)
    if values is not None:
        return values
    return default_strengths(model, X, y, DEFAULT_N_STRENGTHS if strengths is None else strengths)


@dataclasses.dataclass(frozen=True)
class PathFits:
    """A fitted path.

    Attributes
    ----------
    strengths : float64 array of shape (n_strengths,)
        Decreasing.
    models : tuple of fitted estimators, one per strength
    dataset : xarray.Dataset
        See :func:`regularization_path`.
    """

    strengths: np.ndarray
    models: tuple[Any, ...]
    dataset: xr.Dataset

    @property
    def n_passes(self) -> int:
        return int(self.dataset["n_passes"].sum())


def _coef_block(model) -> tuple[np.ndarray, np.ndarray]:
    coef, intercept = model.coef_, model.intercept_
    if isinstance(coef, dict):
        raise TypeError("A regularization path takes X as one array; got a dict design.")
    coef, intercept = np.asarray(coef), np.asarray(intercept)
    if not model._population:
        coef, intercept = coef[:, None, :], intercept[None, :]
    return coef, intercept


def path_fits(model, X, y, strengths=None) -> PathFits:
    """Fit ``model`` (cloned) at every strength, strong to weak, each warm-started.

    Parameters are as in :func:`regularization_path`.

    Returns
    -------
    PathFits
    """
    values = _resolve_strengths(model, X, y, strengths)
    models, coefs, intercepts, objectives, passes = [], [], [], [], []
    init = None
    for value in values:
        m = model.__sklearn_clone__()
        m.regularizer_strength = m.regularizer.with_strength(m.regularizer_strength, value)
        m.fit(X, y, init_params=init)
        init = (m.coef_, m.intercept_)
        coef, intercept = _coef_block(m)
        history = m.fit_history_
        models.append(m)
        coefs.append(coef)
        intercepts.append(intercept)
        objectives.append(history[-1]["objective"] if history else np.nan)
        passes.append(m.n_passes_)
    outputs = models[0].outputs_ if model._population else np.arange(1)
    ds = xr.Dataset(
        {
            "coef": (("strength", "feature", "output", "class"), np.stack(coefs)),
            "intercept": (("strength", "output", "class"), np.stack(intercepts)),
            "objective": ("strength", np.asarray(objectives, np.float64)),
            "n_passes": ("strength", np.asarray(passes, np.int64)),
        },
        coords={
            "strength": values,
            "output": np.asarray(outputs),
            "class": np.asarray(models[0].classes_),
        },
    )
    return PathFits(values, tuple(models), ds)


def regularization_path(model, X, y, strengths: Sequence[float] | int | None = None) -> xr.Dataset:
    """The warm-started regularization path of ``model`` on in-memory data.

    ``model`` is not changed: every strength is fitted on a clone, from the previous strength's
    coefficients (the first from the model's default start).

    Parameters
    ----------
    model : ClassifierGLM or ClassifierPopulationGLM
        Its regularizer, solver and solver_kwargs are used; its strength is replaced along the
        path (ElasticNet keeps its ratio).
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_outputs)
    strengths : sequence of float, int or None
        The strengths (fitted in decreasing order), or the size of the default grid
        (:func:`default_strengths`; None: 10 strengths over 4 decades).

    Returns
    -------
    xarray.Dataset
        ``coef`` (strength, feature, output, class), ``intercept`` (strength, output, class),
        ``objective`` (strength; the penalised objective at the end of each fit) and
        ``n_passes`` (strength; passes over the data of each fit). A single-output model has
        an output axis of length 1.
    """
    return path_fits(model, X, y, strengths).dataset


def warm_start(ds: xr.Dataset, chosen: np.ndarray, population: bool):
    """Per-output starting parameters from a path: output ``k`` at strength index ``chosen[k]``.

    Returns
    -------
    (coef, intercept) in the estimator's shapes.
    """
    k = np.arange(ds.sizes["output"])
    coef = np.asarray(ds["coef"].values)[chosen, :, k, :].transpose(1, 0, 2)
    intercept = np.asarray(ds["intercept"].values)[chosen, k, :]
    if population:
        return coef, intercept
    return coef[:, 0, :], intercept[0]
