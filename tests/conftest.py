"""Shared fixtures: small random models written straight to model.bin (no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from models import write_random_model

VOCAB = Path(__file__).resolve().parent.parent / "tools/quantize/data/o200k_base.tiktoken.gz"
HARMONY_EOS = [200002, 199999, 200012]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer random model, vocab 512, no tokenizer."""
    return write_random_model(tmp_path_factory.mktemp("tiny") / "tiny.bin", seed=1)


@pytest.fixture(scope="session")
def chat_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer random model with the real o200k_harmony tokenizer embedded (vocab 201088),
    so text, generation and harmony chat run end to end (the text is random)."""
    from edgemoe.tokenizer import spec_from_tiktoken_file

    spec = spec_from_tiktoken_file(VOCAB)
    return write_random_model(
        tmp_path_factory.mktemp("chat") / "chat.bin",
        seed=2,
        tokenizer=spec,
        vocab=201088,
        eos_token_ids=HARMONY_EOS,
    )
