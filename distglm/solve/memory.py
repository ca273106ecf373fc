"""The in-memory data term: the NLL over arrays held in this process."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..kernels.buffers import aligned_zeros, on_device
from ..kernels.compiled import NEWTON_PASS, SECOND_MOMENT, VALUE, VALUE_AND_GRAD, pad_outputs
from ..kernels.softmax import DEFAULT_BLOCK_ROWS
from .costs import PassFacts
from .means import mean_value, mean_value_and_grad, newton_means

__all__ = ["InMemoryData"]


def _split(theta):
    return theta[:-1], theta[-1]


class InMemoryData:
    """Data term over arrays held in this process: per-output means of the negative log-likelihood.

    Rows are padded once to a multiple of the kernel's block size (padding has weight 0), so the
    jitted kernel sees one shape and compiles once per problem shape. Implements
    :class:`~distglm.solve.protocols.DataTerm`.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Finite values; rows with NaN/Inf must already be dropped or given weight 0.
    y_codes : int array of shape (n_samples, n_outputs)
    n_classes : int
    weights : array of shape (n_samples,) or (n_samples, n_outputs), optional
        Defaults to ones.
    dtype : numpy dtype
        Kernel dtype (float32 by default; float64 needs ``jax_enable_x64``).
    block_rows : int
        Kernel block size.
    """

    #: the rows are held here: no evaluation re-reads them
    streamed = False

    def __init__(
        self, X, y_codes, n_classes, weights=None, dtype=np.float32, block_rows=DEFAULT_BLOCK_ROWS
    ):
        X = np.asarray(X)
        y_codes = np.asarray(y_codes)
        n = X.shape[0]
        if weights is None:
            weights = np.ones(n, dtype=dtype)
        weights = np.asarray(weights, dtype=dtype)
        self.n_classes = int(n_classes)
        self.n_features = X.shape[1]
        self.n_outputs = y_codes.shape[1]
        self.n_rows = int(n)
        w_out = weights if weights.ndim == 2 else weights[:, None]
        #: per-output sum of weights: the normaliser of each output's mean
        self.weight_sums = np.broadcast_to(
            w_out.astype(np.float64).sum(axis=0), (self.n_outputs,)
        ).copy()
        if np.any(self.weight_sums <= 0):
            bad = np.flatnonzero(self.weight_sums <= 0).tolist()
            raise ValueError(f"Output(s) {bad} have no samples with positive weight.")
        block = block_rows if n > block_rows else None
        rows = n if block is None else n + (-n) % block
        # padded (weight-0 rows) into aligned buffers of this term's own, cast as they are
        # filled: the device then takes them without another copy
        Xp = aligned_zeros((rows, X.shape[1]), dtype)
        Xp[:n] = X
        yp = aligned_zeros((rows, y_codes.shape[1]), np.int32)
        yp[:n] = y_codes
        wp = aligned_zeros((rows, *weights.shape[1:]), dtype)
        wp[:n] = weights
        self._X, self._y, self._w = on_device(Xp, yp, wp)
        self.block_rows = block
        self.dtype = np.dtype(dtype)
        #: passes over the data made outside value/gradient evaluations (the second moment)
        self.stat_passes = 0
        #: no reads; every row on this process's device
        self.pass_facts = PassFacts.on(next(iter(self._X.devices())).platform)

    @property
    def arrays(self):
        """The padded device arrays ``(X, y_codes, weights)`` the kernels run on."""
        return self._X, self._y, self._w

    def _params(self, theta):
        coef, intercept = _split(theta)
        return jnp.asarray(coef, self.dtype), jnp.asarray(intercept, self.dtype)

    def value_and_grad(self, theta):
        """Sum over outputs of each output's mean NLL, and its gradient (float64)."""
        loss, (gc, gb) = VALUE_AND_GRAD(
            self._params(theta), self._X, self._y, self._w, block_rows=self.block_rows
        )
        return mean_value_and_grad(loss, gc, gb, self.weight_sums)

    def value(self, theta):
        """Sum over outputs of each output's mean NLL (float64)."""
        loss = VALUE(self._params(theta), self._X, self._y, self._w, block_rows=self.block_rows)
        return mean_value(loss, self.weight_sums)

    def newton_sums(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """Per-output means for one Newton pass, on the label columns ``outputs`` only.

        Parameters
        ----------
        theta, direction : arrays of shape (n_features + 1, len(outputs), n_classes)
        outputs : int array
            Global output indices.
        steps : array of shape (n_trials, len(outputs))
            Trial step sizes (the line search) per output.
        t_eval : array of shape (len(outputs),)
            Step of the point where loss, gradient and Hessian are taken.
        hess_stride : int

        Returns
        -------
        trial (n_trials, k), loss (k,), grad (n_features + 1, k, c), hess (k, D, D), with
        ``k = len(outputs)`` and ``D = (n_features + 1) * n_classes``.
        """
        sums = self._newton_pass(self._w, theta, direction, outputs, steps, t_eval, hess_stride)
        return self._newton_means(sums, outputs)

    def _newton_pass(self, weights, theta, direction, outputs, steps, t_eval, hess_stride):
        """The kernel's sums for ``outputs`` (padding columns cut off), as numpy arrays.

        ``weights`` are this term's (n_rows, n_outputs) weights, or those stacked with a second
        set along axis 1, whose loss sums at the evaluation point come last.
        """
        k = len(outputs)
        idx = pad_outputs(outputs, self.n_outputs)
        sel = np.concatenate([np.arange(k), np.full(idx.size - k, k - 1)])
        th, d = theta[:, sel], direction[:, sel]
        trial, loss, (gc, gb), hess, hw, *held = NEWTON_PASS(
            self._params(th),
            self._params(d),
            self._X,
            self._y,
            weights,
            jnp.asarray(idx),
            jnp.asarray(np.asarray(steps)[:, sel], self.dtype),
            jnp.asarray(np.asarray(t_eval)[sel], self.dtype),
            hess_stride=int(hess_stride),
            block_rows=self.block_rows,
        )
        out = [np.asarray(trial)[:, :k], np.asarray(loss)[:k], np.asarray(gc)[:, :k]]
        out += [np.asarray(gb)[:k], np.asarray(hess)[:, :k], np.asarray(hw)[:k]]
        return (*out, *(np.asarray(h)[:k] for h in held))

    def _newton_means(self, sums, outputs):
        trial, loss, gc, gb, hess, hw = sums[:6]
        ws = self.weight_sums[np.asarray(outputs)]
        return newton_means(trial, loss, gc, gb, hess, hw, ws, self.n_classes)

    def gram(self):
        """Weighted second moment of ``[X, 1]``, shape (n_features + 1, n_features + 1).

        Normalised by the total weight (outputs here share their rows' weights up to their
        per-output masks; the mean over outputs is used). Each call is a pass over the data,
        counted in ``stat_passes``; solvers take it once, when they prepare.
        """
        self.stat_passes += 1
        return np.asarray(SECOND_MOMENT(self._X, self._w), np.float64)
