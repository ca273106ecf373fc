"""The seam between solvers and data: an ``Objective`` and the in-memory implementation.

Solvers only see an :class:`Objective`: the smooth part ``f`` (mean negative log-likelihood per
output, summed over outputs, plus any smooth penalty) with its gradient, the non-smooth part
``g`` with its proximal operator, and optionally the weighted second-moment matrix of the
design (used to precondition and to bound the curvature). Parameters are one float64 array
``theta`` of shape ``(n_features + 1, n_outputs, n_classes)``: coefficient rows, then the
intercept as the last row. Every call to :meth:`Objective.value_and_grad` is one pass over the
data, and is counted.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.newton import assemble_hessian, newton_pass_outputs
from ..kernels.softmax import DEFAULT_BLOCK_ROWS, nll_sums, nll_value_and_grad_sums

__all__ = ["InMemoryData", "Objective", "PenalizedObjective", "Penalty"]

# jitted once per process; jax caches one executable per input shape
_VALUE_AND_GRAD = jax.jit(nll_value_and_grad_sums, static_argnames="block_rows")
_VALUE = jax.jit(nll_sums, static_argnames="block_rows")
_NEWTON = jax.jit(newton_pass_outputs, static_argnames=("hess_stride", "block_rows"))


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


def newton_means(
    trial, loss, grad_coef, grad_intercept, hess_pairs, hess_weights, weight_sums, n_classes
):
    """Normalise the sums of :func:`~distglm.kernels.newton.newton_pass_sums` (float64).

    Loss and gradient sums are divided by each output's sample count ``weight_sums``; the
    Hessian by the weights of the rows it was taken on. Returns ``(trial (T, k), loss (k,),
    grad (n_features + 1, k, c), hess (k, D, D))``.
    """
    inv = 1.0 / np.asarray(weight_sums, np.float64)
    grad = np.concatenate(
        [np.asarray(grad_coef, np.float64), np.asarray(grad_intercept, np.float64)[None]], axis=0
    )
    hw = np.asarray(hess_weights, np.float64)
    if np.any(hw <= 0):
        raise ValueError(
            "The Hessian subsample holds no rows of output(s) "
            f"{np.flatnonzero(hw <= 0).tolist()} (of this pass); lower the Hessian stride "
            "(solver_kwargs hessian_rows)."
        )
    hess = assemble_hessian(np.asarray(hess_pairs, np.float64), n_classes) / hw[:, None, None]
    return (
        np.asarray(trial, np.float64) * inv,
        np.asarray(loss, np.float64) * inv,
        grad * inv[None, :, None],
        hess,
    )


def _penalty_value(coef, strength, regularizer, to_user):
    return regularizer.penalty(to_user(coef), strength)


def _penalty_prox(coef, strength, step, regularizer, to_user, from_user):
    return from_user(regularizer.prox(to_user(coef), strength, step))


_PENALTY_STATIC = ("regularizer", "to_user")
_PENALTY_VALUE = jax.jit(_penalty_value, static_argnames=_PENALTY_STATIC)
_PENALTY_VALUE_AND_GRAD = jax.jit(
    jax.value_and_grad(_penalty_value), static_argnames=_PENALTY_STATIC
)
_PENALTY_PROX = jax.jit(_penalty_prox, static_argnames=(*_PENALTY_STATIC, "from_user"))


def _penalty_per_output(coef, strength, regularizer, to_user):
    # every regularizer here is a sum over outputs (Ridge, Lasso, ElasticNet elementwise,
    # GroupLasso over feature groups within one output's class column)
    k = coef.shape[1]

    def one(j):
        keep = (jnp.arange(k) == j).astype(coef.dtype)[None, :, None]
        return regularizer.penalty(to_user(coef * keep), strength)

    return jax.lax.map(one, jnp.arange(k))


_PENALTY_PER_OUTPUT = jax.jit(_penalty_per_output, static_argnames=_PENALTY_STATIC)


@jax.jit
def _GRAM(X, weights):
    """Weighted second moment of ``[X, 1]``, normalised by the total weight."""
    w = weights if weights.ndim == 1 else jnp.mean(weights, axis=1)
    xw = X * w[:, None]
    s_xx = jnp.dot(xw.T, X)
    s_x = jnp.sum(xw, axis=0)
    total = jnp.sum(w)
    top = jnp.concatenate([s_xx, s_x[:, None]], axis=1)
    bottom = jnp.concatenate([s_x, total[None]])[None]
    return jnp.concatenate([top, bottom], axis=0) / total


@runtime_checkable
class Objective(Protocol):
    """What a solver needs: value/gradient of the smooth part, value/prox of the rest."""

    n_passes: int

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Smooth part and its gradient at ``theta`` (n_features + 1, n_outputs, n_classes)."""

    def value(self, theta: np.ndarray) -> float:
        """Smooth part only (one pass, no gradient)."""

    def nonsmooth(self, theta: np.ndarray) -> float:
        """Non-smooth penalty at ``theta`` (0 for smooth problems)."""

    def prox(self, theta: np.ndarray, step: float) -> np.ndarray:
        """Proximal operator of ``step * nonsmooth`` (identity for smooth problems)."""


