"""A bounded libFuzzer run over the model loader (issue 6; csrc/tests/fuzz_loader.c).

The harness is built with clang (``-fsanitize=fuzzer,address,undefined``) and run for
``EDGEMOE_FUZZ_SECONDS`` (default 120) on a seed corpus of small converted files (dense
q8_0, bf16 and f32). Any crash, sanitizer report, leak-free timeout or out-of-memory fails
the test with libFuzzer's report; the input that caused it goes to tests/data/fuzz/ as a
regression case, and every file there is replayed first. Skipped where clang or its
libFuzzer runtime is missing (CI installs clang).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from models import random_tensors, tiny_hparams

from edgemoe.writer import write_model

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
REGRESSIONS = Path(__file__).resolve().parent / "data" / "fuzz"
FLAGS = ["-std=c11", "-O1", "-g", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=undefined", "-pthread", f"-I{CSRC}"]
LIMITS = ["-rss_limit_mb=3000", "-malloc_limit_mb=3000", "-timeout=30", "-max_len=131072"]


def build(tmp: Path) -> Path:
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is not on PATH (apt-get install clang)")
    probe = tmp / "probe.c"
    probe.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) "
                     "{ (void)d; (void)n; return 0; }\n")
    if subprocess.run([clang, "-fsanitize=fuzzer", str(probe), "-o", str(tmp / "probe")],
                      capture_output=True).returncode != 0:
        pytest.skip("clang has no libFuzzer runtime")
    exe = tmp / "fuzz_loader"
    sources = [str(CSRC / "tests" / "fuzz_loader.c")] + sorted(str(p) for p in CSRC.glob("*.c"))
    proc = subprocess.run([clang, *FLAGS, *sources, "-lm", "-o", str(exe)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return exe


def seeds(corpus: Path) -> None:
    hp = tiny_hparams(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                      num_local_experts=4, num_experts_per_tok=2,
                      layer_types=["sliding_attention", "full_attention"])
    for dense in ("q8_0", "bf16", "f32"):
        write_model(corpus / f"seed_{dense}.bin", hp, random_tensors(hp, 1), None, dense=dense,
                    expert_alignment=4096)


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "EDGEMOE_KERNELS")}
    e["ASAN_OPTIONS"] = "allocator_may_return_null=1"   # a huge declared size is ERR_NOMEM
    return e


def test_fuzz_the_loader(tmp_path: Path) -> None:
    if os.environ.get("EDGEMOE_UNDER_SANITIZER"):
        pytest.skip("the fuzz run is sanitized already; once per suite run is enough")
    exe = build(tmp_path)
    replay = sorted(REGRESSIONS.glob("*")) if REGRESSIONS.is_dir() else []
    if replay:
        proc = subprocess.run([str(exe), *LIMITS, *map(str, replay)], capture_output=True,
                              text=True, timeout=600, env=env())
        assert proc.returncode == 0, proc.stderr[-6000:]
    corpus, work = tmp_path / "seeds", tmp_path / "corpus"
    corpus.mkdir()
    work.mkdir()
    seeds(corpus)
    seconds = int(os.environ.get("EDGEMOE_FUZZ_SECONDS", "120"))
    proc = subprocess.run(
        [str(exe), *LIMITS, f"-max_total_time={seconds}", "-print_final_stats=1",
         f"-artifact_prefix={tmp_path}/", str(work), str(corpus)],
        capture_output=True, text=True, timeout=seconds + 600, env=env())
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + \
        sorted(p.name for p in tmp_path.glob("oom-*")) + \
        sorted(p.name for p in tmp_path.glob("timeout-*"))
    assert proc.returncode == 0 and not crashes, (
        f"libFuzzer found {crashes} (copy them to tests/data/fuzz/):\n{proc.stderr[-6000:]}")
    runs = [ln for ln in proc.stderr.splitlines()
            if ln.startswith("stat::number_of_executed_units")]
    print(f"\n{runs[0] if runs else ''} in {seconds} s")
