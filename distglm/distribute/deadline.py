"""How long the coordinator waits for a worker's answer: a pure policy of measured times.

Every call the pool makes to a worker (a pass, the statistics pass, encoding) gets a deadline.
Once a kind of call has been timed, its deadline is ``factor`` times the slowest worker's
median time for it, and never less than ``floor``; a kind not timed yet gets the longest
deadline of the kinds timed so far (the statistics pass, which reads every chunk, comes first)
plus ``first_call`` seconds (JAX compiles the kernel then), and ``initial`` seconds before
anything has been timed. A worker that misses its deadline is dropped from the fit (the pool
re-reads its chunks elsewhere and runs the pass again), so a frozen worker (a stopped process,
a swapping node, a stalled file system) costs one deadline, never a hang.

Nothing here does I/O; :class:`Deadlines` is a frozen value the pool replaces after each call.
Its defaults can be set through Dask's configuration (keys ``distglm.deadline.factor``,
``.floor``, ``.initial`` and ``.first_call``), e.g.
``dask.config.set({"distglm.deadline.floor": 5})``; see :meth:`Deadlines.from_config`.
Three more keys bound the waits outside pass calls: ``distglm.deadline.scheduler`` (seconds
to wait for the scheduler's answer before :class:`~distglm.distribute.SchedulerLost`, 30 s),
``distglm.deadline.read_floor`` (see :func:`read_deadline`) and ``distglm.deadline.close``
(seconds the workers get to clear their chunks when a data session closes, 10 s).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

__all__ = ["Deadlines", "read_deadline"]


@dataclasses.dataclass(frozen=True)
class Deadlines:
    """Measured call times and the deadline they imply.

    Parameters
    ----------
    factor : float
        Deadline as a multiple of the slowest worker's median time for that kind of call.
    floor : float
        Seconds; no deadline is shorter.
    initial : float or None
        Seconds allowed for a call before any has been timed (the statistics pass); None
        waits without limit for it.
    first_call : float
        Seconds added to the deadline of a kind's first call (compilation).
    window : int
        Calls per worker and kind kept for the median.
    read_floor : float
        Seconds; no single chunk read on a worker gets less (see :func:`read_deadline`).
    close : float
        Seconds the workers get to clear their chunks when the pool closes; one that does not
        answer by then has its actor released all the same.
    recent : tuple of ((kind, worker), seconds)
        The calls timed so far: per kind and worker (sorted), the last ``window`` times.
    """

    factor: float = 10.0
    floor: float = 60.0
    initial: float | None = 3600.0
    first_call: float = 300.0
    window: int = 9
    read_floor: float = 60.0
    close: float = 10.0
    recent: tuple[tuple[tuple[str, str], tuple[float, ...]], ...] = ()

    def __post_init__(self):
        if not self.factor >= 1:
            raise ValueError(f"Deadline factor must be >= 1; got {self.factor!r}.")
        if not self.floor > 0:
            raise ValueError(f"Deadline floor must be > 0 seconds; got {self.floor!r}.")
        if self.initial is not None and not self.initial >= self.floor:
            raise ValueError(
                f"Initial deadline must be None or >= the floor ({self.floor} s); "
                f"got {self.initial!r}."
            )
        if not self.first_call >= 0:
            raise ValueError(f"Deadline first_call must be >= 0 s; got {self.first_call!r}.")
        if not self.read_floor > 0:
            raise ValueError(f"Deadline read_floor must be > 0 seconds; got {self.read_floor!r}.")
        if not self.close > 0:
            raise ValueError(f"Deadline close must be > 0 seconds; got {self.close!r}.")
        if self.window < 1:
            raise ValueError(f"Deadline window must be >= 1; got {self.window!r}.")

    @classmethod
    def from_config(cls) -> Deadlines:
        """Deadlines with the values of Dask's ``distglm.deadline.*`` configuration keys
        (``factor``, ``floor``, ``initial``, ``first_call``, ``read_floor``, ``close``; the class
        defaults where unset)."""
        import dask

        d = cls()
        initial = dask.config.get("distglm.deadline.initial", d.initial)
        return cls(
            factor=float(dask.config.get("distglm.deadline.factor", d.factor)),
            floor=float(dask.config.get("distglm.deadline.floor", d.floor)),
            initial=None if initial is None else float(initial),
            first_call=float(dask.config.get("distglm.deadline.first_call", d.first_call)),
            read_floor=float(dask.config.get("distglm.deadline.read_floor", d.read_floor)),
            close=float(dask.config.get("distglm.deadline.close", d.close)),
        )

    @property
    def read_limits(self) -> tuple[float, float]:
        """``(factor, read_floor)``, as a worker needs them for :func:`read_deadline`."""
        return (self.factor, self.read_floor)

    @property
    def times(self) -> tuple[tuple[str, str, float], ...]:
        """Every time kept, as ``(kind, worker, seconds)``, by kind and worker, oldest first."""
        return tuple((k, w, s) for (k, w), secs in self.recent for s in secs)

    def medians(self, kind: str) -> dict[str, float]:
        """Median seconds per worker for calls of ``kind``."""
        return {w: statistics.median(secs) for (k, w), secs in self.recent if k == kind}

    def deadline(self, kind: str) -> float | None:
        """Seconds to wait for a call of ``kind`` (None: no limit)."""
        med = self.medians(kind)
        if med:
            return self._timed(med)
        kinds = {k for (k, _), _ in self.recent}
        if not kinds:
            return self.initial
        return max(self._timed(self.medians(k)) for k in kinds) + self.first_call

    def _timed(self, medians: Mapping[str, float]) -> float:
        return max(self.floor, self.factor * max(medians.values()))

    def record(self, kind: str, seconds: Mapping[str, float]) -> Deadlines:
        """These deadlines with the call times ``{worker: seconds}`` of one ``kind`` added
        (each worker's oldest time of that kind dropped past ``window``)."""
        recent = dict(self.recent)
        for w, s in seconds.items():
            recent[(kind, w)] = (*recent.get((kind, w), ()), float(s))[-self.window :]
        return dataclasses.replace(self, recent=tuple(sorted(recent.items())))

    def forget(self, workers) -> Deadlines:
        """These deadlines without the times of ``workers`` (dropped from the fit)."""
        gone = set(workers)
        kept = tuple(item for item in self.recent if item[0][1] not in gone)
        return dataclasses.replace(self, recent=kept)


def read_deadline(seconds: Sequence[float], factor: float, floor: float) -> float:
    """Seconds one chunk read may take on a worker: ``factor`` times the median of the reads
    it timed so far (``seconds``), and never less than ``floor``.

    A read past it (a stalled network file system, a chunk that became a named pipe) fails
    the call with an error naming the chunk, rather than holding the pass for ever.
    """
    if not seconds:
        return float(floor)
    return max(float(floor), float(factor) * statistics.median(seconds))
