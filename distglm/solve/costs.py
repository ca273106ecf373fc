"""What ``solver_name="auto"`` predicts each solver's fit will cost, from the problem's shape,
the device, and the measured read time of the streamed chunks.

A fit costs ``passes x seconds per pass``. A pass's seconds are the busiest worker's kernel
work (multiply-adds over its rows, at its device's rate), plus its reads of streamed chunks
(measured by the statistics pass, which read every chunk once; on a CPU reading and computing
share the worker's core, on a GPU they overlap), plus the coordinator's own work for the step
(Newton's Cholesky solves or proximal-Newton inner iterations over the Hessian blocks), plus a
fixed overhead per pass.

Per pass, with ``N`` rows, ``F`` features, ``C`` classes, ``K`` outputs, ``D = (F + 1) C``:

- gradient pass (L-BFGS): ``N K C (2 F + s)`` multiply-adds: the two matrix products and the
  softmax work between them (:data:`SOFTMAX_MACS`); a FISTA pass (``ProximalGradient``) does
  :data:`FIRST_ORDER_PASS` of that on average (its line search evaluates values only);
- Newton pass: :data:`NEWTON_KERNEL` times the gradient pass's work (at the step the solver
  expects to accept) plus the Hessian sample, ``n_h K P (F + 1)^2`` on ``n_h`` strided rows
  (``P = C (C - 1) / 2`` class pairs, :func:`~distglm.solve.newton.hessian_stride`); at the
  coordinator ``K D^3 / 3`` (Cholesky) for smooth penalties, :data:`PROX_INNER` iterations of
  ``2 K D^2`` for non-smooth ones.

The passes each solver takes (:data:`PASSES`), the rates and the overheads are constants
measured by ``benchmarks/bench_auto.py`` (in memory, 2-core CPU), ``bench_out_of_core.py`` (two
workers streaming) and ``gpu_check.py`` (H100); they are typical, not exact: what matters is
which solver is cheaper when one is by a clear margin (bench_auto checks the choice against
both candidates' measured fits).
"""

from __future__ import annotations

import dataclasses

from ..kernels.softmax import DEFAULT_BLOCK_ROWS
from .newton import default_hessian_rows, hessian_stride

__all__ = [
    "PASSES",
    "READ_BYTES_PER_SECOND",
    "PassFacts",
    "ProblemFacts",
    "SolverCost",
    "predicted_costs",
]

#: passes to the default tol, per solver (bench_auto; Lasso's ProximalGradient is FISTA)
PASSES = {"LBFGS": 17.0, "Newton": 7.0, "ProximalGradient": 100.0}
#: the softmax work of a gradient pass per (row, output, class), in multiply-adds of the
#: products' speed (bench_kernel: the kernel takes 1.4-1.7x its two products at 50 features)
SOFTMAX_MACS = 45.0
#: a FISTA pass's kernel work against a gradient pass's: some of its line search's passes are
#: values only (bench_auto: 0.87-0.92)
FIRST_ORDER_PASS = 0.9
#: Newton's kernel without its Hessian sample against the gradient kernel (bench_auto, 200,000
#: and 2,000,000 x 50 x 20 x 3: 1.13-1.3)
NEWTON_KERNEL = 1.2
#: seconds a pass costs beyond its kernels and reads, per solver (bench_auto's small case:
#: Python, dispatch, and Newton's per-output bookkeeping)
PASS_OVERHEAD = {"LBFGS": 0.015, "ProximalGradient": 0.012, "Newton": 0.03}
#: kernel multiply-adds per second: a process on all of its CPU cores (in memory: bench_auto,
#: 2.0-2.4e10 on 2 cores), one Dask worker of several on a CPU host (two on 2 cores: 0.8e10 in
#: bench_distributed's 100,000-row passes, 1.45e10 in bench_out_of_core's), a GPU (gpu_check,
#: H100: 2,000,000 x 50 x 20 x 3 gradient passes of 41 ms)
RATE_CPU_PROCESS = 2.2e10
RATE_CPU_WORKER = 1.2e10
RATE_GPU = 4e11
#: multiply-adds per second of the coordinator's numpy work on Hessian blocks (float64)
COORDINATOR_RATE = 1e9
#: typical inner iterations of proximal Newton's solve of the quadratic model (bench_auto)
PROX_INNER = 150
#: rows taken when the data's row count is unknown: the data is taken as large
UNKNOWN_ROWS = 10**7
#: one CPU worker's read of Zarr chunks (decoded bytes per second; bench_out_of_core: 505 MiB/s
#: for two workers), for streamed chunks no pass has read yet (a resumed fit's session)
READ_BYTES_PER_SECOND = 2.5e8


