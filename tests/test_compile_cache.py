"""JAX's persistent compilation cache: where it lives, its opt-out, and that kernels land in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distglm.kernels.compile_cache import ENV_VAR, compile_cache_dir


def test_default_folder_is_per_user():
    assert compile_cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/distglm/jax")
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}
    assert compile_cache_dir(env) == Path("/xdg/distglm/jax")


@pytest.mark.parametrize("value", ["0", "off", "False", "no", ""])
def test_environment_turns_it_off(value):
    assert compile_cache_dir({"HOME": "/home/u", ENV_VAR: value}) is None


def test_environment_names_the_folder():
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg", ENV_VAR: "/tmp/x"}
    assert compile_cache_dir(env) == Path("/tmp/x")


_SCRIPT = """
import numpy as np
import distglm
X = np.random.default_rng(0).standard_normal((200, 3)).astype(np.float32)
y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
distglm.ClassifierGLM(3).fit(X, y)
import jax
print(jax.config.jax_compilation_cache_dir)
"""


def _fit_in_fresh_process(env):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_fit_fills_the_cache_and_the_opt_out_leaves_it_empty(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION")}
    folder = tmp_path / "cache"
    assert _fit_in_fresh_process({**env, ENV_VAR: str(folder)}) == str(folder)
    entries = list(folder.iterdir())
    assert entries, "a fit compiled kernels but wrote none to the cache"
    off = tmp_path / "home"
    assert _fit_in_fresh_process({**env, ENV_VAR: "0", "XDG_CACHE_HOME": str(off)}) == "None"
    assert not off.exists()