def _split(theta):
    return theta[:-1], theta[-1]


class InMemoryData:
    """Data term over arrays held in this process: per-output means of the negative log-likelihood.

    Rows are padded once to a multiple of the kernel's block size (padding has weight 0), so the
    jitted kernel sees one shape and compiles once per problem shape.

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

    def __init__(
        self, X, y_codes, n_classes, weights=None, dtype=np.float32, block_rows=DEFAULT_BLOCK_ROWS
    ):
        X = np.asarray(X, dtype=dtype)
        y_codes = np.asarray(y_codes, dtype=np.int32)
        n = X.shape[0]
        self._n = n
        if weights is None:
            weights = np.ones(n, dtype=dtype)
        weights = np.asarray(weights, dtype=dtype)
        self.n_classes = int(n_classes)
        self.n_features = X.shape[1]
        self.n_outputs = y_codes.shape[1]
        w_out = weights if weights.ndim == 2 else weights[:, None]
        #: per-output sum of weights: the normaliser of each output's mean
        self.weight_sums = np.broadcast_to(
            w_out.astype(np.float64).sum(axis=0), (self.n_outputs,)
        ).copy()
        if np.any(self.weight_sums <= 0):
            bad = np.flatnonzero(self.weight_sums <= 0).tolist()
            raise ValueError(f"Output(s) {bad} have no samples with positive weight.")
        block = block_rows if n > block_rows else None
        pad = 0 if block is None else (-n) % block
        if pad:
            X = np.concatenate([X, np.zeros((pad, X.shape[1]), X.dtype)])
            y_codes = np.concatenate([y_codes, np.zeros((pad, y_codes.shape[1]), np.int32)])
            weights = np.concatenate([weights, np.zeros((pad, *weights.shape[1:]), weights.dtype)])
        self._X = jnp.asarray(X)
        self._y = jnp.asarray(y_codes)
        self._w = jnp.asarray(weights)
        self._dtype = dtype
        self._block = block
        self.dtype = np.dtype(dtype)
        self._gram = None
        #: passes over the data made outside value/gradient evaluations (the second moment)
        self.stat_passes = 0

    def _params(self, theta):
        coef, intercept = _split(theta)
        return jnp.asarray(coef, self._dtype), jnp.asarray(intercept, self._dtype)

    def value_and_grad(self, theta):
        """Sum over outputs of each output's mean NLL, and its gradient (float64)."""
        loss, (gc, gb) = _VALUE_AND_GRAD(
            self._params(theta), self._X, self._y, self._w, block_rows=self._block
        )
        inv = 1.0 / self.weight_sums
        value = float(np.sum(np.asarray(loss, np.float64) * inv))
        grad = (
            np.concatenate([np.asarray(gc, np.float64), np.asarray(gb, np.float64)[None]], axis=0)
            * inv[None, :, None]
        )
        return value, grad

    def value(self, theta):
        """Sum over outputs of each output's mean NLL (float64)."""
        loss = _VALUE(self._params(theta), self._X, self._y, self._w, block_rows=self._block)
        return float(np.sum(np.asarray(loss, np.float64) / self.weight_sums))

    @property
    def n_rows(self):
        """Rows with positive weight."""
        return int(self._n)

    @property
    def block_rows(self):
        return self._block

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
        k = len(outputs)
        idx = pad_outputs(outputs, self.n_outputs)
        sel = np.concatenate([np.arange(k), np.full(idx.size - k, k - 1)])
        th, d = theta[:, sel], direction[:, sel]
        out = _NEWTON(
            self._params(th),
            self._params(d),
            self._X,
            self._y,
            self._w,
            jnp.asarray(idx),
            jnp.asarray(np.asarray(steps)[:, sel], self._dtype),
            jnp.asarray(np.asarray(t_eval)[sel], self._dtype),
            hess_stride=int(hess_stride),
            block_rows=self._block,
        )
        trial, loss, (gc, gb), hess, hw = out
        means = newton_means(
            np.asarray(trial)[:, :k],
            np.asarray(loss)[:k],
            np.asarray(gc)[:, :k],
            np.asarray(gb)[:k],
            np.asarray(hess)[:, :k],
            np.asarray(hw)[:k],
            self.weight_sums[np.asarray(outputs)],
            self.n_classes,
        )
        return means

    def gram(self):
        """Weighted second moment of ``[X, 1]``, shape (n_features + 1, n_features + 1).

        Normalised by the total weight (outputs here share their rows' weights up to their
        per-output masks; the mean over outputs is used).
        """
        if self._gram is None:
            self.stat_passes += 1
            self._gram = np.asarray(_GRAM(self._X, self._w), np.float64)
        return self._gram


