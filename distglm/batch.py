"""nemos' batch-fitting API: ``initialize_params``, ``initialize_optimizer_and_state`` and
``update``, for loops that step a solver over batches the caller holds in memory.

:class:`BatchFitting` is a facet of the estimators; it steps through the fit driver's
:func:`~distglm.fit.init_batches` and :func:`~distglm.fit.step_batch`, and relies on the
estimator hooks it declares.
"""

from __future__ import annotations

import abc

import numpy as np

from .fit import init_batches, step_batch
from .inputs import theta_from_blocks as _theta
from .pynapple_io import support_pynapple
from .solve import InMemoryData
from .spec import kernel_dtype

__all__ = ["BatchFitting", "design_rank"]


def design_rank(Xs):
    """Rank of an in-memory design (for the unregularised residual degrees of freedom)."""
    return np.linalg.matrix_rank(np.asarray(Xs, np.float64)) if Xs.shape[0] else 0


class BatchFitting(abc.ABC):
    """nemos' batch API of a categorical GLM (mixed into the estimators)."""

    # the estimator hooks this facet steps with
    @abc.abstractmethod
    def _prepare(self, X, y, method, safe=True):
        """Layout, stacked finite rows of X and codes (n, n_outputs) of an in-memory batch."""

    @abc.abstractmethod
    def _blocks(self, params, layout, n_outputs=None):
        """User ``(coef, intercept)`` as blocks, checked."""

    @abc.abstractmethod
    def _spec(self, layout, n_outputs, labels=None):
        """The ModelSpec of a fit on data of this shape."""

    @abc.abstractmethod
    def _initial(self, layout, codes):
        """The default starting parameters for these codes."""

    @abc.abstractmethod
    def _user_params(self, theta, layout):
        """Parameters ``theta`` in the user's structure."""

    @abc.abstractmethod
    def _set_dof_and_scale(self, n_samples, rank):
        """Set ``dof_resid_`` and ``scale_``."""

    @staticmethod
    @abc.abstractmethod
    def _check_in_memory(X, method):
        """Refuse distributed data for in-memory methods."""

    @support_pynapple
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
        return self._user_params(self._initial(layout, codes), layout)

    @support_pynapple
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
            It carries the solver and its context (preconditioner, step bound) that later
            :meth:`update` calls step with.
        """
        self._encoder.check_is_set("initialize_optimizer_and_state")
        self._check_in_memory(X, "initialize_optimizer_and_state")
        layout, Xs, codes = self._prepare(X, y, "initialize_optimizer_and_state")
        theta = _theta(*self._blocks(init_params, layout, codes.shape[1]))
        data = InMemoryData(Xs, codes, self.n_classes, dtype=kernel_dtype())
        return init_batches(self._spec(layout, codes.shape[1]), data, theta)

    @support_pynapple
    def initialize_solver_and_state(self, X, y, init_params):
        """nemos 0.2.8's name and argument order for :meth:`initialize_optimizer_and_state`.

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
        y : array of shape (n_samples,) or (n_samples, n_outputs), labels among ``classes_``
        init_params : (coef, intercept)

        Returns
        -------
        distglm.solve.SolverState
            The same state :meth:`initialize_optimizer_and_state` returns.
        """
        self._encoder.check_is_set("initialize_solver_and_state")
        return self.initialize_optimizer_and_state(init_params, X, y)

    @support_pynapple
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
        if n_samples is not None and not isinstance(n_samples, int):
            raise TypeError(f"n_samples must be None or an int; got {type(n_samples).__name__}.")
        layout, Xs, codes = self._prepare(X, y, "update", safe=False)
        data = InMemoryData(Xs, codes, self.n_classes, dtype=kernel_dtype())
        theta = _theta(*self._blocks(params, layout, codes.shape[1]))
        theta, state = step_batch(self._spec(layout, codes.shape[1]), data, theta, opt_state)
        self.coef_, self.intercept_ = self._user_params(theta, layout)
        self.solver_state_ = state
        n = Xs.shape[0] if n_samples is None else n_samples
        self._set_dof_and_scale(np.full(codes.shape[1], n), lambda: design_rank(Xs))
        return (self.coef_, self.intercept_), state
