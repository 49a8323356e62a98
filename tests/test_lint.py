"""The Python sources stay ruff-clean (ruff is part of the test extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    try:
        proc = subprocess.run(
            [*cmd, "check", "edgemoe", "tools", "tests", "bench", "examples", "build.py",
             "setup.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except FileNotFoundError:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    if "No module named ruff" in proc.stderr:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    assert proc.returncode == 0, proc.stdout + proc.stderr
