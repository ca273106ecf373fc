"""The coordinator's worker pool on a real LocalCluster: transport paths and actor lifetime."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from distglm.cli import make_population
from distglm.data import merge_stats, plan_data
from distglm.distribute import DistributedData, WorkerPool
from distglm.distribute.pool import WorkerLost

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def plan():
    X, y, _, _ = make_population(3000, 5, 3, 3, seed=0)
    return plan_data(da.from_array(X, chunks=(700, 5)), da.from_array(y, chunks=(700, 3)))


def _evaluate(client, plan, theta, **pool_kwargs):
    with WorkerPool(client, plan, **pool_kwargs) as pool:
        stats = merge_stats(plan, pool.statistics(), 3)
        pool.encode(stats.classes)
        data = DistributedData(pool, stats, 3)
        return data.value_and_grad(theta), pool


def test_scattered_parameters_give_the_same_pass(client, plan):
    theta = np.random.default_rng(1).normal(0, 0.1, (6, 3, 3))
    (v_sent, g_sent), _ = _evaluate(client, plan, theta)
    (v_scat, g_scat), _ = _evaluate(client, plan, theta, scatter_bytes=0)
    assert v_sent == v_scat
    np.testing.assert_array_equal(g_sent, g_scat)


def test_calls_through_the_scheduler_give_the_same_pass(client, plan):
    theta = np.random.default_rng(2).normal(0, 0.1, (6, 3, 3))
    (v_direct, g_direct), pool = _evaluate(client, plan, theta)
    assert all(pool.actors.transport.reaches_directly(w) for w in pool.workers)  # a LocalCluster's
    with WorkerPool(client, plan) as proxied:
        for w in proxied.workers:
            proxied.actors.transport.force_proxy(w)  # calls go through the scheduler
        stats = merge_stats(plan, proxied.statistics(), 3)
        proxied.encode(stats.classes)
        v_proxy, g_proxy = DistributedData(proxied, stats, 3).value_and_grad(theta)
    assert v_direct == v_proxy
    np.testing.assert_array_equal(g_direct, g_proxy)


def test_closing_the_pool_releases_its_actors(client, plan):
    with WorkerPool(client, plan) as pool:
        pool.statistics()
        keys = [fut.key for fut in pool.actors.transport.actors.values()]
        held = client.run(lambda dask_worker: list(dask_worker.state.actors))
        assert all(any(k in actors for actors in held.values()) for k in keys)
    # released asynchronously: wait for the scheduler to forget them
    client.sync(_wait_forgotten, client, keys)


async def _wait_forgotten(client, keys, timeout=10.0):
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = await client.run(lambda dask_worker: list(dask_worker.state.actors))
        if not any(k in actors for actors in held.values() for k in keys):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"actors {keys} still held after {timeout} s")


def test_an_error_on_a_worker_is_raised_not_taken_for_a_lost_worker(client):
    # a read that fails with an OSError subclass on the worker must reach the caller as is,
    # not be mistaken for a lost worker and retried
    Xd = da.from_array(np.ones((100, 2), np.float32), chunks=(50, 2))
    yd = da.from_array(np.array([["a"], ["b"]] * 50), chunks=(50, 1))

    def broken(block):
        raise FileNotFoundError("chunk file is gone")

    plan_bad = plan_data(Xd.map_blocks(broken, dtype=np.float32), yd)
    with WorkerPool(client, plan_bad) as pool:
        with pytest.raises(FileNotFoundError, match="chunk file is gone"):
            pool.statistics()
        assert pool.recoveries == 0


def test_a_cluster_without_workers_is_refused(plan):
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        with pytest.raises(RuntimeError, match="no workers"):
            WorkerPool(c, plan)


def test_worker_lost_is_a_runtime_error():
    assert issubclass(WorkerLost, RuntimeError)


def test_an_actor_on_a_worker_the_scheduler_does_not_list_is_lost_at_once(client):
    """DaskTransport.start gives up on a worker the scheduler does not (or no longer) list
    within a poll, instead of waiting out the start timeout; the others start."""
    import time

    from distglm.distribute.transport import DaskTransport

    transport = DaskTransport(client, start_timeout=60, poll=0.5)
    live = transport.workers()[0]
    gone = "tcp://127.0.0.1:9"  # nothing listens there
    args = ([np.arange(2)], 64, None, "float32", None, 1)
    start = time.monotonic()
    out = transport.start({live: args, gone: args})
    seconds = time.monotonic() - start
    try:
        assert out[live] == ("ok", None)
        assert out[gone][0] == "lost" and gone in str(out[gone][1])
        assert seconds < 30
    finally:
        transport.release(live)
