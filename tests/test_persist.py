"""Keeping fitted models: pickling, saved files (npz and Zarr), damaged and foreign files.

Round trips are checked by what a model does: a loaded model predicts, gives probabilities and
scores bit-for-bit like the saved one, and every fitted attribute comes back equal. Damaged
files are made by hand (truncating, editing an array or the metadata after writing) and must be
refused with an error naming what is wrong; files holding pickled objects are refused without
the objects being built.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import pickle
import zipfile
import zlib

import jax.numpy as jnp
import joblib
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distglm
from distglm import ClassifierGLM, ClassifierPopulationGLM
from distglm.exceptions import FileFormatError
from distglm.persist import bundle
from distglm.regularizer import GroupLasso
from distglm.solve import LBFGSState, SolverState, Status

from helpers import softmax_labels

N, P, K, C = 300, 4, 2, 3
RNG = np.random.default_rng(7)
X = RNG.standard_normal((N, P)).astype(np.float32)
CODES = softmax_labels(RNG, X, RNG.standard_normal((P, K, C)), np.zeros((K, C)))
STRINGS = np.array(["left", "nogo", "right"])
XD = {"a": X[:, :3], "b": X[:, 3:]}


def _same_predictions(a, b, X, y):
    assert np.array_equal(np.asarray(a.predict_proba(X)), np.asarray(b.predict_proba(X)))
    assert np.array_equal(np.asarray(a.predict(X)), np.asarray(b.predict(X)))
    assert float(a.score(X, y)) == float(b.score(X, y))


def _equal(a, b):
    """Equal values: arrays by content and dtype, containers item by item."""
    if isinstance(a, SolverState):
        fields = [f.name for f in dataclasses.fields(a) if f.name != "context"]
        return type(a) is type(b) and all(_equal(getattr(a, n), getattr(b, n)) for n in fields)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, xr.DataArray):
        return a.identical(b)
    if isinstance(a, (np.ndarray, jnp.ndarray)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return a == b


def _assert_same_model(a, b):
    assert type(a) is type(b)
    pa, pb = a.get_params(deep=False), b.get_params(deep=False)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert _equal(pa[key], pb[key]), key
    assert _equal(a.classes_, b.classes_)
    for attr in a._fitted_attributes:
        assert _equal(getattr(a, attr), getattr(b, attr)), attr


@pytest.fixture(scope="module")
def fitted():
    """A fitted population model (string labels, a feature mask) and a single-output one."""
    mask = np.ones((P, K, C))
    mask[0, 1] = 0
    pop = ClassifierPopulationGLM(C, regularizer_strength=1e-2, feature_mask=mask)
    pop.fit(X, STRINGS[CODES])
    one = ClassifierGLM(C, regularizer="Lasso", regularizer_strength=1e-2).fit(X, CODES[:, 0])
    return pop, one


# ---------------------------------------------------------------------------- pickle
@pytest.mark.parametrize("how", ["pickle", "joblib", "deepcopy"])
def test_pickle_joblib_deepcopy_round_trip(fitted, how):
    def copied(model):
        if how == "pickle":
            return pickle.loads(pickle.dumps(model))
        if how == "deepcopy":
            return copy.deepcopy(model)
        buf = io.BytesIO()
        joblib.dump(model, buf)
        buf.seek(0)
        return joblib.load(buf)

    pop, one = fitted
    for model, y in ((pop, STRINGS[CODES]), (one, CODES[:, 0])):
        back = copied(model)
        _same_predictions(model, back, X, y)
        _assert_same_model(model, back)
        fresh = copied(type(model)(C, regularizer="ElasticNet", regularizer_strength=(0.1, 0.3)))
        assert fresh.coef_ is None and fresh.regularizer_strength == (0.1, 0.3)
        assert fresh.inverse_link_function is model.inverse_link_function
    # a solver state from nemos' batch API pickles too (its derived context is dropped)
    state = pop.initialize_optimizer_and_state(
        pop.initialize_params(X, STRINGS[CODES]), X, STRINGS[CODES]
    )
    assert isinstance(pickle.loads(pickle.dumps(state)), type(state))


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("suffix", [".npz", ".zarr", ""])
def test_fitted_models_round_trip(fitted, tmp_path, suffix):
    pop, one = fitted
    for i, (model, y) in enumerate(((pop, STRINGS[CODES]), (one, CODES[:, 0]))):
        path = model.save_params(tmp_path / f"m{i}{suffix}")
        assert path.is_file() == (suffix == ".npz")
        back = distglm.load_model(path)
        _same_predictions(model, back, X, y)
        _assert_same_model(model, back)
        assert back.solver_state_.status is Status.CONVERGED


@pytest.mark.parametrize("solver", ["Newton", "GradientDescent"])
def test_solver_states_round_trip(tmp_path, solver):
    model = ClassifierPopulationGLM(
        C, solver_name=solver, solver_kwargs={"maxiter": 2, "tol": 1e-14}
    )
    with pytest.warns(RuntimeWarning, match=r"did not converge"):
        model.fit(XD, CODES)  # stopped mid-way: a state with everything set
    back = distglm.load_model(model.save_params(tmp_path / "m.npz"))
    _assert_same_model(model, back)
    assert type(back.solver_state_) is type(model.solver_state_)
    _same_predictions(model, back, XD, CODES)


LABELS = {
    "str": np.array(["a", "bb", "c"]),
    "int": np.array([-3, 0, 10]),
    "float": np.array([0.5, 1.0, 2.25]),
    "bool": np.array([False, True]),
}


@st.composite
def models(draw):
    """A model with hand-set parameters: label type, layout, regularizer, mask, container."""
    kind = draw(st.sampled_from(sorted(LABELS)))
    labels = LABELS[kind]
    c = labels.size
    population = draw(st.booleans())
    dict_x = draw(st.booleans())
    shape = (P, K, c) if population else (P, c)
    reg_name = draw(
        st.sampled_from(["UnRegularized", "Ridge", "Lasso", "ElasticNet", "GroupLasso"])
    )
    strength_kind = draw(st.sampled_from(["scalar", "array", "dict"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def split(block):
        return {"a": block[:3], "b": block[3:]} if dict_x else block

    strength = {
        "scalar": 0.1,
        "array": split(jnp.asarray(rng.uniform(0.1, 1, shape), jnp.float32)),
        "dict": {"a": 0.1, "b": 0.2},
    }[strength_kind if (strength_kind != "dict" or dict_x) else "scalar"]
    if reg_name == "ElasticNet":
        strength = (strength, 0.3)
    if reg_name in ("UnRegularized",):
        strength = None
    regularizer = reg_name
    if reg_name == "GroupLasso":
        strength = 0.1
        mask = np.zeros((2, *shape))
        mask[0, :2], mask[1, 2:] = 1, 1
        regularizer = GroupLasso(mask={"a": mask[:, :3], "b": mask[:, 3:]} if dict_x else mask)
    kwargs = dict(regularizer=regularizer, regularizer_strength=strength)
    if population:
        mask_kind = draw(st.sampled_from(["none", "array", "dataarray"]))
        fm = (rng.random((P, K, c)) > 0.2).astype(float)
        if mask_kind == "array":
            kwargs["feature_mask"] = split(fm)
        elif mask_kind == "dataarray" and not dict_x:
            kwargs["feature_mask"] = xr.DataArray(
                fm,
                dims=("feature", "output", "class"),
                coords={"feature": [f"f{i}" for i in range(P)], "output": ["n0", "n1"]},
            )
    if draw(st.booleans()):
        kwargs["solver_name"] = (
            "ProximalGradient" if reg_name in ("Lasso", "ElasticNet", "GroupLasso") else "LBFGS"
        )
        kwargs["solver_kwargs"] = {"tol": 1e-7, "maxiter": 50}
    cls = ClassifierPopulationGLM if population else ClassifierGLM
    model = cls(c, **kwargs)
    model.set_classes(labels)
    coef = rng.standard_normal(shape).astype(np.float32)
    model.coef_ = split(jnp.asarray(coef))
    model.intercept_ = jnp.asarray(rng.standard_normal(shape[1:]).astype(np.float32))
    k = K if population else 1
    model.outputs_ = np.array(["n0", "n1"]) if population else np.arange(1)
    model.features_ = np.array([f"f{i}" for i in range(P)])
    model.dof_resid_ = jnp.full(k, 290.0)
    model.scale_ = jnp.ones(k)
    model.solver_ = "LBFGS"
    model.n_passes_ = 7
    model.fit_history_ = [
        {
            "iteration": 1,
            "objective": 1.5,
            "grad_norm": float("nan"),
            "gap": float("inf"),
            "seconds": 0.1,
            "passes": 2,
        }
    ]
    theta = np.zeros((P + 1, k, c))
    model.solver_state_ = LBFGSState(
        iteration=1,
        value=1.5,
        grad=theta,
        gap=float("inf"),
        pairs_s=theta[None],
        pairs_y=theta[None],
        pairs_rho=np.ones(1),
    )
    Xin = XD if dict_x else X
    y = labels[CODES % c] if population else labels[CODES[:, 0] % c]
    return model, Xin, y, draw(st.sampled_from([".npz", ".zarr"]))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models())
def test_save_load_round_trips(tmp_path, case):
    model, Xin, y, suffix = case
    path = model.save_params(tmp_path / f"m{suffix}", overwrite=True)
    back = distglm.load_model(path)
    _assert_same_model(model, back)
    assert back.classes_.dtype == model.classes_.dtype
    _same_predictions(model, back, Xin, y)


def test_what_cannot_be_saved_is_refused(tmp_path):
    model = ClassifierGLM(2)
    tuples = np.empty(2, dtype=object)
    tuples[:] = [(1, 2), (3, 4)]
    model.set_classes(tuples)
    with pytest.raises(
        TypeError, match=r"classes_: an object array of \['tuple'\].*without pickle"
    ):
        model.save_params(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()

    class Custom(GroupLasso):
        pass

    with pytest.raises(TypeError, match=r"Custom is not one of distglm's"):
        ClassifierGLM(2, regularizer=Custom()).save_params(tmp_path / "c.npz")


def test_object_labels_of_one_type_load_as_that_type(tmp_path):
    model = ClassifierGLM(2)
    model.set_classes(np.array(["x", "y"], dtype=object))
    back = distglm.load_model(model.save_params(tmp_path / "m.npz"))
    assert back.classes_.dtype.kind == "U" and back.classes_.tolist() == ["x", "y"]


# ---------------------------------------------------------------------------- overwriting
class _Killed(BaseException):
    """Stands for the process being killed (not an Exception: nothing may catch it)."""


def test_overwrite_refusal_and_interrupted_save(fitted, tmp_path, monkeypatch):
    pop, one = fitted
    for name in ("m.npz", "m.zarr"):
        path = pop.save_params(tmp_path / name)
        with pytest.raises(FileExistsError, match=r"overwrite=True"):
            one.save_params(path)

        # a save killed before its rename leaves the old model in place, and no temporary
        def killed(src, dst):
            raise _Killed

        with monkeypatch.context() as m:
            m.setattr(bundle.os, "replace", killed)
            with pytest.raises(_Killed):
                one.save_params(path, overwrite=True)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
        _assert_same_model(pop, distglm.load_model(path))
        one.save_params(path, overwrite=True)
        assert isinstance(distglm.load_model(path), ClassifierGLM)
    other = tmp_path / "notes.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(FileExistsError, match=r"not a distglm file"):
        pop.save_params(other, overwrite=True)
    assert np.array_equal(np.load(other)["a"], np.arange(3))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not a distglm file"):
        pop.save_params(data_dir, overwrite=True)
    assert (data_dir / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- damaged files
def _rewrite_npz(src, dst, edit):
    """Copy an npz member by member, ``edit(name, array) -> array``."""
    with np.load(src) as f:
        members = {name: edit(name, f[name]) for name in f.files}
    with open(dst, "wb") as out:
        np.savez(out, **members)


def _meta_edit(change, reseal):
    def edit(name, arr):
        if name != "__distglm__":
            return arr
        meta = json.loads(arr.tobytes())
        change(meta)
        if reseal:
            body = {k: v for k, v in meta.items() if k != "crc32"}
            meta["crc32"] = zlib.crc32(bundle._canonical(body))
        return np.frombuffer(bundle._canonical(meta), np.uint8)

    return edit


def test_damaged_npz_files_are_refused(fitted, tmp_path):
    pop, _ = fitted
    good = pop.save_params(tmp_path / "good.npz")
    raw = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match=r"not a readable .npz file"):
        distglm.load_model(cut)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"not a readable .npz file"):
        distglm.load_model(empty)

    def bump_coef(name, arr):
        return arr + 1 if name == "coef_" else arr

    edited = tmp_path / "edited.npz"
    _rewrite_npz(good, edited, bump_coef)
    with pytest.raises(FileFormatError, match=r"array 'coef_' does not match its recorded CRC"):
        distglm.load_model(edited)

    flipped = bytearray(raw)
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("coef_.npy")
    flipped[info.header_offset + 30 + len(info.filename) + info.extra.__len__() + 200] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(FileFormatError, match=r"coef_.*damaged or cut short|Bad CRC"):
        distglm.load_model(tmp_path / "flipped.npz")

    tampered = tmp_path / "tampered.npz"
    _rewrite_npz(good, tampered, _meta_edit(lambda m: m["params"].update(n_classes=4), False))
    with pytest.raises(FileFormatError, match=r"metadata does not match its recorded CRC-32"):
        distglm.load_model(tampered)

    future = tmp_path / "future.npz"
    _rewrite_npz(good, future, _meta_edit(lambda m: m.update(format_version=99), True))
    with pytest.raises(FileFormatError, match=r"newer distglm.*format 99.*up to 1"):
        distglm.load_model(future)

    resealed = tmp_path / "resealed.npz"
    _rewrite_npz(good, resealed, _meta_edit(lambda m: m["params"].update(n_classes=4), True))
    with pytest.raises(FileFormatError, match=r"classes do not fit the model"):
        distglm.load_model(resealed)

    wrong_class = tmp_path / "class.npz"
    _rewrite_npz(good, wrong_class, _meta_edit(lambda m: m.update({"class": "os.system"}), True))
    with pytest.raises(FileFormatError, match=r"unknown model class 'os.system'"):
        distglm.load_model(wrong_class)

    with pytest.raises(FileFormatError, match=r"does not exist"):
        distglm.load_model(tmp_path / "absent.npz")
    np.savez(tmp_path / "plain.npz", a=np.arange(2))
    with pytest.raises(FileFormatError, match=r"not one distglm wrote"):
        distglm.load_model(tmp_path / "plain.npz")


def test_damaged_zarr_stores_are_refused(fitted, tmp_path):
    import shutil

    pop, _ = fitted
    good = pop.save_params(tmp_path / "good.zarr")

    def copy_of(name):
        dst = tmp_path / name
        shutil.copytree(good, dst)
        return dst

    missing = copy_of("missing.zarr")
    shutil.rmtree(missing / "coef_")
    with pytest.raises(FileFormatError, match=r"array 'coef_' is (missing|damaged)"):
        distglm.load_model(missing)

    chunk = copy_of("chunk.zarr")
    target = next(p for p in (chunk / "coef_").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(target.read_bytes())
    target.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(FileFormatError, match=r"coef_"):
        distglm.load_model(chunk)

    unfinished = copy_of("unfinished.zarr")
    meta = json.loads((unfinished / "zarr.json").read_text())
    del meta["attributes"]["distglm"]
    (unfinished / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match=r"no distglm metadata.*did not finish"):
        distglm.load_model(unfinished)


class _Boom:
    """Unpickling this would create a file: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_objects_are_never_unpickled(fitted, tmp_path):
    pop, _ = fitted
    good = pop.save_params(tmp_path / "good.npz")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.npz"

    def swap(name, arr):
        return np.array([_Boom(marker)], dtype=object) if name == "coef_" else arr

    with np.load(good) as f:
        members = {name: swap(name, f[name]) for name in f.files}
    with open(evil, "wb") as out:
        np.savez(out, allow_pickle=True, **members)
    with pytest.raises(FileFormatError, match=r"pickled Python objects; distglm never unpickles"):
        distglm.load_model(evil)
    nemos_like = tmp_path / "nemos_like.npz"
    with open(nemos_like, "wb") as out:
        np.savez(
            out,
            allow_pickle=True,
            **{
                "item::strkey:model_class": np.array("nemos.glm.classifier_glm.ClassifierGLM"),
                "item::strkey:n_classes": np.array(2),
                "dict::strkey:regularizer::item::strkey:class": np.array(
                    "nemos.regularizer.GroupLasso"
                ),
                "dict::strkey:regularizer::dict::strkey:params::item::strkey:mask": np.array(
                    [_Boom(marker)], dtype=object
                ),
            },
        )
    with pytest.raises(FileFormatError, match=r"pickled Python object.*never unpickles"):
        distglm.load_model(nemos_like)
    assert not marker.exists()
