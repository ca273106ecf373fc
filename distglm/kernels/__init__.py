"""Pure JAX kernels: linear predictor, log-probabilities, per-chunk loss and gradient sums."""

from .linear import apply_mask, linear_predictor
from .softmax import log_proba, nll_sums, nll_value_and_grad_sums, per_sample_log_likelihood

__all__ = [
    "apply_mask",
    "linear_predictor",
    "log_proba",
    "nll_sums",
    "nll_value_and_grad_sums",
    "per_sample_log_likelihood",
]
