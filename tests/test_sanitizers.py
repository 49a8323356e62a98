"""The C core under sanitizers (issue 6).

- AddressSanitizer + UndefinedBehaviorSanitizer: the extension is rebuilt with
  ``EDGEMOE_SANITIZE=1`` (build.py) in a copy of the source tree, and the whole test suite
  runs again there with the compiler's libasan/libubsan preloaded into Python. Any invalid
  access or undefined behaviour aborts the process, so the run fails.
- ThreadSanitizer: csrc/tests/thread_check.c, linked with the core under ``-fsanitize=thread``,
  drives the worker pool, two contexts sharing one model, and the expert cache's I/O and
  prediction threads under a memory budget; csrc/tests/pool_check.c drives the pool alone
  (its shares claimed by whoever comes first, workers parked and released).

Both need gcc with its sanitizer runtimes (Debian's gcc has them) and run on Linux only. The
suite run takes a few minutes; it skips itself inside the sanitized run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from models import write_random_model

import edgemoe

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
INNER = "EDGEMOE_UNDER_SANITIZER"


def runtime(cc: str, name: str) -> str:
    """Path of the compiler's runtime library ``name`` (e.g. libasan.so), or skip."""
    out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True)
    path = out.stdout.strip()
    if out.returncode != 0 or not os.path.isabs(path) or not Path(path).exists():
        pytest.skip(f"{cc} has no {name}")
    return path


def compiler() -> str:
    if sys.platform != "linux":
        pytest.skip("sanitizer runs are set up for Linux")
    if os.environ.get(INNER):
        pytest.skip("already inside the sanitized run")
    cc = shutil.which("gcc")
    if not cc:
        pytest.skip("gcc is not on PATH")
    return cc


def test_whole_suite_under_asan_and_ubsan(tmp_path: Path) -> None:
    cc = compiler()
    preload = [runtime(cc, "libasan.so"), runtime(cc, "libubsan.so")]
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "*.so", "__pycache__", ".pytest_cache", "build", "*.egg-info", ".ruff_cache"))
    env = os.environ | {"EDGEMOE_SANITIZE": "1", "CC": cc}
    build = subprocess.run([sys.executable, "build.py"], cwd=tree, env=env, capture_output=True,
                           text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    env = os.environ | {
        INNER: "1",
        "LD_PRELOAD": ":".join(preload),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",   # CPython itself never frees some
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("EDGEMOE_KERNELS", None)
    probe = subprocess.run([sys.executable, "-c", "import edgemoe._native as n; print(n.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == str(tree / "edgemoe" / "_native.py"), probe.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests",
         "--deselect", "tests/test_lint.py::test_ruff_clean"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    tail = (run.stdout[-6000:] + run.stderr[-6000:])
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and "ERROR: AddressSanitizer" not in tail


def test_threads_under_tsan(tmp_path: Path) -> None:
    cc = compiler()
    runtime(cc, "libtsan.so")
    exe = tmp_path / "thread_check"
    sources = [str(CSRC / "tests" / "thread_check.c")] + sorted(str(p) for p in CSRC.glob("*.c"))
    build = subprocess.run(
        [cc, "-std=c11", "-O1", "-g", "-fsanitize=thread", "-pthread", f"-I{CSRC}", *sources,
         "-lm", "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    model = write_random_model(tmp_path / "model.bin", seed=3, num_local_experts=16)
    with edgemoe.load(model) as m:
        budget = m.info.dense_bytes + m.info.expert_bytes // 3   # a third of the experts fit
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["TSAN_OPTIONS"] = "halt_on_error=1:exitcode=66"
    run = subprocess.run([str(exe), str(model), str(budget)], capture_output=True, text=True,
                         timeout=900, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-8000:]
    assert "WARNING: ThreadSanitizer" not in out and out.rstrip().endswith("ok"), out[-4000:]
    assert out.count("expert uses") == 5


def test_pool_under_tsan(tmp_path: Path) -> None:
    cc = compiler()
    runtime(cc, "libtsan.so")
    exe = tmp_path / "pool_check"
    build = subprocess.run(
        [cc, "-std=c11", "-O1", "-g", "-fsanitize=thread", "-pthread", f"-I{CSRC}",
         str(CSRC / "tests" / "pool_check.c"), str(CSRC / "pool.c"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["TSAN_OPTIONS"] = "halt_on_error=1:exitcode=66"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-8000:]
    assert "WARNING: ThreadSanitizer" not in out and out.rstrip().endswith("ok"), out[-4000:]
