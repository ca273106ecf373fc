"""Stores of sessions from anywhere: fsspec mappers, Zarr stores and groups, xarray DataTrees,
and ``s3://`` URLs served by a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

import distglm
from distglm.cli import make_sessions


@pytest.fixture(scope="module")
def sessions():
    s, *_ = make_sessions(3, 1200, 4, 4, 3, seed=5, chunk_rows=500)
    return s


@pytest.fixture(scope="module")
def store(tmp_path_factory, sessions):
    path = tmp_path_factory.mktemp("stores") / "sessions.zarr"
    for name, ds in sessions.items():
        ds.to_zarr(path, group=name, mode="w")
    return path


def _same_sessions(opened, sessions, ordered=True):
    assert (list(opened) if ordered else sorted(opened)) == list(sessions)
    for name, ds in sessions.items():
        assert opened[name]["X"].chunks is not None  # lazy, dask-backed
        np.testing.assert_array_equal(opened[name]["X"].values, ds["X"].values)
        np.testing.assert_array_equal(opened[name]["y"].values, ds["y"].values)
        assert opened[name]["y"].coords["output"].values.tolist() == ds["output"].values.tolist()


def test_mapper_zarr_store_group_and_file_url(store, sessions):
    import fsspec

    _same_sessions(distglm.open_sessions(fsspec.get_mapper(str(store))), sessions)
    _same_sessions(distglm.open_sessions(zarr.storage.LocalStore(store)), sessions)
    _same_sessions(distglm.open_sessions(zarr.open_group(store, mode="r")), sessions)
    _same_sessions(distglm.open_sessions(f"file://{store}"), sessions)


def test_group_inside_a_store(tmp_path, sessions):
    path = tmp_path / "lab.zarr"
    for name, ds in sessions.items():
        ds.to_zarr(path, group=f"mouse1/{name}", mode="w")
    group = zarr.open_group(path, mode="r")["mouse1"]
    _same_sessions(distglm.open_sessions(group), sessions)


def test_datatree(store, sessions):
    tree = xr.open_datatree(store, engine="zarr", chunks={}, consolidated=False)
    _same_sessions(distglm.open_sessions(tree), sessions, ordered=False)  # the tree's order
    empty = xr.DataTree(name="nothing")
    with pytest.raises(ValueError, match="DataTree 'nothing' has no child nodes holding data"):
        distglm.open_sessions(empty)


def test_storage_options_need_a_url(store):
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        distglm.open_sessions(str(store), storage_options={"anon": True})


def test_two_mappers_prefix_session_ids(tmp_path, sessions):
    import fsspec

    paths = []
    for i in range(2):
        p = tmp_path / f"day{i}.zarr"
        sessions["session0"].to_zarr(p, group="s", mode="w")
        paths.append(fsspec.get_mapper(str(p)))
    assert list(distglm.open_sessions(paths)) == ["day0.zarr/s", "day1.zarr/s"]


# --------------------------------------------------------------------- S3 on loopback (moto)


@pytest.fixture(scope="module")
def s3(sessions):
    """A moto S3 server on 127.0.0.1 holding the sessions at s3://distglm/sessions.zarr."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}"},
    }
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("distglm")
    url = "s3://distglm/sessions.zarr"
    for name, ds in sessions.items():
        ds.to_zarr(url, group=name, mode="w", storage_options=options)
    try:
        yield url, options
    finally:
        server.stop()


def test_s3_url_with_storage_options(s3, sessions):
    url, options = s3
    _same_sessions(distglm.open_sessions(url, storage_options=options), sessions)
    with pytest.raises(FileNotFoundError, match="Cannot open a Zarr group at 's3://distglm/none"):
        distglm.open_sessions("s3://distglm/none.zarr", storage_options=options)


@pytest.mark.cluster
def test_distributed_fit_from_s3(s3, store, client):
    """Workers read their chunks from the S3 server themselves; same fit as the local store."""
    url, options = s3
    remote = distglm.open_sessions(url, storage_options=options)
    model = distglm.ClassifierPopulationGLM(3, regularizer="Ridge", regularizer_strength=1e-2)
    model.fit(remote, client=client)
    local = distglm.ClassifierPopulationGLM(3, regularizer="Ridge", regularizer_strength=1e-2)
    local.fit(distglm.open_sessions(store), client=client)
    assert model.fit_history_[-1]["objective"] == local.fit_history_[-1]["objective"]
    np.testing.assert_array_equal(model.coef_, local.coef_)


def test_cli_info_on_s3(s3):
    url, options = s3
    opts = json.dumps(options)
    info = subprocess.run(
        [sys.executable, "-m", "distglm.cli", "info", url, "--storage-options", opts, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["n_sessions"] == 3
