"""Cross-validated choice of the regularization strength, in memory.

Every fold advances in the same pass over the rows: the folds are stacked as extra outputs of
one population fit (column ``f * K + k`` is output ``k`` weighted by fold ``f``'s training
rows), whose objective, a sum over columns of each column's mean NLL plus the penalty, is the
sum of the folds' own objectives. That fit follows the warm-started path from strong to weak
(:mod:`distglm.path`), and each strength's held-out sums of every fold take one more pass. The
population objective is a sum over outputs, so each output may take its own strength at no
extra cost; the refit on all the data then uses a per-output penalty (an array strength of the
coefficients' shape), warm-started from the full-data path, which is one more block of stacked
outputs (weighted by every row) in the same passes.

Folds are contiguous blocks of rows (``cv=k``) or the splits of a scikit-learn splitter (with
``groups=``, e.g. ``GroupKFold`` over sessions); rows are never shuffled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .estimator import ClassifierGLM, ClassifierPopulationGLM
from .fit import initial_theta, run_fit
from .folds import FoldPlan, plan_folds, splitter_folds
from .inputs import as_label_array, kept_rows
from .kernels.softmax import nll_sums
from .path import _resolve_strengths, warm_start
from .solve import InMemoryData
from .spec import kernel_dtype

__all__ = ["ClassifierGLMCV", "ClassifierPopulationGLMCV"]

#: per-output loss sums, compiled once per shape (the held-out scores)
_NLL_SUMS = jax.jit(nll_sums, static_argnames="block_rows")

_PARAMS = (
    "n_classes",
    "regularizer",
    "strengths",
    "cv",
    "per_output",
    "scoring",
    "refit",
    "solver_name",
    "solver_kwargs",
)


def _stacked_search(model, X, y_arr, fold_index, n_folds, strengths):
    """Every fold's path, and the full-data path, at once: one population fit of stacked outputs.

    Column ``f * K + k`` of the stacked labels is output ``k`` weighted by fold ``f``'s training
    rows (``f = n_folds``: every row, the full-data path), so one pass over the rows advances
    every (fold, output) pair, and the objective (a sum over columns of each column's mean NLL
    plus the penalty) separates into the folds' own fits. The path is warm-started from strong
    to weak; each strength's held-out sums (and the full-data loss) take one more pass.

    Returns
    -------
    score : float64 array of shape (n_strengths, n_folds, n_outputs)
        Held-out mean log-likelihood.
    n_held : int64 array of shape (n_folds, n_outputs)
    passes : int
    path : xarray.Dataset
        The full-data path, as :func:`distglm.regularization_path` gives it; ``n_passes`` per
        strength are the stacked fit's (shared by every fold).
    """
    y_arr = np.asarray(y_arr)
    model.set_classes(y_arr[np.isfinite(y_arr)] if y_arr.dtype.kind == "f" else y_arr)
    layout, Xs, codes = model._prepare(X, y_arr if y_arr.ndim == 2 else y_arr[:, None], "fit")
    index = fold_index[kept_rows(X.astype(Xs.dtype), y_arr)]
    K, C, dtype = codes.shape[1], model.n_classes, kernel_dtype()
    blocks = np.arange(n_folds + 1)  # the last block: every row (never held out)
    held = np.repeat(index[:, None] == blocks[None, :], K, axis=1)
    train = (~held).astype(dtype)
    held[:, n_folds * K :] = True  # the full-data block's loss, scored with the held-out sums
    stacked = np.tile(codes, (1, n_folds + 1))
    data = InMemoryData(Xs, stacked, C, weights=train, dtype=dtype)
    counts = np.stack([np.bincount(stacked[:, j], train[:, j], C) for j in range(stacked.shape[1])])
    theta = initial_theta(layout.n_features, counts, counts.sum(axis=1))
    held_data = InMemoryData(Xs, stacked, C, weights=held.astype(dtype), dtype=dtype)
    Xp, yp, wp = held_data.arrays
    n_held = held.sum(axis=0).reshape(n_folds + 1, K)
    score = np.empty((len(strengths), n_folds, K))
    coefs, intercepts, objectives, step_passes = [], [], [], []
    for i, value in enumerate(strengths):
        step = model.__sklearn_clone__()
        step.regularizer_strength = step.regularizer.with_strength(step.regularizer_strength, value)
        result = run_fit(step._spec(layout, stacked.shape[1]), data, theta)
        theta = result.theta
        step_passes.append(result.n_passes + 1)
        params = (jnp.asarray(theta[:-1], dtype), jnp.asarray(theta[-1], dtype))
        loss = np.asarray(_NLL_SUMS(params, Xp, yp, wp, block_rows=held_data.block_rows))
        mean_nll = loss.reshape(n_folds + 1, K) / np.maximum(n_held, 1.0)
        score[i] = -mean_nll[:n_folds]
        coef = theta[:-1, n_folds * K :]
        penalty = step.regularizer.penalty(jnp.asarray(coef), step.regularizer_strength)
        coefs.append(coef)
        intercepts.append(theta[-1, n_folds * K :])
        objectives.append(float(mean_nll[n_folds].sum()) + float(penalty))
    path = xr.Dataset(
        {
            "coef": (("strength", "feature", "output", "class"), np.stack(coefs)),
            "intercept": (("strength", "output", "class"), np.stack(intercepts)),
            "objective": ("strength", np.asarray(objectives)),
            "n_passes": ("strength", np.asarray(step_passes, np.int64)),
        },
        coords={"strength": strengths, "output": np.arange(K), "class": model.classes_},
    )
    return score, n_held[:n_folds].astype(np.int64), int(sum(step_passes)), path


class _ClassifierCV:
    """Shared implementation; use :class:`ClassifierGLMCV` or :class:`ClassifierPopulationGLMCV`."""

    _estimator: type = ClassifierPopulationGLM

    def __init__(
        self,
        n_classes=2,
        regularizer="Ridge",
        strengths=None,
        cv=5,
        per_output=True,
        scoring="log-likelihood",
        refit=True,
        solver_name=None,
        solver_kwargs=None,
    ):
        self.n_classes = n_classes
        self.regularizer = regularizer
        self.strengths = strengths
        self.cv = cv
        self.per_output = per_output
        self.scoring = scoring
        self.refit = refit
        self.solver_name = solver_name
        self.solver_kwargs = solver_kwargs
        self.strength_ = None
        self.cv_results_ = None
        self.path_ = None
        self.best_estimator_ = None
        self.n_passes_ = None

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters by name (scikit-learn's protocol)."""
        del deep
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params):
        """Set constructor parameters by name; returns ``self``."""
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ValueError(
                f"Invalid parameter(s) {unknown} for {type(self).__name__}; valid parameters "
                f"are {sorted(_PARAMS)}."
            )
        self.__dict__.update(params)
        return self

    def __repr__(self):
        name = type(self).__name__
        return f"{name}(n_classes={self.n_classes}, regularizer={self.regularizer!r})"

    def _base(self):
        return self._estimator(
            n_classes=self.n_classes,
            regularizer=self.regularizer,
            solver_name=self.solver_name,
            solver_kwargs=self.solver_kwargs,
        )

    def _base_population(self):
        return ClassifierPopulationGLM(
            n_classes=self.n_classes,
            regularizer=self.regularizer,
            solver_name=self.solver_name,
            solver_kwargs=self.solver_kwargs,
        )

    def _folds(self, X, y, groups) -> FoldPlan:
        cv = self.cv
        if hasattr(cv, "split") and not isinstance(cv, str):
            return splitter_folds(cv, X, y, groups)
        if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
            if groups is not None:
                raise ValueError(
                    f"groups= is used by a splitter cv; cv={cv!r} cuts contiguous blocks."
                )
            return plan_folds([len(X)], int(cv))
        raise ValueError(
            "In memory, cv must be an int k >= 2 (contiguous blocks of rows) or a scikit-learn "
            f"splitter (e.g. GroupKFold, with groups=); got {cv!r}."
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, groups=None):
        """Choose the strength(s) by cross-validation, then refit on all the data.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,) (ClassifierGLMCV) or (n_samples, n_outputs)
        groups : array of shape (n_samples,), optional
            Group labels (e.g. sessions) for a splitter ``cv``.

        Returns
        -------
        self
        """
        if self.scoring != "log-likelihood":
            raise NotImplementedError(
                f"scoring must be 'log-likelihood' (the held-out mean log-likelihood); got "
                f"{self.scoring!r}."
            )
        X = np.asarray(X)
        base = self._base()
        population = base._population
        y_arr = as_label_array(y, X.shape[0], population)
        strengths = _resolve_strengths(base, X, y_arr, self.strengths)
        plan = self._folds(X, y_arr, groups)
        fold_index = np.asarray(plan.index)
        if fold_index.ndim != 1:
            raise ValueError("In-memory cross-validation takes one fold index per row.")
        score, n_held, search_passes, full_path = _stacked_search(
            self._base_population(), X, y_arr, fold_index, plan.n_folds, strengths
        )
        mean = score.mean(axis=1)  # (strength, output)
        if self.per_output:
            chosen = np.argmax(mean, axis=0)
        else:
            chosen = np.full(mean.shape[1], np.argmax(mean.mean(axis=1)))
        outputs = np.arange(score.shape[2])
        self.cv_results_ = xr.Dataset(
            {
                "score": (("strength", "fold", "output"), score),
                "mean_score": (("strength", "output"), mean),
                "n_held_out": (("fold", "output"), n_held),
            },
            coords={"strength": strengths, "fold": np.arange(plan.n_folds), "output": outputs},
        )
        values = strengths[chosen]
        self.strength_ = values if population else float(values[0])
        passes = search_passes
        self.path_, self.best_estimator_ = full_path, None
        if self.refit:
            self.best_estimator_ = self._refit(base, X, y_arr, values, chosen, full_path)
            passes += self.best_estimator_.n_passes_
        self.n_passes_ = int(passes)
        return self

    def _refit(self, base, X, y_arr, values, chosen, path):
        model = base.__sklearn_clone__()
        reg = model.regularizer
        init = warm_start(path, chosen, model._population)
        if np.all(values == values[0]):
            strength = reg.with_strength(model.regularizer_strength, float(values[0]))
        else:
            shape = np.asarray(path["coef"].values).shape[1:]
            strength = reg.with_strength(
                model.regularizer_strength, reg.per_output_strength(values, shape)
            )
        model.regularizer_strength = strength
        return model.fit(X, y_arr, init_params=init)

    # ------------------------------------------------------------------ prediction
    def _fitted(self):
        if self.best_estimator_ is None:
            raise ValueError(
                f"This {type(self).__name__} has no refitted model: call fit with refit=True first."
            )
        return self.best_estimator_

    def predict(self, X):
        """The refitted model's most probable labels (see ``ClassifierPopulationGLM``)."""
        return self._fitted().predict(X)

    def predict_proba(self, X, return_type="log-proba"):
        """The refitted model's class (log-)probabilities."""
        return self._fitted().predict_proba(X, return_type)

    def score(self, X, y=None, score_type="log-likelihood", **kwargs):
        """The refitted model's score on ``(X, y)``."""
        return self._fitted().score(X, y, score_type=score_type, **kwargs)


