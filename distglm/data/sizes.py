"""Sizes a fit will need, known from the plan before any pass, and the check that they fit.

A fit over distributed data builds, besides the workers' chunk caches (budgeted on their own):

- on each worker, in the statistics pass, one float64 second moment ``(features + 1)^2`` per
  chunk (kept until the pass returns them) and a float64 copy of the chunk being counted;
- on the client, those second moments gathered from every chunk and merged per session and
  per output, the parameters with the solver's history, the preconditioner (one dense
  ``((features + 1) classes)^2`` matrix, per-output blocks, or a per-class model when the dense
  one would pass :data:`DENSE_PRECONDITIONER_BYTES`), and Newton's Hessian blocks.

:func:`client_needs` and :func:`worker_stats_need` list them as :class:`Need` values;
:func:`check_needs` raises :class:`~distglm.exceptions.FitTooLargeError` naming the figure and
the limit. Pure functions of sizes.
"""

from __future__ import annotations

import dataclasses

from ..exceptions import FitTooLargeError

__all__ = [
    "DENSE_PRECONDITIONER_BYTES",
    "Need",
    "check_client_sizes",
    "check_needs",
    "client_needs",
    "dense_preconditioner_fits",
    "worker_stats_need",
]

#: Largest dense curvature model (its temporaries included) the preconditioner builds; past
#: it, the per-class model (``(features + 1)^2`` a class and output) is used.
DENSE_PRECONDITIONER_BYTES = 256 * 2**20
#: Copies of the parameters the client holds at once (point, gradient, trial points, and
#: L-BFGS's default history of 10 pairs).
PARAMETER_COPIES = 30

_F64 = 8


@dataclasses.dataclass(frozen=True)
class Need:
    """Memory one part of a fit needs.

    Attributes
    ----------
    what : str
        The part, and how its size follows from the data's shape.
    nbytes : int
    """

    what: str
    nbytes: int


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def dense_preconditioner_fits(n_features: int, n_classes: int) -> bool:
    """Whether the dense ``((features + 1) classes)^2`` model, with its two temporaries of the
    same size, stays within :data:`DENSE_PRECONDITIONER_BYTES`."""
    D = (n_features + 1) * n_classes
    return 3 * D * D * _F64 <= DENSE_PRECONDITIONER_BYTES


def client_needs(
    n_features: int,
    n_outputs: int,
    n_classes: int,
    n_sessions: int,
    n_chunks: int,
    solver_name: str,
    precondition: bool = True,
) -> tuple[Need, ...]:
    """What the client (this process) will hold during a fit of this shape.

    Parameters
    ----------
    n_features, n_outputs, n_classes, n_sessions, n_chunks : int
    solver_name : str
        ``"LBFGS"``, ``"Newton"``, ``"auto"``, ... (Newton adds its Hessian blocks; L-BFGS and
        auto their preconditioner).
    precondition : bool
        Whether L-BFGS is preconditioned.
    """
    P1, K, c = n_features + 1, n_outputs, n_classes
    gram = P1 * P1 * _F64
    needs = [
        Need(
            f"the statistics pass's second moments of {n_chunks} chunks ({n_chunks} x "
            f"(features + 1)^2 = {n_chunks} x {P1}^2 float64)",
            n_chunks * gram,
        ),
        Need(
            f"the second moments per session and per output (({n_sessions} + {K}) x {P1}^2 "
            "float64)",
            (n_sessions + K) * gram,
        ),
        Need(
            f"the parameters and the solver's history ({PARAMETER_COPIES} x {P1} x {K} x {c} "
            "float64)",
            PARAMETER_COPIES * P1 * K * c * _F64,
        ),
    ]
    if solver_name in ("LBFGS", "auto") and precondition:
        if dense_preconditioner_fits(n_features, c):
            D = P1 * c
            needs.append(
                Need(f"the dense preconditioner (3 x ({P1} x {c})^2 float64)", 3 * D * D * _F64)
            )
        else:
            needs.append(
                Need(
                    f"the per-class preconditioner (3 x {K} outputs x {c} classes x {P1}^2 "
                    "float64; the dense one would be "
                    f"{_mib(3 * (P1 * c) ** 2 * _F64)})",
                    3 * K * c * gram,
                )
            )
    if solver_name == "Newton":
        D = P1 * c
        pairs = c * (c - 1) // 2
        needs.append(
            Need(
                f"Newton's Hessian blocks ({K} outputs x (({P1} x {c})^2 float64 + {pairs} class "
                f"pairs x {P1}^2 sums from each of 2 workers))",
                K * (D * D * _F64 + 2 * pairs * gram),
            )
        )
    return tuple(needs)


def worker_stats_need(n_chunks: int, n_features: int, chunk_rows: int) -> Need:
    """What a worker holds in the statistics pass beyond its cache: each of its ``n_chunks``
    chunks' float64 second moment, and the float64 copy of the chunk being counted."""
    P1 = n_features + 1
    return Need(
        f"the statistics pass's float64 second moments of its {n_chunks} chunks ({n_chunks} x "
        f"(features + 1)^2 = {n_chunks} x {P1}^2 x 8 bytes) and a float64 copy of one chunk "
        f"({chunk_rows} x {n_features})",
        n_chunks * P1 * P1 * _F64 + chunk_rows * n_features * _F64 + 2 * P1 * P1 * _F64,
    )


def check_needs(needs, available: int, where: str) -> None:
    """Refuse a fit whose needs exceed ``available`` bytes (each, or all together).

    Parameters
    ----------
    needs : iterable of Need
    available : int
    where : str
        Named in the error ("this process (the client)", "worker tcp://...").

    Raises
    ------
    FitTooLargeError
        Naming the largest part, its size and the limit.
    """
    needs = sorted(needs, key=lambda n: -n.nbytes)
    total = sum(n.nbytes for n in needs)
    if not needs or total <= available:
        return
    top = needs[0]
    rest = f"; {_mib(total)} with the rest" if len(needs) > 1 else ""
    raise FitTooLargeError(
        f"This fit needs more memory than {where} has: {top.what} take {_mib(top.nbytes)}"
        f"{rest}, but {_mib(available)} is available. Fewer features (or classes), fewer and "
        "larger chunks, or a machine with more memory; nothing was read."
    )


def check_client_sizes(plan, n_classes: int, solver_name: str, solver_kwargs=None) -> None:
    """Refuse, before any pass, a fit of ``plan`` whose client-side parts (see
    :func:`client_needs`) would not fit this process's available memory.

    Raises
    ------
    FitTooLargeError
    """
    import psutil

    needs = client_needs(
        plan.n_features,
        plan.n_outputs,
        int(n_classes),
        len(plan.sessions),
        len(plan.chunks),
        solver_name,
        bool((solver_kwargs or {}).get("precondition", True)),
    )
    check_needs(needs, psutil.virtual_memory().available, "this process (the client)")
