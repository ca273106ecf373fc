"""Relayed calls: the groups, a relayed fit against a direct one, and lost leaders and members.

The cluster tests run a 4-worker ``LocalCluster`` in this process (the actors live here, so a
test can count the relays they ran) with ``distglm.relay.min_workers`` lowered to 2.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from distglm.distribute.relay import relay_groups


@given(st.integers(0, 300), st.integers(-1, 40))
def test_relay_groups_partition_the_sorted_workers_into_about_sqrt_n_groups(n, min_workers):
    addrs = [f"tcp://10.0.0.{i % 7}:{9000 + i}" for i in range(n)][::-1]
    groups = relay_groups(addrs, min_workers)
    assert [a for g in groups for a in g] == sorted(addrs)  # each once, in address order
    if min_workers <= 0 or n < min_workers:
        assert all(len(g) == 1 for g in groups)
        return
    size = math.ceil(math.sqrt(n))
    assert all(len(g) == size for g in groups[:-1]) and 1 <= len(groups[-1]) <= size
    assert len(groups) == math.ceil(n / size)


def _in_process_cluster(n):
    from distributed import LocalCluster

    return LocalCluster(n_workers=n, threads_per_worker=1, processes=False, dashboard_address=":0")


def _problem():
    from distglm.cli import make_population

    X, y, _, _ = make_population(4 * 256, 8, 6, 3, seed=1)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(256, 8))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(256, 6))
    return Xd, yd


@pytest.mark.cluster
@pytest.mark.parametrize("solver", ["LBFGS", "Newton"])
def test_a_relayed_fit_runs_its_passes_through_leaders_and_matches_a_direct_fit(
    monkeypatch, solver
):
    """The leaders ran the passes (counted on the in-process actors). Their groups' sums are
    added exactly, so an L-BFGS fit's coefficients are bit for bit the direct fit's; a Newton
    fit's Hessian blocks are added in float64 in another order, so its coefficients agree to
    the rounding of float32."""
    import dask.config
    from distributed import Client

    import distglm
    from distglm.distribute.worker import ChunkWorker

    relays = []
    original = ChunkWorker.relay

    async def counted(self, request):
        from distglm.distribute.relay import unpack_relay

        relays.append(sorted(r[1] for r in unpack_relay(request)[0].values()))
        return await original(self, request)

    monkeypatch.setattr(ChunkWorker, "relay", counted)
    Xd, yd = _problem()
    coefs = {}
    with _in_process_cluster(4) as cluster, Client(cluster, set_as_default=False) as client:
        for min_workers in (0, 2):
            with dask.config.set({"distglm.relay.min_workers": min_workers}):
                m = distglm.ClassifierPopulationGLM(
                    n_classes=3,
                    regularizer="Ridge",
                    regularizer_strength=1e-2,
                    solver_name=solver,
                )
                m.fit(Xd, yd, client=client)
            coefs[min_workers] = (np.asarray(m.coef_), np.asarray(m.intercept_))
            if min_workers == 0:
                assert relays == []
    # 4 workers: two groups of two, one relay per group per pass, passes only
    assert len(relays) >= 2 and len(relays) % 2 == 0
    methods = {m for r in relays for m in r}
    assert methods <= {"value_and_grad", "value", "newton"}
    assert ("newton" in methods) == (solver == "Newton")
    if solver == "LBFGS":
        np.testing.assert_array_equal(coefs[2][0], coefs[0][0])
        np.testing.assert_array_equal(coefs[2][1], coefs[0][1])
    else:
        np.testing.assert_allclose(coefs[2][0], coefs[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(coefs[2][1], coefs[0][1], rtol=1e-5, atol=1e-6)


def test_a_group_adds_its_sums_into_its_first_workers_answer():
    """combine_group: the first address's answer holds the group's compensated buffers added
    in address order and its Hessian blocks and weights added in float64; the others' sums
    are None; everything else is each worker's own."""
    from distglm.distribute.passes import combine_group
    from distglm.distribute.reduce import add_buffers

    rng = np.random.default_rng(3)
    results = {
        f"tcp://h:{9 - i}": (
            [i],
            rng.normal(size=10),
            rng.normal(size=(3, 2, 4, 4)).astype(np.float32),
            rng.random(2),
            0.1 * i,
            0.0,
        )
        for i in range(3)
    }
    out = combine_group("newton", results)
    addrs = sorted(results)
    first, rest = out[addrs[0]], [out[a] for a in addrs[1:]]
    np.testing.assert_array_equal(first[1], add_buffers([results[a][1] for a in addrs]))
    want = sum(np.asarray(results[a][2], np.float64) for a in addrs)
    assert first[2].dtype == np.float64
    np.testing.assert_array_equal(first[2], want)
    np.testing.assert_array_equal(first[3], sum(results[a][3] for a in addrs))
    assert all(r[1] is None and r[2] is None and r[3] is None for r in rest)
    for a in addrs:
        assert out[a][0] == results[a][0] and out[a][4:] == results[a][4:]
    grad = combine_group("value", {a: (r[0], r[1], r[4], r[5]) for a, r in results.items()})
    assert grad[addrs[1]][1] is None and grad[addrs[0]][2:] == (results[addrs[0]][4], 0.0)


