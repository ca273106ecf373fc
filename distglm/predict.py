"""Fitted parameters at work: predictions, draws, losses and scores, in memory or lazily.

:class:`Fitted` is a frozen value of a model's parameters and class encoding. In memory it runs
the kernels on the rows given; on distributed data it hands the parameters to
:class:`~distglm.data.lazy.LazyModel`, which returns lazy results (or computes whole-dataset
sums in one pass).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .data import is_distributed_input
from .data.lazy import LazyModel
from .encoding import LabelEncoder
from .exceptions import NotFittedError
from .inputs import CoefView, DesignLayout, design_and_codes, params_to_block
from .kernels.linear import log_proba
from .kernels.softmax import per_sample_log_likelihood
from .pynapple_io import support_pynapple
from .scoring import (
    check_score_type,
    null_log_likelihood_per_sample,
    per_output_from_samples,
    per_output_from_sums,
    score_from_samples,
    score_from_sums,
)
from .spec import kernel_dtype

__all__ = ["MEAN_OR_SUM", "Fitted", "Prediction"]

#: the aggregates a score over distributed data accepts
MEAN_OR_SUM = (jnp.mean, np.mean, jnp.sum, np.sum)


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A model's parameters, as they predict.

    Attributes
    ----------
    block : array of shape (n_features, n_outputs, n_classes)
    intercept : array of shape (n_outputs, n_classes)
    layout : DesignLayout
        The design structure the coefficients imply.
    encoder : LabelEncoder
        The class encoding (classes set).
    outputs : array of shape (n_outputs,)
        Output ids (selecting a session's outputs in lazy predictions).
    population : bool
        False for a single-output model: results have no output axis.
    pynapple_labels : (columns, metadata) or None
        Those of the pynapple ``TsdFrame`` of labels the model was fitted on, given to 2-D
        pynapple results (see :func:`~distglm.pynapple_io.to_pynapple`).
    """

    block: jax.Array
    intercept: jax.Array
    layout: DesignLayout
    encoder: LabelEncoder
    outputs: np.ndarray
    population: bool
    pynapple_labels: tuple | None = None

    @classmethod
    def from_user(cls, coef, intercept, encoder, outputs, population) -> Fitted:
        """From ``coef_``/``intercept_`` in the user's structure (set by a fit or by hand)."""
        layout = DesignLayout.from_coef(coef)
        block = CoefView(layout, population).inverse(coef)
        icpt = jnp.asarray(intercept if population else intercept[None])
        outputs = np.arange(block.shape[1]) if outputs is None else np.asarray(outputs)
        return cls(block, icpt, layout, encoder, outputs, population)

    @classmethod
    def from_params(cls, params, layout, encoder, population) -> Fitted:
        """From user parameters ``(coef, intercept)``, checked against ``layout``."""
        block, icpt = params_to_block(params, layout, encoder.n_classes, population)
        return cls(block, icpt, layout, encoder, np.arange(block.shape[1]), population)

    @property
    def _labels_for_pynapple(self) -> tuple | None:
        """``pynapple_labels`` (see :func:`~distglm.pynapple_io.support_pynapple`)."""
        return self.pynapple_labels

    def _squeeze(self, arr):
        return arr if self.population else arr[:, 0]

    def lazy(self) -> LazyModel:
        """The parameters applied lazily to dask arrays, xarray or sessions."""
        return LazyModel(
            self.block, self.intercept, self.encoder.classes_, self.outputs, self.population
        )

    def log_proba(self, X):
        """In-memory log-probabilities, (n, [k,] c)."""
        layout = DesignLayout.from_design(X)
        layout.check_same(X, self.layout)
        Xs = jnp.asarray(layout.stack(X, kernel_dtype()))
        return self._squeeze(log_proba(self.block.astype(Xs.dtype), self.intercept, Xs))

    @support_pynapple
    def predict(self, X):
        if is_distributed_input(X):
            return self.lazy().predict(X)
        return self.encoder.decode(jnp.argmax(self.log_proba(X), axis=-1))

    @support_pynapple
    def predict_proba(self, X, return_type):
        if return_type not in ("log-proba", "proba"):
            raise ValueError(
                f"Unrecognized return type {return_type!r}: return_type must be 'log-proba' or "
                "'proba'."
            )
        if is_distributed_input(X):
            return self.lazy().log_proba(X, proba=return_type == "proba")
        lp = self.log_proba(X)
        if return_type == "log-proba":
            return lp
        p = jnp.exp(lp)
        return p / p.sum(axis=-1, keepdims=True)

    def simulate(self, key, X):
        if is_distributed_input(X):
            return self.lazy().simulate(key, X)
        lp = self.log_proba(X)
        return self.encoder.decode(jax.random.categorical(key, lp)), lp

    def _sample_ll(self, X, y, method):
        """Per-sample log-likelihoods (n, k) of the kept rows, and their codes."""
        layout, Xs, codes = design_and_codes(
            X, y, self.encoder.encode, self.population, method, kernel_dtype()
        )
        layout.check_same(X, self.layout)
        if codes.shape[1] != self.block.shape[1]:
            raise ValueError(
                f"Inconsistent number of outputs: coef has {self.block.shape[1]}, y has "
                f"{codes.shape[1]}."
            )
        Xj = jnp.asarray(Xs)
        ll = per_sample_log_likelihood(
            jnp.asarray(self.block, Xj.dtype),
            jnp.asarray(self.intercept, Xj.dtype),
            Xj,
            jnp.asarray(codes),
        )
        return ll, codes

    def loss(self, X, y):
        """Mean NLL over samples, summed over outputs (no penalty), in memory or in one pass."""
        if is_distributed_input(X):
            ll, counts = self.lazy().score_sums(X, y)
            return jnp.asarray(-np.sum(ll / np.maximum(counts.sum(axis=1), 1)), kernel_dtype())
        if y is None:
            raise ValueError("compute_loss needs y for in-memory X (only sessions carry labels).")
        ll, _ = self._sample_ll(X, y, "compute_loss")
        return -jnp.sum(jnp.mean(ll, axis=0))

    def _by_output(self, values, sel=None):
        """Per-output scores as a DataArray over ``output`` (labelled by ``outputs_``)."""
        outputs = np.asarray(self.outputs)
        labels = outputs if sel is None else outputs[sel]
        return xr.DataArray(np.asarray(values), dims=("output",), coords={"output": labels})

    def score(self, X, y, score_type, aggregate, per_output=False, per_session=False):
        """A score of the model on ``(X, y)`` (see the estimators' ``score``)."""
        if is_distributed_input(X):
            if aggregate not in MEAN_OR_SUM:
                raise ValueError(
                    "Over distributed data, score aggregates with a mean or a sum over all "
                    f"(sample, output) entries (jnp.mean, np.mean, jnp.sum, np.sum); got "
                    f"{aggregate!r}. Compute per-sample scores from predict_proba instead."
                )
            mean = aggregate in (jnp.mean, np.mean)
            dtype = kernel_dtype()
            if per_session:
                _, _, sessions = self.lazy().score_sums(X, y, per_session=True)
                return {
                    name: self._by_output(per_output_from_sums(ll, c, score_type, mean, dtype), sel)
                    if per_output
                    else score_from_sums(ll, c, score_type, mean, dtype)
                    for name, (ll, c, sel) in sessions.items()
                }
            ll, counts = self.lazy().score_sums(X, y)
            if per_output:
                return self._by_output(per_output_from_sums(ll, counts, score_type, mean, dtype))
            return score_from_sums(ll, counts, score_type, mean, dtype)
        if per_session:
            raise ValueError("per_session scores need sessions; X is in memory.")
        if y is None:
            raise ValueError("score needs y for in-memory X (only sessions carry their labels).")
        ll, codes = self._sample_ll(X, y, "score")
        ll_null = jnp.asarray(
            null_log_likelihood_per_sample(codes, self.encoder.n_classes), ll.dtype
        )
        if per_output:
            values = per_output_from_samples(ll, ll_null, score_type, aggregate)
            return self._by_output(values) if isinstance(y, xr.DataArray) else values
        return score_from_samples(self._squeeze(ll), self._squeeze(ll_null), score_type, aggregate)


