"""Data and helpers shared by the tokenizer and harmony tests (no fixtures here)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import random
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
VOCAB_GZ = DATA.parent.parent / "tools" / "quantize" / "data" / "o200k_base.tiktoken.gz"
GOLDEN_JSON = DATA / "harmony_golden.json"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def have(module: str) -> bool:
    """Whether ``module`` can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[module] is None
        return False


@functools.cache
def o200k_raw_bytes() -> bytes:
    """The uncompressed o200k_base.tiktoken, hash-checked."""
    raw = gzip.decompress(VOCAB_GZ.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == O200K_SHA256
    return raw


@functools.cache
def golden_data() -> dict[str, Any]:
    """tests/data/harmony_golden.json."""
    return json.loads(GOLDEN_JSON.read_text(encoding="utf-8"))


def mixed_text(seed: int, n_snippets: int = 600, specials: bool = True) -> str:
    """A random mixed-script text (Latin, accents, CJK, Cyrillic, Arabic, emoji, digits,
    code, tabs/CR/LF), with harmony special tokens sprinkled in when ``specials``."""
    rng = random.Random(seed)
    pieces = [
        "Hello", " world", "héllo", " naïve", "Ünïcödé", "世界", "你好吗", "日本語のテキスト",
        "Привет", " мир", "مرحبا", "שלום", "🦜", "👩‍💻", "🇯🇵", "12345", " 3.14159", "0x1F",
        "def f(x):\n\treturn x", "  ", "\n\n", "\r\n", "\t", "'s", "'LL", " DON'T", "{\"a\":1}",
        "ﬁ", "e\u0301", "\u200b", "...", "—", " ", "\u00a0", "Ελληνικά", "हिन्दी", "ไทย",
    ]
    if specials:
        pieces += ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>",
                   "<|constrain|>", "<|call|>", "<|endoftext|>", "<|reserved_200100|>",
                   "<|endofprompt|>"]
    return "".join(rng.choice(pieces) for _ in range(n_snippets))
