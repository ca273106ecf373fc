"""Shared fixtures and strict settings for the whole suite.

- JAX refuses implicit rank promotion, so a kernel that broadcasts by accident fails here
  (except in ``parity`` tests, whose oracle, nemos, relies on it).
- ``cluster`` / ``client``: one real 2-worker ``LocalCluster`` (worker processes, one thread
  each, 2 GiB memory limit) for the session; the client is never the process's default.
- ``raise_if_dask_computes`` (from ``helpers``) guards laziness by counting computes.
- Markers: ``cluster`` is added to every test that uses a cluster fixture (or whose module
  starts clusters); ``slow`` marks the slow part. ``pytest -m "not slow and not cluster"`` is
  the fast subset.
"""

from __future__ import annotations

import jax
import pytest
from hypothesis import settings

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("distglm", deadline=None, print_blob=True)
settings.load_profile("distglm")

#: fixtures that start or use a real Dask cluster
_CLUSTER_FIXTURES = {"cluster", "client", "one_worker"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _nemos_rank_promotion(request):
    """nemos (the parity oracle) broadcasts implicitly: allow it in parity tests only."""
    if request.node.get_closest_marker("parity") is None:
        yield
        return
    with jax.numpy_rank_promotion("allow"):
        yield


@pytest.fixture(scope="session")
def cluster():
    """A 2-worker LocalCluster of processes, one thread and 2 GiB each, for the session."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="2GiB",
        dashboard_address=":0",
    ) as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    """A client of the session's cluster; never the process's default client."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as c:
        yield c
