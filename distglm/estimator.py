"""The estimators: ``ClassifierGLM`` and ``ClassifierPopulationGLM``, nemos-compatible.

A thin shell over the fit path. Its facets live beside it: the constructor parameters and
scikit-learn's protocol (:mod:`distglm.params`), nemos' batch API (:mod:`distglm.batch`),
prediction and scoring (:mod:`distglm.predict`), and the three paths a fit takes to the fit driver
(:mod:`distglm.fit_paths`: in memory, distributed inputs, a data session). Here, :meth:`fit`
checks its arguments and picks the path; the parameters become a
:class:`~distglm.spec.ModelSpec` (``_spec``), and the fitted attributes are set from the
driver's :class:`~distglm.fit.FitResult` in one place (``_set_fitted``).

Internally both estimators are population models: a single-output ``ClassifierGLM`` is the
population model with one output, and its ``coef_`` is shown without that axis.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from .batch import BatchFitting
from .data import is_distributed_input
from .distribute import DataSession
from .fit import FitResult, initial_theta
from .fit_paths import FitPaths
from .inputs import CoefView, DesignLayout, design_and_codes, params_to_block
from .kernels.compile_cache import enable_compile_cache
from .labelled import Reporting
from .mask import check_feature_mask, mask_block
from .params import ClassifierParams
from .persist.checkpoint import Checkpointing, session_fit_data
from .persist.facet import Keeping
from .predict import Prediction
from .progress import fit_callbacks
from .pynapple_io import support_pynapple
from .sklearn_compat import SklearnConventions
from .spec import kernel_dtype, model_spec

__all__ = ["ClassifierGLM", "ClassifierPopulationGLM"]


class _Classifier(
    ClassifierParams, BatchFitting, FitPaths, Prediction, Keeping, SklearnConventions, Reporting
):
    """Shared implementation; use :class:`ClassifierGLM` or :class:`ClassifierPopulationGLM`."""

    #: set to None by the constructor, and by a fit from its result
    _fitted_attributes = (
        "coef_",
        "intercept_",
        "scale_",
        "dof_resid_",
        "solver_state_",
        "solver_",
        "fit_history_",
        "n_passes_",
        "outputs_",
        "features_",
        "fit_profile_",
        "fit_time_",
        # the columns and metadata of the pynapple TsdFrame of labels fitted on (None for other
        # labels), given back on pynapple predictions: saved with the model
        "_pynapple_labels",
    )

    def __repr__(self):
        text = ClassifierParams.__repr__(self)
        return text if self.coef_ is None else f"{text}  # {self.fitted_description()}"

    # ------------------------------------------------------------------ shapes
    def _squeeze(self, arr):
        """Drop the output axis (axis 1) of a single-output model's results."""
        return arr if self._population else arr[:, 0]

    def _prepare(self, X, y, method, safe=True):
        """Layout, stacked finite rows of X, and label codes of shape (n, n_outputs)."""

        def encode(labels):
            return self._encoder.encode(labels, safe=safe)

        return design_and_codes(X, y, encode, self._population, method, kernel_dtype())

    def _blocks(self, params, layout, n_outputs=None):
        return params_to_block(params, layout, self.n_classes, self._population, n_outputs)

    def _user_params(self, theta, layout):
        dtype = kernel_dtype()
        block, intercept = jnp.asarray(theta[:-1], dtype), jnp.asarray(theta[-1], dtype)
        view = CoefView(layout, self._population)
        return view(block), intercept if self._population else intercept[0]

    def _mask_block(self, layout, n_outputs, labels=None):
        return None

    @staticmethod
    def _check_in_memory(X, method):
        if is_distributed_input(X) or isinstance(X, DataSession):
            raise TypeError(
                f"{method} works on in-memory arrays; got distributed data "
                f"({type(X).__name__}). Fit dask, xarray or session data with fit(), which "
                "runs its own solver loop on the cluster."
            )

    def _spec(self, layout, n_outputs, labels=None):
        return model_spec(
            n_classes=self.n_classes,
            regularizer=self._regularizer,
            strength=self._regularizer_strength,
            solver_name=self.solver_name,
            solver_kwargs=self._solver_kwargs,
            layout=layout,
            n_outputs=n_outputs,
            population=self._population,
            mask=self._mask_block(layout, n_outputs, labels),
        )

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

    def _initial(self, layout, codes):
        c = self.n_classes
        counts = np.stack([np.bincount(codes[:, j], minlength=c) for j in range(codes.shape[1])])
        return initial_theta(layout.n_features, counts, np.full(codes.shape[1], codes.shape[0]))

    @support_pynapple
    def fit(
        self,
        X,
        y=None,
        init_params=None,
        *,
        client=None,
        callback=None,
        progress=False,
        cache_bytes=None,
        checkpoint=None,
        checkpoint_every=None,
        resume=True,
        drop_empty_sessions=False,
    ):
        """Fit the model, in memory or over a Dask cluster.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or a dict of 2-D arrays
            In memory. Rows with NaN or Inf (in X or y) are dropped. Distributed inputs are
            fitted on Dask workers: a dask array (or dict of them) chunked along samples, a
            dask-backed ``xarray.DataArray`` (sample, feature), sessions (the result of
            :func:`distglm.open_sessions`, a store path, or a list/dict of xarray Datasets),
            which carry their own labels, or an open :class:`~distglm.DataSession`
            (:func:`distglm.open_data`), whose chunks are already on the workers.
        y : array of shape (n_samples,) (ClassifierGLM) or (n_samples, n_outputs)
            Labels of any hashable type; every one of ``n_classes`` labels must occur. A dask
            array or DataArray with distributed X; None for sessions.
        init_params : (coef, intercept), optional
            Starting point; defaults to zero coefficients and intercepts matching the class
            frequencies.
        client : distributed.Client, optional
            Distributed inputs only: the cluster to use. Defaults to the current Dask client;
            without one, a LocalCluster is started for the call and closed after it.
        callback : callable or list of callables, optional
            Called after every iteration with a :class:`distglm.solve.IterationRecord`
            (``iteration``, ``objective``, ``gap``, ``passes``, ``seconds``, ``status``, the
            parameters ``theta`` and the solver ``state``).
        progress : bool
            Print a progress line per iteration to stderr (a callback).
        cache_bytes : float, int or str, optional
            Distributed inputs only: each worker's budget for caching decoded chunks. By
            default the worker's memory limit up to Dask's pause/terminate fraction, less its
            measured runtime and the chunks in flight (see
            :func:`~distglm.distribute.budget.default_cache_bytes`). A float in [0, 1] is a
            fraction of the worker's memory limit, an int a number of bytes, a string a size
            such as ``"2 GiB"``. Chunks past the budget are re-read
            from the store on every pass (the next one read while the current one is computed),
            so a worker's memory stays within the budget plus a few chunks and its runtime.
        checkpoint : str or path, optional
            A file (one ``.npz``, whatever the suffix) where the fit's whole state is written
            after every iteration, atomically. Called again after the process died, the same
            fit resumes from it (see ``resume``) with the remaining passes only, reusing the
            saved statistics instead of re-reading the store for them (``init_params`` only
            starts a fresh fit).
        checkpoint_every : float, optional
            Write the checkpoint at most every this many seconds (None: every iteration).
        resume : bool
            Continue from ``checkpoint`` when it exists (a complete one returns at once); its
            data, model parameters and distglm version must be this fit's, else
            :class:`~distglm.exceptions.CheckpointMismatchError` names what differs. False
            starts over and replaces it. ``n_passes_`` then counts this call's passes and
            ``fit_history_`` holds the whole fit's history.
        drop_empty_sessions : bool
            Distributed inputs only: leave out (with a warning) a session whose rows are all
            dropped for NaN/Inf, instead of refusing it. Dropped rows are logged per session
            (logger ``distglm.data``) and warned about above 1% of a session.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        enable_compile_cache()
        callbacks = fit_callbacks(callback, progress)
        ckpt = (
            None
            if checkpoint is None
            else Checkpointing(checkpoint, checkpoint_every, resume, self)
        )
        if isinstance(X, DataSession):
            saved = None if ckpt is None else ckpt.begin(session_fit_data(X).fingerprint)
            self._fit_session(X, init_params, callbacks, ckpt, saved)
        elif is_distributed_input(X):
            self._fit_distributed(
                X, y, init_params, callbacks, client, (cache_bytes, drop_empty_sessions), ckpt
            )
        else:
            self._fit_in_memory(X, y, init_params, callbacks, cache_bytes, ckpt)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _set_fitted(self, result: FitResult, layout, outputs, features, n_samples, rank, profile):
        """Every fitted attribute, from one fit's result."""
        self.coef_, self.intercept_ = self._user_params(result.theta, layout)
        self.solver_ = result.solver
        self.solver_state_ = result.state
        self.fit_history_ = result.history
        self.n_passes_ = result.n_passes
        self.outputs_ = outputs
        self.features_ = features
        self.fit_profile_ = profile
        self._set_dof_and_scale(n_samples, rank)

    def _set_dof_and_scale(self, n_samples, rank):
        """Residual degrees of freedom per output (n_samples per output; rank: callable)."""
        block = np.asarray(
            CoefView(DesignLayout.from_coef(self.coef_), self._population).inverse(self.coef_)
        )
        dof = self._regularizer.residual_dof(n_samples, block, rank, self.n_classes)
        self.dof_resid_ = jnp.asarray(np.atleast_1d(dof))
        self.scale_ = jnp.ones(block.shape[1])


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
    solver_name : {"LBFGS", "GradientDescent", "ProximalGradient", "Newton", "auto"}, optional
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
        Passes over the data the last fit made (the statistics pass included when it made one).
    solver_ : str
        The solver the last fit ran (what ``"auto"`` chose).
    solver_state_ : distglm.solve.SolverState
        Its final state (typed, frozen).
    outputs_ : array of shape (n_outputs,)
        Ids of coef_'s output axis: the union of the sessions' output ids, y's ``output``
        coordinate, or ``0..n_outputs-1``.
    features_ : array of shape (n_features,) or None
        Feature labels of distributed data that has them (the ``feature`` coordinate).
    fit_profile_ : dict or None
        Distributed fits only: workers, n_chunks, chunk_rows, unit_rows (the rows the data's
        chunks were split into to balance the workers, or None), statistics_seconds, recoveries
        (lost workers recovered from), n_dropped (rows with NaN/Inf, per session), streamed,
        cache (per worker) and passes (per pass: seconds at the coordinator, compute of the
        slowest worker, overhead, the coordinator process's CPU seconds).
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
    classes_, fit_history_, n_passes_, solver_, solver_state_, outputs_, features_,
    fit_profile_ : see ClassifierGLM.
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
        """0/1 mask of coef_'s shape (or a dict like X's, or a DataArray); None uses every
        coefficient."""
        return self._feature_mask

    @feature_mask.setter
    def feature_mask(self, mask):
        if self.coef_ is not None and self.intercept_ is not None:
            raise AttributeError("feature_mask cannot be set after the model is fitted.")
        self._feature_mask = check_feature_mask(mask)

    def _mask_block(self, layout, n_outputs, labels=None):
        return mask_block(self._feature_mask, layout, n_outputs, self.n_classes, labels)
