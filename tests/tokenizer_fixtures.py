"""Session fixtures for the tokenizer and harmony tests (offline, built from tests/data).

A pytest plugin: tests/test_tokenizer.py and tests/test_harmony.py load it with
``pytest_plugins = ["tokenizer_fixtures"]`` (a separate module rather than
tests/conftest.py, which other parts of the project may own). Objects are also memoized
at module level, so they are built at most once per session.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import pytest
from tokenizer_helpers import VOCAB_GZ, golden_data, have, o200k_raw_bytes


@functools.cache
def _edgemoe_spec() -> Any:
    from edgemoe.tokenizer import spec_from_tiktoken_file

    return spec_from_tiktoken_file(VOCAB_GZ)


@functools.cache
def _edgemoe_enc() -> Any:
    from edgemoe.tokenizer import encoding_from_spec

    return encoding_from_spec(_edgemoe_spec())


_plain_dir: list[Path] = []


def _plain_vocab_dir(factory: pytest.TempPathFactory) -> Path:
    if not _plain_dir:
        d = factory.mktemp("o200k_plain")
        (d / "o200k_base.tiktoken").write_bytes(o200k_raw_bytes())
        _plain_dir.append(d)
    return _plain_dir[0]


_reference: dict[str, Any] = {}


def _tiktoken_reference() -> dict[str, Any]:
    """tiktoken's own o200k_harmony constructor, its loader patched to the local ranks."""
    if not _reference:
        import tiktoken
        import tiktoken_ext.openai_public as oai

        raw = o200k_raw_bytes()
        ranks = {
            base64.b64decode(tok): int(rank)
            for tok, rank in (line.split() for line in raw.splitlines() if line)
        }
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TIKTOKEN_CACHE_DIR", "")
            mp.setattr(oai, "load_tiktoken_bpe", lambda *a, **k: ranks)
            ctor = oai.o200k_harmony()
        _reference["ctor"] = ctor
        _reference["enc"] = tiktoken.Encoding(**ctor)
    return _reference


@pytest.fixture(scope="session")
def o200k_spec() -> Any:
    """edgemoe's TokenizerSpec read from tools/quantize/data/o200k_base.tiktoken.gz."""
    return _edgemoe_spec()


@pytest.fixture(scope="session")
def o200k_enc() -> Any:
    """edgemoe's tiktoken Encoding (o200k_harmony) built from the spec."""
    return _edgemoe_enc()


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The golden harmony/tiktoken data."""
    return golden_data()


@pytest.fixture(scope="session")
def plain_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir holding the uncompressed ``o200k_base.tiktoken``."""
    return _plain_vocab_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def tiktoken_ctor() -> dict[str, Any]:
    """tiktoken's o200k_harmony constructor dict (name, pat_str, ranks, special_tokens)."""
    return _tiktoken_reference()["ctor"]


@pytest.fixture(scope="session")
def tiktoken_ref_enc() -> Any:
    """tiktoken's own o200k_harmony Encoding, built offline."""
    return _tiktoken_reference()["enc"]


_harmony: list[Any] = []


@pytest.fixture(scope="session")
def harmony_enc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """openai-harmony's HARMONY_GPT_OSS encoding, loaded offline (skips if not installed)."""
    if not have("openai_harmony"):
        pytest.skip("openai-harmony is not installed (test oracle; pip install -e '.[test]')")
    if not _harmony:
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        vocab_dir = _plain_vocab_dir(tmp_path_factory)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TIKTOKEN_ENCODINGS_BASE", str(vocab_dir))
            mp.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path_factory.mktemp("rs_cache")))
            _harmony.append(load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS))
    return _harmony[0]


_hf_dir: list[Path] = []


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir with a ``tokenizer.json`` made by transformers' TikTokenConverter from the
    local vocab (about 3 s, 28 MB). Special tokens are passed sorted by id without the
    ``<|endofprompt|>`` alias, so the converter assigns the right ids."""
    if not (have("transformers") and have("tokenizers")):
        pytest.skip("transformers/tokenizers are not installed (pip install -e '.[test]')")
    if not _hf_dir:
        from transformers.convert_slow_tokenizer import TikTokenConverter

        ctor = _tiktoken_reference()["ctor"]
        specials = {
            name: token_id
            for name, token_id in sorted(ctor["special_tokens"].items(), key=lambda kv: kv[1])
            if name != "<|endofprompt|>"
        }
        vocab = _plain_vocab_dir(tmp_path_factory) / "o200k_base.tiktoken"
        out = tmp_path_factory.mktemp("hf_tokenizer")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TIKTOKEN_CACHE_DIR", "")
            tok = TikTokenConverter(
                vocab_file=str(vocab), pattern=ctor["pat_str"], extra_special_tokens=specials
            ).converted()
        tok.save(str(out / "tokenizer.json"))
        _hf_dir.append(out)
    return _hf_dir[0]
