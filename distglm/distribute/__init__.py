"""The only package that talks to ``dask.distributed``: client resolution, the per-worker actors
that hold cached chunks and run the kernels, and the coordinator's pool that reduces their
partial sums in chunk-id order and survives lost workers."""

from .client import connect, pin_workers_to_cores
from .objective import DistributedData
from .pool import WorkerPool
from .worker import ChunkWorker

__all__ = ["ChunkWorker", "DistributedData", "WorkerPool", "connect", "pin_workers_to_cores"]
