"""The objective a solver minimises: a data term plus the penalty, applied once, here."""

from __future__ import annotations

import numpy as np

from .penalty import Penalty
from .protocols import DataTerm

__all__ = ["PenalizedObjective"]


class PenalizedObjective:
    """A data term (in memory or distributed) plus a penalty, applied once, here.

    Smooth penalties (Ridge) join the smooth part; the others are left to ``prox``. Gradients
    are projected onto the feature mask. Implements :class:`~distglm.solve.protocols.Objective`.

    Parameters
    ----------
    data : DataTerm
    penalty : Penalty
    """

    def __init__(self, data: DataTerm, penalty: Penalty):
        self.data = data
        self.penalty = penalty
        self.n_passes = 0
        #: relative gap the objective's arithmetic can resolve (about 8 ulps of its dtype)
        self.precision = 8 * float(np.finfo(data.dtype).eps)

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
