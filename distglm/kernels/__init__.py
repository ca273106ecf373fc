"""Pure JAX kernels: linear predictor and log-probabilities, per-chunk sums of the softmax loss,
its gradient, Newton's line search and Hessian blocks, the design's second moment, and their
compiled forms (:mod:`~distglm.kernels.compiled`)."""

from .linear import apply_mask, linear_predictor, log_proba
from .moments import second_moment
from .softmax import nll_sums, nll_value_and_grad_sums, per_sample_log_likelihood

__all__ = [
    "apply_mask",
    "linear_predictor",
    "log_proba",
    "nll_sums",
    "nll_value_and_grad_sums",
    "per_sample_log_likelihood",
    "second_moment",
]
