"""A data session: the statistics pass, the shared class encoding and the worker pool of one
dataset, kept for as many fits as use it.

:func:`open_data` plans the data, starts one actor per worker, runs the statistics pass (which
also caches chunks on the workers, up to their budgets) and encodes the labels with the classes
it found. Each fit then asks the session for a data term (:meth:`DataSession.term`) and runs
its passes over the chunks already on the workers: fits at several strengths, warm starts, or a
refit need no statistics pass and no re-read of cached chunks.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from ..data import merge_stats, plan_data
from ..solve.costs import READ_BYTES_PER_SECOND, PassFacts
from .client import connect
from .pool import WorkerPool
from .term import DistributedData

__all__ = ["DataSession", "measured_pass_facts", "open_data", "open_plan"]

logger = logging.getLogger(__name__)


def measured_pass_facts(info: dict, plan) -> PassFacts:
    """The busiest worker's read seconds per pass and share of the rows, and the device.

    Parameters
    ----------
    info : dict of worker address -> dict
        :meth:`~distglm.distribute.worker.ChunkWorker.info` of each worker after the
        statistics pass (which read every chunk once), or after the chunks were adopted.
    plan : DataPlan

    A worker's read per pass is the source blocks behind its streamed chunks (a block once
    for its units) times its measured seconds per block read (or, when it has read none yet,
    their bytes at :data:`~distglm.solve.costs.READ_BYTES_PER_SECOND`).
    """
    rows = {c.chunk_id: c.rows for c in plan.chunks}
    total = max(sum(rows.values()), 1)
    read, share, devices = 0.0, 0.0, set()
    for i in info.values():
        streamed = i["streamed"]
        if i["block_reads"]:
            seconds = i["read_seconds"] * plan.n_blocks(streamed) / i["block_reads"]
        else:
            seconds = plan.read_nbytes(streamed) / READ_BYTES_PER_SECOND
        read = max(read, seconds)
        share = max(share, sum(rows[c] for c in i["chunks"]) / total)
        devices.add("cpu" if "cpu" in str(i["device"]).lower() else "gpu")
    device = "cpu" if "cpu" in devices or not devices else "gpu"
    return PassFacts.on(device, shared_host=True, read_seconds=read, rows_share=share or 1.0)


class DataSession:
    """Statistics, encoding and worker pool of one dataset; outlives one fit.

    Build it with :func:`open_data` (a context manager); close it to release the workers'
    cached chunks.

    Parameters
    ----------
    client : distributed.Client or None
    plan : DataPlan
    n_classes : int
    dtype : str
        Kernel dtype on the workers.
    cache_bytes : None, float, int or str
        Each worker's chunk-cache budget.
    transport : Transport, optional
        How the pool reaches its workers (a Dask client's actors by default).
    wait_for_workers : float
        Seconds a recovery waits for a live worker when every one was lost.
    deadlines : Deadlines, optional
        How long each call waits for a worker before dropping it (see
        :class:`~distglm.distribute.deadline.Deadlines`; Dask's ``distglm.deadline.*``
        configuration by default).
    stats : DataStats, optional
        Statistics already gathered (a fit resumed from its checkpoint): the statistics pass
        is skipped, and the workers read their chunks on the first pass instead
        (:meth:`~distglm.distribute.worker.ChunkWorker.adopt`).
    chunk_kept : int array of shape (n_chunks,), optional
        With ``stats``: each chunk's kept rows, checked as the chunks are read.
    drop_empty_sessions : bool
        Whether a session with every row dropped for NaN/Inf is left out rather than refused.
    unit_rows : "auto", int or None
        How the plan's blocks are split into units for the workers (see
        :func:`~distglm.distribute.assignment.split_for_workers`); a resumed fit passes the
        split its checkpoint recorded (``chunk_kept`` is per unit).
    check_plan : callable of DataPlan, optional
        Called with the split plan before the statistics pass (the client's size check,
        which counts the chunks).

    Attributes
    ----------
    plan : DataPlan
        The plan as split into units for the workers.
    stats : DataStats
        The merged statistics (label set, class counts, samples per output, second moment).
    classes : array of shape (n_classes,)
        The sorted label set, the encoding every chunk uses.
    streamed : bool
        Whether some chunks did not fit the workers' caches (they are re-read every pass).
    statistics_seconds : float
    chunk_kept : int array of shape (n_chunks,)
        Each chunk's rows without NaN/Inf, by chunk id.
    """

    def __init__(
        self,
        client,
        plan,
        n_classes,
        *,
        dtype="float32",
        cache_bytes=None,
        transport=None,
        wait_for_workers=60.0,
        deadlines=None,
        stats=None,
        chunk_kept=None,
        drop_empty_sessions=False,
        unit_rows="auto",
        check_plan=None,
    ):
        self.n_classes = int(n_classes)
        self.pool = WorkerPool(
            client,
            plan,
            dtype=dtype,
            cache_bytes=cache_bytes,
            transport=transport,
            wait_for_workers=wait_for_workers,
            deadlines=deadlines,
            n_classes=self.n_classes,
            unit_rows=unit_rows,
        )
        self.plan = plan = self.pool.plan
        # the first term counts the statistics pass, when this session made one
        self._terms = 0 if stats is None else 1
        try:
            if check_plan is not None:
                check_plan(plan)
            start = time.perf_counter()
            if stats is None:
                per_chunk = self.pool.statistics()
                self.stats = merge_stats(plan, per_chunk, self.n_classes, drop_empty_sessions)
                kept = {st.chunk_id: st.n_rows - st.n_dropped for st in per_chunk}
                self.chunk_kept = np.asarray([kept[c.chunk_id] for c in plan.chunks], np.int64)
                self.pool.encode(self.stats.classes)
            else:
                self.stats = stats
                self.chunk_kept = np.asarray(chunk_kept, np.int64)
                if self.chunk_kept.shape != (len(plan.chunks),):
                    raise ValueError(
                        f"The statistics count the kept rows of {self.chunk_kept.size} chunks; "
                        f"the data is planned in {len(plan.chunks)} (units of "
                        f"{plan.unit_rows or plan.chunk_rows} rows)."
                    )
                self.pool.adopt(stats.classes, self.chunk_kept)
            self.statistics_seconds = time.perf_counter() - start
            info = self.pool.info()
            self.streamed = any(i["streamed"] for i in info.values())
            self.read_bytes = sum(plan.read_nbytes(i["streamed"]) for i in info.values())
            self.pass_facts = measured_pass_facts(info, plan)
        except BaseException:
            self.pool.close()
            raise
        logger.info(
            "%s: %d chunks on %d workers in %.2f s (%s)",
            "Statistics pass" if stats is None else "Statistics reused, chunks assigned",
            len(plan.chunks),
            len(self.pool.workers),
            self.statistics_seconds,
            "some chunks streamed" if self.streamed else "all chunks cached",
        )

    @property
    def classes(self) -> np.ndarray:
        return self.stats.classes

    def term(self) -> DistributedData:
        """A data term for one fit over this session's chunks.

        The first term counts the statistics pass as one of its passes (its fit caused it);
        later ones count none.
        """
        term = DistributedData(
            self.pool,
            self.stats,
            self.n_classes,
            streamed=self.streamed,
            stat_passes=1 if self._terms == 0 else 0,
            read_bytes=self.read_bytes,
            pass_facts=self.pass_facts,
        )
        self._terms += 1
        return term

    def design_rank(self) -> int:
        """Rank of the design over all kept rows (from the statistics pass's second moment)."""
        return self.stats.design_rank()

    def profile(self, term: DistributedData) -> dict:
        """What ``fit_profile_`` reports for a fit that used ``term``."""
        after = self.pool.info()
        return {
            "workers": self.pool.workers,
            "n_chunks": len(self.plan.chunks),
            "chunk_rows": self.plan.chunk_rows,
            "unit_rows": self.plan.unit_rows,
            "statistics_seconds": self.statistics_seconds if term.stat_passes else 0.0,
            "passes": term.pass_log,
            "recoveries": self.pool.recoveries,
            "dropped_workers": sorted(self.pool.dropped),
            "n_dropped": self.stats.n_dropped,
            "streamed": self.streamed,
            "cache": {
                addr: {
                    "cache_bytes": info["cache_bytes"],
                    "memory_limit": info.get("memory_limit"),
                    "cached_chunks": len(info["cached"]),
                    "streamed_chunks": len(info["streamed"]),
                    "cached_nbytes": info["nbytes"],
                    "block_reads": info["block_reads"],
                    "memory_start": info["memory_start"],
                    "memory_end": info["memory"],
                }
                for addr, info in after.items()
            },
        }

    def close(self) -> None:
        """Release the workers' actors and their cached chunks."""
        self.pool.close()

    def __enter__(self) -> DataSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def open_plan(
    plan,
    *,
    n_classes,
    client=None,
    dtype="float32",
    cache_bytes=None,
    stats=None,
    chunk_kept=None,
    drop_empty_sessions=False,
    unit_rows="auto",
    check_plan=None,
):
    """Open planned data (see :func:`open_data`); with ``stats`` (and ``chunk_kept``, and the
    ``unit_rows`` it was counted for) the statistics pass is skipped and those are used (a
    resumed fit).

    Yields
    ------
    DataSession
    """
    with (
        connect(client) as c,
        DataSession(
            c,
            plan,
            n_classes,
            dtype=dtype,
            cache_bytes=cache_bytes,
            stats=stats,
            chunk_kept=chunk_kept,
            drop_empty_sessions=drop_empty_sessions,
            unit_rows=unit_rows,
            check_plan=check_plan,
        ) as session,
    ):
        yield session


@contextlib.contextmanager
def open_data(
    X,
    y=None,
    *,
    n_classes,
    client=None,
    population=True,
    dtype="float32",
    cache_bytes=None,
    drop_empty_sessions=False,
):
    """Open distributed data for fitting: plan it, read it once, keep it on the workers.

    Parameters
    ----------
    X : sessions, dask array, dict of dask arrays or dask-backed DataArray
        What :meth:`~distglm.ClassifierPopulationGLM.fit` accepts as distributed data.
    y : dask array or DataArray, optional
        Labels (None for sessions, which carry theirs).
    n_classes : int
        The number of distinct labels the data must hold.
    client : distributed.Client, optional
        The cluster; by default the current Dask client, or an embedded ``LocalCluster``
        that lives as long as the session.
    population : bool
        Whether labels are 2-D (population model) or 1-D (single output).
    dtype : str
        Kernel dtype on the workers.
    cache_bytes : None, float, int or str
        Each worker's chunk-cache budget (see ``fit``).
    drop_empty_sessions : bool
        Leave out (with a warning) a session whose rows are all dropped for NaN/Inf, instead
        of refusing it (see ``fit``).

    Yields
    ------
    DataSession
        Pass it to ``fit`` in place of the data, as many times as needed.

    Examples
    --------
    >>> with distglm.open_data(sessions, n_classes=3) as data:  # doctest: +SKIP
    ...     fits = [distglm.ClassifierPopulationGLM(3, regularizer_strength=s).fit(data)
    ...             for s in (1e-1, 1e-2, 1e-3)]
    """
    plan = plan_data(X, y, population)
    with open_plan(
        plan,
        n_classes=n_classes,
        client=client,
        dtype=dtype,
        cache_bytes=cache_bytes,
        drop_empty_sessions=drop_empty_sessions,
    ) as session:
        yield session
