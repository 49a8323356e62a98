"""A model file truncated while a call reads its mapping: an error naming the file, never
SIGBUS (issue 6; csrc/mapguard.h).

- csrc/tests/mapguard_check.c, built with the core: the guard on a scratch mapping (main
  thread, other threads, nested guards; signals that are not ours still reach the previous
  handler or kill the process), then the forward pass with the file cut at several lengths
  while a call runs, on one and on three threads.
- From Python: a thread truncates the file while another generates in a loop; the process
  survives and the caller gets ``EdgemoeError`` naming the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from models import write_random_model

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux signals")


def test_guard_and_forward_pass_in_c(tmp_path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "mapguard_check"
    sources = [str(CSRC / "tests" / "mapguard_check.c")] + sorted(str(p) for p in CSRC.glob("*.c"))
    build = subprocess.run(
        [cc, "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{CSRC}",
         *sources, "-lm", "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    model = write_random_model(tmp_path / "model.bin", seed=11)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = subprocess.run([str(exe), str(model), str(work)], capture_output=True, text=True,
                         timeout=300, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and out.rstrip().endswith("ok"), out[-4000:]


def test_truncated_during_generation_is_an_error(tmp_path: Path) -> None:
    """A fresh process, so a SIGBUS would show as its death, not take pytest down."""
    path = write_random_model(tmp_path / "model.bin", seed=5, hidden_size=256,
                              intermediate_size=256, num_hidden_layers=8,
                              layer_types=["sliding_attention", "full_attention"] * 4)
    child = f"""
import threading, time
import edgemoe
from edgemoe.errors import EdgemoeError
path = {str(path)!r}
with edgemoe.load(path, n_ctx=4096, threads=2) as m:
    s = m.session()
    s.eval([1, 2, 3], logits="last")
    def cut() -> None:
        time.sleep(0.3)
        with open(path, "r+b") as f:
            f.truncate(2 * 4096)
    t = threading.Thread(target=cut)
    t.start()
    try:
        for i in range(4000):
            s.eval([(7 * i) % 512] * 8, logits="last")
        print("no error")
    except EdgemoeError as e:
        print("error:", e)
    t.join()
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "error:" in proc.stdout and "truncated" in proc.stdout, proc.stdout
    assert str(path) in proc.stdout, proc.stdout