class Prediction(abc.ABC):
    """The estimators' prediction and scoring methods (mixed into them), over :class:`Fitted`.

    The host holds ``coef_``, ``intercept_``, ``outputs_``, its label encoder ``_encoder`` and
    ``_population``.
    """

    coef_: object
    intercept_: object
    outputs_: object
    _population: bool
    _mask_block: Callable
    _pynapple_labels: tuple | None

    @property
    def _labels_for_pynapple(self) -> tuple | None:
        """``(columns, metadata)`` of the pynapple labels fitted on, or None (see
        :func:`~distglm.pynapple_io.support_pynapple`)."""
        return self._pynapple_labels

    def _fitted(self, method) -> Fitted:
        """The fitted (or hand-set) parameters, as they predict."""
        self._encoder.check_is_set(method)
        if self.coef_ is None or self.intercept_ is None:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call 'fit' with appropriate "
                "arguments first."
            )
        fitted = Fitted.from_user(
            self.coef_, self.intercept_, self._encoder, self.outputs_, self._population
        )
        # the feature mask is checked against coef_ here too, as nemos checks it at predict
        # and score (coef_ may have been set by hand after the mask); a DataArray mask is
        # aligned by the data's labels at fit and may cover more than coef_
        if not isinstance(getattr(self, "feature_mask", None), xr.DataArray):
            self._mask_block(fitted.layout, fitted.block.shape[1])
        labels = self._pynapple_labels
        return fitted if labels is None else dataclasses.replace(fitted, pynapple_labels=labels)

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
        return self._fitted("predict").predict(X)

    def predict_proba(self, X, return_type="log-proba"):
        """Class probabilities (or their logarithms).

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or dict of 2-D arrays
        return_type : {"log-proba", "proba"}

        Returns
        -------
        array of shape (n_samples, [n_outputs,] n_classes); column ``i`` is ``classes_[i]``.
        Lazy for distributed inputs, as :meth:`predict`.
        """
        self._encoder.check_is_set("predict_proba")
        if return_type not in ("log-proba", "proba"):
            raise ValueError(
                f"Unrecognized return type {return_type!r}: return_type must be 'log-proba' or "
                "'proba'."
            )
        return self._fitted("predict_proba").predict_proba(X, return_type)

    @support_pynapple
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

        Distributed inputs give lazy results (as :meth:`predict`); lazy draws use
        ``fold_in(random_key, chunk index)`` per row chunk: reproducible for a key and a
        chunking, but not the same draws as in memory.
        """
        return self._fitted("simulate").simulate(random_key, feedforward_input)

    @support_pynapple
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
        else:
            layout = DesignLayout.from_design(X)
        fitted = Fitted.from_params(params, layout, self._encoder, self._population)
        if is_distributed_input(X) and self.outputs_ is not None:
            fitted = dataclasses.replace(fitted, outputs=np.asarray(self.outputs_))
        return fitted.loss(X, y)

    @support_pynapple
    def score(
        self,
        X,
        y=None,
        score_type="log-likelihood",
        aggregate_sample_scores=jnp.mean,
        per_output=False,
        per_session=False,
    ):
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

        per_output : bool, default False
            One score per output: the aggregate over that output's samples (a DataArray over
            ``output`` for labelled or distributed data, else an array of shape (n_outputs,)).
        per_session : bool, default False
            Sessions only: a dict ``session id -> score`` (each a DataArray over that session's
            outputs with ``per_output=True``), all from the same pass.

        Returns
        -------
        scalar jax array, or per output / per session as above
        """
        fitted = self._fitted("score")
        check_score_type(score_type)
        aggregate = aggregate_sample_scores
        return fitted.score(X, y, score_type, aggregate, per_output, per_session)