class Penalty:
    """Penalty on the coefficient rows of ``theta``, built from a regularizer.

    Parameters
    ----------
    regularizer : distglm.regularizer.Regularizer
    strength : validated strength of that regularizer
    to_user : callable
        Maps the coefficient block (n_features, n_outputs, n_classes) to the user's coefficient
        structure (what the regularizer's penalty and prox expect), ``from_user`` maps it back.
        Both are static arguments of the compiled penalty: pass hashable callables that compare
        by value (e.g. a :class:`~distglm.inputs.CoefView` and its ``inverse``) so that
        repeated fits reuse one compilation.
    from_user : callable
    mask : array of shape (n_features, n_outputs, n_classes) or None
        Feature mask; masked coefficients are held at exactly 0.
    dtype : numpy dtype, optional
        Precision of the penalty evaluation; float64 when ``jax_enable_x64`` is on, else float32.
    """

    def __init__(self, regularizer, strength, to_user, from_user, mask=None, dtype=None):
        self.regularizer = regularizer
        self.dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
        if dtype is not None:
            self.dtype = dtype
        self.smooth = bool(regularizer.smooth)
        self.mask = None if mask is None else np.asarray(mask, np.float64)

        self._strength = strength
        # static arguments of the module-level jits: equal views and regularizers reuse the
        # compiled penalty across fits (they must be hashable and compare by value)
        self._static = {"regularizer": regularizer, "to_user": to_user}
        self._from_user = from_user
        self._separable = {}
        self._curvature = {}

    def project(self, theta):
        """Zero the masked coefficients (the intercept row is never masked)."""
        if self.mask is None:
            return theta
        out = theta.copy()
        out[:-1] *= self.mask
        return out

    def value_and_grad(self, theta):
        coef = jnp.asarray(theta[:-1], self.dtype)
        v, g = _PENALTY_VALUE_AND_GRAD(coef, self._strength, **self._static)
        grad = np.zeros_like(theta)
        grad[:-1] = np.asarray(g, np.float64)
        return float(v), grad

    def value(self, theta):
        coef = jnp.asarray(theta[:-1], self.dtype)
        return float(_PENALTY_VALUE(coef, self._strength, **self._static))

    def is_separable(self, shape):
        """Whether the penalty is a sum over outputs (as :meth:`per_output` assumes), for
        parameters of shape ``shape`` (n_features + 1, n_outputs, n_classes).

        Checked numerically once, at a fixed random point: Ridge, Lasso and ElasticNet always
        are; GroupLasso is unless a group spans outputs.
        """
        if self._separable.get(shape) is None:
            rng = np.random.default_rng(0)
            theta = np.concatenate(
                [rng.standard_normal((shape[0] - 1, *shape[1:])), np.zeros((1, *shape[1:]))]
            )
            if self.mask is not None:
                theta[:-1] *= self.mask
            total = self.value(theta)
            parts = float(np.sum(self.per_output(theta)))
            self._separable[shape] = abs(total - parts) <= 1e-4 * max(1.0, abs(total))
        return self._separable[shape]

    def per_output(self, theta):
        """Penalty of each output's coefficients, shape (n_outputs,) (float64)."""
        coef = jnp.asarray(theta[:-1], self.dtype)
        return np.asarray(_PENALTY_PER_OUTPUT(coef, self._strength, **self._static), np.float64)

    def curvature(self, shape):
        """Diagonal Hessian of a smooth (quadratic, separable) penalty, shape ``shape``
        (n_features + 1, n_outputs, n_classes); zeros for the intercept row and for
        non-smooth penalties (those are handled by their prox). Computed once per shape."""
        if shape not in self._curvature:
            out = np.zeros(shape)
            if self.smooth:
                _, g1 = self.value_and_grad(np.ones(shape))
                out[:-1] = g1[:-1]
            self._curvature[shape] = out
        return self._curvature[shape]

    def prox(self, theta, step):
        out = theta.copy()
        coef = jnp.asarray(theta[:-1], self.dtype)
        new = _PENALTY_PROX(coef, self._strength, step, from_user=self._from_user, **self._static)
        out[:-1] = np.asarray(new, np.float64)
        return self.project(out)


