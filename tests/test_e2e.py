"""End to end as a user goes: a gpt-oss checkpoint in the published layout with the real
o200k_harmony tokenizer.json → ``edgemoe quantize`` → ``edgemoe info`` / ``run`` → the
Python API, with token ids and logits checked against transformers (ORACLES.md §2.6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from oracle import build_hf_model, have_torch_stack, model_logits, rel_l2, save_mxfp4_checkpoint

pytest_plugins = ["tokenizer_fixtures"]

pytestmark = pytest.mark.skipif(
    not have_torch_stack(), reason="torch/transformers not installed (pip install -e '.[test]')"
)

HARMONY_VOCAB = 201088


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgemoe", *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, hf_tokenizer_dir: Path):
    """(hf model, checkpoint dir, model.bin) for a real-vocab tiny gpt-oss."""
    model = build_hf_model(
        seed=11,
        vocab_size=HARMONY_VOCAB,
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    ckpt = save_mxfp4_checkpoint(model, tmp_path_factory.mktemp("ckpt"), legacy_rope=True)
    (ckpt / "tokenizer.json").write_bytes((hf_tokenizer_dir / "tokenizer.json").read_bytes())
    out = tmp_path_factory.mktemp("bin") / "model.bin"
    p = cli("quantize", str(ckpt), "-o", str(out), "--dense", "bf16")
    assert p.returncode == 0, p.stderr
    assert "100.0%" in p.stderr
    # the oracle holds exactly what the file holds: bf16 dense weights, MXFP4 experts
    from oracle import load_hf_fp32

    return load_hf_fp32(ckpt), ckpt, out


def test_info_names_the_tokenizer(converted) -> None:
    p = cli("info", str(converted[2]))
    assert p.returncode == 0, p.stderr
    assert "o200k_harmony" in p.stdout and "201088" in p.stdout and "bf16" in p.stdout


def test_chat_prompt_logits_match_transformers(converted, monkeypatch) -> None:
    import edgemoe
    from edgemoe.harmony import encode_chat

    monkeypatch.setenv("EDGEMOE_KERNELS", "reference")
    hf, _, path = converted
    with edgemoe.load(path) as m:
        msgs = [{"role": "user", "content": "What is the weather in Tokyo? Answer in 한국어."}]
        ids = encode_chat(m.tokenizer, msgs, reasoning_effort="low", current_date="2025-06-28")
        assert ids[:3] == [200006, 17360, 200008] and ids[-2:] == [200006, 173781]
        got = m.logits(ids)
    ref = model_logits(hf, ids)
    assert rel_l2(got, ref) < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_greedy_chat_matches_transformers_tokens(converted) -> None:
    import torch

    import edgemoe

    hf, _, path = converted
    with edgemoe.load(path) as m:
        res = m.chat([{"role": "user", "content": "Hi"}], max_tokens=12, temperature=0)
        from edgemoe.harmony import encode_chat

        prompt = encode_chat(
            m.tokenizer, [{"role": "user", "content": "Hi"}], reasoning_effort="low"
        )
    with torch.inference_mode():
        out = hf.generate(
            torch.tensor([prompt]),
            max_new_tokens=len(res.tokens),
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    assert out[0, len(prompt) :].tolist() == res.tokens


def test_run_streams_and_reports(converted) -> None:
    p = cli("run", str(converted[2]), "-p", "Hello there", "-n", "6", "--temp", "0")
    assert p.returncode == 0, p.stderr
    assert "generation: " in p.stderr and "tok/s" in p.stderr


def test_verify(converted) -> None:
    p = cli("verify", str(converted[2]))
    assert p.returncode == 0 and "OK" in p.stdout


def test_random_tokens_round_trip(converted) -> None:
    import edgemoe

    with edgemoe.load(converted[2]) as m:
        rng = np.random.default_rng(0)
        text = "".join(chr(int(c)) for c in rng.integers(32, 0x3000, 400))
        assert m.decode(m.encode(text)) == text
