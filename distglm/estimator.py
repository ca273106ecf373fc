"""The estimators: ``ClassifierGLM`` and ``ClassifierPopulationGLM``, nemos-compatible.

This module checks arguments and wires the pieces together: labels go through the shared
:class:`~distglm.encoding.LabelEncoder`, designs through :class:`~distglm.inputs.DesignLayout`,
the data term is a :class:`~distglm.solve.InMemoryData` built on the JAX kernels, the penalty is
applied once by :class:`~distglm.solve.PenalizedObjective`, and a solver from
:mod:`distglm.solve` minimises it. No maths lives here.

Internally both estimators are population models: a single-output ``ClassifierGLM`` is the
population model with one output, and its ``coef_`` is shown without that axis.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .data import is_distributed_input, merge_stats, plan_data
from .data.lazy import LazyModel
from .distribute import DistributedData, WorkerPool, connect
from .encoding import LabelEncoder
from .exceptions import NotFittedError
from .inputs import CoefView, DesignLayout, as_label_array, finite_rows
from .kernels.linear import linear_predictor
from .kernels.softmax import per_sample_log_likelihood
from .regularizer import ElasticNet, GroupLasso, Lasso, Regularizer, Ridge, resolve_regularizer
from .solve import (
    InMemoryData,
    PenalizedObjective,
    Penalty,
    make_solver,
    minimize,
    warn_not_converged,
)

__all__ = ["ClassifierGLM", "ClassifierPopulationGLM"]

_SCORE_TYPES = ("log-likelihood", "pseudo-r2-McFadden", "pseudo-r2-Cohen")


def _design_rank(Xs):
    """Rank of an in-memory design (for the unregularised residual degrees of freedom)."""
    return np.linalg.matrix_rank(np.asarray(Xs, np.float64)) if Xs.shape[0] else 0


def _kernel_dtype():
    return np.float64 if jax.config.jax_enable_x64 else np.float32


class _Classifier:
    """Shared implementation; use :class:`ClassifierGLM` or :class:`ClassifierPopulationGLM`."""

    _population = False

    def __init__(
        self,
        n_classes=2,
        inverse_link_function=None,
        regularizer=None,
        regularizer_strength=None,
        solver_name=None,
        solver_kwargs=None,
    ):
        self.n_classes = n_classes
        self.inverse_link_function = inverse_link_function
        self._regularizer = resolve_regularizer("Ridge" if regularizer is None else regularizer)
        self._solver_name = None
        self.regularizer_strength = regularizer_strength
        self.solver_name = solver_name
        self.solver_kwargs = solver_kwargs
        self.coef_ = None
        self.intercept_ = None
        self.scale_ = None
        self.dof_resid_ = None
        self.solver_state_ = None
        self.fit_history_ = None
        self.n_passes_ = None
        self.outputs_ = None
        self.features_ = None
        self.fit_profile_ = None
        self._update_ctx = None  # (solver, compiled penalty, layout) for update() loops

    # ------------------------------------------------------------------ parameters
    @property
    def n_classes(self) -> int:
        """Number of classes (an integer >= 2); setting it forgets the classes."""
        return self._encoder.n_classes

    @n_classes.setter
    def n_classes(self, value):
        if isinstance(value, (np.ndarray, jax.Array)) and value.size == 1:
            value = value.item()
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not np.isfinite(value)
            or value < 2
            or int(value) != value
        ):
            raise ValueError(
                f"n_classes must be an integer greater than or equal to 2; got {value!r}."
            )
        self._encoder = LabelEncoder(int(value))

    @property
    def classes_(self):
        """Class labels, sorted, or None before :meth:`set_classes` / :meth:`fit`."""
        return self._encoder.classes_

    @classes_.setter
    def classes_(self, value):
        if value is None:
            self._encoder.reset()
        else:
            self._encoder.set_classes(value)

    @property
    def inverse_link_function(self):
        """The inverse link: log-softmax (the only one a categorical GLM takes here)."""
        return self._inverse_link_function

    @inverse_link_function.setter
    def inverse_link_function(self, fn):
        if fn is not None and fn is not jax.nn.log_softmax:
            raise ValueError(
                "The categorical GLM's inverse link must be jax.nn.log_softmax (or None for it); "
                f"got {fn!r}."
            )
        self._inverse_link_function = jax.nn.log_softmax

    @property
    def regularizer(self) -> Regularizer:
        """The penalty: an instance of one of :mod:`distglm.regularizer`'s classes."""
        return self._regularizer

    @regularizer.setter
    def regularizer(self, value):
        reg = resolve_regularizer(value)
        if self._solver_name is not None:
            reg.check_solver(self._solver_name)
        self._regularizer = reg
        self._regularizer_strength = reg.validate_strength(None)

    @property
    def regularizer_strength(self):
        """Strength of the penalty (validated by the regularizer)."""
        return self._regularizer_strength

    @regularizer_strength.setter
    def regularizer_strength(self, value):
        if value is not None and isinstance(self._regularizer, type(resolve_regularizer(None))):
            warnings.warn(
                f"UnRegularized ignores regularizer_strength={value!r}.", UserWarning, stacklevel=2
            )
        self._regularizer_strength = self._regularizer.validate_strength(value)

    @property
    def solver_name(self) -> str:
        """Solver used by :meth:`fit`; defaults to the regularizer's default solver."""
        return self._solver_name or self._regularizer.default_solver

    @solver_name.setter
    def solver_name(self, name):
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"solver_name must be a string or None; got {name!r}.")
            make_solver(name)
            self._regularizer.check_solver(name)
        self._solver_name = name

    @property
    def solver_kwargs(self) -> dict:
        """Keyword arguments of the solver (``tol``, ``maxiter``, ...)."""
        return self._solver_kwargs

    @solver_kwargs.setter
    def solver_kwargs(self, kwargs):
        kwargs = {} if kwargs is None else dict(kwargs)
        make_solver(self.solver_name, kwargs)
        self._solver_kwargs = kwargs

    def _param_names(self):
        names = [
            "n_classes",
            "inverse_link_function",
            "regularizer",
            "regularizer_strength",
            "solver_name",
            "solver_kwargs",
        ]
        return [*names, "feature_mask"] if self._population else names

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters by name (scikit-learn's protocol)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, "_solver_name" if name == "solver_name" else name)
            out[name] = value
            if deep and name == "regularizer":
                out.update({f"regularizer__{k}": v for k, v in value.get_params().items()})
        return out

    def set_params(self, **params):
        """Set constructor parameters by name; returns ``self``."""
        valid = set(self._param_names())
        if "regularizer" in params:
            self.regularizer = params.pop("regularizer")
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; valid parameters "
                    f"are {sorted(valid)}."
                )
            setattr(self, name, value)
        return self

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        link = params.pop("inverse_link_function")  # a jitted function: deepcopy breaks `is`
        return type(self)(inverse_link_function=link, **copy.deepcopy(params))

    def __repr__(self):
        parts = [f"n_classes={self.n_classes}", f"regularizer={self.regularizer!r}"]
        if self._regularizer_strength is not None:
            parts.append(f"regularizer_strength={self._regularizer_strength!r}")
        parts.append(f"solver_name={self.solver_name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------------ shapes
    def _to_block(self, coef, layout):
        """User coefficient structure -> (n_features, n_outputs, n_classes) block."""
        return CoefView(layout, self._population).inverse(coef)

    def _from_block(self, block, layout):
        """(n_features, n_outputs, n_classes) block -> the user's coefficient structure."""
        return CoefView(layout, self._population)(block)

    def _check_params(self, params, layout, n_outputs=None):
        """Validate a user ``(coef, intercept)`` and return the (block, intercept) pair."""
        if not isinstance(params, (tuple, list)) or len(params) != 2:
            raise ValueError(
                f"params must be a (coef, intercept) pair; got {type(params).__name__}."
            )
        coef, intercept = params
        c = self.n_classes
        if layout.keys is None and isinstance(coef, dict):
            raise ValueError("coef is a dict but X is an array; give coef as an array.")
        block = jnp.asarray(layout.join(coef))
        intercept = jnp.asarray(intercept)
        want_ndim = 3 if self._population else 2
        shape_txt = (
            "(n_features, n_outputs, n_classes)" if self._population else "(n_features, n_classes)"
        )
        icpt_txt = "(n_outputs, n_classes)" if self._population else "(n_classes,)"
        if block.ndim != want_ndim or intercept.ndim != want_ndim - 1:
            raise ValueError(
                f"coef must have shape {shape_txt} and intercept {icpt_txt}; got "
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
        if self._population:
            if block.shape[1] != intercept.shape[0]:
                raise ValueError(
                    f"coef has {block.shape[1]} outputs but intercept has {intercept.shape[0]}."
                )
            if n_outputs is not None and block.shape[1] != n_outputs:
                raise ValueError(
                    f"Inconsistent number of outputs: coef has {block.shape[1]}, y has {n_outputs}."
                )
        else:
            block, intercept = block[:, None, :], intercept[None, :]
        return block, intercept

    def _prepare(self, X, y, method, drop=True, safe=True):
        """Layout, stacked finite rows of X, and label codes of shape (n, n_outputs)."""
        layout = DesignLayout.from_design(X)
        Xs = layout.stack(X, _kernel_dtype())
        y = as_label_array(y, Xs.shape[0], self._population)
        if drop:
            ok = finite_rows(Xs, y)
            if not ok.any():
                raise ValueError(
                    f"{method}: every sample has a NaN or Inf in X or y; nothing is left to use."
                )
            if not ok.all():
                Xs, y = Xs[ok], y[ok]
        codes = np.asarray(self._encoder.encode(y, safe=safe), dtype=np.int32)
        if not self._population:
            codes = codes[:, None]
        return layout, Xs, codes

    # ------------------------------------------------------------------ mask & penalty
    def _mask_block(self, layout, n_outputs, labels=None):
        return None

    def _penalty(self, layout, n_outputs, labels=None):
        reg = self._regularizer
        mask_block = self._mask_block(layout, n_outputs, labels)
        if isinstance(reg, GroupLasso):
            if reg.mask is None and layout.keys is None:
                warnings.warn(
                    "GroupLasso has no mask: each (output, class) column of coef is one group "
                    "of all features. Pass GroupLasso(mask=...) to group features.",
                    UserWarning,
                    stacklevel=3,
                )
            shape = (layout.n_features, n_outputs, self.n_classes)
            reg.group_mask(self._from_block(jnp.zeros(shape), layout))  # checks the mask fits
        view = CoefView(layout, self._population)
        return Penalty(reg, self._regularizer_strength, view, view.inverse, mask_block)

    def _ridge_for_precond(self):
        if isinstance(self._regularizer, Ridge):
            s = self._regularizer_strength
            return s if np.ndim(s) == 0 and not isinstance(s, dict) else 0.0
        return 0.0

    # ------------------------------------------------------------------ fitting
    def set_classes(self, y):
        """Set ``classes_`` from ``y``, which must hold every one of the ``n_classes`` labels.

        Parameters
        ----------
        y : array-like
            Labels of any hashable type; NaN entries (float labels) are ignored.

        Returns
        -------
        self
        """
        self._encoder.set_classes(y)
        return self

    def initialize_params(self, X, y):
        """Zero coefficients and intercepts matching the class frequencies of ``y``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
        y : array of shape (n_samples,) or (n_samples, n_outputs)
            Labels among ``classes_``.

        Returns
        -------
        (coef, intercept)
            ``coef`` like X's structure with leaves (n_features, [n_outputs,] n_classes);
            intercept (n_classes,) or (n_outputs, n_classes): centred log class frequencies.
        """
        self._encoder.check_is_set("initialize_params")
        self._check_in_memory(X, "initialize_params")
        layout, _, codes = self._prepare(X, y, "initialize_params")
        block, intercept = self._initial_block(layout, codes)
        return self._user_params(block, intercept, layout)

    def _initial_block(self, layout, codes):
        c = self.n_classes
        counts = np.stack([np.bincount(codes[:, j], minlength=c) for j in range(codes.shape[1])])
        return self._block_from_counts(layout, counts, np.full(codes.shape[1], codes.shape[0]))

    def _block_from_counts(self, layout, counts, n_samples):
        """Zero coefficients and centred log class frequencies (counts (k, c), n (k,))."""
        freq = np.asarray(counts, np.float64) / np.asarray(n_samples, np.float64)[:, None]
        logf = np.log(np.clip(freq, np.finfo(float).eps, None))
        intercept = logf - logf.mean(axis=1, keepdims=True)
        return np.zeros((layout.n_features, counts.shape[0], self.n_classes)), intercept

    def _user_params(self, block, intercept, layout):
        dtype = _kernel_dtype()
        block = jnp.asarray(block, dtype)
        intercept = jnp.asarray(intercept, dtype)
        if not self._population:
            intercept = intercept[0]
        return self._from_block(block, layout), intercept

    def _objective(self, Xs, codes, layout):
        data = InMemoryData(Xs, codes, self.n_classes, dtype=_kernel_dtype())
        return PenalizedObjective(data, self._penalty(layout, codes.shape[1]))

    def _theta(self, block, intercept):
        return np.concatenate(
            [np.asarray(block, np.float64), np.asarray(intercept, np.float64)[None]], axis=0
        )

    def fit(self, X, y=None, init_params=None, *, client=None, progress=False, cache_bytes=None):
        """Fit the model, in memory or over a Dask cluster.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or a dict of 2-D arrays
            In memory. Rows with NaN or Inf (in X or y) are dropped. Distributed inputs are
            fitted on Dask workers: a dask array (or dict of them) chunked along samples, a
            dask-backed ``xarray.DataArray`` (sample, feature), or sessions (the result of
            :func:`distglm.open_sessions`, a store path, or a list/dict of xarray Datasets),
            which carry their own labels.
        y : array of shape (n_samples,) (ClassifierGLM) or (n_samples, n_outputs)
            Labels of any hashable type; every one of ``n_classes`` labels must occur. A dask
            array or DataArray with distributed X; None for sessions.
        init_params : (coef, intercept), optional
            Starting point; defaults to zero coefficients and intercepts matching the class
            frequencies.
        client : distributed.Client, optional
            Distributed inputs only: the cluster to use. Defaults to the current Dask client;
            without one, a LocalCluster is started for the call and closed after it.
        progress : bool
            Print a progress line per iteration to stderr.
        cache_bytes : float, int or str, optional
            Distributed inputs only: each worker's budget for caching decoded chunks. A float
            in [0, 1] is a fraction of the worker's memory limit (default 0.5), an int a number
            of bytes, a string a size such as ``"2 GiB"``. Chunks past the budget are re-read
            from the store on every pass (the next one read while the current one is computed),
            so a worker's memory stays within the budget plus a few chunks and its runtime.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        if is_distributed_input(X):
            return self._fit_distributed(X, y, init_params, client, progress, start, cache_bytes)
        if cache_bytes is not None:
            raise ValueError(
                "cache_bytes applies to distributed inputs (dask arrays, xarray, sessions); "
                f"X is in memory ({type(X).__name__})."
            )
        if y is None:
            raise ValueError("fit needs y for in-memory X (only sessions carry their labels).")
        y_arr = as_label_array(y, DesignLayout.from_design(X).n_samples(X), self._population)
        y_clean = y_arr[np.isfinite(y_arr)] if y_arr.dtype.kind == "f" else y_arr
        self._encoder.set_classes(y_clean)
        layout, Xs, codes = self._prepare(X, y_arr, "fit")
        n_outputs = codes.shape[1]
        if init_params is None:
            block, intercept = self._initial_block(layout, codes)
        else:
            block, intercept = self._check_params(init_params, layout, n_outputs)
        objective = self._objective(Xs, codes, layout)
        self._solve(objective, block, intercept, layout, progress)
        self.outputs_ = self._output_ids(y, n_outputs)
        self.features_ = None
        self.fit_profile_ = None
        self.fit_time_ = time.perf_counter() - start
        self._set_dof_and_scale(
            np.full(n_outputs, Xs.shape[0]),
            n_outputs,
            lambda: _design_rank(Xs),
        )
        return self

    @staticmethod
    def _output_ids(y, n_outputs):
        if isinstance(y, xr.DataArray) and y.ndim == 2 and y.dims[1] in y.coords:
            return np.asarray(y.coords[y.dims[1]].values)
        return np.arange(n_outputs)

    def _solve(self, objective, block, intercept, layout, progress):
        """Minimise ``objective`` from (block, intercept); set the fitted attributes."""
        P1, K, c = layout.n_features + 1, block.shape[1], self.n_classes
        auto = {
            "smooth": objective.smooth,
            "n_params": P1 * c,
            "n_outputs": K,
            "streamed": bool(getattr(objective.data, "streamed", False)),
            "n_rows": getattr(objective.data, "n_rows", None),
            "separable": objective.penalty.is_separable((P1, K, c)),
        }
        solver = make_solver(self.solver_name, self._solver_kwargs, auto=auto)
        self.solver_ = solver.name
        result = minimize(
            solver,
            objective,
            self._theta(block, intercept),
            ridge=self._ridge_for_precond(),
            mask=objective.penalty.mask,
            callback=_ProgressLine(solver) if progress else None,
        )
        if progress:
            print(file=sys.stderr)
        theta = objective.prox(result.theta, 0.0)
        if not np.all(np.isfinite(theta)):
            raise ValueError(
                "The solver returned NaN or Inf parameters, so the solution is invalid. Try "
                "rescaling the features or a larger regularizer_strength."
            )
        warn_not_converged(result, solver)
        stat_passes = objective.data.stat_passes
        for entry in result.history:
            entry["passes"] += stat_passes
        self.coef_, self.intercept_ = self._user_params(theta[:-1], theta[-1], layout)
        self.solver_state_ = result.state
        self.fit_history_ = result.history
        self.n_passes_ = objective.n_passes + stat_passes

    def _fit_distributed(self, X, y, init_params, client, progress, start, cache_bytes=None):
        plan = plan_data(X, y, self._population)
        layout, K = plan.layout, plan.n_outputs
        pool_kw = {"dtype": _kernel_dtype(), "cache_bytes": cache_bytes}
        with connect(client) as c, WorkerPool(c, plan, **pool_kw) as pool:
            stats_start = time.perf_counter()
            stats = merge_stats(plan, pool.statistics(), self.n_classes)
            self._encoder.set_classes(stats.classes)
            pool.encode(stats.classes)
            stats_seconds = time.perf_counter() - stats_start
            before = pool.info()
            streamed = any(info["streamed"] for info in before.values())
            if init_params is None:
                block, intercept = self._block_from_counts(
                    layout, stats.class_counts, stats.n_samples
                )
            else:
                block, intercept = self._check_params(init_params, layout, K)
            data = DistributedData(pool, stats, self.n_classes, streamed=streamed)
            penalty = self._penalty(layout, K, labels=(plan.features, plan.outputs))
            self._solve(PenalizedObjective(data, penalty), block, intercept, layout, progress)
            after = pool.info()
            self.fit_profile_ = {
                "workers": pool.workers,
                "n_chunks": len(plan.chunks),
                "chunk_rows": plan.chunk_rows,
                "statistics_seconds": stats_seconds,
                "passes": data.pass_log,
                "recoveries": pool.recoveries,
                "n_dropped": stats.n_dropped,
                "streamed": streamed,
                "cache": {
                    addr: {
                        "cache_bytes": info["cache_bytes"],
                        "cached_chunks": len(info["cached"]),
                        "streamed_chunks": len(info["streamed"]),
                        "cached_nbytes": info["nbytes"],
                        "memory_start": info["memory_start"],
                        "memory_end": info["memory"],
                    }
                    for addr, info in after.items()
                },
            }
        self.outputs_ = plan.outputs
        self.features_ = plan.features
        self.fit_time_ = time.perf_counter() - start
        gram = stats.gram[:-1, :-1] * stats.n_rows
        self._set_dof_and_scale(
            stats.n_samples, K, lambda: np.linalg.matrix_rank(gram, hermitian=True)
        )
        return self

    def _set_dof_and_scale(self, n, n_outputs, rank):
        """Residual degrees of freedom per output (n: samples per output; rank: callable)."""
        n = np.asarray(n)
        cm1 = self.n_classes - 1
        block = np.asarray(self._params_block()[0])
        if isinstance(self._regularizer, (Lasso, ElasticNet, GroupLasso)):
            nonzero = np.sum(~np.isclose(block, 0.0), axis=(0, 2))
            dof = n - nonzero - cm1
        elif isinstance(self._regularizer, Ridge):
            dof = (n - cm1 * block.shape[0] - cm1) * np.ones(n_outputs)
        else:
            dof = (n - rank() * cm1 - cm1) * np.ones(n_outputs)
        self.dof_resid_ = jnp.asarray(np.atleast_1d(dof))
        self.scale_ = jnp.ones(n_outputs)

    def initialize_optimizer_and_state(self, init_params, X, y):
        """Set up the solver for :meth:`update` loops and return its initial state.

        Parameters
        ----------
        init_params : (coef, intercept)
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
        y : array of shape (n_samples,) or (n_samples, n_outputs), labels among ``classes_``

        Returns
        -------
        distglm.solve.SolverState
        """
        self._encoder.check_is_set("initialize_optimizer_and_state")
        self._check_in_memory(X, "initialize_optimizer_and_state")
        layout, Xs, codes = self._prepare(X, y, "initialize_optimizer_and_state")
        block, intercept = self._check_params(init_params, layout, codes.shape[1])
        objective = self._objective(Xs, codes, layout)
        auto = {
            "smooth": objective.smooth,
            "n_params": (layout.n_features + 1) * self.n_classes,
            "n_outputs": codes.shape[1],
            "n_rows": Xs.shape[0],
            "separable": objective.penalty.is_separable(
                (layout.n_features + 1, codes.shape[1], self.n_classes)
            ),
        }
        solver = make_solver(self.solver_name, self._solver_kwargs, auto=auto)
        theta = objective.prox(self._theta(block, intercept), 0.0)
        self._update_ctx = (solver, objective.penalty, layout)
        return solver.init(
            objective, theta, ridge=self._ridge_for_precond(), mask=objective.penalty.mask
        )

    def update(self, params, opt_state, X, y, *args, n_samples=None, **kwargs):
        """One solver step on the batch ``(X, y)``.

        Parameters
        ----------
        params : (coef, intercept)
        opt_state : SolverState
            From :meth:`initialize_optimizer_and_state` or a previous :meth:`update`.
        X, y : the batch (labels among ``classes_``; not re-checked, for speed).
        n_samples : int, optional
            Total number of samples, used for ``dof_resid_``.

        Returns
        -------
        params, state
        """
        if args or kwargs:
            raise TypeError(f"update takes no extra arguments; got {args!r} {kwargs!r}.")
        self._encoder.check_is_set("update")
        self._check_in_memory(X, "update")
        if self._update_ctx is None:
            raise RuntimeError(
                "update needs a solver state: call initialize_optimizer_and_state first."
            )
        solver, penalty, layout = self._update_ctx
        layout_b, Xs, codes = self._prepare(X, y, "update", safe=False)
        layout_b.check_same(X, layout)
        block, intercept = self._check_params(params, layout, codes.shape[1])
        data = InMemoryData(Xs, codes, self.n_classes, dtype=_kernel_dtype())
        objective = PenalizedObjective(data, penalty)
        state = opt_state
        theta = self._theta(block, intercept)
        if hasattr(solver, "batch_step"):
            theta, state = solver.batch_step(objective, theta, state)
        else:
            if state.value is not None:  # values cached for another batch are not valid here
                state = type(state)(**{**vars(state), "value": None, "grad": None})
            theta, state = solver.step(objective, theta, state)
        self.coef_, self.intercept_ = self._user_params(theta[:-1], theta[-1], layout)
        self.solver_state_ = state
        if n_samples is not None and not isinstance(n_samples, int):
            raise TypeError(f"n_samples must be None or an int; got {type(n_samples).__name__}.")
        n = Xs.shape[0] if n_samples is None else n_samples
        self._set_dof_and_scale(
            np.full(codes.shape[1], n),
            codes.shape[1],
            lambda: _design_rank(Xs),
        )
        return (self.coef_, self.intercept_), state

    # ------------------------------------------------------------------ prediction
    def _check_is_fit(self):
        if self.coef_ is None or self.intercept_ is None:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call 'fit' with appropriate "
                "arguments first."
            )

    def _fitted_layout(self):
        """The design layout ``coef_`` implies (it may have been set by hand)."""
        return DesignLayout.from_coef(self.coef_)

    def _params_block(self):
        return self._to_block(self.coef_, self._fitted_layout()), jnp.asarray(
            self.intercept_ if self._population else self.intercept_[None]
        )

    def _lazy(self, block=None, intercept=None):
        """Parameters (the fitted ones by default) applied lazily to dask / xarray / sessions."""
        if block is None:
            self._check_is_fit()
            block, intercept = self._params_block()
        outputs = self.outputs_ if self.outputs_ is not None else np.arange(block.shape[1])
        return LazyModel(block, intercept, self.classes_, outputs, self._population)

    def _log_proba(self, X):
        self._check_is_fit()
        layout = DesignLayout.from_design(X)
        block, intercept = self._params_block()
        layout.check_same(X, self._fitted_layout())
        Xs = jnp.asarray(layout.stack(X, _kernel_dtype()))
        lp = jax.nn.log_softmax(linear_predictor(block.astype(Xs.dtype), intercept, Xs), -1)
        return lp if self._population else lp[:, 0, :]

    def predict(self, X):
        """Most probable class of each sample (and output).

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays

        Returns
        -------
        labels : array of shape (n_samples,) or (n_samples, n_outputs), in ``classes_``' type

        Distributed inputs (a dask array, a dask-backed DataArray, or sessions) give lazy results:
        a dask array, an xarray DataArray with coordinates for xarray input, or a dict
        ``session id -> DataArray`` (that session's outputs) for sessions.
        """
        self._encoder.check_is_set("predict")
        if is_distributed_input(X):
            return self._lazy().predict(X)
        return self._encoder.decode(jnp.argmax(self._log_proba(X), axis=-1))

    def predict_proba(self, X, return_type="log-proba"):
        """Class probabilities (or their logarithms).

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
        return_type : {"log-proba", "proba"}

        Returns
        -------
        array of shape (n_samples, [n_outputs,] n_classes); column ``i`` is ``classes_[i]``.

        Distributed inputs (a dask array, a dask-backed DataArray, or sessions) give lazy results:
        a dask array, an xarray DataArray with coordinates for xarray input, or a dict
        ``session id -> DataArray`` (that session's outputs) for sessions.
        """
        self._encoder.check_is_set("predict_proba")
        if return_type not in ("log-proba", "proba"):
            raise ValueError(f"return_type must be 'log-proba' or 'proba'; got {return_type!r}.")
        if is_distributed_input(X):
            return self._lazy().log_proba(X, proba=return_type == "proba")
        lp = self._log_proba(X)
        if return_type == "log-proba":
            return lp
        p = jnp.exp(lp)
        return p / p.sum(axis=-1, keepdims=True)

    def simulate(self, random_key, feedforward_input):
        """Draw one label per sample (and output) from the fitted model.

        Parameters
        ----------
        random_key : jax.Array
        feedforward_input : array of shape (n_samples, n_features) or dict of 2-D arrays

        Returns
        -------
        y : array of shape (n_samples,) or (n_samples, n_outputs), labels in ``classes_``
        log_proba : array of shape (n_samples, [n_outputs,] n_classes)
            The model's log-probabilities the labels were drawn from.

        Distributed inputs (a dask array, a dask-backed DataArray, or sessions) give lazy results:
        a dask array, an xarray DataArray with coordinates for xarray input, or a dict
        ``session id -> DataArray`` (that session's outputs) for sessions.
        Lazy draws use ``fold_in(random_key, chunk index)`` per row chunk: reproducible for a
        key and a chunking, but not the same draws as in memory.
        """
        self._encoder.check_is_set("simulate")
        if is_distributed_input(feedforward_input):
            return self._lazy().simulate(random_key, feedforward_input)
        lp = self._log_proba(feedforward_input)
        draws = jax.random.categorical(random_key, lp)
        return self._encoder.decode(draws), lp

    @staticmethod
    def _check_in_memory(X, method):
        if is_distributed_input(X):
            raise TypeError(
                f"{method} works on in-memory arrays; got distributed data "
                f"({type(X).__name__}). Fit dask, xarray or session data with fit(), which "
                "runs its own solver loop on the cluster."
            )

    def compute_loss(self, params, X, y=None):
        """Mean negative log-likelihood over samples, summed over outputs (no penalty).

        Parameters
        ----------
        params : (coef, intercept)
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
            Or distributed data (computed in one pass; sessions carry their y).
        y : labels among ``classes_``; rows with NaN/Inf are dropped.

        Returns
        -------
        scalar jax array
        """
        self._encoder.check_is_set("compute_loss")
        if is_distributed_input(X):
            ok = isinstance(params, (tuple, list)) and len(params) == 2
            layout = DesignLayout.from_coef(params[0]) if ok else None
            block, intercept = self._check_params(params, layout)
            ll, counts = self._lazy(block, intercept).score_sums(X, y)
            return jnp.asarray(-np.sum(ll / np.maximum(counts.sum(axis=1), 1)), _kernel_dtype())
        if y is None:
            raise ValueError("compute_loss needs y for in-memory X (only sessions carry labels).")
        layout, Xs, codes = self._prepare(X, y, "compute_loss")
        block, intercept = self._check_params(params, layout, codes.shape[1])
        ll = self._sample_ll(block, intercept, Xs, codes)
        return -jnp.sum(jnp.mean(ll, axis=0))

    def _sample_ll(self, block, intercept, Xs, codes):
        Xj = jnp.asarray(Xs)
        return per_sample_log_likelihood(
            jnp.asarray(block, Xj.dtype), jnp.asarray(intercept, Xj.dtype), Xj, jnp.asarray(codes)
        )

    def score(self, X, y=None, score_type="log-likelihood", aggregate_sample_scores=jnp.mean):
        """Score the model on ``(X, y)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
            Or distributed data (a dask array / DataArray, or sessions, which carry their y):
            then the score is aggregated over the whole dataset in one pass, over every
            recorded (sample, output) entry, and ``aggregate_sample_scores`` must be a mean or
            a sum (the null model of the pseudo-R2 uses each output's class frequencies).
        y : labels among ``classes_``; rows with NaN/Inf are dropped. None for sessions.
        score_type : {"log-likelihood", "pseudo-r2-McFadden", "pseudo-r2-Cohen"}
        aggregate_sample_scores : callable
            Reduces the per-sample scores, of shape (n_samples,) or (n_samples, n_outputs).

        Returns
        -------
        scalar jax array
        """
        self._encoder.check_is_set("score")
        self._check_is_fit()
        if score_type not in _SCORE_TYPES:
            raise NotImplementedError(
                f"score_type {score_type!r} is not implemented; use one of {list(_SCORE_TYPES)}."
            )
        if is_distributed_input(X):
            return self._score_distributed(X, y, score_type, aggregate_sample_scores)
        if y is None:
            raise ValueError("score needs y for in-memory X (only sessions carry their labels).")
        layout, Xs, codes = self._prepare(X, y, "score")
        block, intercept = self._params_block()
        layout.check_same(X, self._fitted_layout())
        ll = self._sample_ll(block, intercept, Xs, codes)
        if not self._population:
            ll = ll[:, 0]
        if score_type == "log-likelihood":
            return aggregate_sample_scores(ll)
        c = self.n_classes
        freq = np.stack([np.bincount(codes[:, j], minlength=c) for j in range(codes.shape[1])])
        freq = np.clip(freq / codes.shape[0], np.finfo(np.float32).eps, 1.0)
        ll_null = jnp.asarray(np.log(freq)[np.arange(codes.shape[1])[None, :], codes], ll.dtype)
        if not self._population:
            ll_null = ll_null[:, 0]
        if score_type == "pseudo-r2-McFadden":
            return 1 - aggregate_sample_scores(ll) / aggregate_sample_scores(ll_null)
        dev_model = aggregate_sample_scores(-2 * ll)
        dev_null = aggregate_sample_scores(-2 * ll_null)
        return (dev_null - dev_model) / dev_null

    def _score_distributed(self, X, y, score_type, aggregate):
        """Whole-dataset score from per-output sums gathered in one pass (mean or sum only)."""
        if aggregate not in (jnp.mean, np.mean, jnp.sum, np.sum):
            raise ValueError(
                "Over distributed data, score aggregates with a mean or a sum over all "
                f"(sample, output) entries (jnp.mean, np.mean, jnp.sum, np.sum); got "
                f"{aggregate!r}. Compute per-sample scores from predict_proba instead."
            )
        ll, counts = self._lazy().score_sums(X, y)
        n = counts.sum(axis=1)
        freq = np.clip(counts / np.maximum(n, 1)[:, None], np.finfo(np.float32).eps, 1.0)
        ll_null = np.sum(counts * np.log(freq), axis=1)
        total = n.sum()
        if score_type == "log-likelihood":
            value = ll.sum() / total if aggregate in (jnp.mean, np.mean) else ll.sum()
            return jnp.asarray(value, _kernel_dtype())
        # McFadden and Cohen coincide for a mean or a sum: 1 - L / L_null
        return jnp.asarray(1.0 - ll.sum() / ll_null.sum(), _kernel_dtype())


class _ProgressLine:
    """Prints one updating line per iteration: objective, estimated gap and passes."""

    def __init__(self, solver):
        self.tol = solver.tol
        self.first_gap = None

    def __call__(self, entry):
        gap = max(entry["gap"], 1e-300)
        if self.first_gap is None:
            self.first_gap = max(gap, self.tol * 10)
        span = np.log10(self.first_gap) - np.log10(self.tol)
        done = np.clip((np.log10(self.first_gap) - np.log10(gap)) / max(span, 1e-12), 0, 1)
        bar = "#" * int(np.round(30 * done))
        sys.stderr.write(
            f"\r[{bar:<30}] iter {entry['iteration']:>3}  objective {entry['objective']:.6f}  "
            f"gap {entry['gap']:.1e}  passes {entry['passes']}  {entry['seconds']:.1f} s"
        )
        sys.stderr.flush()


class ClassifierGLM(_Classifier):
    """Multinomial (softmax) GLM for one categorical output, nemos-compatible.

    Parameters
    ----------
    n_classes : int, default 2
        Number of classes (>= 2).
    inverse_link_function : callable, optional
        Must be ``jax.nn.log_softmax`` (the default).
    regularizer : str or Regularizer, default "Ridge"
        One of "UnRegularized", "Ridge", "Lasso", "ElasticNet", "GroupLasso", or an instance.
    regularizer_strength : float, array, or (strength, ratio) for ElasticNet; default 1.0
    solver_name : {"LBFGS", "GradientDescent", "ProximalGradient"}, optional
        Defaults to LBFGS for smooth penalties and ProximalGradient otherwise.
    solver_kwargs : dict, optional
        ``tol``, ``maxiter`` and the solver's other options.

    Attributes
    ----------
    coef_ : array of shape (n_features, n_classes), or a dict like X's
    intercept_ : array of shape (n_classes,)
    classes_ : array of shape (n_classes,)
    fit_history_ : list of dict
        Per iteration: objective, grad_norm, gap, seconds, passes (cumulative, the statistics
        pass included).
    n_passes_ : int
        Passes over the data the last fit made (the statistics pass included).
    outputs_ : array of shape (n_outputs,)
        Ids of coef_'s output axis: the union of the sessions' output ids, y's ``output``
        coordinate, or ``0..n_outputs-1``.
    features_ : array of shape (n_features,) or None
        Feature labels of distributed data that has them (the ``feature`` coordinate).
    fit_profile_ : dict or None
        Distributed fits only: workers, n_chunks, chunk_rows, statistics_seconds, recoveries
        (lost workers recovered from), n_dropped (rows with NaN/Inf, per session) and passes
        (per pass: seconds at the coordinator, compute of the slowest worker, overhead).
    """

    _population = False


class ClassifierPopulationGLM(_Classifier):
    """Multinomial (softmax) GLM for many categorical outputs sharing one design, nemos-compatible.

    Parameters
    ----------
    n_classes, inverse_link_function, regularizer, regularizer_strength, solver_name,
    solver_kwargs : see :class:`ClassifierGLM`.
    feature_mask : array of shape (n_features, n_outputs, n_classes), a dict like X's, or DataArray
        1 where a coefficient is used, 0 where it is held at exactly 0. An ``xarray.DataArray``
        with dims ``feature`` and ``output`` (and optionally ``class``) is aligned to the data
        by its coordinate labels.

    Attributes
    ----------
    coef_ : array of shape (n_features, n_outputs, n_classes), or a dict like X's
    intercept_ : array of shape (n_outputs, n_classes)
    classes_, fit_history_, n_passes_, outputs_, features_, fit_profile_ : see ClassifierGLM.
    """

    _population = True

    def __init__(
        self,
        n_classes=2,
        inverse_link_function=None,
        regularizer=None,
        regularizer_strength=None,
        solver_name=None,
        solver_kwargs=None,
        feature_mask=None,
    ):
        super().__init__(
            n_classes,
            inverse_link_function,
            regularizer,
            regularizer_strength,
            solver_name,
            solver_kwargs,
        )
        self.feature_mask = feature_mask

    @property
    def feature_mask(self):
        """0/1 mask of coef_'s shape (or a dict like X's); None uses every coefficient."""
        return self._feature_mask

    @feature_mask.setter
    def feature_mask(self, mask):
        if self.coef_ is not None and self.intercept_ is not None:
            raise AttributeError("feature_mask cannot be set after the model is fitted.")
        if isinstance(mask, xr.DataArray):
            missing = {"feature", "output"} - set(mask.dims)
            extra = set(mask.dims) - {"feature", "output", "class"}
            if missing or extra:
                raise ValueError(
                    "A DataArray feature_mask needs dims 'feature' and 'output' (and optionally "
                    f"'class'); got dims {mask.dims}."
                )
            values = np.asarray(mask.values, dtype=float)
            if np.any((values != 0) & (values != 1)):
                bad = np.unique(values[(values != 0) & (values != 1)])[:5].tolist()
                raise ValueError(f"feature_mask must contain only 0s and 1s; found {bad}.")
            self._feature_mask = mask
            return
        if mask is not None:
            leaves = jax.tree_util.tree_leaves(mask)
            arrays = [np.asarray(m, dtype=float) for m in leaves]
            for m in arrays:
                if np.any((m != 0) & (m != 1)):
                    bad = np.unique(m[(m != 0) & (m != 1)])[:5].tolist()
                    raise ValueError(f"feature_mask must contain only 0s and 1s; found {bad}.")
                if m.ndim != 3:
                    raise ValueError(
                        "feature_mask arrays must have shape (n_features, n_outputs, n_classes); "
                        f"got shape {m.shape}."
                    )
            mask = (
                {k: jnp.asarray(v, float) for k, v in mask.items()}
                if isinstance(mask, dict)
                else jnp.asarray(mask, float)
            )
        self._feature_mask = mask

    def _mask_block(self, layout, n_outputs, labels=None):
        if self._feature_mask is None:
            return None
        mask = self._feature_mask
        if isinstance(mask, xr.DataArray):
            return self._aligned_mask(mask, layout, n_outputs, labels)
        if (layout.keys is None) != (not isinstance(mask, dict)):
            raise ValueError(
                "feature_mask and X must have the same structure: "
                f"feature_mask is {'a dict' if isinstance(mask, dict) else 'an array'}, "
                f"X is {'a dict' if layout.keys is not None else 'an array'}."
            )
        block = np.asarray(layout.join(mask, "feature_mask"))
        want = (layout.n_features, n_outputs, self.n_classes)
        if block.shape != want:
            raise ValueError(f"feature_mask must match coef's shape {want}; got {block.shape}.")
        return block

    def _aligned_mask(self, mask, layout, n_outputs, labels):
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
                raise ValueError(
                    f"feature_mask has no {dim} {absent[:8]} (the data's {dim} labels)."
                )
            mask = mask.sel({dim: np.asarray(want)})
        order = ["feature", "output"] + (["class"] if "class" in mask.dims else [])
        values = np.asarray(mask.transpose(*order).values, dtype=float)
        if values.ndim == 2:
            values = np.repeat(values[:, :, None], self.n_classes, axis=2)
        want_shape = (layout.n_features, n_outputs, self.n_classes)
        if values.shape != want_shape:
            raise ValueError(
                f"feature_mask must match coef's shape {want_shape}; got {values.shape}."
            )
        return values
