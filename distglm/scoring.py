"""Scores from log-likelihoods: the one home of the pseudo-R2's null model.

The null model of each output predicts its class frequencies (clipped at float32's epsilon).
In memory a score is an aggregate of per-sample log-likelihoods; over distributed data it comes
from per-output sums (log-likelihood and class counts) gathered in one pass.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "SCORE_TYPES",
    "check_score_type",
    "log_frequencies",
    "null_log_likelihood_per_sample",
    "score_from_samples",
    "score_from_sums",
]

SCORE_TYPES = ("log-likelihood", "pseudo-r2-McFadden", "pseudo-r2-Cohen")


def check_score_type(score_type: str) -> None:
    """Raise ``NotImplementedError`` (as nemos does) for an unknown score type."""
    if score_type not in SCORE_TYPES:
        raise NotImplementedError(
            f"score_type {score_type!r} is not implemented; use one of {list(SCORE_TYPES)}."
        )


def log_frequencies(counts: np.ndarray) -> np.ndarray:
    """Log class frequencies of each output, the null model.

    Parameters
    ----------
    counts : int array of shape (n_outputs, n_classes)

    Returns
    -------
    float64 array of shape (n_outputs, n_classes)
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=1, keepdims=True)
    freq = np.clip(counts / np.maximum(n, 1), np.finfo(np.float32).eps, 1.0)
    return np.log(freq)


def null_log_likelihood_per_sample(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """The null model's log-likelihood of every sample and output.

    Parameters
    ----------
    codes : int array of shape (n_samples, n_outputs)
    n_classes : int

    Returns
    -------
    float64 array of shape (n_samples, n_outputs)
    """
    counts = np.stack(
        [np.bincount(codes[:, j], minlength=n_classes) for j in range(codes.shape[1])]
    )
    return log_frequencies(counts)[np.arange(codes.shape[1])[None, :], codes]


def score_from_samples(ll, ll_null, score_type, aggregate):
    """A score from per-sample log-likelihoods of the model and of the null model."""
    if score_type == "log-likelihood":
        return aggregate(ll)
    if score_type == "pseudo-r2-McFadden":
        return 1 - aggregate(ll) / aggregate(ll_null)
    dev_model = aggregate(-2 * ll)
    dev_null = aggregate(-2 * ll_null)
    return (dev_null - dev_model) / dev_null


def score_from_sums(ll, counts, score_type, mean, dtype):
    """A whole-dataset score from per-output sums (a mean or a sum over all entries).

    Parameters
    ----------
    ll : float array of shape (n_outputs,)
        Log-likelihood summed over each output's samples.
    counts : int array of shape (n_outputs, n_classes)
        Class counts of each output.
    score_type : str
    mean : bool
        Whether the aggregate is a mean (else a sum) over all (sample, output) entries.
    dtype : numpy dtype of the result

    Returns
    -------
    scalar jax array
    """
    counts = np.asarray(counts)
    if score_type == "log-likelihood":
        total = ll.sum() / counts.sum() if mean else ll.sum()
        return jnp.asarray(total, dtype)
    ll_null = np.sum(counts * log_frequencies(counts), axis=1)
    # McFadden and Cohen coincide for a mean or a sum: 1 - L / L_null
    return jnp.asarray(1.0 - ll.sum() / ll_null.sum(), dtype)


def per_output_from_sums(ll, counts, score_type, mean, dtype):
    """One score per output from per-output sums (see :func:`score_from_sums`).

    Returns
    -------
    jax array of shape (n_outputs,)
        The mean (or sum) log-likelihood over each output's samples, or its pseudo-R2 against
        that output's class frequencies.
    """
    counts = np.asarray(counts)
    ll = np.asarray(ll, np.float64)
    if score_type == "log-likelihood":
        return jnp.asarray(ll / counts.sum(axis=1) if mean else ll, dtype)
    ll_null = np.sum(counts * log_frequencies(counts), axis=1)
    return jnp.asarray(1.0 - ll / ll_null, dtype)


def per_output_from_samples(ll, ll_null, score_type, aggregate):
    """One score per output from per-sample log-likelihoods of shape (n_samples, n_outputs):
    ``aggregate`` reduces over samples (axis 0)."""

    def over_samples(x):
        return aggregate(x, axis=0)

    return score_from_samples(ll, ll_null, score_type, over_samples)
