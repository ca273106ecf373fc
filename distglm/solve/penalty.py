"""The penalty on the coefficient rows of ``theta``, compiled once per model shape.

:class:`Penalty` evaluates a :mod:`distglm.regularizer` penalty, its gradient (smooth ones),
its proximal operator, its per-output parts and its curvature on the solvers' block layout, and
projects onto the feature mask. The compiled functions take the regularizer and the coefficient
view as static arguments, so equal models share one compilation across fits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Penalty"]


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
        self.dtype = np.float64 if jax.config.read("jax_enable_x64") else np.float32
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
