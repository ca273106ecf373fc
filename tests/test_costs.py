"""The cost model behind ``solver_name="auto"``: pure functions of the problem's facts."""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from distglm.distribute.session import measured_pass_facts
from distglm.solve import PassFacts, ProblemFacts, choose_solver, predicted_costs
from distglm.solve.choose import AUTO_NEWTON_MAX_BYTES
from distglm.solve.costs import (
    PASS_OVERHEAD,
    PASSES,
    RATE_CPU_PROCESS,
    RATE_CPU_WORKER,
    RATE_GPU,
    READ_BYTES_PER_SECOND,
    SOFTMAX_MACS,
)

facts_strategy = st.builds(
    ProblemFacts,
    smooth=st.booleans(),
    n_features=st.integers(1, 400),
    n_classes=st.integers(2, 6),
    n_outputs=st.integers(1, 200),
    n_rows=st.one_of(st.none(), st.integers(100, 10**8)),
    passes=st.builds(
        PassFacts,
        rows_share=st.floats(0.01, 1.0),
        device=st.sampled_from(["cpu", "gpu"]),
        rate=st.sampled_from([RATE_CPU_PROCESS, RATE_CPU_WORKER, RATE_GPU]),
    ),
)


def _reading(facts, seconds):
    """``facts`` with every pass reading the store for ``seconds`` on the busiest worker."""
    return dataclasses.replace(
        facts, passes=dataclasses.replace(facts.passes, read_seconds=seconds)
    )


def _first_order(facts):
    return "LBFGS" if facts.smooth else "ProximalGradient"


@settings(max_examples=200, deadline=None)
@given(facts_strategy, st.floats(0.0, 100.0), st.floats(0.0, 100.0))
def test_reading_more_per_pass_never_turns_auto_away_from_newton(facts, r1, r2):
    """Every solver pays the same read per pass, and Newton takes the fewest passes: once
    reads make it the cheaper fit, longer reads keep it so."""
    low, high = sorted((r1, r2))
    at_low, at_high = _reading(facts, low), _reading(facts, high)
    if choose_solver(at_low) == "Newton":
        assert choose_solver(at_high) == "Newton"


@settings(max_examples=200, deadline=None)
@given(facts_strategy, st.floats(0.0, 10.0))
def test_prediction_is_passes_times_seconds_per_pass_and_reads_add_to_every_pass(facts, read):
    base = predicted_costs(facts)
    streamed = predicted_costs(_reading(facts, read))
    assert set(base) == {_first_order(facts), "Newton"}
    for name, cost in base.items():
        assert cost.passes == PASSES[name]
        assert cost.seconds == pytest.approx(cost.passes * cost.per_pass)
        more = streamed[name].per_pass - cost.per_pass
        if facts.passes.device == "cpu":  # the core reads, then computes
            assert more == pytest.approx(read, rel=1e-9, abs=1e-12)
        else:  # the GPU computes while the CPU reads: never more than the read
            assert -1e-12 <= more <= read + 1e-12
    # Newton's pass does the gradient's work and more
    assert base["Newton"].per_pass >= base[_first_order(facts)].per_pass


@settings(max_examples=100, deadline=None)
@given(facts_strategy)
def test_newton_is_never_chosen_past_the_byte_budget_or_for_a_penalty_across_outputs(facts):
    too_many = AUTO_NEWTON_MAX_BYTES // (8 * facts.n_params**2) + 1
    assert choose_solver(dataclasses.replace(facts, n_outputs=too_many)) == _first_order(facts)
    assert choose_solver(dataclasses.replace(facts, separable=False)) == _first_order(facts)
    assert set(predicted_costs(facts, newton=False)) == {_first_order(facts)}


