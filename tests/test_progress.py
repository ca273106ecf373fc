"""Watching a fit: log records per iteration and per pass, the progress bar (tqdm) in a
terminal, one plain line per iteration in a log file."""

from __future__ import annotations

import io
import logging
import time
import types

import numpy as np
import pytest

import distglm
from distglm.cli import make_population, make_sessions
from distglm.distribute import term as term_module
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


def _scheduler_markers(client) -> int:
    """Marker tasks (``distglm-pass-<n>-<kind>``) the scheduler was given (its cumulative
    count of the prefix's transitions into "waiting": one a submitted task)."""
    counts = client.run_on_scheduler(
        lambda dask_scheduler: {
            k: dict(v.state_counts) for k, v in dask_scheduler.task_prefixes.items()
        }
    )
    return counts.get("distglm-pass", {}).get("waiting", 0)


@pytest.fixture
def marked(monkeypatch):
    """The pass numbers of the markers submitted (``_mark_on_dashboard`` counted, then run)."""
    numbers: list[int] = []
    real = term_module._mark_on_dashboard

    def counted(transport, key, summary, markers):
        numbers.append(int(key.split("-")[2]))
        real(transport, key, summary, markers)

    monkeypatch.setattr(term_module, "_mark_on_dashboard", counted)
    return numbers


@pytest.mark.cluster
def test_info_log_per_pass_distributed(client, caplog, marked):
    sessions, *_ = make_sessions(2, 2000, 4, 3, 3, seed=1, chunk_rows=800)
    model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-2)
    before = _scheduler_markers(client)
    with caplog.at_level(logging.INFO, logger="distglm"):
        model.fit(sessions, client=client, cache_bytes=0)  # every chunk streamed
    passes = [r.getMessage() for r in caplog.records if r.name == "distglm.distribute.term"]
    assert len(passes) == len(model.fit_profile_["passes"]) == model.n_passes_ - 1
    nbytes = sum(int(ds["X"].nbytes + ds["y"].nbytes) for ds in sessions.values())
    for i, message in enumerate(passes, start=2):  # pass 1 is the statistics pass
        assert message.startswith(f"pass {i} (")
        assert "streamed" in message and "0 recoveries" in message
        assert f"{nbytes / 2**20:.1f} MiB read" in message
    stats = [r for r in caplog.records if r.name == "distglm.distribute.session"]
    assert len(stats) == 1 and "some chunks streamed" in stats[0].getMessage()
    # the passes show on the dashboard as tasks named distglm-pass-<n>-<kind>, the first of
    # them always: every marker submitted reaches the scheduler
    assert marked and marked[0] == 2
    deadline = time.monotonic() + 30
    while _scheduler_markers(client) - before < len(marked) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _scheduler_markers(client) - before == len(marked)
    assert np.isfinite(model.fit_history_[-1]["objective"])


def _local_fit(markers_on):
    """A 40-pass gradient-descent fit on an in-process pool (no cluster)."""
    import dask.array as da
    import dask.config

    from distglm.data.plan import plan_data
    from distglm.distribute.session import DataSession
    from tests.fakes import LocalTransport

    X, y, _, _ = make_population(600, 4, 3, 3, seed=3)
    plan = plan_data(da.from_array(X, chunks=(300, -1)), da.from_array(y, chunks=(300, -1)))
    config = {"distglm.join_interval": 0, "distglm.dashboard.markers": markers_on}
    with (
        dask.config.set(config),
        DataSession(None, plan, 3, transport=LocalTransport(["w0", "w1"])) as session,
    ):
        model = distglm.ClassifierPopulationGLM(
            3,
            regularizer_strength=1e-2,
            solver_name="GradientDescent",
            solver_kwargs={"maxiter": 40, "tol": 1e-30},
        )
        with pytest.warns(RuntimeWarning, match="did not converge"):
            model.fit(session)
    return model


def test_passes_closer_than_the_interval_share_a_marker(marked, monkeypatch):
    """The first pass is marked, then the first pass at least MARK_INTERVAL after the last
    marker: with a clock that moves 0.3 intervals a pass, every fourth pass; and the fit's last
    pass as it ends, where the interval passed it over."""
    ticks = iter(np.arange(1000) * 0.3 * MARK_INTERVAL)
    clock = types.SimpleNamespace(
        monotonic=lambda: float(next(ticks)),
        perf_counter=time.perf_counter,
        process_time=time.process_time,
    )
    monkeypatch.setattr(term_module, "time", clock)
    model = _local_fit(True)
    numbers = [i + 2 for i in range(len(model.fit_profile_["passes"]))]
    assert len(numbers) >= 40
    every_fourth = numbers[::4]
    assert numbers[-1] != every_fourth[-1]  # the interval passed over the last pass
    assert marked == [*every_fourth, numbers[-1]]
    assert marked[-1] == numbers[-1]


def test_markers_can_be_turned_off(marked):
    assert len(_local_fit(False).fit_profile_["passes"]) >= 40
    assert marked == []


def test_a_distributed_search_marks_each_terms_first_and_last_pass(monkeypatch):
    """With a clock that never moves on, each data term of a distributed search (the stacked
    folds' path, then the refit) marks its first pass and, as it ends, its last (once, for a
    term of one pass)."""
    import dask.array as da
    import dask.config

    from distglm.data.plan import plan_data
    from distglm.distribute.session import DataSession
    from tests.fakes import LocalTransport

    marks: list[tuple[str, int]] = []
    logged: dict[str, list[int]] = {}
    real_mark, real_log = term_module._mark_on_dashboard, term_module.DistributedData._log

    def mark(transport, key, summary, markers):
        _, _, n, _, tag = key.split("-")
        marks.append((tag, int(n)))
        real_mark(transport, key, summary, markers)

    def log(self, kind, start, timing):
        real_log(self, kind, start, timing)
        logged.setdefault(self._tag, []).append(len(self.pass_log) + self.stat_passes)

    clock = types.SimpleNamespace(
        monotonic=lambda: 0.0, perf_counter=time.perf_counter, process_time=time.process_time
    )
    monkeypatch.setattr(term_module, "time", clock)
    monkeypatch.setattr(term_module, "_mark_on_dashboard", mark)
    monkeypatch.setattr(term_module.DistributedData, "_log", log)
    X, y, _, _ = make_population(600, 4, 3, 3, seed=4)
    plan = plan_data(da.from_array(X, chunks=(300, -1)), da.from_array(y, chunks=(300, -1)))
    with (
        dask.config.set({"distglm.join_interval": 0}),
        DataSession(None, plan, 3, transport=LocalTransport(["w0", "w1"])) as session,
    ):
        distglm.ClassifierPopulationGLMCV(3, strengths=[1e-1, 1e-2], cv=3).fit(session)
    (path, path_passes), (refit, refit_passes) = logged.items()  # in the order they ran
    assert len(path_passes) > 1 and refit_passes  # the refit starts at the chosen fit: 1 pass
    want = [(path, path_passes[0]), (path, path_passes[-1]), (refit, refit_passes[0])]
    want += [(refit, refit_passes[-1])] if len(refit_passes) > 1 else []
    assert marks == want
