"""A Dask worker preload: import JAX and distglm's worker code as the worker starts, not in the
first fit.

A fresh worker process spends about 2.3 s (on a 2-core CPU) importing JAX and distglm when the
first fit starts distglm's actor on it; the first fit waits for that. Started with this preload,
each worker pays it while the cluster starts instead::

    dask worker tcp://scheduler:8786 --preload distglm.distribute.preload

or, on one machine, ``LocalCluster(..., preload=[distglm.WORKER_PRELOAD])``. The clusters distglm
starts itself (a fit without a client, ``distglm demo``, ``distglm fit``) use it.

It imports only: JAX's backend is not started, so a worker pinned to its core after it started
(:func:`~distglm.distribute.client.pin_workers_to_cores`) still sizes XLA's thread pool from
that core. It also turns on the compilation cache
(:func:`~distglm.kernels.compile_cache.enable_compile_cache`), as the actor would.
"""

from __future__ import annotations

import logging

__all__ = ["MODULE", "dask_setup"]

#: this module's name, as ``--preload`` and ``LocalCluster(preload=...)`` take it
MODULE = __name__

logger = logging.getLogger(__name__)


def dask_setup(worker=None) -> None:
    """Import what distglm's actor needs (Dask calls this as the worker starts)."""
    from ..kernels.compile_cache import enable_compile_cache
    from . import worker as _worker  # noqa: F401  (the actor's class and its kernels)

    enable_compile_cache()
    logger.debug("distglm preloaded on %s", "this process" if worker is None else worker.address)
