"""The reduction of per-chunk sums, in chunk-id order: the one place it happens.

Adding the chunks' float sums in one fixed order makes a pass's result independent of which
worker computed which chunk (bitwise), so a lost worker, or a different number of workers,
never changes a fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["reduce_in_chunk_order"]


def reduce_in_chunk_order(
    plan,
    per_chunk: dict,
    totals: Sequence[np.ndarray],
    axes: Sequence[int],
    columns: Callable[[int], np.ndarray | None],
) -> Sequence[np.ndarray]:
    """Add every chunk's sums into ``totals``, chunk by chunk in chunk-id order.

    Parameters
    ----------
    plan : DataPlan
    per_chunk : dict chunk id -> tuple of arrays
        The chunk's sums, one array per total.
    totals : sequence of float64 arrays
        Accumulated in place.
    axes : sequence of int
        The output axis of each total (and of the matching chunk array).
    columns : callable(session index) -> int array or None
        Where a chunk of that session lands on each total's output axis (None or empty: the
        chunk adds nothing, e.g. none of its outputs is active).

    Returns
    -------
    ``totals``
    """
    for spec in plan.chunks:
        cols = columns(spec.session_index)
        if cols is None or not len(cols):
            continue
        for total, part, axis in zip(totals, per_chunk[spec.chunk_id], axes, strict=True):
            index: list[Any] = [slice(None)] * total.ndim
            index[axis] = cols
            total[tuple(index)] += part
    return totals
