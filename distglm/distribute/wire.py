"""The wire format between the coordinator and the worker actors.

A worker returns each pass's sums as one flat buffer: its totals over all the chunks it holds,
laid out over the pass's outputs, as the ``hi`` and ``lo`` halves of compensated float64 sums
(:class:`~distglm.distribute.reduce.CompensatedTotals`). The buffer's size depends on the
problem (features, outputs, classes), never on how many chunks the worker holds. The shapes of
each pass's totals, and the axis of each that runs over outputs, are defined here once, for
both sides. Every actor method returns ``("ok", result)`` or ``("error", exception)``, so an
exception raised by a method is told apart from a lost worker.
"""

from __future__ import annotations

import functools

__all__ = [
    "GRADIENT_AXES",
    "NEWTON_AXES",
    "check_covered",
    "gradient_shapes",
    "newton_shapes",
    "reported",
]

#: The output axis of each gradient-pass total: loss (K,), coefficient gradient (p, K, c),
#: intercept gradient (K, c)
GRADIENT_AXES = (0, 1, 0)
#: ... of each Newton-pass total: trial losses (T, k), loss (k,), coefficient gradient
#: (p, k, c), intercept gradient (k, c), and with folds the held-out losses (k,)
NEWTON_AXES = (1, 0, 1, 0, 0)


def gradient_shapes(n_features, n_outputs, n_classes, with_grad=True):
    """Shapes of a loss (and gradient) pass's totals, in buffer order."""
    p, K, c = int(n_features), int(n_outputs), int(n_classes)
    return [(K,), (p, K, c), (K, c)] if with_grad else [(K,)]


def newton_shapes(n_trials, n_outputs, n_features, n_classes, folds=False):
    """Shapes of a Newton pass's totals on ``n_outputs`` outputs, in buffer order."""
    T, k, p, c = int(n_trials), int(n_outputs), int(n_features), int(n_classes)
    return [(T, k), (k,), (p, k, c), (k, c), *([(k,)] if folds else [])]


def check_covered(plan, chunk_ids_by_worker) -> None:
    """Raise ``RuntimeError`` unless the workers' chunk ids cover every chunk of ``plan``
    exactly once (a chunk missing, or counted twice, would change the sums).

    Parameters
    ----------
    plan : DataPlan
    chunk_ids_by_worker : mapping worker address -> list of int
    """
    seen: dict[int, object] = {}
    twice = []
    for addr in sorted(chunk_ids_by_worker, key=str):
        for cid in chunk_ids_by_worker[addr]:
            if int(cid) in seen:
                twice.append((int(cid), seen[int(cid)], addr))
            seen[int(cid)] = addr
    missing = sorted({spec.chunk_id for spec in plan.chunks} - set(seen))
    if missing:
        raise RuntimeError(f"Chunks {missing} returned no sums in this pass.")
    if twice:
        cid, a, b = twice[0]
        raise RuntimeError(
            f"Chunk {cid} was summed by two workers in one pass ({a} and {b}); "
            f"{len(twice)} chunk(s) in all."
        )


def reported(method):
    """Wrap an actor method so it returns ``("ok", result)`` or ``("error", exception)``."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return ("ok", method(self, *args, **kwargs))
        except Exception as e:  # returned, re-raised at the coordinator
            return ("error", e)

    return wrapper