def test_gradient_pass_is_the_two_products_and_the_softmax_at_the_device_rate():
    facts = ProblemFacts(smooth=True, n_features=50, n_classes=3, n_outputs=20, n_rows=200_000)
    lbfgs = predicted_costs(facts)["LBFGS"]
    macs = 200_000 * 20 * 3 * (2 * 50 + SOFTMAX_MACS)
    overhead = PASS_OVERHEAD["LBFGS"]
    assert lbfgs.per_pass == pytest.approx(macs / RATE_CPU_PROCESS + overhead)
    half = predicted_costs(dataclasses.replace(facts, passes=PassFacts(rows_share=0.5)))["LBFGS"]
    assert half.per_pass == pytest.approx(macs / 2 / RATE_CPU_PROCESS + overhead)
    on_gpu = PassFacts(device="gpu", rate=RATE_GPU)
    gpu = predicted_costs(dataclasses.replace(facts, passes=on_gpu))["LBFGS"]
    assert gpu.per_pass == pytest.approx(macs / RATE_GPU + overhead)


def test_choices_on_the_benchmarked_problems():
    """What bench_auto measured (benchmarks/results/bench_auto.txt): Newton on 2,000,000 x 50
    x 20 x 3 (Ridge and Lasso) and on a small block (200,000 x 10 x 5 x 3); L-BFGS where
    Hessian blocks are large (50,000 x 200 x 5 x 5, D = 1,005); a store read on every pass
    favours Newton even for those blocks on a GPU."""
    pop = ProblemFacts(smooth=True, n_features=50, n_classes=3, n_outputs=20, n_rows=2_000_000)
    assert choose_solver(pop) == "Newton"
    assert choose_solver(dataclasses.replace(pop, smooth=False)) == "Newton"
    small = ProblemFacts(smooth=True, n_features=10, n_classes=3, n_outputs=5, n_rows=200_000)
    assert choose_solver(small) == "Newton"
    wide = ProblemFacts(smooth=True, n_features=200, n_classes=5, n_outputs=5, n_rows=50_000)
    assert choose_solver(wide) == "LBFGS"
    assert choose_solver(dataclasses.replace(wide, smooth=False)) == "ProximalGradient"
    slow_store = dataclasses.replace(
        wide, passes=PassFacts(read_seconds=60.0, device="gpu", rate=RATE_GPU)
    )
    assert choose_solver(slow_store) == "Newton"


def _plan(rows, n_features=1):
    """A real plan of zero dask arrays chunked as ``rows`` (nothing is read)."""
    import dask.array as da

    from distglm.data import plan_data

    n = sum(rows)
    X = da.zeros((n, n_features), chunks=(tuple(rows), n_features), dtype=np.float32)
    y = da.zeros((n, 1), chunks=(tuple(rows), 1), dtype=np.int8)
    return plan_data(X, y)


def test_measured_pass_facts_take_the_busiest_worker_and_its_read_per_chunk():
    plan = _plan([100, 100, 100, 50, 50])
    info = {
        "a": {
            "chunks": [0, 1, 2],
            "streamed": [1, 2],
            "read_seconds": 3.0,
            "block_reads": 3,
            "device": "TFRT_CPU_0",
        },
        "b": {
            "chunks": [3, 4],
            "streamed": [],
            "read_seconds": 0.4,
            "block_reads": 2,
            "device": "TFRT_CPU_0",
        },
    }
    facts = measured_pass_facts(info, plan)
    assert facts == PassFacts(
        read_seconds=2.0, rows_share=300 / 400, device="cpu", rate=RATE_CPU_WORKER
    )
    gpu = {a: {**i, "device": "cuda:0"} for a, i in info.items()}
    assert measured_pass_facts(gpu, plan).device == "gpu"
    assert measured_pass_facts(gpu, plan).rate == RATE_GPU


def test_measured_pass_facts_before_any_read_price_the_streamed_bytes():
    """A resumed fit's session adopts its chunks without reading them: the streamed bytes are
    priced at the default read rate."""

    plan = _plan([10, 10], n_features=1000)  # 40,000 + 10 bytes a chunk
    info = {
        "a": {
            "chunks": [0, 1],
            "streamed": [0, 1],
            "read_seconds": 0.0,
            "block_reads": 0,
            "device": "cpu",
        }
    }
    facts = measured_pass_facts(info, plan)
    assert facts.read_seconds == pytest.approx(80_020 / READ_BYTES_PER_SECOND)
    assert facts.rows_share == 1.0
