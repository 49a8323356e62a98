"""The worker pool on its own (csrc/pool.h; issue 3): csrc/tests/pool_check.c, built with the
pool alone. Every share of every job runs exactly once on 1 to 4 threads, and a job never
waits for a worker that has not claimed a share (workers parked in a signal handler, as if
descheduled: the caller runs every share itself), then released workers take shares again.
tests/test_sanitizers.py runs the same program under ThreadSanitizer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX threads and signals")
def test_pool_shares_and_parked_workers(tmp_path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "pool_check"
    build = subprocess.run(
        [cc, "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{CSRC}",
         str(CSRC / "tests" / "pool_check.c"), str(CSRC / "pool.c"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    # a pool that waits for a parked worker hangs here: the timeout turns that into a failure
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and out.rstrip().endswith("ok"), out[-4000:]