@dataclasses.dataclass(frozen=True)
class PassFacts:
    """What a data term knows of its passes' cost beyond the problem's shape.

    Attributes
    ----------
    read_seconds : float
        Seconds the busiest worker spends reading its streamed chunks in one pass (0 when
        every chunk is cached or the data is in memory): every solver's pass pays it.
    rows_share : float
        The busiest worker's share of the rows (1 in memory).
    device : str
        JAX platform of the kernels (``"cpu"``, ``"gpu"``, ...).
    rate : float
        Kernel multiply-adds per second on the busiest worker (:data:`RATE_CPU_PROCESS`,
        :data:`RATE_CPU_WORKER` or :data:`RATE_GPU`).
    """

    read_seconds: float = 0.0
    rows_share: float = 1.0
    device: str = "cpu"
    rate: float = RATE_CPU_PROCESS

    @classmethod
    def on(
        cls, platform: str, shared_host: bool = False, read_seconds: float = 0.0, rows_share=1.0
    ) -> PassFacts:
        """The facts of kernels on a JAX ``platform``, at its rate: a CPU process's own cores
        (:data:`RATE_CPU_PROCESS`), or with ``shared_host`` one Dask worker of several on a CPU
        host (:data:`RATE_CPU_WORKER`); any other platform counts as a GPU (:data:`RATE_GPU`)."""
        if platform == "cpu":
            rate = RATE_CPU_WORKER if shared_host else RATE_CPU_PROCESS
        else:
            platform, rate = "gpu", RATE_GPU
        return cls(read_seconds, float(rows_share), platform, rate)


@dataclasses.dataclass(frozen=True)
class ProblemFacts:
    """What ``solver_name="auto"`` decides by.

    Attributes
    ----------
    smooth : bool
        Whether the penalty is smooth (UnRegularized, Ridge).
    n_features, n_classes, n_outputs : int
    n_rows : int or None
        Rows of data (None: unknown, taken as large).
    separable : bool
        Whether the penalty is a sum over outputs (Newton steps each output on its own).
    block_rows : int or None
        Rows per kernel block (the Hessian's row stride is a whole number of them).
    passes : PassFacts
        The data term's reads, busiest worker and device (by default: in memory, on a CPU).
    """

    smooth: bool
    n_features: int
    n_classes: int
    n_outputs: int
    n_rows: int | None = None
    separable: bool = True
    block_rows: int | None = DEFAULT_BLOCK_ROWS
    passes: PassFacts = PassFacts()

    @property
    def n_params(self) -> int:
        """``D = (n_features + 1) * n_classes``, the size of one output's Hessian block."""
        return (self.n_features + 1) * self.n_classes


@dataclasses.dataclass(frozen=True)
class SolverCost:
    """One solver's predicted fit: passes, seconds per pass, and their product."""

    solver: str
    passes: float
    per_pass: float

    @property
    def seconds(self) -> float:
        return self.passes * self.per_pass


def _pass_seconds(passes: PassFacts, solver: str, kernel: float, coordinator: float) -> float:
    compute = kernel / passes.rate
    read = float(passes.read_seconds)
    # one core per CPU worker does both; a GPU computes while the CPU reads the next chunk
    worker = compute + read if passes.device == "cpu" else max(compute, read)
    return worker + coordinator / COORDINATOR_RATE + PASS_OVERHEAD[solver]


def predicted_costs(facts: ProblemFacts, newton: bool = True) -> dict[str, SolverCost]:
    """Predicted cost of each solver ``"auto"`` chooses among, by name.

    Parameters
    ----------
    facts : ProblemFacts
    newton : bool
        Whether Newton is a candidate (False leaves it out).

    Returns
    -------
    dict of str -> SolverCost
        ``"LBFGS"`` (smooth penalties) or ``"ProximalGradient"`` (non-smooth ones), and
        ``"Newton"`` when it is a candidate.
    """
    F, C, K = facts.n_features, facts.n_classes, facts.n_outputs
    D = facts.n_params
    n = facts.n_rows if facts.n_rows else UNKNOWN_ROWS
    rows = n * float(facts.passes.rows_share)
    gradient = rows * K * C * (2.0 * F + SOFTMAX_MACS)
    # L-BFGS's passes are gradient passes; FISTA's line search also makes value-only ones
    first, work = (
        ("LBFGS", gradient) if facts.smooth else ("ProximalGradient", FIRST_ORDER_PASS * gradient)
    )
    out = {first: SolverCost(first, PASSES[first], _pass_seconds(facts.passes, first, work, 0))}
    if newton:
        stride = hessian_stride(n, facts.block_rows, default_hessian_rows(D))
        pairs = C * (C - 1) // 2
        hessian = (rows / stride) * K * pairs * (F + 1) ** 2
        coordinator = K * D**3 / 3 if facts.smooth else PROX_INNER * 2.0 * K * D**2
        per_pass = _pass_seconds(
            facts.passes, "Newton", NEWTON_KERNEL * gradient + hessian, coordinator
        )
        out["Newton"] = SolverCost("Newton", PASSES["Newton"], per_pass)
    return out