@pytest.mark.cluster
@pytest.mark.parametrize("lose", ["member", "leader"])
def test_a_group_answers_with_one_buffer_and_a_lost_member_or_leader_is_lost_alone(lose):
    """Relayed, each group's sums come in its leader's answer (the direct answers' buffers
    added, the same bits); a member lost before the call is reported lost by its leader, whose
    own answer then comes as in a direct call; a lost leader is lost itself and its group's
    other workers answer a direct call instead."""
    from distributed import Client

    from distglm.distribute.reduce import add_buffers
    from distglm.distribute.transport import DaskTransport

    with _in_process_cluster(4) as cluster, Client(cluster, set_as_default=False) as client:
        transport = DaskTransport(client, start_timeout=60, poll=0.5, relay_min_workers=0)
        addrs = transport.workers()
        args = ([np.arange(2), np.arange(2)], 64, None, "float32", None, 1)
        assert transport.start(dict.fromkeys(addrs, args)) == dict.fromkeys(addrs, ("ok", None))
        specs = _specs(4)
        loads = {a: ("load", ([specs[i]],)) for i, a in enumerate(addrs)}
        assert {s for s, _ in transport.call(loads, timeout=60).values()} == {"ok"}
        classes = np.arange(3)
        transport.call(dict.fromkeys(addrs, ("encode", (classes,))), timeout=60)
        theta = np.full((9, 2, 3), 0.1, np.float32)
        calls = dict.fromkeys(addrs, ("value", (theta,)))
        direct = {a: v for a, (_, v) in transport.call(calls, timeout=30).items()}
        assert transport.routes == {}

        transport.relay_min_workers = 2
        relayed = transport.call(calls, timeout=30)
        groups = [addrs[:2], addrs[2:]]
        assert transport.routes == {g[0]: tuple(g) for g in groups}
        for g in groups:
            lead, member = (relayed[a][1] for a in g)
            np.testing.assert_array_equal(lead[1], add_buffers([direct[a][1] for a in g]))
            assert member[1] is None
            assert [lead[0], member[0]] == [direct[a][0] for a in g]  # each its own chunk ids

        gone = addrs[1] if lose == "member" else addrs[0]
        worker = next(w for w in cluster.workers.values() if w.address == gone)
        cluster.sync(worker.close)
        after = transport.call(calls, timeout=30)
        assert after[gone][0] == "lost"
        (other,) = set(groups[0]) - {gone}
        assert after[other][0] == "ok"
        np.testing.assert_array_equal(after[other][1][1], direct[other][1])
        for a in groups[1]:
            assert after[a][0] == "ok"
            np.testing.assert_array_equal(after[a][1][1], relayed[a][1][1])
        for a in addrs:
            if a != gone:
                transport.release(a)


def _specs(n):
    """One chunk spec per worker: the chunks of a 2-output, 3-class problem of 4 x 64 rows."""
    from distglm.cli import make_population
    from distglm.data.plan import plan_data

    X, y, _, _ = make_population(n * 64, 8, 2, 3, seed=2)
    Xd = da.from_array(np.asarray(X, np.float32), chunks=(64, 8))
    yd = da.from_array(np.asarray(y, np.int8), chunks=(64, 2))
    return plan_data(Xd, yd).chunks


@pytest.mark.cluster
def test_a_frozen_member_is_late_at_its_leaders_deadline_and_the_others_answer(monkeypatch):
    """A member that does not answer is reported late by its leader, within the coordinator's
    deadline (the leader gives it 0.9 of it), so it alone is late and the others answer."""
    import time

    from distributed import Client, get_worker

    from distglm.distribute.transport import DaskTransport
    from distglm.distribute.worker import ChunkWorker

    frozen = []
    original = ChunkWorker.value

    def value(self, theta):
        if get_worker().address in frozen:
            time.sleep(6)
        return original(self, theta)

    monkeypatch.setattr(ChunkWorker, "value", value)
    with _in_process_cluster(4) as cluster, Client(cluster, set_as_default=False) as client:
        transport = DaskTransport(client, start_timeout=60, poll=0.5, relay_min_workers=2)
        addrs = transport.workers()
        args = ([np.arange(2)], 64, None, "float32", None, 1)
        assert transport.start(dict.fromkeys(addrs, args)) == dict.fromkeys(addrs, ("ok", None))
        calls = dict.fromkeys(addrs, ("value", (np.zeros((9, 2, 3), np.float32),)))
        frozen.append(addrs[3])
        start = time.monotonic()
        out = transport.call(calls, timeout=2.0)
        seconds = time.monotonic() - start
        assert transport.routes == {addrs[0]: tuple(addrs[:2]), addrs[2]: tuple(addrs[2:])}
        assert out[addrs[3]][0] == "late" and "1.8 s" in str(out[addrs[3]][1])
        assert [out[a][0] for a in addrs[:3]] == ["ok"] * 3
        assert seconds < 2.0
        for a in addrs:
            transport.release(a)
