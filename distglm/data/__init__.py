"""Distributed inputs: sessions, work-unit plans, the statistics merge and lazy prediction.

This is the only package that imports ``xarray`` and ``dask.array``; it never talks to a cluster
(that is :mod:`distglm.distribute`).
"""

from .plan import ChunkSpec, DataPlan, is_distributed_input, plan_data
from .sessions import Sessions, open_sessions
from .stats import ChunkStats, DataStats, merge_stats

__all__ = [
    "ChunkSpec",
    "ChunkStats",
    "DataPlan",
    "DataStats",
    "Sessions",
    "is_distributed_input",
    "merge_stats",
    "open_sessions",
    "plan_data",
]
