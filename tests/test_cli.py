"""The edgemoe command, run as a user would (a subprocess of the installed entry point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def edgemoe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgemoe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_info_describes_the_model(chat_model_path: Path) -> None:
    p = edgemoe("info", str(chat_model_path))
    assert p.returncode == 0, p.stderr
    for needle in ("gpt-oss", "top-4", "mxfp4", "q8_0", "o200k_harmony", "201088", "sliding"):
        assert needle in p.stdout


def test_info_json(chat_model_path: Path) -> None:
    import json

    p = edgemoe("info", "--json", str(chat_model_path))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["hparams"]["num_local_experts"] == 8


def test_verify_ok_and_corrupt(chat_model_path: Path, tmp_path: Path) -> None:
    p = edgemoe("verify", str(chat_model_path))
    assert p.returncode == 0 and "OK" in p.stdout
    bad = tmp_path / "bad.bin"
    data = bytearray(chat_model_path.read_bytes())
    data[-100] ^= 0xFF  # inside the last tensor
    bad.write_bytes(data)
    p = edgemoe("verify", str(bad))
    assert p.returncode == 1 and "crc" in p.stderr.lower() and "Traceback" not in p.stderr


def test_run_streams_an_answer_and_stats(chat_model_path: Path) -> None:
    p = edgemoe("run", str(chat_model_path), "-p", "Hello", "-n", "8", "--temp", "0")
    assert p.returncode == 0, p.stderr
    assert "tok/s" in p.stderr and "prompt:" in p.stderr and "generation:" in p.stderr


def test_run_raw(chat_model_path: Path) -> None:
    p = edgemoe("run", str(chat_model_path), "--raw", "-p", "Hello", "-n", "5", "--temp", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() != ""


def test_interactive_run_reads_stdin(chat_model_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "edgemoe", "run", str(chat_model_path), "-n", "4", "--temp", "0"],
        input="Hi\n/reset\n/effort high\n/reasoning on\n/bogus\nAgain\n\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("generation:") == 2 and p.stderr.count("RSS") == 2
    for said in ("conversation cleared", "reasoning effort: high", "reasoning shown",
                 "unknown command '/bogus'"):
        assert said in p.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "/nonexistent/model.bin", "-p", "x"], "/nonexistent/model.bin"),
        (["info", "/nonexistent/model.bin"], "/nonexistent/model.bin"),
    ],
)
def test_missing_file_is_a_clear_error(args: list[str], needle: str) -> None:
    p = edgemoe(*args)
    assert p.returncode == 1
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_run_on_model_without_tokenizer(tiny_model_path: Path) -> None:
    p = edgemoe("run", str(tiny_model_path), "-p", "x")
    assert p.returncode == 1 and "tokenizer" in p.stderr and "Traceback" not in p.stderr


def test_bench_json(tiny_model_path: Path) -> None:
    import json

    p = edgemoe("bench", str(tiny_model_path), "-p", "8", "-n", "4", "-r", "2", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for key in (
        "model",
        "threads",
        "n_prompt",
        "n_gen",
        "pp_tok_s",
        "pp_tok_s_sd",
        "tg_tok_s",
        "tg_tok_s_sd",
        "peak_rss_bytes",
        "load_s",
    ):
        assert key in r
    assert r["n_prompt"] == 8 and r["n_gen"] == 4 and r["pp_tok_s"] > 0 and r["tg_tok_s"] > 0
    assert r["peak_rss_bytes"] > 0 and r["weight_bytes_per_token"] > 0


def test_bench_table_and_bad_args(tiny_model_path: Path) -> None:
    p = edgemoe("bench", str(tiny_model_path), "-p", "4", "-n", "2", "-r", "1")
    assert p.returncode == 0, p.stderr
    assert "pp4" in p.stdout and "tg2" in p.stdout and "peak RSS" in p.stdout
    p = edgemoe("bench", str(tiny_model_path), "-r", "0")
    assert p.returncode == 2 and "-r" in p.stderr
