"""Watching a fit: log records per iteration and per pass, the progress bar (tqdm) in a
terminal, one plain line per iteration in a log file."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pytest

import distglm
from distglm.cli import make_population, make_sessions
from distglm.distribute.term import MARK_INTERVAL
from distglm.progress import ProgressLine


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_population(3000, 5, 3, 3, seed=2)
    return X, y


def test_library_logger_has_a_null_handler():
    handlers = logging.getLogger("distglm").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_one_line_per_iteration_when_not_a_terminal(data):
    X, y = data
    log = io.StringIO()
    progress = ProgressLine(stream=log)
    assert not progress.use_bar
    model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(
        X, y, callback=progress
    )
    lines = log.getvalue().splitlines()
    assert len(lines) == len(model.fit_history_)
    assert "\r" not in log.getvalue()
    for i, (line, h) in enumerate(zip(lines, model.fit_history_, strict=True), start=1):
        assert line.startswith(f"distglm LBFGS iter {i}/")
        assert f"objective {h['objective']:.6f}" in line and f"passes {h['passes']}" in line
    assert lines[-1].endswith("converged")


def test_tqdm_bar_in_a_terminal(data):
    X, y = data
    term = _Terminal()
    progress = ProgressLine(stream=term)
    assert progress.use_bar
    model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(
        X, y, callback=progress
    )
    text = term.getvalue()
    assert "\r" in text  # redrawn in place
    assert f"{len(model.fit_history_)}/" in text and "iter" in text
    assert "distglm LBFGS converged" in text
    assert f"objective {model.fit_history_[-1]['objective']:.6f}" in text


def test_info_log_per_iteration(data, caplog):
    X, y = data
    with caplog.at_level(logging.INFO, logger="distglm"):
        model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-2).fit(X, y)
    records = [r for r in caplog.records if r.name == "distglm.fit"]
    assert len(records) == len(model.fit_history_)
    for r, h in zip(records, model.fit_history_, strict=True):
        assert f"objective {h['objective']:.8g}" in r.getMessage()
        assert f"{h['passes']} passes" in r.getMessage()


def _markers_so_far(client) -> int:
    """Marker tasks (``distglm-pass-<n>-<kind>``) submitted to the scheduler, once that
    count holds still for 0.3 s (a submission reaches the scheduler a moment after it)."""

    def finished():
        counts = client.run_on_scheduler(
            lambda dask_scheduler: {
                k: dict(v.state_counts) for k, v in dask_scheduler.task_prefixes.items()
            }
        )
        return counts.get("distglm-pass", {}).get("waiting", 0)  # one a submitted task

    last, now = -1, finished()
    while now != last:
        time.sleep(0.3)
        last, now = now, finished()
    return now


@pytest.mark.cluster
def test_info_log_per_pass_distributed(client, caplog):
    sessions, *_ = make_sessions(2, 2000, 4, 3, 3, seed=1, chunk_rows=800)
    model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-2)
    before = _markers_so_far(client)
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="distglm"):
        model.fit(sessions, client=client, cache_bytes=0)  # every chunk streamed
    wall = time.perf_counter() - start
    passes = [r.getMessage() for r in caplog.records if r.name == "distglm.distribute.term"]
    assert len(passes) == len(model.fit_profile_["passes"]) == model.n_passes_ - 1
    nbytes = sum(int(ds["X"].nbytes + ds["y"].nbytes) for ds in sessions.values())
    for i, message in enumerate(passes, start=2):  # pass 1 is the statistics pass
        assert message.startswith(f"pass {i} (")
        assert "streamed" in message and "0 recoveries" in message
        assert f"{nbytes / 2**20:.1f} MiB read" in message
    stats = [r for r in caplog.records if r.name == "distglm.distribute.session"]
    assert len(stats) == 1 and "some chunks streamed" in stats[0].getMessage()
    # the passes show on the dashboard as tasks named distglm-pass-<n>-<kind>: the first, and
    # then at most one each MARK_INTERVAL
    marked = _markers_so_far(client) - before
    assert 1 <= marked <= min(len(passes), 1 + wall / MARK_INTERVAL)
    assert np.isfinite(model.fit_history_[-1]["objective"])


@pytest.mark.cluster
def test_dashboard_markers_are_marked_at_most_ten_a_second_and_can_be_turned_off(client):
    """Passes closer together than MARK_INTERVAL share a marker (each costs its worker ~1.5
    ms of CPU); ``distglm.dashboard.markers`` False submits none."""
    import dask.config

    sessions, *_ = make_sessions(1, 1000, 4, 3, 3, seed=2, chunk_rows=500)
    counts = {}
    for on in (False, True):
        with dask.config.set({"distglm.dashboard.markers": on}):
            before = _markers_so_far(client)
            start = time.perf_counter()
            m = distglm.ClassifierPopulationGLM(
                3,
                regularizer_strength=1e-2,
                solver_name="GradientDescent",
                solver_kwargs={"maxiter": 40, "tol": 1e-30},
            ).fit(sessions, client=client)
            wall = time.perf_counter() - start
            counts[on] = (_markers_so_far(client) - before, m.fit_profile_["passes"], wall)
    marked, passes, wall = counts[True]
    assert len(passes) >= 40
    assert 1 <= marked <= 1 + wall / MARK_INTERVAL
    assert marked < len(passes)  # ~10 ms passes: most share a marker
    assert counts[False][0] == 0
