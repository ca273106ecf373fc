"""The worker preload: it imports distglm's worker code and JAX, and leaves JAX's backend alone."""

from __future__ import annotations

import subprocess
import sys

import distglm

_SCRIPT = """
import sys
import jax._src.xla_bridge as xla_bridge
import distglm.distribute.preload as preload
preload.dask_setup(None)
print("distglm.distribute.worker" in sys.modules, xla_bridge.backends_are_initialized())
"""


def test_preload_names_its_module():
    assert distglm.WORKER_PRELOAD == "distglm.distribute.preload"


def test_preload_imports_the_worker_without_starting_jax_backend():
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr
