"""The declared interfaces between data, objective and solver.

A **data term** sums the negative log-likelihood over some rows (held in this process, or by
Dask workers) and normalises it into per-output means; an **objective** adds the penalty, once,
and projects onto the feature mask; a **solver** minimises an objective. Each side depends only
on these declarations, so a solver is tested on the in-memory term and runs unchanged on the
distributed one.

Parameters are one float64 array ``theta`` of shape ``(n_features + 1, n_outputs, n_classes)``:
coefficient rows, then the intercept as the last row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .state import SolverState

if TYPE_CHECKING:
    from .costs import PassFacts

__all__ = ["DataTerm", "Objective", "Solver"]


@runtime_checkable
class DataTerm(Protocol):
    """Per-output mean NLL over a dataset; every evaluation is one pass over the data.

    Attributes
    ----------
    n_features, n_outputs, n_classes : int
    weight_sums : float64 array of shape (n_outputs,)
        Each output's total row weight: the normaliser of its mean.
    dtype : numpy dtype
        Kernel precision.
    n_rows : int
        Rows with positive weight.
    block_rows : int or None
        The kernels' row block (Newton's Hessian stride divides it).
    streamed : bool
        Whether evaluations re-read data from its source (the data is larger than its cache).
    stat_passes : int
        Passes made outside evaluations (the statistics or second-moment pass).
    pass_facts : PassFacts
        Measured read time of a pass, the busiest worker's share of the rows and the
        kernels' device (what ``solver_name="auto"`` prices passes by).
    """

    n_features: int
    n_outputs: int
    n_classes: int
    weight_sums: np.ndarray
    dtype: np.dtype
    n_rows: int
    block_rows: int | None
    streamed: bool
    stat_passes: int
    pass_facts: PassFacts

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Sum over outputs of the mean NLL, and its gradient (float64)."""
        ...

    def value(self, theta: np.ndarray) -> float:
        """Sum over outputs of the mean NLL (float64)."""
        ...

    def newton_sums(
        self,
        theta: np.ndarray,
        direction: np.ndarray,
        outputs: np.ndarray,
        steps: np.ndarray,
        t_eval: np.ndarray,
        hess_stride: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-output means for one Newton pass on the outputs ``outputs``: trial losses
        (T, k), loss (k,), gradient (n_features + 1, k, c) and Hessian blocks (k, D, D)."""
        ...

    def gram(self) -> np.ndarray:
        """Second moment of ``[X, 1]``: (n_features + 1,) * 2, or one per output."""
        ...


@runtime_checkable
class Objective(Protocol):
    """What a solver minimises: a smooth part with its gradient plus a non-smooth part with
    its proximal operator. Every evaluation of the smooth part is one counted pass."""

    n_passes: int
    precision: float
    smooth: bool

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Smooth part and its gradient at ``theta``."""
        ...

    def value(self, theta: np.ndarray) -> float:
        """Smooth part only (one pass, no gradient)."""
        ...

    def nonsmooth(self, theta: np.ndarray) -> float:
        """Non-smooth penalty at ``theta`` (0 for smooth problems)."""
        ...

    def prox(self, theta: np.ndarray, step: float) -> np.ndarray:
        """Proximal operator of ``step * nonsmooth``, then the feature mask."""
        ...

    def gram(self) -> np.ndarray:
        """The data term's second moment of ``[X, 1]`` (the curvature model's input)."""
        ...


class Solver(Protocol):
    """A minimiser in explicit-state style (optax's model).

    ``prepare`` derives a frozen context from the problem (never saved: it is rebuilt from the
    objective on resume), ``init`` gives the first state, ``step`` takes one iteration and
    returns new parameters and a new state, and ``batch_step`` does the same on a batch other
    than the one the state's cached values came from (nemos' ``update``).
    """

    name: str
    tol: float
    maxiter: int

    def prepare(
        self, objective: Any, theta: np.ndarray, ridge: float = 0.0, mask: Any = None
    ) -> Any:
        """The context of this problem (preconditioner, step bound, Hessian stride)."""
        ...

    def init(self, context: Any, theta: np.ndarray) -> SolverState:
        """The state before the first step."""
        ...

    def step(
        self, objective: Any, context: Any, theta: np.ndarray, state: SolverState
    ) -> tuple[np.ndarray, SolverState]:
        """One iteration: new parameters and state (``state`` is left as it was)."""
        ...

    def batch_step(
        self, objective: Any, context: Any, theta: np.ndarray, state: SolverState
    ) -> tuple[np.ndarray, SolverState]:
        """One iteration on a new batch: values cached in ``state`` are not reused."""
        ...
