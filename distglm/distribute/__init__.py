"""The only package that talks to ``dask.distributed``.

- :mod:`~distglm.distribute.client`: which cluster a fit uses.
- :mod:`~distglm.distribute.session`: a data session (statistics, encoding, worker pool) that
  outlives one fit; :mod:`~distglm.distribute.term`: the distributed data term of one fit;
  :mod:`~distglm.distribute.folds_term`: that of a cross-validation search (every fold stacked).
- :mod:`~distglm.distribute.pool`: the coordinator's pool of worker actors and its recovery;
  :mod:`~distglm.distribute.actors`: starting and calling those actors under deadlines;
  :mod:`~distglm.distribute.assignment`: which worker holds which chunk (pure);
  :mod:`~distglm.distribute.deadline`: how long a call waits for a worker (pure);
  :mod:`~distglm.distribute.transport`: the RPC to the actors.
- :mod:`~distglm.distribute.worker`: the actor on each worker;
  :mod:`~distglm.distribute.pass_chunks`: the chunks its passes run over, as read;
  :mod:`~distglm.distribute.budget`: its cache budget;
  :mod:`~distglm.distribute.runtime`: its memory and malloc;
  :mod:`~distglm.distribute.wire`: the flat buffers it returns;
  :mod:`~distglm.distribute.reduce`: the chunk-order reduction of those sums.
"""

from .assignment import Assignment
from .client import connect, pin_workers_to_cores
from .deadline import Deadlines
from .pool import WorkerPool
from .preload import MODULE as WORKER_PRELOAD
from .session import DataSession, open_data, open_plan
from .term import DistributedData
from .transport import DaskTransport, SchedulerLost, Transport, WorkerLost
from .worker import ChunkWorker

__all__ = [
    "WORKER_PRELOAD",
    "Assignment",
    "ChunkWorker",
    "DaskTransport",
    "DataSession",
    "Deadlines",
    "DistributedData",
    "SchedulerLost",
    "Transport",
    "WorkerLost",
    "WorkerPool",
    "connect",
    "open_data",
    "open_plan",
    "pin_workers_to_cores",
]
