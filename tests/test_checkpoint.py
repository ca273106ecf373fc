"""Checkpointed fits: interrupted fits resume to the same optimum with the remaining passes.

An interruption is made in two ways: in process, a callback raising an exception that is no
``Exception`` (as a kill would, nothing catches it) after some iterations; and for real, a
subprocess SIGKILLed mid-fit (distributed, with its own LocalCluster over a Zarr store), or
SIGKILLed between a checkpoint's temporary write and its rename. The reference is always the
same fit run without interruption.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import distglm
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.cli import make_population
from distglm.exceptions import CheckpointMismatchError, FileFormatError
from distglm.persist.checkpoint import read_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N, P, K, C = 3000, 5, 3, 3
X, Y, _, _ = make_population(N, P, K, C, seed=4)
TIGHT = {"tol": 1e-9, "maxiter": 500}


class _Killed(BaseException):
    """Stands for the process dying (a BaseException: no ``except Exception`` stops it)."""


def _stop_after(k):
    def callback(record):
        if record.iteration >= k:
            raise _Killed

    return callback


def _write_store(path, X, y, rows):
    ds = xr.Dataset({"X": (("sample", "feature"), X), "y": (("sample", "output"), y)})
    ds.chunk({"sample": rows}).to_zarr(str(path), mode="w")
    return da.from_zarr(str(path), component="X"), da.from_zarr(str(path), component="y")


def _objective(model):
    return model.fit_history_[-1]["objective"]


SOLVERS = {
    "LBFGS": ({"regularizer_strength": 1e-2}, 1),
    "GradientDescent": ({"regularizer_strength": 1e-2}, 1),
    "ProximalGradient": ({"regularizer": "Lasso", "regularizer_strength": 1e-3}, 1),
    "Newton": ({"regularizer_strength": 1e-2}, 0),
}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_interrupted_in_memory_fit_resumes_to_the_same_optimum(solver, tmp_path):
    kwargs, gram_passes = SOLVERS[solver]
    kwargs = {**kwargs, "solver_name": solver, "solver_kwargs": TIGHT}
    full = ClassifierPopulationGLM(C, **kwargs).fit(X, Y)
    k = len(full.fit_history_) // 2
    path = tmp_path / "fit.ckpt"
    with pytest.raises(_Killed):
        ClassifierPopulationGLM(C, **kwargs).fit(X, Y, checkpoint=path, callback=_stop_after(k))
    saved = read_checkpoint(path)
    assert not saved.complete and saved.iteration == k
    seen = []
    resumed = ClassifierPopulationGLM(C, **kwargs).fit(X, Y, checkpoint=path, callback=seen.append)
    assert [r.iteration for r in seen] == list(range(k + 1, len(full.fit_history_) + 1))
    # the same iterations as the uninterrupted fit, with only the remaining passes made now
    assert abs(_objective(resumed) - _objective(full)) <= 1e-7 * abs(_objective(full))
    assert [h["objective"] for h in resumed.fit_history_] == [
        h["objective"] for h in full.fit_history_
    ]
    assert resumed.n_passes_ == full.n_passes_ - saved.point.passes + gram_passes
    assert resumed.n_passes_ < full.n_passes_
    assert np.array_equal(resumed.coef_, full.coef_)
    assert resumed.solver_ == full.solver_ == solver
    assert read_checkpoint(path).complete


def test_complete_checkpoint_returns_at_once(tmp_path):
    path = tmp_path / "fit.ckpt"
    first = ClassifierGLM(C, regularizer_strength=1e-2).fit(X, Y[:, 0], checkpoint=path)
    assert first.n_passes_ > 0 and read_checkpoint(path).complete
    calls = []
    again = ClassifierGLM(C, regularizer_strength=1e-2).fit(
        X, Y[:, 0], checkpoint=path, callback=calls.append
    )
    assert calls == [] and again.n_passes_ == 0
    assert again.fit_history_ == first.fit_history_
    assert np.array_equal(again.coef_, first.coef_) and np.array_equal(
        again.dof_resid_, first.dof_resid_
    )
    assert np.array_equal(again.predict_proba(X), first.predict_proba(X))
    assert pickle.loads(pickle.dumps(again)).n_passes_ == 0


def test_string_labels_dict_x_and_mask_resume(tmp_path):
    labels = np.array(["a", "b", "c"])[Y]
    Xd = {"u": X[:, :2], "v": X[:, 2:]}
    mask = {"u": np.ones((2, K, C)), "v": np.ones((P - 2, K, C))}
    mask["v"][0, 1] = 0
    kwargs = {"regularizer_strength": 1e-2, "feature_mask": mask, "solver_kwargs": TIGHT}
    full = ClassifierPopulationGLM(C, **kwargs).fit(Xd, labels)
    path = tmp_path / "fit.ckpt"
    with pytest.raises(_Killed):
        ClassifierPopulationGLM(C, **kwargs).fit(
            Xd, labels, checkpoint=path, callback=_stop_after(3)
        )
    resumed = ClassifierPopulationGLM(C, **kwargs).fit(Xd, labels, checkpoint=path)
    assert resumed.fit_history_[-1]["objective"] == full.fit_history_[-1]["objective"]
    assert np.array_equal(resumed.predict(Xd), full.predict(Xd))
    assert np.all(np.asarray(resumed.coef_["v"])[0, 1] == 0)


# ---------------------------------------------------------------------------- mismatches
def _changed_x():
    X2 = X.copy()
    X2[17, 2] += 1.0
    return X2, Y


MISMATCHES = {
    "data values": (lambda: _changed_x(), {}, r"the data's X differ"),
    "labels": (lambda: (X, np.roll(Y, 1, axis=0)), {}, r"the data's y differ"),
    "rows": (lambda: (X[:-10], Y[:-10]), {}, r"the data's rows differ"),
    "strength": (
        lambda: (X, Y),
        {"regularizer_strength": 0.5},
        r"parameter 'regularizer_strength' differs \(checkpoint: 0.01; this fit: 0.5\)",
    ),
    "solver options": (
        lambda: (X, Y),
        {"solver_kwargs": {"tol": 1e-4}},
        r"parameter 'solver_kwargs' differs",
    ),
    "feature mask": (
        lambda: (X, Y),
        {"feature_mask": np.ones((P, K, C))},
        r"parameter 'feature_mask' differs \(checkpoint: null; this fit: \(arrays\)\)",
    ),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_a_mismatching_checkpoint_is_refused_and_resume_false_replaces_it(case, tmp_path):
    data, changed, message = MISMATCHES[case]
    path = tmp_path / "fit.ckpt"
    ClassifierPopulationGLM(C, regularizer_strength=1e-2).fit(X, Y, checkpoint=path)
    Xn, Yn = data()
    kwargs = {"regularizer_strength": 1e-2, **changed}
    with pytest.raises(CheckpointMismatchError, match=message + r".*resume=False"):
        ClassifierPopulationGLM(C, **kwargs).fit(Xn, Yn, checkpoint=path)
    replaced = ClassifierPopulationGLM(C, **kwargs).fit(Xn, Yn, checkpoint=path, resume=False)
    assert replaced.n_passes_ > 0
    again = ClassifierPopulationGLM(C, **kwargs).fit(Xn, Yn, checkpoint=path)
    assert again.n_passes_ == 0 and again.fit_history_ == replaced.fit_history_


def test_other_class_and_other_version_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    ClassifierPopulationGLM(C).fit(X, Y[:, :1], checkpoint=path)
    with pytest.raises(CheckpointMismatchError, match=r"its class differs \(checkpoint: "):
        ClassifierGLM(C).fit(X, Y[:, 0], checkpoint=path)
    monkeypatch.setattr(distglm, "__version__", "9.9.9")
    with pytest.raises(
        CheckpointMismatchError, match=r"written by distglm 0.1.0; this is distglm 9.9.9"
    ):
        ClassifierPopulationGLM(C).fit(X, Y[:, :1], checkpoint=path)


def test_checkpoint_every_and_unreadable_checkpoints(tmp_path):
    path = tmp_path / "fit.ckpt"
    with pytest.raises(_Killed):
        ClassifierPopulationGLM(C).fit(
            X, Y, checkpoint=path, checkpoint_every=3600, callback=_stop_after(3)
        )
    assert not path.exists()  # nothing written yet: a rerun starts over
    model = ClassifierPopulationGLM(C).fit(X, Y, checkpoint=path, checkpoint_every=3600)
    assert read_checkpoint(path).complete and model.n_passes_ > 0
    with pytest.raises(ValueError, match="checkpoint_every must be None"):
        ClassifierPopulationGLM(C).fit(X, Y, checkpoint=path, checkpoint_every=-1)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FileFormatError, match=r"Cannot resume from the checkpoint.*resume=False"):
        ClassifierPopulationGLM(C).fit(X, Y, checkpoint=path)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match="not a distglm file"):
        ClassifierPopulationGLM(C).fit(X, Y, checkpoint=notes, resume=False)
    assert notes.read_text() == "mine"


def _check(returned):
    status, value = returned
    if status != "ok":
        raise value
    return value


def test_adopted_chunks_are_read_on_the_first_pass_and_cached_within_budget(tmp_path):
    """A worker given known statistics reads nothing until the first pass; then it keeps the
    chunks its budget admits and streams the rest, with the sums of a worker that loaded."""
    from distglm.data import merge_stats, plan_data
    from distglm.distribute.worker import ChunkWorker

    Xd, yd = _write_store(tmp_path / "d.zarr", X, Y, 750)
    plan = plan_data(Xd, yd)
    loaded = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    stats = _check(loaded.load(plan.chunks))
    classes = merge_stats(plan, stats, C).classes
    _check(loaded.encode(classes))
    kept = [s.n_rows - s.n_dropped for s in stats]
    one = plan.chunk_rows * (4 * (P + 1) + 2 * K)
    adopted = ChunkWorker(
        plan.session_outputs, plan.chunk_rows, plan.block_rows, cache_bytes=2 * one
    )
    assert _check(adopted.adopt(plan.chunks, classes, kept)) == [0, 1, 2, 3]
    info = _check(adopted.info())
    assert adopted.read_seconds == 0 and info["pending"] == [0, 1] and info["streamed"] == [2, 3]
    theta = np.random.default_rng(0).normal(0, 0.1, (P + 1, K, C)).astype(np.float32)
    want = _check(loaded.value_and_grad(theta))
    first = _check(adopted.value_and_grad(theta))
    assert first[0] == want[0] and np.array_equal(first[1], want[1])
    info = _check(adopted.info())
    assert info["pending"] == [] and info["cached"] == [0, 1] and info["streamed"] == [2, 3]
    assert info["nbytes"] <= info["cache_bytes"]
    second = _check(adopted.value_and_grad(theta))
    assert np.array_equal(second[1], want[1])
    wrong = ChunkWorker(plan.session_outputs, plan.chunk_rows, plan.block_rows)
    _check(wrong.adopt(plan.chunks, classes, [kept[0] + 1, *kept[1:]]))
    status, err = wrong.value_and_grad(theta)
    assert status == "error" and "rows 0-750 (chunk 0): 750 rows without NaN/Inf" in str(err)


KILL_IN_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import distglm
    from distglm.cli import make_population
    from distglm.persist import bundle

    path, kill_at = sys.argv[1], int(sys.argv[2])
    calls = []
    rename = os.replace

    def replace(src, dst):
        calls.append(src)
        if len(calls) == kill_at:  # the temporary file is complete; the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)
        return rename(src, dst)

    bundle.os.replace = replace
    X, Y, _, _ = make_population({N}, {P}, {K}, {C}, seed=4)
    distglm.ClassifierPopulationGLM({C}, regularizer_strength=1e-2,
                                    solver_kwargs={TIGHT}).fit(X, Y, checkpoint=path)
    """
).format(N=N, P=P, K=K, C=C, TIGHT=TIGHT)