class PenalizedObjective:
    """A data term (in memory or distributed) plus a penalty, applied once, here.

    Smooth penalties (Ridge) join the smooth part; the others are left to ``prox``. Gradients
    are projected onto the feature mask. Implements :class:`Objective`.
    """

    def __init__(self, data, penalty: Penalty):
        self.data = data
        self.penalty = penalty
        self.n_passes = 0
        #: relative gap the objective's arithmetic can resolve (about 8 ulps of its dtype)
        self.precision = 8 * float(np.finfo(getattr(data, "dtype", np.float32)).eps)

    @property
    def smooth(self):
        return self.penalty.smooth

    def value_and_grad(self, theta):
        self.n_passes += 1
        v, g = self.data.value_and_grad(theta)
        if self.penalty.smooth:
            pv, pg = self.penalty.value_and_grad(theta)
            v, g = v + pv, g + pg
        return v, self.penalty.project(g)

    def value(self, theta):
        self.n_passes += 1
        v = self.data.value(theta)
        if self.penalty.smooth:
            v += self.penalty.value(theta)
        return v

    def nonsmooth(self, theta):
        return 0.0 if self.penalty.smooth else self.penalty.value(theta)

    def prox(self, theta, step):
        return (
            self.penalty.project(theta) if self.penalty.smooth else self.penalty.prox(theta, step)
        )

    def gram(self):
        return self.data.gram()

    def per_output(self, theta):
        """Each output's objective share of the penalty (smooth and not), (n_outputs,)."""
        return self.penalty.per_output(theta)

    def newton_pass(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """One pass for a Newton iteration on the outputs ``outputs``.

        Parameters
        ----------
        theta, direction : arrays of shape (n_features + 1, n_outputs, n_classes)
            All outputs; only the columns ``outputs`` are evaluated.
        outputs : int array of shape (k,)
        steps : array of shape (n_trials, k)
            Trial step sizes per output: only the objective is taken there.
        t_eval : array of shape (k,)
            The step, per output, where objective, gradient and Hessian are taken.
        hess_stride : int
            The Hessian is estimated on every ``hess_stride``-th row.

        Returns
        -------
        trial : array of shape (n_trials, k)
            Each output's objective (data mean plus its penalty, smooth or not) at the trials.
        value : array of shape (k,)
            The same at ``theta + t_eval * direction``.
        grad : array of shape (n_features + 1, k, n_classes)
            Gradient of the smooth part there, projected onto the mask.
        hess : array of shape (k, D, D)
            Hessian of the smooth part there (data estimate plus the smooth penalty's),
            ``D = (n_features + 1) * n_classes``.
        """
        self.n_passes += 1
        outputs = np.asarray(outputs)
        steps = np.asarray(steps, np.float64).reshape(-1, outputs.size)
        t_eval = np.asarray(t_eval, np.float64)
        sub_t, sub_d = theta[:, outputs], direction[:, outputs]
        trial, value, grad, hess = self.data.newton_sums(
            sub_t, sub_d, outputs, steps, t_eval, hess_stride
        )
        full_d = np.zeros_like(theta)
        full_d[:, outputs] = sub_d
        for i in range(steps.shape[0]):
            step = np.zeros(theta.shape[1])
            step[outputs] = steps[i]
            trial[i] += self.penalty.per_output(theta + step[None, :, None] * full_d)[outputs]
        step = np.zeros(theta.shape[1])
        step[outputs] = t_eval
        at = theta + step[None, :, None] * full_d
        value = value + self.penalty.per_output(at)[outputs]
        if self.penalty.smooth:
            _, pg = self.penalty.value_and_grad(at)
            grad = grad + pg[:, outputs]
            curv = self.penalty.curvature(theta.shape)
            diag = np.transpose(curv[:, outputs], (1, 0, 2)).reshape(outputs.size, -1)
            idx = np.arange(diag.shape[1])
            hess[:, idx, idx] += diag
        if self.penalty.mask is not None:
            m = self.penalty.mask[:, outputs]
            grad[:-1] *= m
        return trial, value, grad, hess
