"""Lint and types are part of the suite (issue 13): ruff over the whole tree and mypy over what
pyproject.toml's [tool.mypy] names (workbench/, ui/, pages/), each with the rules configured there.

Both tools come from the environment running the tests (the `test` extra installs them), next to
sys.executable, so a shell's other ruff or mypy cannot change the verdict.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / name
    assert tool.exists(), f"{tool} is missing: install the test extra (pip install -e '.[test]')"
    return subprocess.run([str(tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    done = run_tool("ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    done = run_tool("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
