"""The compiled kernels that data terms run, in memory and on the workers.

Each is jitted once per process; JAX keeps one executable per input shape, which is why chunks
are padded to one row count and a pass on a subset of outputs uses a few fixed output counts
(:func:`output_bucket`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .folds import stacked_fold_columns
from .moments import second_moment
from .newton import newton_pass_outputs
from .softmax import nll_sums, nll_value_and_grad_sums

__all__ = [
    "NEWTON_PASS",
    "SECOND_MOMENT",
    "STACKED_FOLDS",
    "VALUE",
    "VALUE_AND_GRAD",
    "VALUE_AND_GRAD_FLAT",
    "VALUE_FLAT",
    "output_bucket",
    "pad_outputs",
]

#: loss and gradient sums of a chunk: ``(params, X, y_codes, weights, block_rows=)``
VALUE_AND_GRAD = jax.jit(nll_value_and_grad_sums, static_argnames="block_rows")
#: loss sums of a chunk
VALUE = jax.jit(nll_sums, static_argnames="block_rows")


def _value_and_grad_flat(theta, X, y_codes, weights, block_rows):
    loss, (grad_coef, grad_intercept) = nll_value_and_grad_sums(
        (theta[:-1], theta[-1]), X, y_codes, weights, block_rows=block_rows
    )
    return jnp.concatenate([loss, grad_coef.ravel(), grad_intercept.ravel()])


def _value_flat(theta, X, y_codes, weights, block_rows):
    return nll_sums((theta[:-1], theta[-1]), X, y_codes, weights, block_rows=block_rows)


#: :data:`VALUE_AND_GRAD` of ``(theta, X, y_codes, weights, block_rows=)``, ``theta`` of shape
#: (n_features + 1, n_outputs, n_classes) with the intercept last, its sums raveled into one
#: array (loss, coefficient, intercept gradient): a worker's pass then sends one array to the
#: device and copies one back, not two and three
VALUE_AND_GRAD_FLAT = jax.jit(_value_and_grad_flat, static_argnames="block_rows")
#: :data:`VALUE` of ``(theta, X, y_codes, weights, block_rows=)`` (as :data:`VALUE_AND_GRAD_FLAT`)
VALUE_FLAT = jax.jit(_value_flat, static_argnames="block_rows")
#: one Newton pass over a chunk, on a subset of output columns
NEWTON_PASS = jax.jit(newton_pass_outputs, static_argnames=("hess_stride", "block_rows"))
#: a chunk's labels and weights as a cross-validation search's stacked columns
STACKED_FOLDS = jax.jit(stacked_fold_columns, static_argnames="n_folds")
#: weighted second moment of ``[X, 1]``
SECOND_MOMENT = jax.jit(second_moment)


def output_bucket(n_active, n_outputs):
    """Number of output columns a pass computes for ``n_active`` outputs.

    One of ``n_outputs``, ``ceil(n_outputs / 4)``, ``ceil(n_outputs / 16)``, ...: a pass on
    fewer outputs needs its own compile (about 0.8 s for 50 features x 20 outputs here), so
    the work is cut only when converged outputs cut it at least 4-fold.
    """
    size = int(n_outputs)
    while size > 1 and -(-size // 4) >= n_active:
        size = -(-size // 4)
    return size


def pad_outputs(outputs, n_outputs):
    """``outputs`` padded to :func:`output_bucket` length by repeating its last index."""
    outputs = np.asarray(outputs, np.int32)
    size = output_bucket(outputs.size, n_outputs)
    return np.concatenate([outputs, np.full(size - outputs.size, outputs[-1], np.int32)])
