"""The demo model's training tools (tools/train_demo): the tokenizer trainer's output is read
by the converter and runs the same under tiktoken, and quantization-aware training's MXFP4
rounding is exactly what the converter then stores (so converting loses nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "train_demo"))

TEXT = ("Return a new list containing all items from the iterable in ascending order.\n"
        "The json module can serialize Python objects: dumps() returns a str.\n") * 40


def test_tokenizer_roundtrip(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    from bpe import SPECIAL_TOKENS, train_tokenizer
    from tokenizers import Tokenizer

    from edgemoe.harmony_parser import HarmonyTokens
    from edgemoe.tokenizer import encoding_from_spec, spec_from_hf_dir

    train_tokenizer([TEXT], 300, tmp_path / "tokenizer.json")
    spec = spec_from_hf_dir(tmp_path)
    assert spec is not None and len(spec.ranks) == 300
    assert spec.special_tokens == {name: 300 + i for i, name in enumerate(SPECIAL_TOKENS)}
    enc = encoding_from_spec(spec)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    sample = "Return the sorted list of json.dumps() results, ascending. É ✓"
    assert enc.encode(sample) == hf.encode(sample).ids
    assert enc.decode(enc.encode(sample)) == sample
    assert HarmonyTokens.of(enc).return_ == 302


def test_qat_rounding_is_what_the_converter_stores() -> None:
    torch = pytest.importorskip("torch")
    from train import mxfp4_rounded

    from edgemoe.quant import bf16_to_f32, dequantize_mxfp4, quantize_mxfp4, to_bf16

    g = torch.Generator().manual_seed(0)
    w = torch.randn((3, 64, 96), generator=g) * 0.05           # HF layout [E, in, out]
    q = mxfp4_rounded(w)
    assert q.shape == w.shape and not torch.equal(q, w)
    assert torch.equal(mxfp4_rounded(q), q)               # already on the grid
    saved = q.to(torch.bfloat16).float()                        # saved in bfloat16: exact
    assert torch.equal(saved, q)
    # the converter: bf16 → f32, transpose to [out, in], quantize along in
    x = bf16_to_f32(to_bf16(saved.numpy())).transpose(0, 2, 1).copy()
    stored = dequantize_mxfp4(quantize_mxfp4(x), x.shape)
    np.testing.assert_array_equal(stored, x)
