"""Held-out loss sums that come with a fit's own passes, and where the fit ended among them.

A cross-validation search's data term sums, in every Newton pass, each column's loss over its
fold's held-out rows at the point where the pass takes the derivatives. :class:`HeldOutRecord`
keeps those points and sums; :meth:`HeldOutRecord.at` finds, for the parameters a fit ended at,
the pass that evaluated them exactly (the solver's accepted point is ``theta + t * d``, computed
the same way here, so the match is exact), so the held-out scores need no pass of their own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HeldOutRecord"]


class HeldOutRecord:
    """Evaluation points and held-out loss sums of the passes since the last :meth:`at`."""

    def __init__(self):
        self._passes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._passes)

    def add(self, outputs, theta, direction, t_eval, held) -> None:
        """Record one pass.

        Parameters
        ----------
        outputs : int array of shape (k,)
            The columns evaluated.
        theta, direction : arrays of shape (n_features + 1, k, n_classes)
        t_eval : array of shape (k,)
            The pass evaluated column ``outputs[i]`` at ``theta + t_eval[i] * direction``.
        held : array of shape (k,)
            The held-out loss sums there.
        """
        points = theta + np.asarray(t_eval, np.float64)[None, :, None] * direction
        self._passes.append((np.asarray(outputs).copy(), points, np.asarray(held, np.float64)))

    def clear(self) -> None:
        self._passes.clear()

    def at(self, theta):
        """Held-out loss sums at ``theta`` (n_features + 1, n_outputs, n_classes), from the
        latest pass that evaluated each column there; the record is then cleared.

        Returns
        -------
        sums : float64 array of shape (n_outputs,)
        found : bool array of shape (n_outputs,)
            Columns some pass evaluated at exactly ``theta`` (the others need a pass).
        """
        n = theta.shape[1]
        sums, found = np.zeros(n), np.zeros(n, bool)
        for outputs, points, held in reversed(self._passes):
            for i, j in enumerate(outputs):
                if not found[j] and np.array_equal(points[:, i], theta[:, j]):
                    sums[j], found[j] = held[i], True
        self.clear()
        return sums, found
