"""The distributed data term of a cross-validation search: every fold in the same passes.

:class:`FoldedData` is :class:`~distglm.distribute.DistributedData` for the stacked problem of
:mod:`distglm.cv_search`: column ``f * K + o`` is output ``o`` on fold ``f``'s training rows
(``f = n_folds``: every row). Nothing is re-read or re-planned: the workers derive each cached
chunk's fold weights from its session and row range (a :class:`~distglm.folds.FoldRule`) and
repeat its label codes per fold, so one Newton pass advances every (fold, output) column and
also returns each column's loss over its fold's held-out rows.
"""

from __future__ import annotations

import numpy as np

from ..solve.heldout import HeldOutRecord
from ..solve.means import newton_means
from .passes import add_hessians, fold_counts, newton_pass
from .term import DistributedData, pass_clock

__all__ = ["FoldedData", "fold_held_counts"]


def fold_held_counts(session, rule) -> np.ndarray:
    """Kept rows each fold holds out, per output, shape (n_folds, n_outputs) (no data read)."""
    per_chunk = fold_counts(session.pool, rule)
    plan = session.plan
    counts = np.zeros((rule.n_folds, plan.n_outputs), np.int64)
    for spec in plan.chunks:
        counts[:, plan.session_outputs[spec.session_index]] += per_chunk[spec.chunk_id]
    return counts


class FoldedData(DistributedData):
    """The stacked search's data term over a :class:`~distglm.DataSession`'s workers.

    Only Newton passes run on it (:meth:`newton_sums`); every pass records the held-out sums
    at its evaluation points in :attr:`evaluated`.

    Parameters
    ----------
    session : DataSession
        Open, every chunk cached on the workers.
    rule : FoldRule
    held_counts : int array of shape (n_folds, n_outputs)
        From :func:`fold_held_counts`.

    Attributes
    ----------
    weight_sums : float64 array of shape ((n_folds + 1) * n_outputs,)
        Training rows per column.
    n_held : float64 array of shape (n_folds + 1, n_outputs)
        Rows each column's held-out sums are over (every row for the last block).
    evaluated : HeldOutRecord
    """

    def __init__(self, session, rule, held_counts):
        super().__init__(
            session.pool,
            session.stats,
            session.n_classes,
            streamed=session.streamed,
            stat_passes=0,
            read_bytes=session.read_bytes,
            pass_facts=session.pass_facts,
        )
        n = np.asarray(session.stats.n_samples, np.float64)
        held = np.asarray(held_counts, np.float64)
        self.rule = rule
        self.n_held = np.concatenate([held, n[None]], axis=0)
        self.weight_sums = np.concatenate([(n[None] - held).ravel(), n])
        if np.any(self.weight_sums <= 0):
            bad = np.flatnonzero(self.weight_sums <= 0).tolist()
            raise ValueError(f"Stacked column(s) {bad} have no training rows in their fold.")
        self.n_outputs = (rule.n_folds + 1) * self.plan.n_outputs
        self.evaluated = HeldOutRecord()

    def newton_sums(self, theta, direction, outputs, steps, t_eval, hess_stride):
        """One Newton pass on the stacked columns ``outputs`` (see
        :meth:`DistributedData.newton_sums`), recording the held-out sums."""
        start = pass_clock()
        outputs = np.asarray(outputs)
        (trial, loss, gc, gb, held), hess_parts, timing = newton_pass(
            self.pool, theta, direction, outputs, steps, t_eval, hess_stride, folds=self.rule
        )
        hess, hw = add_hessians(hess_parts, outputs.size)
        means = newton_means(
            trial, loss, gc, gb, hess, hw, self.weight_sums[outputs], self.n_classes
        )
        self.evaluated.add(outputs, theta, direction, t_eval, held)
        self._log("newton", start, timing)
        return means

    def held_sums(self, theta):
        """Held-out loss sums at ``theta`` for every column: one pass (a Newton pass that
        evaluates there, its other sums unused)."""
        cols = np.arange(self.n_outputs)
        zero = np.zeros_like(theta)
        self.newton_sums(theta, zero, cols, np.zeros((0, cols.size)), np.zeros(cols.size), 1)
        sums, found = self.evaluated.at(theta)
        assert np.all(found)
        return sums

    def value_and_grad(self, theta):
        raise NotImplementedError("The distributed search runs Newton passes only.")

    def value(self, theta):
        raise NotImplementedError("The distributed search runs Newton passes only.")
