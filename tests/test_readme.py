"""Every ```python block of the README runs pasted into a file of its own (in a fresh folder),
so the README stays true. Blocks that start a cluster are in the slow part."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_CLUSTER = ("LocalCluster", "SLURMCluster", "LocalCUDACluster", "Client(")


def _blocks():
    text = README.read_text()
    out = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        code = match.group(1)
        marks = [pytest.mark.slow, pytest.mark.cluster] if any(k in code for k in _CLUSTER) else []
        out.append(pytest.param(code, id=f"line{line}", marks=marks))
    return out


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 8


@pytest.mark.parametrize("code", _blocks())
def test_readme_block_runs(code, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
