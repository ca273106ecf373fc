"""Cross-validation folds as data: which fold holds out each row (and output).

Recorded neural data is autocorrelated in time, so folds are whole sessions or contiguous
blocks of time, never shuffled rows. A fold assignment is a :class:`FoldPlan`: an integer per
row (or per row and output), the number of folds, and the outputs whose folds fell back from
sessions to time blocks. :meth:`FoldPlan.row_ranges` gives the same assignment as contiguous
row ranges, which is what a chunked reader needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FoldPlan", "FoldRule", "block_folds", "fold_rule", "plan_folds", "splitter_folds"]

#: Folds used inside a session for an output recorded in that session only, when there is a
#: single session (with several sessions it takes as many blocks as there are sessions).
DEFAULT_FALLBACK_FOLDS = 5


@dataclass(frozen=True)
class FoldPlan:
    """A fold assignment.

    Attributes
    ----------
    index : int array of shape (n_samples,) or (n_samples, n_outputs)
        The fold in which each row (for each output) is held out.
    n_folds : int
    fallback : tuple of int
        Positions of the outputs recorded in one session only, whose folds are contiguous time
        blocks inside that session instead of whole sessions.
    """

    index: np.ndarray
    n_folds: int
    fallback: tuple[int, ...] = ()

    def column(self, output: int) -> np.ndarray:
        """The fold index of one output, shape (n_samples,)."""
        return self.index if self.index.ndim == 1 else self.index[:, output]

    def row_ranges(self, output: int = 0) -> list[list[tuple[int, int]]]:
        """Held-out rows of every fold as contiguous ``(start, stop)`` ranges.

        Returns
        -------
        list of length n_folds, each a list of ``(start, stop)`` pairs in row order.
        """
        col = self.column(output)
        edges = np.flatnonzero(np.diff(col)) + 1
        starts = np.concatenate([[0], edges]).astype(int)
        stops = np.concatenate([edges, [col.size]]).astype(int)
        out: list[list[tuple[int, int]]] = [[] for _ in range(self.n_folds)]
        for a, b in zip(starts, stops, strict=True):
            if col[a] >= 0:
                out[int(col[a])].append((int(a), int(b)))
        return out


def block_folds(n_rows: int, k: int) -> np.ndarray:
    """``k`` contiguous blocks of (nearly) equal size over ``n_rows`` rows.

    Returns
    -------
    int32 array of shape (n_rows,), non-decreasing, block ``f`` labelled ``f``.
    """
    if not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"Expected at least 2 folds (an int k >= 2); got cv={k!r}.")
    if n_rows < k:
        raise ValueError(f"Cannot cut {n_rows} rows into {k} contiguous blocks: need n >= k.")
    return (np.arange(n_rows, dtype=np.int64) * k // n_rows).astype(np.int32)


def plan_folds(
    session_lengths: Sequence[int],
    cv: str | int = "session",
    recorded: np.ndarray | None = None,
    fallback_folds: int = DEFAULT_FALLBACK_FOLDS,
) -> FoldPlan:
    """Folds over sessions laid end to end (rows of session 0, then session 1, ...).

    Parameters
    ----------
    session_lengths : sequence of int
        Rows per session, in row order.
    cv : "session" or int
        ``"session"``: leave one session out (fold ``s`` holds out session ``s``); an output
        recorded in one session only falls back to contiguous time blocks inside it. An int
        ``k``: ``k`` contiguous time blocks within every session (fold ``f`` holds out block
        ``f`` of every session).
    recorded : bool array of shape (n_sessions, n_outputs), optional
        Which outputs each session recorded (all, when omitted).
    fallback_folds : int
        Blocks for a single-session output when there is one session only.

    Returns
    -------
    FoldPlan
    """
    lengths = [int(n) for n in session_lengths]
    if not lengths:
        raise ValueError("Expected at least one session length; got none.")
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        return FoldPlan(np.concatenate([block_folds(n, int(cv)) for n in lengths]), int(cv))
    if cv != "session":
        raise ValueError(f'cv must be "session", an int k >= 2 or a splitter; got {cv!r}.')
    n_s = len(lengths)
    by_session = np.repeat(np.arange(n_s, dtype=np.int32), lengths)
    if recorded is None:
        if n_s < 2:
            raise ValueError(
                'cv="session" needs at least 2 sessions to leave one out; got 1. Pass '
                "recorded= to fall back to time blocks, or an int cv."
            )
        return FoldPlan(by_session, n_s)
    recorded = np.asarray(recorded, dtype=bool)
    if recorded.shape[0] != n_s:
        raise ValueError(
            f"recorded has {recorded.shape[0]} sessions (rows); expected {n_s}, one per length."
        )
    single = np.flatnonzero(recorded.sum(axis=0) == 1)
    n_folds = n_s if n_s >= 2 else fallback_folds
    index = np.repeat(by_session[:, None], recorded.shape[1], axis=1)
    if n_s < 2:
        index[:] = -1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for j in single:
        s = int(np.flatnonzero(recorded[:, j])[0])
        index[:, j] = -1
        index[offsets[s] : offsets[s + 1], j] = block_folds(lengths[s], n_folds)
    return FoldPlan(index, n_folds, tuple(int(j) for j in single))


def splitter_folds(splitter, X, y=None, groups=None) -> FoldPlan:
    """Folds from an sklearn splitter (e.g. ``GroupKFold``) on in-memory data.

    Each row must be held out by at most one split; rows held out by none train every fold
    (index -1).

    Returns
    -------
    FoldPlan of index shape (n_samples,)
    """
    n = len(X)
    index = np.full(n, -1, dtype=np.int32)
    n_folds = 0
    for f, (_, test) in enumerate(splitter.split(X, y, groups)):
        test = np.asarray(test)
        if np.any(index[test] >= 0):
            raise ValueError(
                f"Split {f} of {splitter!r} holds out rows already held out by an earlier split; "
                "expected disjoint test sets (a K-fold-style splitter)."
            )
        index[test] = f
        n_folds = f + 1
    if n_folds < 2:
        raise ValueError(f"{splitter!r} gave {n_folds} split(s); expected at least 2.")
    return FoldPlan(index, n_folds)


@dataclass(frozen=True)
class FoldRule:
    """A fold assignment as a rule a worker applies to each chunk's rows, by its session and
    row range (what :func:`plan_folds` gives over sessions laid end to end, row for row).

    Attributes
    ----------
    kind : {"session", "blocks"}
        Leave one session out, or ``n_folds`` contiguous blocks within every session.
    n_folds : int
    session_lengths : tuple of int
        Rows per session (NaN rows included: blocks are cut over the recorded time).
    n_outputs : int
        Outputs of the model; the search's stacked column ``f * n_outputs + o`` is output
        ``o`` fitted on fold ``f``'s training rows (``f = n_folds``: every row).
    widths : tuple of int
        Outputs each session recorded.
    fallback : tuple of tuple of int
        With "session": per session, the positions (among its outputs) of the outputs it
        alone recorded; their folds are ``n_folds`` contiguous blocks inside it.
    fallback_outputs : tuple of int
        Those outputs' global indices, in increasing order.
    """

    kind: str
    n_folds: int
    session_lengths: tuple[int, ...]
    n_outputs: int
    widths: tuple[int, ...] = ()
    fallback: tuple[tuple[int, ...], ...] = ()
    fallback_outputs: tuple[int, ...] = ()

    def chunk_index(self, session_index: int, start: int, stop: int) -> np.ndarray:
        """The fold holding out each of a chunk's rows: int32 of shape (stop - start,), or
        (stop - start, k_s), one column per output of the session, where some of them fall
        back to time blocks."""
        blocks = block_folds(self.session_lengths[session_index], self.n_folds)[start:stop]
        if self.kind != "session":
            return blocks
        own = self.fallback[session_index] if self.fallback else ()
        if not own:
            return np.full(stop - start, session_index, np.int32)
        out = np.full((stop - start, self.widths[session_index]), session_index, np.int32)
        out[:, list(own)] = blocks[:, None]
        return out

    def kept_index(self, session_index, start, stop, keep, n_rows) -> np.ndarray:
        """The fold of a chunk's kept rows (``keep``: bool mask of its rows), padded with -1
        to ``n_rows``: int32 of shape (n_rows,) or (n_rows, k_s) (see :meth:`chunk_index`)."""
        kept = self.chunk_index(session_index, start, stop)[np.asarray(keep, bool)]
        out = np.full((int(n_rows), *kept.shape[1:]), -1, np.int32)
        out[: kept.shape[0]] = kept
        return out

    def held_counts(self, session_index, start, stop, keep) -> np.ndarray:
        """Kept rows of a chunk each fold holds out, for each of the session's outputs: int64
        of shape (n_folds, k_s)."""
        kept = self.chunk_index(session_index, start, stop)[np.asarray(keep, bool)]
        k = self.widths[session_index] if self.widths else 1
        cols = kept if kept.ndim == 2 else np.broadcast_to(kept[:, None], (kept.shape[0], k))
        counts = [np.bincount(cols[:, j], minlength=self.n_folds) for j in range(k)]
        return np.stack(counts, axis=1).astype(np.int64)

    def stacked_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """The stacked columns of a session recording global outputs ``outputs``, in the order
        of ``np.tile(codes, n_folds + 1)``: fold-major, then the session's own order."""
        outputs = np.asarray(outputs)
        return np.concatenate([f * self.n_outputs + outputs for f in range(self.n_folds + 1)])


def fold_rule(
    session_lengths: Sequence[int],
    cv: str | int,
    n_outputs: int,
    session_outputs: Sequence[np.ndarray] | None = None,
    fallback_folds: int = DEFAULT_FALLBACK_FOLDS,
) -> FoldRule:
    """The :class:`FoldRule` of ``cv`` ("session" or an int ``k``) over sessions, as
    :func:`plan_folds` gives it for sessions laid end to end.

    Parameters
    ----------
    session_lengths : sequence of int
    cv : "session" or int
    n_outputs : int
    session_outputs : sequence of int arrays, optional
        Each session's global outputs (every output, when omitted). With "session", an output
        recorded in one session only is held out by time blocks inside it (as many as there
        are sessions; ``fallback_folds`` with a single session); one recorded in several but
        not all sessions is held out of the folds of the sessions that recorded it.

    Raises
    ------
    ValueError
        For another ``cv``, or a session shorter than ``k`` rows (or than the blocks).
    """
    lengths = tuple(int(n) for n in session_lengths)
    if session_outputs is None:
        session_outputs = [np.arange(n_outputs)] * len(lengths)
    outs = [np.asarray(o, np.int64) for o in session_outputs]
    widths = tuple(int(o.size) for o in outs)
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        for n in lengths:
            block_folds(n, int(cv))  # checks k >= 2 and n >= k
        return FoldRule("blocks", int(cv), lengths, int(n_outputs), widths)
    if cv != "session":
        raise ValueError(f'cv must be "session" or an int k >= 2 over sessions; got {cv!r}.')
    seen = np.zeros(int(n_outputs), np.int64)
    for o in outs:
        seen[o] += 1
    single = {int(j) for j in np.flatnonzero(seen == 1)}
    n_folds = len(lengths) if len(lengths) >= 2 else int(fallback_folds)
    fallback = tuple(tuple(i for i, j in enumerate(o) if int(j) in single) for o in outs)
    for n, own in zip(lengths, fallback, strict=True):
        if own:
            block_folds(n, n_folds)  # checks the session has a row per block
    return FoldRule(
        "session", n_folds, lengths, int(n_outputs), widths, fallback, tuple(sorted(single))
    )
