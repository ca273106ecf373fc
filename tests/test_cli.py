"""The ``distglm`` command, run as a subprocess: usage, exit codes, and info / fit / predict /
score end to end on a multi-session store (on an embedded LocalCluster and on a ``dask
scheduler`` + ``dask worker`` pair)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import distglm
from distglm.cli import main, make_sessions

from helpers import dask_processes

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _distglm(*args, cwd=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "distglm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three sessions with overlapping outputs, string labels, chunks of 1,500 rows."""
    path = tmp_path_factory.mktemp("cli") / "sessions.zarr"
    sessions, *_ = make_sessions(3, 3000, 5, 4, 3, seed=3, chunk_rows=1500)
    for name, ds in sessions.items():
        ds.to_zarr(path, group=name, mode="w")
    return path


def _main(capsys, *args):
    """Run the command in this process; (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help, --version, usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_and_help(capsys):
    code, out, _ = _main(capsys, "--version")
    assert code == 0 and out.strip() == f"distglm {distglm.__version__}"
    code, out, _ = _main(capsys, "--help")
    assert code == 0
    for command in ("info", "fit", "predict", "score", "demo"):
        assert f"distglm {command}" in out  # the examples epilog
    assert "exit codes" in out
    code, out, _ = _main(capsys, "fit", "--help")
    assert code == 0 and "--scheduler-file" in out and "examples:" in out


def test_usage_errors_exit_2(store, capsys):
    code, _, err = _main(capsys, "fit", store)  # --n-classes and --out missing
    assert code == 2 and "--n-classes" in err
    code, _, err = _main(
        capsys,
        "fit",
        store,
        "--n-classes",
        "3",
        "--out",
        "m.npz",
        "--scheduler",
        "a",
        "--scheduler-file",
        "b",
    )
    assert code == 2 and "not allowed with" in err
    assert _main(capsys, "nonsense")[0] == 2
    assert _distglm("fit", store).returncode == 2  # the installed command's own exit code


def test_runtime_errors_exit_1_without_traceback(tmp_path, capsys):
    missing = tmp_path / "absent.zarr"
    out = _distglm("info", missing)
    assert out.returncode == 1
    assert "distglm info: error: Cannot open a Zarr group" in out.stderr
    assert str(missing) in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(FileNotFoundError, match="Cannot open a Zarr group"):
        main(["info", str(missing), "--debug"])  # --debug lets the exception through
    code, _, err = _main(capsys, "info", missing, "--storage-options", "{not json")
    assert code == 1 and "--storage-options must be a JSON object" in err


def test_info_lists_sessions_outputs_and_chunks(store, capsys):
    code, out, err = _main(capsys, "info", store)
    assert code == 0, err
    sessions = distglm.open_sessions(store)
    assert f"{len(sessions)} sessions" in out
    for name, ds in sessions.items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name))
        assert f"{ds['X'].shape[0]:,}" in line and "x 1,500" in line
    info = json.loads(_main(capsys, "info", store, "--json")[1])
    assert info["n_sessions"] == 3 and info["n_features"] == 5
    assert info["outputs"] == [str(o) for o in sessions.outputs.tolist()]
    assert [s["samples"] for s in info["sessions"]] == [
        ds["X"].shape[0] for ds in sessions.values()
    ]
    assert all(sum(s["chunk_rows"]) == s["samples"] for s in info["sessions"])


def _fit_predict_score(store, tmp_path, cluster_args, client):
    """Run fit, predict and score; check each against the library; return their outputs."""
    model_path, pred_path = tmp_path / "model.zarr", tmp_path / "pred.zarr"
    fit = _distglm(
        "fit",
        store,
        "--n-classes",
        3,
        "--regularizer",
        "Ridge",
        "--strength",
        "1e-3",
        "--out",
        model_path,
        *cluster_args,
    )
    assert fit.returncode == 0, fit.stderr
    assert "dashboard: http" in fit.stdout
    model = distglm.load_model(model_path)
    sessions = distglm.open_sessions(store)
    # one INFO line per pass and per iteration in the (non-tty) log
    passes = [ln for ln in fit.stderr.splitlines() if "distglm.distribute.term INFO: pass" in ln]
    iterations = [ln for ln in fit.stderr.splitlines() if "distglm.fit INFO:" in ln]
    assert len(passes) == model.n_passes_ - 1  # the statistics pass is logged on its own
    assert len(iterations) == len(model.fit_history_)
    expected = distglm.ClassifierPopulationGLM(3, regularizer="Ridge", regularizer_strength=1e-3)
    expected.fit(sessions, client=client)
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-4, atol=1e-5)

    pred = _distglm("predict", model_path, store, "--out", pred_path, *cluster_args)
    assert pred.returncode == 0, pred.stderr
    for name, ds in sessions.items():
        written = xr.open_zarr(pred_path, group=name, consolidated=False)
        want = model.predict({name: ds})[name].values
        assert (written["label"].values == want).all()
        assert written["proba"].shape == (ds["X"].shape[0], ds["y"].shape[1], 3)
        np.testing.assert_allclose(written["proba"].sum("class"), 1, rtol=1e-5)

    score = _distglm("score", model_path, store, "--json", *cluster_args)
    assert score.returncode == 0, score.stderr
    table = json.loads(score.stdout)
    assert [r["session"] for r in table["sessions"]] == list(sessions)
    assert [r["output"] for r in table["outputs"]] == [str(o) for o in model.outputs_.tolist()]
    r2 = float(model.score(sessions, score_type="pseudo-r2-McFadden"))
    np.testing.assert_allclose(table["all"]["pseudo_r2_mcfadden"], r2, rtol=1e-5)
    ll = float(model.score(sessions, score_type="log-likelihood"))
    np.testing.assert_allclose(table["all"]["log_likelihood"], ll, rtol=1e-5)
    for row in table["sessions"]:
        name = row["session"]
        one = float(model.score({name: sessions[name]}, score_type="log-likelihood"))
        np.testing.assert_allclose(row["log_likelihood"], one, rtol=1e-5)
    return fit, pred, score


@pytest.mark.cluster
def test_fit_predict_score_on_a_local_cluster(store, tmp_path, client):
    _fit_predict_score(store, tmp_path, ["--workers", "1"], client)
    again = _distglm(
        "fit", store, "--n-classes", 3, "--out", tmp_path / "model.zarr", "--workers", 1
    )
    assert again.returncode == 1 and "pass --overwrite" in again.stderr


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` (with its nanny, started with distglm's preload)
    on 127.0.0.1, as subprocesses."""
    folder = tmp_path_factory.mktemp("dask")
    preload = [distglm.WORKER_PRELOAD]
    with dask_processes(folder, n_workers=1, nanny=True, preload=preload) as (path, _, _):
        from distributed import Client

        with Client(scheduler_file=str(path), timeout="30s") as c:
            c.wait_for_workers(1, timeout=60)
            imported = c.run(lambda: "distglm.distribute.worker" in sys.modules)
        assert list(imported.values()) == [True], imported
        yield path


@pytest.mark.cluster
def test_fit_predict_score_on_a_scheduler_and_worker(store, tmp_path, scheduler_file, client):
    fit, _, _ = _fit_predict_score(store, tmp_path, ["--scheduler-file", scheduler_file], client)
    assert "1 workers" in fit.stdout
