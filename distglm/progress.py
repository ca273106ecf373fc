"""Progress of a fit, shown through the fit callback: a tqdm bar in a terminal or a notebook,
one plain line per iteration where the stream is not a terminal (a batch job's log file)."""

from __future__ import annotations

import shutil
import sys
from typing import Any

from .solve import IterationRecord

__all__ = ["ProgressLine", "fit_callbacks", "in_notebook"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm draws a widget)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _text(record: IterationRecord) -> str:
    return (
        f"objective {record.objective:.6f}  gap {record.gap:.1e}  passes {record.passes}  "
        f"{record.seconds:.1f} s"
    )


class ProgressLine:
    """A fit callback showing each iteration: objective, estimated gap, passes and seconds.

    In a terminal or a notebook it draws a tqdm bar over the iterations (up to the solver's
    ``maxiter``, closed when the fit converges or stops); elsewhere (``stream`` is not a
    terminal: a log file, a pipe) it writes one line per iteration.

    Parameters
    ----------
    stream : file, optional
        Where to write (stderr by default).
    bar : bool, optional
        Force the bar (True) or the plain lines (False); by default, the bar when ``stream``
        is a terminal or this is a notebook.
    """

    def __init__(self, stream=None, bar: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.use_bar = (bool(isatty and isatty()) or in_notebook()) if bar is None else bar
        self._bar: Any = None

    def _done(self, record: IterationRecord) -> bool:
        return record.status != "running" or record.iteration >= record.maxiter

    def __call__(self, record: IterationRecord) -> None:
        if not self.use_bar:
            self.stream.write(
                f"distglm {record.solver} iter {record.iteration}/{record.maxiter}  "
                f"{_text(record)}  {record.status}\n"
            )
            self.stream.flush()
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            # a terminal that reports no size (0 x 0) gets 100 x 20: tqdm draws nothing in 0 rows
            size = {}
            if not in_notebook():
                cols, rows = shutil.get_terminal_size((100, 20))
                size = {"ncols": cols, "nrows": rows}
            self._bar = tqdm(
                total=record.maxiter,
                desc=f"distglm {record.solver}",
                unit="iter",
                file=self.stream,
                **size,
            )
        self._bar.set_postfix_str(_text(record), refresh=False)
        self._bar.update(record.iteration - self._bar.n)
        if self._done(record):
            self._bar.set_description_str(f"distglm {record.solver} {record.status}")
            self._bar.close()
            self._bar = None


def fit_callbacks(callback, progress):
    """The fit's callbacks: the user's (one, a list, or None), then the progress display."""
    out = (
        []
        if callback is None
        else list(callback)
        if isinstance(callback, (list, tuple))
        else [callback]
    )
    return [*out, ProgressLine()] if progress else out
