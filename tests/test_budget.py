"""Memory budgets (csrc/expert_cache.c, docs/MEMORY.md): the same numbers as plain mmap,
resident memory within the budget, and clear errors for a budget too small or a file that
changes under a running model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from models import write_random_model

import edgemoe
from edgemoe.budget import parse_size
from edgemoe.errors import EdgemoeError, InvalidArgumentError

PROMPT = [5, 17, 400, 3, 99, 250, 7, 42]
N_GEN = 64
MIB = 1 << 20
#: non-expert weights (~6.5 MiB) + 24 of the 128 experts (1.6 MiB each)
BUDGET = 46 * MIB
#: what a process needs besides the weights under a budget (docs/MEMORY.md): the KV cache and
#: scratch of one context, the tokenizer-less header, the allocator's slack
OVERHEAD = 40 * MIB


@pytest.fixture(scope="module")
def budget_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """215 MB: 4 layers of 32 experts of 1.6 MiB (hidden 1024), vocab 512."""
    return write_random_model(
        tmp_path_factory.mktemp("budget") / "budget.bin", seed=5, hidden_size=1024,
        intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=2, head_dim=64, num_local_experts=32,
        layer_types=["sliding_attention", "full_attention"] * 2)


def generate(path: Path, threads: int = 2, **kw: object) -> tuple[np.ndarray, edgemoe.Model]:
    """Logits of the prompt's last token and of N_GEN greedy tokens; the model stays open."""
    model = edgemoe.load(path, threads=threads, n_ctx=128, **kw)  # type: ignore[arg-type]
    s = model.session()
    rows = [s.eval(PROMPT, logits="last")[-1]]
    for _ in range(N_GEN):
        rows.append(s.eval([int(np.argmax(rows[-1]))], logits="last")[-1])
    return np.stack(rows), model


@pytest.fixture(scope="module")
def plain(budget_model: Path) -> tuple[np.ndarray, int]:
    logits, model = generate(budget_model)
    with model:
        return logits, model.stats().expert_uses


@pytest.mark.parametrize(("policy", "prefetch", "threads"),
                         [("lru", True, 2), ("lru", False, 1), ("lfu", True, 1), ("lfu", False, 2)])
def test_budget_gives_the_same_logits(budget_model: Path, plain: tuple[np.ndarray, int],
                                      policy: str, prefetch: bool, threads: int) -> None:
    ref, uses = plain
    logits, model = generate(budget_model, threads=threads, memory_budget=BUDGET, policy=policy,
                             prefetch=prefetch)
    with model:
        st = model.stats()
    np.testing.assert_array_equal(logits, ref)
    assert st.budget_bytes == BUDGET
    assert 0 < st.n_slots < 128, "the budget must hold only a fraction of the experts"
    assert st.dense_resident_bytes + st.n_slots * st.slot_bytes <= BUDGET
    assert st.expert_uses == uses, "same routing, same number of (layer, expert) uses"
    assert st.hits + st.misses == st.expert_uses
    assert st.misses > 0 and st.evictions > 0
    assert st.resident_expert_bytes <= st.n_slots * st.slot_bytes
    assert st.bytes_read >= st.dense_resident_bytes
    if prefetch:
        assert 0 < st.predicted_used <= st.predicted
    else:
        assert st.predicted == 0


def test_budget_holding_everything_reads_each_expert_once(budget_model: Path,
                                                          plain: tuple[np.ndarray, int]) -> None:
    logits, model = generate(budget_model, memory_budget="1G", prefetch=False)
    with model:
        st = model.stats()
        assert model.session().stats().expert_uses == st.expert_uses   # one cache per model
    np.testing.assert_array_equal(logits, plain[0])
    assert st.n_slots == 128 and st.evictions == 0
    assert st.misses <= 128 and st.hits == st.expert_uses - st.misses


RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import edgemoe
    from edgemoe.budget import peak_rss_bytes

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    base = rss()
    budget = int(sys.argv[2]) or None
    with edgemoe.load(sys.argv[1], threads=2, n_ctx=128, memory_budget=budget) as m:
        s = m.session()
        logits = s.eval({prompt}, logits="last")[-1]
        for _ in range({n_gen}):
            logits = s.eval([int(np.argmax(logits))], logits="last")[-1]
        print(json.dumps({{"base": base, "peak": peak_rss_bytes()}}))
