"""``edgemoe quality`` (edgemoe/quality.py, docs/QUALITY.md): the statistics against
hand-computed and naive references, the windowed driver on tiny random models, the command
line, and transformers fp32 against the converted model on the reference kernels.

The end-to-end tests run with one thread: on this 2-core machine a second job may hold
both cores, and the core's worker pool then makes each call of a tiny model far slower.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from models import write_random_model

import edgemoe
from edgemoe import cli
from edgemoe import quality as q
from edgemoe.errors import InvalidArgumentError, TokenizerError
from edgemoe.tokenizer import TokenizerSpec

HERE = Path(__file__).resolve().parent
TINY_CKPT = HERE / "data" / "tiny_mxfp4"
BYTE_PAT = r"\s+|\S+"
CTX = 64


# ============================================================================ helpers


def prose(n_words: int, seed: int = 0) -> str:
    """A deterministic English-looking text."""
    rng = random.Random(seed)
    words = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
             "every jolly bagpiper and the river keeps running toward an old stone bridge "
             "under grey autumn clouds").split()
    out = []
    for i in range(n_words):
        w = rng.choice(words)
        out.append(w.capitalize() if i % 11 == 0 else w)
        if i % 11 == 10:
            out[-1] += "."
    return " ".join(out)


TEXT = prose(200)  # ~1,200 bytes: 18 windows of 64 byte tokens


def byte_spec() -> TokenizerSpec:
    """A byte-level tokenizer with no merges: one token per byte (ids 0..255)."""
    return TokenizerSpec("bytes", BYTE_PAT, {bytes([b]): b for b in range(256)}, {}, 256)


def write_byte_tokenizer_json(directory: Path) -> None:
    """The same tokenizer as a Hugging Face tokenizer.json (byte-level BPE, no merges)."""
    from edgemoe.tokenizer import _bytes_to_unicode

    doc = {
        "version": "1.0",
        "added_tokens": [],
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": BYTE_PAT},
                          "behavior": "Isolated", "invert": False},
        "model": {"type": "BPE", "vocab": {ch: b for b, ch in _bytes_to_unicode().items()},
                  "merges": []},
    }
    (directory / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")


def naive_stats(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Per-token numbers the slow, obvious way: softmax, then the KL sum term by term."""
    out: dict[str, list[float]] = {"kld": [], "same": [], "nll_a": [], "nll_b": []}
    for row_a, row_b, target in zip(a.astype(np.float64), b.astype(np.float64), t,
                                    strict=True):
        pa = np.exp(row_a - row_a.max())
        pa /= pa.sum()
        pb = np.exp(row_b - row_b.max())
        pb /= pb.sum()
        out["kld"].append(sum(x * math.log(x / y) for x, y in zip(pa, pb, strict=True)))
        out["same"].append(float(np.argmax(row_a) == np.argmax(row_b)))
        out["nll_a"].append(-math.log(pa[target]))
        out["nll_b"].append(-math.log(pb[target]))
    return {k: np.array(v) for k, v in out.items()}


def quality_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemoe", "quality", *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def byte_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny random models (seeds 1 and 5, vocab 512, q8_0 dense) with the byte tokenizer."""
    d = tmp_path_factory.mktemp("quality_bytes")
    return (write_random_model(d / "a.bin", seed=1, tokenizer=byte_spec()),
            write_random_model(d / "b.bin", seed=5, tokenizer=byte_spec()))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("quality_text") / "text.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


# ============================================================================ statistics


def test_identical_logits_give_zero_kld() -> None:
    rng = np.random.default_rng(0)
    a = (3 * rng.standard_normal((20, 100))).astype(np.float32)
    t = rng.integers(0, 100, 20)
    s = q.compare_logits(a, a.copy(), t)
    assert s.n_tokens == 20
    assert s.kld_mean == 0 and s.kld_max == 0 and s.kld_median == 0 and s.kld_p99 == 0
    assert s.same_top_rate == 1 and s.ppl_ratio == 1 and s.ppl_a == s.ppl_b
    a64 = a.astype(np.float64)
    nll = -np.log(np.exp(a64[np.arange(20), t]) / np.exp(a64).sum(-1))
    assert s.ppl_a == pytest.approx(math.exp(nll.mean()), rel=1e-12)


