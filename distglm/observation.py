"""The categorical observation model, with nemos' public methods (``model.observation_model``).

nemos 0.2.8 code reads a classifier's ``observation_model`` for its log-likelihood, deviance,
pseudo-R2, samples and scale. :class:`CategoricalObservations` offers the same methods with the
same conventions, computed here without importing nemos:

- ``y`` is one-hot over the class axis, of shape ``(n_samples, n_classes)`` or
  ``(n_samples, n_outputs, n_classes)`` (nemos' convention for this object; distglm's estimators
  themselves take labels and never build one-hot arrays over the data);
- ``predicted_rate`` is the log-probabilities (the output of ``jax.nn.log_softmax``), of the
  same shape;
- the default aggregation is nemos': a mean over samples, summed over outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["CategoricalObservations"]


def _identity(x):
    return x


def _mean_over_samples_summed(x):
    return jnp.sum(jnp.mean(x, axis=0))


def _geometric_mean_over_samples(x):
    return jnp.exp(jnp.mean(jnp.log(x), axis=0).sum())


def _check_shapes(y, predicted_rate, what: str) -> None:
    if jnp.shape(y) != jnp.shape(predicted_rate):
        raise ValueError(
            f"{what}: y (one-hot over classes) and predicted_rate (log-probabilities) must have "
            f"the same shape; got {jnp.shape(y)} and {jnp.shape(predicted_rate)}."
        )


@dataclasses.dataclass(frozen=True)
class CategoricalObservations:
    """Categorical observations: one class per sample and output, log-softmax link.

    Attributes
    ----------
    scale : float
        Always 1.0 for a categorical model.
    """

    scale: float = 1.0

    @property
    def default_inverse_link_function(self) -> Callable:
        """``jax.nn.log_softmax``: the model predicts log-probabilities."""
        return jax.nn.log_softmax

    def log_likelihood(
        self,
        y,
        predicted_rate,
        scale=1.0,
        aggregate_sample_scores: Callable = _mean_over_samples_summed,
    ):
        """Log-likelihood of one-hot ``y`` under log-probabilities ``predicted_rate``.

        Parameters
        ----------
        y : array of shape (n_samples, [n_outputs,] n_classes), one-hot
        predicted_rate : array of the same shape, log-probabilities
        scale : float
            Unused (1 for a categorical model).
        aggregate_sample_scores : callable
            Maps the per-sample (and per-output) log-likelihoods to the result; by default the
            mean over samples, summed over outputs.
        """
        _check_shapes(y, predicted_rate, "log_likelihood")
        per_sample = jnp.sum(jnp.asarray(y) * jnp.asarray(predicted_rate), axis=-1)
        return aggregate_sample_scores(per_sample)

    def likelihood(
        self,
        y,
        predicted_rate,
        scale=1.0,
        aggregate_sample_scores: Callable = _geometric_mean_over_samples,
    ):
        """Likelihood (by default the geometric mean over samples, multiplied over outputs)."""
        per_sample = self.log_likelihood(y, predicted_rate, scale, _identity)
        return aggregate_sample_scores(jnp.exp(per_sample))

    def deviance(self, observations, predicted_rate, scale=1.0):
        """Per-sample deviance, ``-2`` times the log-likelihood (the saturated model's is 0).

        Returns
        -------
        array of shape (n_samples,) or (n_samples, n_outputs)
        """
        return -2.0 * self.log_likelihood(observations, predicted_rate, scale, _identity)

    @staticmethod
    def null_log_probabilities(y):
        """Log class frequencies of ``y`` per output (the null model), broadcast to ``y``'s shape.

        Frequencies are clipped at the float epsilon so an absent class gives a finite value.
        """
        y = jnp.asarray(y)
        freq = jnp.mean(y, axis=0, keepdims=True)
        freq = jnp.clip(freq, jnp.finfo(freq.dtype).eps, 1.0)
        return jnp.log(freq) * jnp.ones_like(y, dtype=freq.dtype)

    def pseudo_r2(
        self,
        y,
        predicted_rate,
        score_type: str = "pseudo-r2-McFadden",
        scale=1.0,
        aggregate_sample_scores: Callable = jnp.mean,
    ):
        """McFadden's or Cohen's pseudo-R2 against the class-frequency null model.

        Raises
        ------
        NotImplementedError
            For a score type other than ``"pseudo-r2-McFadden"`` or ``"pseudo-r2-Cohen"``.
        """
        null = self.null_log_probabilities(y)
        if score_type == "pseudo-r2-McFadden":
            ll_model = self.log_likelihood(y, predicted_rate, scale, aggregate_sample_scores)
            ll_null = self.log_likelihood(y, null, scale, aggregate_sample_scores)
            return 1 - ll_model / ll_null
        if score_type == "pseudo-r2-Cohen":
            dev_model = aggregate_sample_scores(self.deviance(y, predicted_rate))
            dev_null = aggregate_sample_scores(self.deviance(y, null))
            return (dev_null - dev_model) / dev_null
        raise NotImplementedError(
            f"Score {score_type!r} is not implemented; use 'pseudo-r2-McFadden' or "
            "'pseudo-r2-Cohen'."
        )

    def sample_generator(self, key, predicted_rate, scale=1.0):
        """One-hot samples drawn from the log-probabilities ``predicted_rate`` (JAX ``key``)."""
        lp = jnp.asarray(predicted_rate)
        return jax.nn.one_hot(jax.random.categorical(key, lp), num_classes=lp.shape[-1])

    def estimate_scale(self, y, predicted_rate, dof_resid):
        """The scale, 1 per output: shape (n_outputs,), or (1,) for one output."""
        return jnp.ones_like(jnp.atleast_1d(jnp.asarray(y)[0, ..., 0]))
