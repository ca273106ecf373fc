"""Progress of a fit, shown through the fit callback."""

from __future__ import annotations

import sys

import numpy as np

from .solve import IterationRecord

__all__ = ["ProgressLine"]


class ProgressLine:
    """A fit callback printing one updating line per iteration: objective, estimated gap,
    passes and seconds, with a bar of the gap's progress towards the tolerance (log scale).

    Parameters
    ----------
    stream : file, optional
        Where to write (stderr by default).
    """

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.first_gap = None

    def __call__(self, record: IterationRecord) -> None:
        gap = max(record.gap, 1e-300)
        if self.first_gap is None:
            self.first_gap = max(gap, record.tol * 10)
        span = np.log10(self.first_gap) - np.log10(record.tol)
        done = np.clip((np.log10(self.first_gap) - np.log10(gap)) / max(span, 1e-12), 0, 1)
        bar = "#" * int(np.round(30 * done))
        end = "\n" if record.status != "running" or record.iteration >= record.maxiter else ""
        self.stream.write(
            f"\r[{bar:<30}] iter {record.iteration:>3}  objective {record.objective:.6f}  "
            f"gap {record.gap:.1e}  passes {record.passes}  {record.seconds:.1f} s{end}"
        )
        self.stream.flush()