class ClassifierPopulationGLMCV(_ClassifierCV):
    """A :class:`ClassifierPopulationGLM` whose strength is chosen by cross-validation.

    Parameters
    ----------
    n_classes : int, default 2
    regularizer : str or Regularizer, default "Ridge"
    strengths : sequence of float, int or None
        The candidate strengths, or the size of the default grid (None: 10 strengths
        log-spaced over 4 decades; for Lasso, ElasticNet and GroupLasso starting at the
        smallest strength that zeroes every coefficient).
    cv : int or scikit-learn splitter, default 5
        ``k`` contiguous blocks of rows, or a splitter with disjoint test sets (pass
        ``groups=`` to fit for a group splitter such as ``GroupKFold``).
    per_output : bool, default True
        Each output takes the strength with its best mean held-out score; False: one strength
        (the best mean over outputs) for all.
    scoring : "log-likelihood"
        The held-out mean log-likelihood per output, averaged over folds.
    refit : bool, default True
        Refit on all the data at the chosen strength(s).
    solver_name, solver_kwargs : see :class:`ClassifierPopulationGLM`.

    Attributes
    ----------
    strength_ : float64 array of shape (n_outputs,)
    cv_results_ : xarray.Dataset
        ``score`` (strength, fold, output), ``mean_score`` (strength, output) and
        ``n_held_out`` (fold, output).
    path_ : xarray.Dataset
        The full-data path (as :func:`distglm.regularization_path` gives it), fitted in the
        same passes as the folds; its ``n_passes`` are those shared passes.
    best_estimator_ : ClassifierPopulationGLM or None
        Refitted on all the data; per-output strengths are an array strength of coef_'s shape.
    n_passes_ : int
        Passes over the data of the whole search (every fit, the held-out scoring, the refit).
    """

    _estimator = ClassifierPopulationGLM


class ClassifierGLMCV(_ClassifierCV):
    """A :class:`ClassifierGLM` whose strength is chosen by cross-validation.

    Parameters and attributes are those of :class:`ClassifierPopulationGLMCV`, for a single
    output: ``y`` of shape (n_samples,), ``strength_`` a float, and ``best_estimator_`` a
    :class:`ClassifierGLM`.
    """

    _estimator = ClassifierGLM
