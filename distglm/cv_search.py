"""The in-memory search of :mod:`distglm.cv`: every fold's path in the same passes.

The folds are stacked as extra outputs of one population fit: column ``f * K + k`` is output
``k`` weighted by fold ``f``'s training rows (``f = n_folds``: every row, the full-data path),
so one pass over the rows advances every (fold, output) pair, and the objective (a sum over
columns of each column's mean NLL plus the penalty) separates into the folds' own fits. The
path runs from strong to weak, each strength warm-started from the last.

With per-output Newton (the default, :func:`newton_search`) a strength costs few passes:

- the derivatives Newton holds at the end of one strength are the data term's at the start of
  the next, so the next strength's first pass already evaluates a Newton step
  (:func:`~distglm.solve.carry.carry_newton_state`);
- converged columns (output, fold pairs) drop out of later passes;
- every pass also sums each column's loss over its fold's held-out rows at the point where it
  takes the derivatives (:class:`HeldOutData`), so the held-out scores at the final
  parameters come with the fit's own passes, not one more pass per strength.

Other solvers (:func:`solver_search`) run :func:`~distglm.fit.run_fit` per strength, with the
second moment taken once, and one scoring pass per strength.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax.numpy as jnp
import numpy as np
import xarray as xr

from .fit import initial_theta, run_fit
from .inputs import kept_rows
from .kernels.compiled import VALUE
from .solve import InMemoryData, PenalizedObjective, minimize, warn_not_converged
from .solve.carry import carry_newton_state
from .solve.choose import AUTO_NEWTON_MAX_BYTES, make_solver
from .solve.heldout import HeldOutRecord
from .spec import kernel_dtype

__all__ = [
    "HeldOutData",
    "SearchResult",
    "newton_path",
    "newton_search",
    "search_result",
    "solver_search",
    "stack_folds",
]


@dataclasses.dataclass(frozen=True)
class Stacked:
    """Every fold's training problem and the full-data problem as stacked outputs.

    Attributes
    ----------
    layout : DesignLayout
    X : array of shape (n_kept, n_features)
        Rows with NaN dropped.
    codes : int array of shape (n_kept, (n_folds + 1) * n_outputs)
    train, held : arrays of shape (n_kept, (n_folds + 1) * n_outputs)
        Fit weights (fold ``f``'s training rows; every row for the last block) and scoring
        weights (fold ``f``'s held-out rows; every row for the last block).
    n_folds, n_outputs : int
    """

    layout: object
    X: np.ndarray
    codes: np.ndarray
    train: np.ndarray
    held: np.ndarray
    n_folds: int
    n_outputs: int

    @property
    def n_held(self) -> np.ndarray:
        """Rows scored per column, shape (n_folds + 1, n_outputs)."""
        return self.held.sum(axis=0).reshape(self.n_folds + 1, self.n_outputs)


def stack_folds(model, X, y_arr, fold_index, n_folds) -> Stacked:
    """The stacked problem of ``model`` (a population estimator, classes set here).

    Parameters
    ----------
    model : ClassifierPopulationGLM
    X : array of shape (n_samples, n_features)
    y_arr : array of shape (n_samples,) or (n_samples, n_outputs)
    fold_index : int array of shape (n_samples,)
        The fold holding out each row (-1: none).
    n_folds : int
    """
    y_arr = np.asarray(y_arr)
    model.set_classes(y_arr[np.isfinite(y_arr)] if y_arr.dtype.kind == "f" else y_arr)
    layout, Xs, codes = model._prepare(X, y_arr if y_arr.ndim == 2 else y_arr[:, None], "fit")
    index = fold_index[kept_rows(X.astype(Xs.dtype), y_arr)]
    K, dtype = codes.shape[1], kernel_dtype()
    blocks = np.arange(n_folds + 1)  # the last block: every row (never held out)
    held = np.repeat(index[:, None] == blocks[None, :], K, axis=1)
    train = (~held).astype(dtype)
    held[:, n_folds * K :] = True  # the full-data block's loss, scored with the held-out sums
    stacked = np.tile(codes, (1, n_folds + 1))
    return Stacked(layout, Xs, stacked, train, held.astype(dtype), n_folds, K)


class HeldOutData(InMemoryData):
    """The stacked fit's data term, which also sums the loss over a second set of weights.

    Every Newton pass returns, besides the fit's sums, each column's loss summed over its
    ``held`` weights at the point where the derivatives are taken (the same read of the rows),
    kept in :attr:`evaluated` (a :class:`~distglm.solve.heldout.HeldOutRecord`). The second
    moment is taken once and kept.

    Parameters
    ----------
    X, y_codes, n_classes, weights, dtype : see :class:`~distglm.solve.InMemoryData`
    held : array of shape (n_samples, n_outputs)
        The scoring weights.
    """

    def __init__(self, X, y_codes, n_classes, weights, held, dtype):
        super().__init__(X, y_codes, n_classes, weights=weights, dtype=dtype)
        held = np.asarray(held, dtype)
        pad = self._w.shape[0] - held.shape[0]
        held = np.concatenate([held, np.zeros((pad, held.shape[1]), held.dtype)])
        self._held = jnp.asarray(held)
        self._both = jnp.stack([self._w, self._held], axis=1)
        self._gram = None
        self.evaluated = HeldOutRecord()

    def newton_sums(self, theta, direction, outputs, steps, t_eval, hess_stride):
        sums = self._newton_pass(self._both, theta, direction, outputs, steps, t_eval, hess_stride)
        self.evaluated.add(outputs, theta, direction, t_eval, sums[6])
        return self._newton_means(sums, outputs)

    def held_sums(self, theta):
        """Held-out loss sums at ``theta`` for every column: one pass over the rows."""
        coef, intercept = self._params(theta)
        return np.asarray(
            VALUE((coef, intercept), self._X, self._y, self._held, block_rows=self.block_rows),
            np.float64,
        )

    def gram(self):
        if self._gram is None:
            self._gram = super().gram()
        return self._gram


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search returns.

    Attributes
    ----------
    score : float64 array of shape (n_strengths, n_folds, n_outputs)
        Held-out mean log-likelihood.
    n_held : int64 array of shape (n_folds, n_outputs)
    path : xarray.Dataset
        The full-data path, as :func:`distglm.regularization_path` gives it; ``n_passes`` per
        strength are the stacked fit's (shared by every fold), its scoring included.
    """

    score: np.ndarray
    n_held: np.ndarray
    path: xr.Dataset

    @property
    def n_passes(self) -> int:
        return int(self.path["n_passes"].sum())


def newton_fits(solver_name, model, problem: Stacked) -> bool:
    """Whether :func:`newton_search` runs: for ``solver_name`` None (the search's default),
    ``"auto"`` or ``"Newton"``, a per-output penalty and Hessian blocks that fit
    :data:`~distglm.solve.choose.AUTO_NEWTON_MAX_BYTES`."""
    if solver_name not in (None, "auto", "Newton"):
        return False
    n_columns = problem.codes.shape[1]
    P1 = problem.layout.n_features + 1
    shape = (P1, n_columns, model.n_classes)
    spec = model._spec(problem.layout, n_columns)
    fits = n_columns * (P1 * model.n_classes) ** 2 * 8 <= AUTO_NEWTON_MAX_BYTES
    return fits and spec.penalty.is_separable(shape)


def _at(model, value):
    step = model.__sklearn_clone__()
    step.regularizer_strength = step.regularizer.with_strength(step.regularizer_strength, value)
    return step


def _spec(model, value, layout, n_cols):
    """The model spec at strength ``value`` (its warnings, e.g. a GroupLasso without a mask,
    were given once by :func:`newton_fits` or the first strength)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _at(model, value)._spec(layout, n_cols)


def _data(model, problem: Stacked) -> HeldOutData:
    return HeldOutData(
        problem.X, problem.codes, model.n_classes, problem.train, problem.held, kernel_dtype()
    )


def _start(problem: Stacked, n_classes: int) -> np.ndarray:
    codes, w = problem.codes, problem.train
    counts = np.stack([np.bincount(codes[:, j], w[:, j], n_classes) for j in range(w.shape[1])])
    return initial_theta(problem.layout.n_features, counts, counts.sum(axis=1))


def newton_search(model, problem: Stacked, strengths) -> SearchResult:
    """The path by per-output Newton, its state carried from strength to strength."""
    data = _data(model, problem)
    theta = _start(problem, model.n_classes)
    held, passes, thetas = newton_path(model, data, problem.layout, theta, strengths)
    F, K = problem.n_folds, problem.n_outputs
    return search_result(model, strengths, problem.n_held, (F, K), held, passes, thetas)


def newton_path(model, data, layout, theta, strengths):
    """Per-output Newton along ``strengths`` (decreasing) on a stacked data term ``data``
    (one with an ``evaluated`` :class:`~distglm.solve.heldout.HeldOutRecord` and
    ``held_sums(theta)``), from ``theta``, its state carried from strength to strength.

    Returns
    -------
    held : list of float64 arrays of shape (n_columns,)
        Per strength, the held-out loss sums at the final parameters.
    passes : list of int
        Per strength, the passes it took (a scoring pass included where one was needed).
    thetas : list of arrays of shape (n_features + 1, n_columns, n_classes)
    """
    n_cols = theta.shape[1]
    state, penalty, held, passes, thetas = None, None, [], [], []
    for value in strengths:
        spec = _spec(model, value, layout, n_cols)
        objective = PenalizedObjective(data, spec.penalty)
        solver = make_solver("Newton", dict(spec.solver_kwargs))
        theta = objective.prox(theta, 0.0)
        context = solver.prepare(objective, theta)
        start = (
            solver.init(context, theta)
            if state is None
            else carry_newton_state(solver, objective, context, theta, state, penalty)
        )
        data.evaluated.clear()
        result = minimize(solver, objective, theta, state=start, context=context)
        warn_not_converged(result, solver, stacklevel=5)
        theta, state, penalty = result.theta, result.state, spec.penalty
        sums, found = data.evaluated.at(theta)
        n = objective.n_passes
        if not np.all(found):
            sums[~found] = data.held_sums(theta)[~found]
            n += 1
        held.append(sums)
        passes.append(n)
        thetas.append(theta)
    return held, passes, thetas


def solver_search(model, problem: Stacked, strengths) -> SearchResult:
    """The path with the model's own solver (:func:`~distglm.fit.run_fit` per strength),
    each strength's held-out sums in one more pass."""
    data = _data(model, problem)
    n_cols = problem.codes.shape[1]
    theta = _start(problem, model.n_classes)
    held, passes, thetas, stat = [], [], [], 0
    for value in strengths:
        result = run_fit(_spec(model, value, problem.layout, n_cols), data, theta)
        theta = result.theta
        passes.append(result.n_passes - stat + 1)  # the second moment counts once
        stat = data.stat_passes
        held.append(data.held_sums(theta))
        thetas.append(theta)
    F, K = problem.n_folds, problem.n_outputs
    return search_result(model, strengths, problem.n_held, (F, K), held, passes, thetas)


def search_result(
    model, strengths, n_held, shape, held, passes, thetas, outputs=None
) -> SearchResult:
    """Scores and the full-data path from a search's per-strength results.

    Parameters
    ----------
    model : ClassifierPopulationGLM
        Classes set.
    strengths : float64 array of shape (n_strengths,)
    n_held : array of shape (n_folds + 1, n_outputs)
        Rows each column's held-out sums are over (every row for the last block).
    shape : (n_folds, n_outputs)
    held, passes, thetas : per strength, as :func:`newton_path` returns them.
    outputs : array of shape (n_outputs,), optional
        The output coordinate (0, 1, ... by default).
    """
    F, K = shape
    mean_nll = np.stack(held).reshape(len(strengths), F + 1, K) / np.maximum(n_held, 1.0)
    coefs, intercepts, objectives = [], [], []
    for i, value in enumerate(strengths):
        coef, intercept = thetas[i][:-1, F * K :], thetas[i][-1, F * K :]
        step = _at(model, value)
        penalty = step.regularizer.penalty(jnp.asarray(coef), step.regularizer_strength)
        coefs.append(coef)
        intercepts.append(intercept)
        objectives.append(float(mean_nll[i, F].sum()) + float(penalty))
    path = xr.Dataset(
        {
            "coef": (("strength", "feature", "output", "class"), np.stack(coefs)),
            "intercept": (("strength", "output", "class"), np.stack(intercepts)),
            "objective": ("strength", np.asarray(objectives)),
            "n_passes": ("strength", np.asarray(passes, np.int64)),
        },
        coords={
            "strength": strengths,
            "output": np.arange(K) if outputs is None else np.asarray(outputs),
            "class": model.classes_,
        },
    )
    held_n = np.asarray(n_held[:F]).astype(np.int64)
    # a fold that holds out none of an output's rows has no score for it
    score = np.where(held_n[None] > 0, -mean_nll[:, :F], np.nan)
    return SearchResult(score, held_n, path)