def test_two_tokens_by_hand() -> None:
    """p_A = (.75, .25) vs p_B = (.6, .4), then p_A = (.25, .75) vs p_B = (.75, .25); the
    targets are 0 then 1. Logits are log p plus an arbitrary shift per row."""
    a = np.log(np.array([[0.75, 0.25], [0.25, 0.75]])) + np.array([[3.0], [-2.0]])
    b = np.log(np.array([[0.6, 0.4], [0.75, 0.25]])) + np.array([[-1.0], [5.0]])
    ts = q.token_stats(a.astype(np.float32), b.astype(np.float32), [0, 1])
    kl0 = 0.75 * math.log(0.75 / 0.6) + 0.25 * math.log(0.25 / 0.4)   # 0.049857
    kl1 = 0.25 * math.log(1 / 3) + 0.75 * math.log(3)                 # ln(3)/2
    np.testing.assert_allclose(ts.kld, [kl0, kl1], rtol=1e-6)
    assert ts.same_top.tolist() == [True, False]
    np.testing.assert_allclose(ts.nll_a, [-math.log(0.75), -math.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(ts.nll_b, [-math.log(0.6), -math.log(0.25)], rtol=1e-6)

    s = q.compare_logits(a.astype(np.float32), b.astype(np.float32), [0, 1])
    assert s.kld_mean == pytest.approx((kl0 + kl1) / 2, rel=1e-6)
    assert s.kld_se == pytest.approx(abs(kl1 - kl0) / 2, rel=1e-6)  # sqrt(var / (n - 1))
    assert s.kld_median == pytest.approx((kl0 + kl1) / 2, rel=1e-6)
    assert s.kld_p99 == pytest.approx(kl0 + 0.99 * (kl1 - kl0), rel=1e-6)
    assert s.kld_max == pytest.approx(kl1, rel=1e-6)
    assert s.same_top_rate == 0.5 and s.same_top_se == pytest.approx(0.5)
    assert s.ppl_a == pytest.approx(4 / 3, rel=1e-6)
    assert s.ppl_b == pytest.approx(math.sqrt(1 / (0.6 * 0.25)), rel=1e-6)
    assert s.ppl_ratio == pytest.approx(s.ppl_b / s.ppl_a, rel=1e-12)


def test_random_logits_match_the_naive_reference() -> None:
    rng = np.random.default_rng(1)
    a = (2 * rng.standard_normal((37, 50))).astype(np.float32)
    b = (a + 0.3 * rng.standard_normal((37, 50))).astype(np.float32)
    b[::5] = a[::5]                                  # some rows identical
    t = rng.integers(0, 50, 37)
    ref = naive_stats(a, b, t)
    ts = q.token_stats(a, b, t, block_rows=4)        # blocks of 4 rows, last one partial
    np.testing.assert_allclose(ts.kld, ref["kld"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ts.same_top, ref["same"])
    np.testing.assert_allclose(ts.nll_a, ref["nll_a"], rtol=1e-12)
    np.testing.assert_allclose(ts.nll_b, ref["nll_b"], rtol=1e-12)
    assert (ts.kld[::5] == 0).all() and (ts.kld[1::5] > 0).all()

    acc = q.QualityAccumulator()                     # fed in uneven chunks
    for lo, hi in ((0, 1), (1, 20), (20, 37)):
        acc.add(a[lo:hi], b[lo:hi], t[lo:hi])
    s = acc.result()
    assert s == q.compare_logits(a, b, t)
    assert s.kld_mean == pytest.approx(ref["kld"].mean(), rel=1e-9)
    assert s.kld_median == pytest.approx(np.median(ref["kld"]), rel=1e-9)
    assert s.kld_p99 == pytest.approx(np.percentile(ref["kld"], 99), rel=1e-9)
    assert s.kld_max == pytest.approx(ref["kld"].max(), rel=1e-9)
    assert s.same_top_rate == pytest.approx(ref["same"].mean())
    assert s.ppl_a == pytest.approx(math.exp(ref["nll_a"].mean()), rel=1e-12)
    assert s.ppl_b == pytest.approx(math.exp(ref["nll_b"].mean()), rel=1e-12)
    assert s.ppl_ratio == pytest.approx(s.ppl_b / s.ppl_a, rel=1e-12)
    d = ref["nll_b"] - ref["nll_a"]
    assert s.ppl_ratio_se == pytest.approx(s.ppl_ratio * d.std() / math.sqrt(36), rel=1e-9)


def test_statistics_reject_bad_input() -> None:
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        q.token_stats(a, np.zeros((3, 5), np.float32), [0, 0, 0])
    with pytest.raises(ValueError, match="targets"):
        q.token_stats(a, a, [0, 0])
    with pytest.raises(ValueError, match="outside"):
        q.token_stats(a, a, [0, 4, 0])
    bad = a.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="B are not finite at row 2"):
        q.token_stats(a, bad, [0, 0, 0])
    with pytest.raises(ValueError, match="no tokens"):
        q.QualityAccumulator().result()


# ============================================================================ end to end


def test_a_model_against_itself(chat_model_path: Path) -> None:
    """o200k tokenizer; identical logits: KLD exactly 0, same top 100 %, ratio exactly 1."""
    text = prose(120, seed=3)
    r = q.run_quality(chat_model_path, chat_model_path, text, ctx=32, threads=1)
    with edgemoe.load(chat_model_path) as m:
        n_text = len(m.tokenizer.encode_ordinary(text))
    assert r.n_windows == n_text // 32 >= 3
    assert r.stats.n_tokens == r.n_windows * (32 - 1 - 16)
    assert r.stats.kld_mean == 0 and r.stats.kld_max == 0
    assert r.stats.same_top_rate == 1 and r.stats.ppl_ratio == 1
    assert r.stats.ppl_a > 1


def test_windows_score_the_second_half(byte_models: tuple[Path, Path]) -> None:
    """The driver's numbers are those of each window's logits computed in one batch:
    rows ctx/2 .. ctx-2 against the tokens that follow. B is the same file with int8
    activations, so the KLD is not trivially 0."""
    a_path, _ = byte_models
    r = q.run_quality(a_path, a_path, TEXT, ctx=CTX, threads=1, activations_b="int8",
                      max_tokens=3 * CTX + 10)
    assert r.n_windows == 3 and r.n_text_tokens == 3 * CTX + 10
    ids = list(TEXT.encode())[: 3 * CTX]
    acc = q.QualityAccumulator()
    with edgemoe.load(a_path, threads=1) as ma, \
            edgemoe.load(a_path, threads=1, activations="int8") as mb:
        for w in range(3):
            win = ids[w * CTX : (w + 1) * CTX]
            acc.add(ma.logits(win)[CTX // 2 : -1], mb.logits(win)[CTX // 2 : -1],
                    win[CTX // 2 + 1 :])
    assert r.stats == acc.result()
    assert r.stats.kld_mean > 0


def test_reference_against_fast_kernels(chat_model_path: Path) -> None:
    """Same file, reference f32 kernels against the SIMD ones (int16-rounded activations in
    the q8_0/MXFP4 products): a small KLD that is not zero."""
    from edgemoe._native import ffi, lib

    before = os.environ.get("EDGEMOE_KERNELS")
    with q.kernels_env("auto"):
        if ffi.string(lib.edgemoe_kernels_name()).decode() == "reference":
            pytest.skip("no SIMD kernel set on this CPU: auto is the reference set")
    r = q.run_quality(chat_model_path, chat_model_path, prose(120, seed=3), ctx=32,
                      threads=1, kernels_a="reference", kernels_b="auto")
    assert os.environ.get("EDGEMOE_KERNELS") == before   # restored
    assert r.kernels_a == "reference" and r.kernels_b != "reference"
    print(f"reference vs {r.kernels_b}: {r.stats}")
    # measured: mean 1.0e-8, max 5.7e-8 (AVX2); bounds 100x above
    assert 0 < r.stats.kld_mean < 1e-6 and r.stats.kld_max < 1e-5
    assert r.stats.same_top_rate >= 0.95
    assert abs(r.stats.ppl_ratio - 1) < 1e-3


def test_different_models_diverge(byte_models: tuple[Path, Path]) -> None:
    a_path, b_path = byte_models
    r = q.run_quality(a_path, b_path, TEXT, ctx=CTX, threads=1)
    assert r.n_windows == len(TEXT.encode()) // CTX
    print(r.stats)
    assert r.stats.kld_mean > 0.3 and r.stats.kld_median > 0.3
    assert r.stats.same_top_rate < 0.5
    assert r.stats.kld_mean - 5 * r.stats.kld_se > 0


def test_cli_json(byte_models: tuple[Path, Path], text_file: Path) -> None:
    a_path, b_path = byte_models
    p = quality_cli(str(a_path), str(b_path), "--text", str(text_file), "--ctx", str(CTX),
                    "-t", "1", "--max-tokens", str(4 * CTX), "--activations-b", "int8",
                    "--kernels-a", "reference", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["model_a"] == str(a_path) and d["model_b"] == str(b_path)
    assert d["ctx"] == CTX and d["n_windows"] == 4 and d["n_tokens"] == 4 * (CTX - 1 - CTX // 2)
    assert d["kernels_a"] == "reference" and d["activations_b"] == "int8"
    for key in ("kld_mean", "kld_se", "kld_median", "kld_p99", "kld_max", "same_top_rate",
                "ppl_a", "ppl_b", "ppl_ratio"):
        assert isinstance(d[key], float), key
    assert d["kld_mean"] > 0.3


def test_cli_table(byte_models: tuple[Path, Path], text_file: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    a_path, _ = byte_models
    rc = cli.main(["quality", str(a_path), str(a_path), "--text", str(text_file),
                   "--ctx", str(CTX), "-t", "1", "--max-tokens", str(2 * CTX)])
    out = capsys.readouterr().out
    assert rc == 0
    for needle in ("Mean PPL(A)", "Mean PPL(B)", "Mean PPL(B)/PPL(A)", "Mean    KLD",
                   "Median  KLD", "99.0%   KLD", "Maximum KLD", "Same top p", "100.000"):
        assert needle in out, needle


def test_mismatched_tokenizers_are_refused(chat_model_path: Path,
                                           byte_models: tuple[Path, Path],
                                           text_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    a_path, _ = byte_models
    with pytest.raises(TokenizerError, match="tokenize the text differently") as exc:
        q.run_quality(chat_model_path, a_path, TEXT, ctx=CTX, threads=1)
    assert str(chat_model_path) in str(exc.value) and str(a_path) in str(exc.value)
    rc = cli.main(["quality", str(a_path), str(chat_model_path), "--text", str(text_file),
                   "-t", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "tokenize the text differently" in err and "Traceback" not in err


def test_model_without_tokenizer_is_refused(tiny_model_path: Path,
                                            byte_models: tuple[Path, Path]) -> None:
    with pytest.raises(TokenizerError, match="no tokenizer"):
        q.run_quality(tiny_model_path, byte_models[0], TEXT, ctx=CTX, threads=1)
    with pytest.raises(TokenizerError, match="no tokenizer"):
        q.run_quality(byte_models[0], tiny_model_path, TEXT, ctx=CTX, threads=1)


def test_text_shorter_than_a_window(byte_models: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidArgumentError, match="fewer than one window"):
        q.run_quality(byte_models[0], byte_models[1], "too short", ctx=CTX, threads=1)
    with pytest.raises(InvalidArgumentError, match="ctx must be"):
        q.run_quality(byte_models[0], byte_models[1], TEXT, ctx=2, threads=1)


def test_missing_text_needs_the_option(byte_models: tuple[Path, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    a_path, _ = byte_models
    monkeypatch.setattr(q, "DEFAULT_TEXT", tmp_path / "absent.txt")
    rc = cli.main(["quality", str(a_path), str(a_path), "-t", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--text" in err and "required" in err
    # with a default text present, it is read
    default = tmp_path / "heldout.txt"
    default.write_text(TEXT, encoding="utf-8")
    monkeypatch.setattr(q, "DEFAULT_TEXT", default)
    rc = cli.main(["quality", str(a_path), str(a_path), "-t", "1", "--ctx", str(CTX),
                   "--max-tokens", str(CTX), "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and json.loads(out)["n_windows"] == 1


def test_two_checkpoint_dirs_are_refused(tmp_path: Path) -> None:
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(InvalidArgumentError, match="both Hugging Face"):
        q.run_quality(tmp_path / "x", tmp_path / "y", TEXT)
    with pytest.raises(InvalidArgumentError, match="apply to a model.bin"):
        q.open_source(tmp_path / "x", kernels="reference")
    with pytest.raises(InvalidArgumentError, match="without config.json"):
        q.open_source(tmp_path)


# ============================================================================ transformers


@pytest.fixture(scope="module")
def hf_and_converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The golden tiny MXFP4 checkpoint with a byte-level tokenizer.json added, and its
    conversion with f32 dense weights (exact: the checkpoint's dense tensors are bf16)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgemoe_quantize import convert

    root = tmp_path_factory.mktemp("quality_hf")
    ckpt = root / "ckpt"
    shutil.copytree(TINY_CKPT, ckpt)
    write_byte_tokenizer_json(ckpt)
    out = root / "tiny_f32.bin"
    convert(ckpt, out, dense="f32", progress=False)
    return ckpt, out


# Measured on the tiny checkpoint (ctx 64, 18 windows, 558 tokens): mean KLD 5.4e-13, max
# 2.6e-12, ppl ratio 1 - 1.4e-8. The logits differ by ~1e-6 relative (test_oracle.py's
# figure) and a KLD is second order in the logit differences (about half their variance
# under p_A), hence ~1e-12. The bounds leave ~200x room and still sit two orders below what
# the SIMD kernels' int16 activation rounding alone costs (mean KLD ~1e-8, see
# test_reference_against_fast_kernels): a real discrepancy between the two implementations
# cannot hide under them.
HF_KLD_MEAN = 1e-10
HF_KLD_MAX = 1e-9


def test_transformers_against_the_reference_path(hf_and_converted: tuple[Path, Path]) -> None:
    ckpt, converted = hf_and_converted
    r = q.run_quality(ckpt, converted, TEXT, ctx=CTX, threads=1, kernels_b="reference")
    print(f"transformers fp32 vs reference: {r.stats}")
    assert r.kernels_a == "transformers-fp32" and r.kernels_b == "reference"
    assert r.n_windows == len(TEXT.encode()) // CTX
    assert r.stats.kld_mean < HF_KLD_MEAN and r.stats.kld_max < HF_KLD_MAX
    assert r.stats.same_top_rate == 1
    assert abs(r.stats.ppl_ratio - 1) < 1e-5
    # the other way round: the text is read by B's (the model.bin's) tokenizer
    r2 = q.run_quality(converted, ckpt, TEXT, ctx=CTX, threads=1, kernels_a="reference",
                       max_tokens=CTX)
    assert r2.n_windows == 1 and r2.stats.kld_max < HF_KLD_MAX