def test_a_kill_between_the_temporary_write_and_the_rename_keeps_the_previous(tmp_path):
    path = tmp_path / "fit.ckpt"
    kill_at = 4
    child = subprocess.run(
        [sys.executable, "-c", KILL_IN_WRITE, str(path), str(kill_at)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != path.name)
    assert len(left) == 1 and left[0].startswith(".fit.ckpt.tmp-"), left
    saved = read_checkpoint(path)  # the previous checkpoint, intact
    assert saved.iteration == kill_at - 1 and not saved.complete
    kwargs = {"regularizer_strength": 1e-2, "solver_kwargs": TIGHT}
    resumed = ClassifierPopulationGLM(C, **kwargs).fit(X, Y, checkpoint=path)
    full = ClassifierPopulationGLM(C, **kwargs).fit(X, Y)
    assert _objective(resumed) == _objective(full)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the stale temp is gone


# ---------------------------------------------------------------------------- distributed
RESUME_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import dask.array as da
    from distributed import Client, LocalCluster
    import distglm

    if __name__ == "__main__":
        store, path, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])
        X = da.from_zarr(store, component="X")
        y = da.from_zarr(store, component="y")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            model = distglm.ClassifierPopulationGLM(3, regularizer_strength=1e-3,
                                                    solver_kwargs={"tol": 1e-10})
            model.fit(X, y, client=client, checkpoint=path,
                      callback=lambda record: time.sleep(slow))
            print(json.dumps({"n_passes": model.n_passes_, "history": model.fit_history_,
                              "statistics_seconds": model.fit_profile_["statistics_seconds"],
                              "profile_passes": len(model.fit_profile_["passes"])}))
    """
)


@pytest.mark.cluster
@pytest.mark.slow
def test_sigkilled_distributed_fit_resumes_in_a_new_process(tmp_path, client):
    Xp, yp, _, _ = make_population(40_000, 8, 4, 3, seed=3)
    store = tmp_path / "data.zarr"
    Xd, yd = _write_store(store, Xp, yp, 5000)
    kwargs = {"regularizer_strength": 1e-3, "solver_kwargs": {"tol": 1e-10}}
    fresh = ClassifierPopulationGLM(3, **kwargs).fit(Xd, yd, client=client)
    k = len(fresh.fit_history_) // 2
    path = tmp_path / "fit.ckpt"
    env = {**os.environ, "PYTHONPATH": REPO}
    killed = subprocess.Popen(
        [sys.executable, "-c", RESUME_CHILD, str(store), str(path), "0.4"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its cluster's processes die with it
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and killed.poll() is None:
            try:
                if read_checkpoint(path).iteration >= k:
                    break
            except FileFormatError:
                pass  # not written yet
            time.sleep(0.05)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    at_kill = read_checkpoint(path)
    assert not at_kill.complete and k <= at_kill.iteration < len(fresh.fit_history_)
    resumed = subprocess.run(
        [sys.executable, "-c", RESUME_CHILD, str(store), str(path), "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = json.loads(resumed.stdout.strip().splitlines()[-1])
    obj_fresh = fresh.fit_history_[-1]["objective"]
    obj_resumed = out["history"][-1]["objective"]
    assert abs(obj_resumed - obj_fresh) <= 1e-7 * abs(obj_fresh)
    # no statistics pass: the saved statistics were reused; only the remaining passes ran
    assert out["statistics_seconds"] == 0.0 and out["profile_passes"] == out["n_passes"]
    assert out["n_passes"] == fresh.n_passes_ - at_kill.point.passes
    assert out["n_passes"] < fresh.n_passes_
    assert len(out["history"]) == len(fresh.fit_history_)
    assert [h["passes"] for h in out["history"]] == [h["passes"] for h in fresh.fit_history_]
    print(
        f"\nkilled at iteration {at_kill.iteration} after {at_kill.point.passes} passes "
        f"(objective {at_kill.point.history[-1]['objective']!r}); resumed: {out['n_passes']} "
        f"passes to {obj_resumed!r}; uninterrupted: {fresh.n_passes_} passes to {obj_fresh!r}"
    )


@pytest.mark.cluster
@pytest.mark.slow
def test_distributed_resume_checks_the_data_it_reads(tmp_path, client):
    Xp, yp, _, _ = make_population(12_000, 6, 3, 3, seed=5)
    store = tmp_path / "data.zarr"
    Xd, yd = _write_store(store, Xp, yp, 3000)
    kwargs = {"regularizer_strength": 1e-3, "solver_kwargs": {"tol": 1e-10}}
    path = tmp_path / "fit.ckpt"
    with pytest.raises(_Killed):
        ClassifierPopulationGLM(3, **kwargs).fit(
            Xd, yd, client=client, checkpoint=path, callback=_stop_after(2)
        )
    # a data session resumes too (its own statistics are compared with the saved ones)
    with distglm.open_data(Xd, yd, n_classes=3, client=client) as session:
        resumed = ClassifierPopulationGLM(3, **kwargs).fit(session, checkpoint=path)
    full = ClassifierPopulationGLM(3, **kwargs).fit(Xd, yd, client=client)
    assert abs(_objective(resumed) - _objective(full)) <= 1e-7 * abs(_objective(full))
    again = ClassifierPopulationGLM(3, **kwargs).fit(Xd, yd, client=client, checkpoint=path)
    assert again.n_passes_ == 0 and again.fit_profile_ is None  # nothing read, no workers
    assert np.array_equal(again.dof_resid_, resumed.dof_resid_)
    assert np.array_equal(pickle.loads(pickle.dumps(full)).predict(Xp), full.predict(Xp))

    # the store changes under a checkpoint: same shapes, so the plan matches, but the workers
    # find other kept rows than the saved statistics recorded when they read the chunk
    path2 = tmp_path / "fit2.ckpt"
    with pytest.raises(_Killed):
        ClassifierPopulationGLM(3, **kwargs).fit(
            Xd, yd, client=client, checkpoint=path2, callback=_stop_after(2)
        )
    Xbad = Xp.copy()
    Xbad[6100:6105, 0] = np.nan
    Xd, yd = _write_store(store, Xbad, yp, 3000)
    with pytest.raises(ValueError, match=r"rows 6000-9000 \(chunk 2\): 2995 rows .* counted 3000"):
        ClassifierPopulationGLM(3, **kwargs).fit(Xd, yd, client=client, checkpoint=path2)
    with distglm.open_data(Xd, yd, n_classes=3, client=client) as session:
        with pytest.raises(
            CheckpointMismatchError,
            match=r"statistics pass's class_counts, n_dropped, n_rows, n_samples differ",
        ):
            ClassifierPopulationGLM(3, **kwargs).fit(session, checkpoint=path2)
