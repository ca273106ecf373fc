"""Curvature model of the population softmax loss, used to precondition and to bound steps.

The loss is a sum over outputs of per-output means, so its Hessian is block-diagonal per output.
Within one output, the Hessian of the mean NLL is ``E[(diag(p) - p p') kron x x']``, which we
model as ``a * S kron I_classes`` with ``S`` the second moment of ``[X, 1]`` and
``a = 1 / n_classes`` (the curvature along class contrasts when the classes are equally
likely), plus the Ridge strength on the coefficient rows. Preconditioning L-BFGS with this
model is the same as running it on whitened features; it turns ~50 passes into ~10 on the
benchmark problem.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["BlockPreconditioner", "lipschitz_bound"]


def lipschitz_bound(gram, ridge=0.0):
    """Upper bound on the curvature of the mean softmax NLL (plus Ridge).

    The Hessian of one sample's softmax NLL is at most ``1/2`` along any direction of the class
    simplex (Böhning's bound), so ``L = lambda_max(S) / 2 + max(ridge)``.
    """
    return 0.5 * float(np.linalg.eigvalsh(gram)[-1]) + float(np.max(ridge))


class BlockPreconditioner:
    """Solve ``M v = g`` with ``M = a*S + diag(ridge)`` per (output, class) column.

    Parameters
    ----------
    gram : array of shape (n_features + 1, n_features + 1)
        Second moment of ``[X, 1]``.
    n_classes : int
    ridge : float or array of shape (n_features, n_outputs, n_classes)
        Ridge strength on the coefficient rows (0 for none).
    mask : array of shape (n_features, n_outputs, n_classes) or None
        Masked coefficients are decoupled (identity rows), so their zeros are preserved.
    shape : tuple (n_features + 1, n_outputs, n_classes)
    """

    def __init__(self, gram, n_classes, shape, ridge=0.0, mask=None):
        P1, k, c = shape
        a = 1.0 / n_classes
        base = a * np.asarray(gram, np.float64)
        # a tiny floor keeps M positive definite for constant or duplicated features
        floor = 1e-10 * max(float(np.trace(base)) / P1, 1.0)
        ridge = np.asarray(ridge, np.float64)
        self.shape = shape
        if mask is None and ridge.ndim == 0:
            M = base.copy()
            M[np.arange(P1 - 1), np.arange(P1 - 1)] += float(ridge)
            M[np.diag_indices(P1)] += floor
            self._shared = scipy.linalg.cho_factor(M, lower=True)
            self._batched = None
            return
        ridge_cols = np.broadcast_to(ridge, (P1 - 1, k, c)).reshape(P1 - 1, k * c)
        mask_cols = (
            np.ones((P1 - 1, k * c)) if mask is None else np.asarray(mask).reshape(P1 - 1, k * c)
        )
        mask_aug = np.concatenate([mask_cols, np.ones((1, k * c))], axis=0).T  # (m, P1)
        Ms = base[None] * mask_aug[:, :, None] * mask_aug[:, None, :]
        diag = np.concatenate([ridge_cols, np.zeros((1, k * c))], axis=0).T + floor
        diag = diag * mask_aug + (1.0 - mask_aug)
        idx = np.arange(P1)
        Ms[:, idx, idx] += diag
        self._shared = None
        self._batched = np.linalg.cholesky(Ms)  # (m, P1, P1)

    def solve(self, g):
        """Return ``M^{-1} g`` for ``g`` of shape ``shape``."""
        P1, k, c = self.shape
        G = g.reshape(P1, k * c)
        if self._shared is not None:
            return scipy.linalg.cho_solve(self._shared, G).reshape(self.shape)
        L = self._batched
        rhs = G.T[:, :, None]
        z = np.linalg.solve(L, rhs)
        x = np.linalg.solve(np.transpose(L, (0, 2, 1)), z)
        return x[:, :, 0].T.reshape(self.shape)