""").format(prompt=PROMPT, n_gen=N_GEN)


def peak_above_start(path: Path, budget: int) -> int:
    """Peak RSS of a fresh process generating under `budget` (0: none), less its RSS before
    loading (the interpreter and libraries)."""
    p = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path), str(budget)],
                       capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(p.stdout)
    return int(r["peak"] - r["base"])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_rss_stays_within_the_budget(budget_model: Path) -> None:
    if os.environ.get("EDGEMOE_UNDER_SANITIZER"):
        # freed scratch sits in AddressSanitizer's quarantine (up to 256 MB), still resident
        pytest.skip("AddressSanitizer's quarantine holds freed memory: RSS says nothing there")
    budgeted = peak_above_start(budget_model, BUDGET)
    assert budgeted <= BUDGET + OVERHEAD, (
        f"peak RSS grew {budgeted / MIB:.1f} MiB under a {BUDGET / MIB:.0f} MiB budget")
    # the same run without a budget maps in far more: the check above can fail
    unbudgeted = peak_above_start(budget_model, 0)
    assert unbudgeted > BUDGET + OVERHEAD, f"plain mmap grew only {unbudgeted / MIB:.1f} MiB"


def test_budget_too_small_names_the_smallest(budget_model: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"too small.*smallest budget is \d"):
        edgemoe.load(budget_model, memory_budget="4M")


def test_file_truncated_while_open_is_a_clear_error(budget_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    shutil.copyfile(budget_model, path)
    with edgemoe.load(path, n_ctx=128, memory_budget=BUDGET) as model:
        s = model.session()
        logits = s.eval(PROMPT, logits="last")[-1]
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 3)
        with pytest.raises(EdgemoeError, match="truncated"):
            for _ in range(N_GEN):   # some token soon needs an expert that is not resident
                logits = s.eval([int(np.argmax(logits))], logits="last")[-1]
        n_past = s.n_past
        with pytest.raises(EdgemoeError, match="truncated"):
            s.eval([1, 2, 3])
        assert s.n_past == n_past


@pytest.mark.parametrize(("text", "expected"), [
    ("6G", 6 << 30), ("512M", 512 << 20), ("512MiB", 512 << 20), ("1.5GB", 3 << 29),
    ("64k", 64 << 10), (" 2 G ", 2 << 30), (1000, 1000), ("4096", 4096),
])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["6X", "", "G", "-1G", 0, True, "1e9"])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="memory_budget"):
        parse_size(bad)  # type: ignore[arg-type]


def test_bad_policy_and_io_threads(budget_model: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="policy"):
        edgemoe.load(budget_model, memory_budget=BUDGET, policy="random")
    for bad in (0, 65):
        with pytest.raises(InvalidArgumentError, match="io_threads"):
            edgemoe.load(budget_model, memory_budget=BUDGET, io_threads=bad)


def test_bench_reports_the_cache(budget_model: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "edgemoe", "bench", str(budget_model), "-p", "8", "-n", "8", "-r",
         "1", "--memory-budget", str(BUDGET), "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(p.stdout)
    assert r["memory_budget"] == BUDGET and r["policy"] == "lfu"
    assert 0.0 <= r["cache"]["hit_rate"] <= 1.0 and r["cache"]["n_slots"] == 24
    assert r["first_token_s"] > 0


def test_plain_mapping_truncated_between_calls_is_a_clear_error(tmp_path: Path) -> None:
    """Without a budget the file is mapped: a truncation between calls is caught before any
    read (a fresh process, so a SIGBUS would show as a crash, not take pytest down)."""
    path = write_random_model(tmp_path / "model.bin", seed=5)
    child = f"""
import edgemoe
from edgemoe.errors import EdgemoeError
with edgemoe.load({str(path)!r}, n_ctx=64) as m:
    s = m.session()
    s.eval([1, 2, 3], logits="last")
    with open({str(path)!r}, "r+b") as f:
        f.truncate({path.stat().st_size // 3})
    try:
        s.eval([4], logits="last")
    except EdgemoeError as e:
        print("error:", e, "n_past", s.n_past)
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "truncated to" in proc.stdout and "model.bin" in proc.stdout, proc.stdout
    assert proc.stdout.strip().endswith("n_past 3")
