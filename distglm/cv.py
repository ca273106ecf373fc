"""Cross-validated choice of the regularization strength, in memory.

Every fold advances in the same pass over the rows: the folds are stacked as extra outputs of
one population fit (column ``f * K + k`` is output ``k`` weighted by fold ``f``'s training
rows), whose objective, a sum over columns of each column's mean NLL plus the penalty, is the
sum of the folds' own objectives. That fit follows the warm-started path from strong to weak
(:mod:`distglm.path`), by per-output Newton whose state is carried from strength to strength,
with converged columns dropping out and the held-out sums taken in the same passes
(:mod:`distglm.cv_search`). The population objective is a sum over outputs, so each output may
take its own strength at no
extra cost; the refit on all the data then uses a per-output penalty (an array strength of the
coefficients' shape), warm-started from the full-data path, which is one more block of stacked
outputs (weighted by every row) in the same passes.

Folds are contiguous blocks of rows (``cv=k``) or the splits of a scikit-learn splitter (with
``groups=``, e.g. ``GroupKFold`` over sessions); rows are never shuffled.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .cv_search import newton_fits, newton_search, solver_search, stack_folds
from .data import is_distributed_input
from .distribute import DataSession
from .estimator import ClassifierGLM, ClassifierPopulationGLM
from .folds import FoldPlan, plan_folds, splitter_folds
from .inputs import as_label_array
from .path import _resolve_strengths, warm_start

__all__ = ["ClassifierGLMCV", "ClassifierPopulationGLMCV"]

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
    def fit(self, X, y=None, groups=None, *, client=None, cache_bytes=None):
        """Choose the strength(s) by cross-validation, then refit on all the data.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or distributed data
            In memory; or what :meth:`ClassifierPopulationGLM.fit` takes as distributed data
            (sessions, a multi-session Zarr store's groups, dask arrays), or an open
            :class:`~distglm.DataSession`: the search then runs on the Dask workers
            (:mod:`distglm.cv_distributed`), with ``cv="session"`` or an int ``k``.
        y : array of shape (n_samples,) (ClassifierGLMCV) or (n_samples, n_outputs)
            None for sessions, which carry their labels.
        groups : array of shape (n_samples,), optional
            Group labels (e.g. sessions) for a splitter ``cv`` (in memory).
        client : distributed.Client, optional
            The cluster of a distributed search (by default the current client).
        cache_bytes : None, float, int or str
            The workers' chunk-cache budget of a distributed search (see ``fit``).

        Returns
        -------
        self
        """
        if self.scoring != "log-likelihood":
            raise NotImplementedError(
                f"scoring must be 'log-likelihood' (the held-out mean log-likelihood); got "
                f"{self.scoring!r}."
            )
        if isinstance(X, DataSession) or is_distributed_input(X):
            from .cv_distributed import distributed_search

            return distributed_search(self, X, y, client, cache_bytes)
        if y is None:
            raise ValueError(
                "fit requires y for in-memory X (only sessions carry their labels); got y=None."
            )
        X = np.asarray(X)
        base = self._base()
        y_arr = as_label_array(y, X.shape[0], base._population)
        strengths = _resolve_strengths(base, X, y_arr, self.strengths)
        plan = self._folds(X, y_arr, groups)
        fold_index = np.asarray(plan.index)
        if fold_index.ndim != 1:
            raise ValueError("In-memory cross-validation takes one fold index per row.")
        model = self._base_population()
        problem = stack_folds(model, X, y_arr, fold_index, plan.n_folds)
        newton = newton_fits(self.solver_name, model, problem)
        found = (newton_search if newton else solver_search)(model, problem, strengths)
        return self._finish(found, strengths, base, newton, lambda m, init: m.fit(X, y_arr, init))

    def _finish(self, found, strengths, base, newton, refit):
        """Set the fitted attributes from a search; ``refit(model, init_params)`` fits."""
        score, n_held, full_path = found.score, found.n_held, found.path
        mean = np.nanmean(score, axis=1)  # (strength, output), over folds holding it out
        if self.per_output:
            chosen = np.argmax(mean, axis=0)
        else:
            chosen = np.full(mean.shape[1], np.argmax(mean.mean(axis=1)))
        self.cv_results_ = xr.Dataset(
            {
                "score": (("strength", "fold", "output"), score),
                "mean_score": (("strength", "output"), mean),
                "n_held_out": (("fold", "output"), n_held),
            },
            coords={
                "strength": strengths,
                "fold": np.arange(score.shape[1]),
                "output": full_path["output"].values,
            },
        )
        values = strengths[chosen]
        self.strength_ = values if base._population else float(values[0])
        passes = found.n_passes
        self.path_, self.best_estimator_ = full_path, None
        if self.refit:
            if newton and self.solver_name is None:
                base.solver_name = "Newton"  # from the path's optimum: one pass to confirm it
            self.best_estimator_ = self._refit(base, refit, values, chosen, full_path)
            passes += self.best_estimator_.n_passes_
        self.n_passes_ = int(passes)
        return self

    def _refit(self, base, refit, values, chosen, path):
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
        return refit(model, init)

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
    solver_name : str or None, default None
        None: the search runs per-output Newton (a few passes per strength; see
        :mod:`distglm.cv_search`), and so does the refit, which starts at the path's optimum
        and takes one pass to confirm it. A name (``"LBFGS"``, ...) runs that solver at every
        strength and for the refit (``"auto"`` and ``"Newton"``: Newton for the search where the
        penalty is a sum over outputs).
    solver_kwargs : dict, optional
        ``tol`` and ``maxiter`` (with None or "auto"), or the named solver's options.

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
