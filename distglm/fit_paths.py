"""The three ways a fit reaches the fit driver: rows in memory, distributed inputs (dask,
xarray, sessions) read through a data session it opens, and a data session the user opened.

:class:`FitPaths` is mixed into the estimators. Each path builds the data term and the starting
parameters, hands them with the model's :class:`~distglm.spec.ModelSpec` to
:func:`distglm.fit.run_fit` (or to the checkpointing run), and passes the result to the host's
``_set_fitted``. Which path a call takes is decided once, in the estimator's ``fit``.
"""

from __future__ import annotations

import abc
import functools

import numpy as np
import xarray as xr

from .batch import design_rank
from .data import plan_data
from .data.sizes import check_client_sizes
from .distribute import open_plan
from .encoding import LabelEncoder
from .fit import initial_theta, run_fit
from .inputs import DesignLayout, as_label_array
from .inputs import theta_from_blocks as _theta
from .persist.checkpoint import memory_fit_data, plan_fingerprint, session_fit_data
from .solve import InMemoryData
from .spec import kernel_dtype

__all__ = ["FitPaths"]


class FitPaths(abc.ABC):
    """The estimators' fit paths (mixed into them).

    The host holds ``n_classes``, ``solver_name``, ``_solver_kwargs``, ``_population``, its label
    encoder ``_encoder`` and ``classes_``, and provides the methods declared abstract here.
    """

    n_classes: int
    solver_name: str | None
    _solver_kwargs: dict
    _population: bool
    _encoder: LabelEncoder
    classes_: np.ndarray | None

    @abc.abstractmethod
    def _prepare(self, X, y, method, safe=True):
        """Layout, stacked finite rows of X, and label codes of shape (n, n_outputs)."""

    @abc.abstractmethod
    def _blocks(self, params, layout, n_outputs=None):
        """User parameters as (block, intercept) of the fit's layout."""

    @abc.abstractmethod
    def _initial(self, layout, codes):
        """Starting parameters (theta) from the label codes."""

    @abc.abstractmethod
    def _spec(self, layout, n_outputs, labels=None):
        """The model's :class:`~distglm.spec.ModelSpec` for this layout."""

    @abc.abstractmethod
    def _set_fitted(self, result, layout, outputs, features, n_samples, rank, profile):
        """Every fitted attribute, from one fit's result."""

    @staticmethod
    def _run(spec, data, theta0, callbacks, ckpt, saved, fit_data):
        """The fit driver, or the checkpointing run when ``ckpt`` is given."""
        if ckpt is None:
            return run_fit(spec, data, theta0, callbacks=callbacks)
        return ckpt.run(spec, data, theta0, callbacks, saved, fit_data)

    def _fit_distributed(self, X, y, init_params, callbacks, client, options, ckpt):
        """Dask, xarray or session inputs: plan them, open a data session for this fit and fit
        it (from a complete checkpoint: its saved result, without reading the data)."""
        cache_bytes, drop_empty_sessions = options
        dtype = str(kernel_dtype())
        plan = plan_data(X, y, self._population)
        sizes = functools.partial(
            check_client_sizes,
            n_classes=self.n_classes,
            solver_name=self.solver_name or "auto",
            solver_kwargs=self._solver_kwargs,
        )
        sizes(plan)  # before any worker is asked; again once the plan is split for them
        saved = None if ckpt is None else ckpt.begin(plan_fingerprint(plan, dtype))
        if saved is not None and saved.complete:  # its result, without reading the data
            stats = saved.data.stats
            self._encoder.set_classes(saved.data.classes)
            self._set_fitted(
                saved.result(),
                plan.layout,
                plan.outputs,
                plan.features,
                stats.n_samples,
                stats.design_rank,
                None,
            )
            return
        reuse = (
            {}
            if saved is None
            else {
                "stats": saved.data.stats,
                "chunk_kept": saved.data.chunk_kept,
                "unit_rows": saved.data.unit_rows,
            }
        )
        with open_plan(
            plan,
            n_classes=self.n_classes,
            client=client,
            dtype=dtype,
            cache_bytes=cache_bytes,
            drop_empty_sessions=drop_empty_sessions,
            check_plan=sizes,
            **reuse,
        ) as session:
            self._fit_session(session, init_params, callbacks, ckpt, saved)

    def _fit_in_memory(self, X, y, init_params, callbacks, cache_bytes, ckpt):
        """In-memory arrays: set the classes, encode and stack the rows, fit in this process."""
        if cache_bytes is not None:
            raise ValueError(
                "cache_bytes applies to distributed inputs (dask arrays, xarray, sessions); "
                f"X is in memory ({type(X).__name__})."
            )
        if y is None:
            raise ValueError(
                "fit requires y to be passed, but the target y is None (only sessions carry "
                "their labels; in-memory X needs y)."
            )
        y_arr = as_label_array(y, DesignLayout.from_design(X).n_samples(X), self._population)
        self._encoder.set_classes(y_arr[np.isfinite(y_arr)] if y_arr.dtype.kind == "f" else y_arr)
        layout, Xs, codes = self._prepare(X, y_arr, "fit")
        K = codes.shape[1]
        if init_params is None:
            theta0 = self._initial(layout, codes)
        else:
            theta0 = _theta(*self._blocks(init_params, layout, K))
        data = InMemoryData(Xs, codes, self.n_classes, dtype=kernel_dtype())
        outputs = np.arange(K)
        if isinstance(y, xr.DataArray) and y.ndim == 2 and y.dims[1] in y.coords:
            outputs = np.asarray(y.coords[y.dims[1]].values)
        fit_data = saved = None
        if ckpt is not None:
            fit_data = memory_fit_data(layout, Xs, codes, self.classes_, outputs, kernel_dtype())
            saved = ckpt.begin(fit_data.fingerprint)
        result = self._run(self._spec(layout, K), data, theta0, callbacks, ckpt, saved, fit_data)
        self._set_fitted(
            result, layout, outputs, None, np.full(K, Xs.shape[0]), lambda: design_rank(Xs), None
        )

    def _fit_session(self, session, init_params, callbacks, ckpt=None, saved=None):
        """An open :class:`~distglm.DataSession` (the user's, or one this fit opened)."""
        if session.n_classes != self.n_classes:
            raise ValueError(
                f"The data session was opened for n_classes={session.n_classes}; this model "
                f"has n_classes={self.n_classes}."
            )
        plan, stats = session.plan, session.stats
        check_client_sizes(plan, self.n_classes, self.solver_name or "auto", self._solver_kwargs)
        self._encoder.set_classes(session.classes)
        layout, K = plan.layout, plan.n_outputs
        if init_params is None:
            theta0 = initial_theta(layout.n_features, stats.class_counts, stats.n_samples)
        else:
            theta0 = _theta(*self._blocks(init_params, layout, K))
        term = session.term()
        spec = self._spec(layout, K, labels=(plan.features, plan.outputs))
        fit_data = None if ckpt is None else session_fit_data(session)
        result = self._run(spec, term, theta0, callbacks, ckpt, saved, fit_data)
        term.mark_last()
        profile = session.profile(term)
        self._set_fitted(
            result,
            layout,
            plan.outputs,
            plan.features,
            stats.n_samples,
            session.design_rank,
            profile,
        )
