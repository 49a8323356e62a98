"""edgemoe.tokenizer: o200k_harmony specs, readers and tiktoken construction, offline."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from tokenizer_helpers import O200K_SHA256, VOCAB_GZ, mixed_text, o200k_raw_bytes

from edgemoe.errors import TokenizerError
from edgemoe.tokenizer import (
    O200K_BASE_SHA256,
    O200K_PAT_STR,
    TokenizerSpec,
    encoding_from_model_header,
    encoding_from_spec,
    o200k_harmony_special_tokens,
    parse_ranks_blob,
    spec_from_hf_dir,
    spec_from_tiktoken_file,
)

pytest_plugins = ["tokenizer_fixtures"]

# --------------------------------------------------------------------------------------
# The o200k_harmony table and pattern equal tiktoken's
# --------------------------------------------------------------------------------------


def test_special_tokens_equal_tiktoken(tiktoken_ctor: dict[str, Any]) -> None:
    ours = o200k_harmony_special_tokens()
    assert ours == tiktoken_ctor["special_tokens"]
    assert list(ours) == list(tiktoken_ctor["special_tokens"])  # same insertion order
    assert len(ours) == 1091
    assert set(ours.values()) == set(range(199998, 201088))
    assert ours["<|endofprompt|>"] == ours["<|reserved_200018|>"] == 200018
    assert ours["<|start|>"] == 200006 and ours["<|call|>"] == 200012


def test_pattern_equals_tiktoken(tiktoken_ctor: dict[str, Any]) -> None:
    assert O200K_PAT_STR == tiktoken_ctor["pat_str"]
    assert tiktoken_ctor["name"] == "o200k_harmony"


# --------------------------------------------------------------------------------------
# Reading .tiktoken files
# --------------------------------------------------------------------------------------


def test_spec_from_tiktoken_file_gz(o200k_spec: TokenizerSpec) -> None:
    spec = o200k_spec
    assert spec.name == "o200k_harmony"
    assert len(spec.ranks) == 199_998
    assert spec.n_vocab == 201_088
    assert spec.pat_str == O200K_PAT_STR
    assert spec.special_tokens == o200k_harmony_special_tokens()
    blob = spec.ranks_blob()
    assert blob == o200k_raw_bytes()  # byte-identical to the .tiktoken file
    assert spec.ranks_sha256() == O200K_BASE_SHA256 == O200K_SHA256
    spec.validate()


def test_spec_from_plain_file_equals_gz(plain_vocab_dir: Path, o200k_spec: TokenizerSpec) -> None:
    spec = spec_from_tiktoken_file(plain_vocab_dir / "o200k_base.tiktoken", name="custom")
    assert spec.name == "custom"
    assert spec.ranks == o200k_spec.ranks


def test_header_object(o200k_spec: TokenizerSpec) -> None:
    header = o200k_spec.header()
    assert header == {
        "kind": "tiktoken-bpe",
        "name": "o200k_harmony",
        "pat_str": O200K_PAT_STR,
        "special_tokens": o200k_harmony_special_tokens(),
        "n_vocab": 201088,
        "ranks_tensor": "tokenizer.ranks",
    }
    assert json.loads(json.dumps(header)) == header


def test_model_header_round_trip(o200k_spec: TokenizerSpec, tiktoken_ref_enc: Any) -> None:
    header = json.loads(json.dumps(o200k_spec.header()))
    enc = encoding_from_model_header(header, memoryview(o200k_spec.ranks_blob()))
    text = mixed_text(3, 300)
    assert enc.encode(text, allowed_special="all") == tiktoken_ref_enc.encode(
        text, allowed_special="all"
    )
    assert enc.n_vocab == 201088 and enc.eot_token == 199999


def test_never_uses_tiktoken_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tiktoken.load

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tiktoken's cached loader must not be used")

    monkeypatch.setattr(tiktoken.load, "read_file_cached", boom)
    monkeypatch.setattr(tiktoken.load, "load_tiktoken_bpe", boom)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    enc = encoding_from_spec(spec_from_tiktoken_file(VOCAB_GZ))
    assert enc.encode("Hello, world!") == [13225, 11, 2375, 0]
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------
# Token ids equal tiktoken's o200k_harmony
# --------------------------------------------------------------------------------------


def test_golden_samples(o200k_enc: Any, golden: dict[str, Any]) -> None:
    for sample in golden["tiktoken_samples"]:
        assert o200k_enc.encode(sample["text"], allowed_special="all") == sample["ids"]
        assert o200k_enc.decode(sample["ids"]) == sample["text"]
    assert o200k_enc.encode_ordinary("<|end|>") == [27, 91, 419, 91, 29]
    words = {"system": [17360], "developer": [77944], "user": [1428], "assistant": [173781],
             "analysis": [35644], "commentary": [12606, 815], "final": [17196], "json": [4108]}
    for word, ids in words.items():
        assert o200k_enc.encode_ordinary(word) == ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mixed_text_equals_tiktoken(
    o200k_enc: Any, tiktoken_ref_enc: Any, seed: int
) -> None:
    text = mixed_text(seed)
    ours = o200k_enc.encode(text, allowed_special="all")
    assert ours == tiktoken_ref_enc.encode(text, allowed_special="all")
    assert any(t >= 199998 for t in ours)
    assert o200k_enc.encode_ordinary(text) == tiktoken_ref_enc.encode_ordinary(text)
    assert o200k_enc.decode(ours) == tiktoken_ref_enc.decode(ours)


def test_alias_200018(o200k_enc: Any, tiktoken_ref_enc: Any) -> None:
    text = "<|endofprompt|><|reserved_200018|>"
    assert o200k_enc.encode(text, allowed_special="all") == [200018, 200018]
    assert o200k_enc.decode([200018]) == tiktoken_ref_enc.decode([200018])
    assert o200k_enc.max_token_value == 201087


# --------------------------------------------------------------------------------------
# Validation and malformed input
# --------------------------------------------------------------------------------------


def _tiny_ranks() -> dict[bytes, int]:
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    return ranks


def test_validate_accepts_tiny() -> None:
    TokenizerSpec("tiny", r"\s+|\S+", _tiny_ranks(), {"<|x|>": 257}, 258).validate()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.ranks.__setitem__(b"cd", 256), "share a rank"),
        (lambda s: s.special_tokens.__setitem__("<|y|>", 5), "collides"),
        (lambda s: setattr(s, "n_vocab", 300), "n_vocab"),
        (lambda s: s.ranks.__setitem__(b"", 400), "empty token"),
        (lambda s: setattr(s, "pat_str", ""), "pattern"),
    ],
)
def test_validate_rejects(mutate: Any, message: str) -> None:
    spec = TokenizerSpec("tiny", r"\s+|\S+", _tiny_ranks(), {"<|x|>": 257}, 258)
    mutate(spec)
    with pytest.raises(TokenizerError, match=message):
        spec.validate()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"IQ== 0\nIg==\n", "line 2"),
        (b"IQ== 0\n!!!! 1\n", "line 2"),
        (b"IQ== 0\nIQ== 1\n", "repeated"),
        (b"IQ== 0\nIg== 0\n", "share a rank"),
        (b"IQ== x\n", "line 1"),
    ],
)
def test_parse_ranks_blob_rejects(blob: bytes, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        parse_ranks_blob(blob)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="cannot read"):
        spec_from_tiktoken_file(tmp_path / "missing.tiktoken")
    bad_gz = tmp_path / "bad.tiktoken.gz"
    bad_gz.write_bytes(gzip.compress(b"IQ== 0\n")[:-6])
    with pytest.raises(TokenizerError, match="bad.tiktoken.gz"):
        spec_from_tiktoken_file(bad_gz)
    clash = tmp_path / "clash.tiktoken"  # a rank at a harmony special id
    clash.write_bytes(b"IQ== 0\nIg== 200006\n")
    with pytest.raises(TokenizerError, match="collides"):
        spec_from_tiktoken_file(clash)


def test_model_header_errors(o200k_spec: TokenizerSpec) -> None:
    header = o200k_spec.header()
    blob = o200k_spec.ranks_blob()
    with pytest.raises(TokenizerError, match="kind"):
        encoding_from_model_header({**header, "kind": "sentencepiece"}, blob)
    with pytest.raises(TokenizerError, match="n_vocab"):
        encoding_from_model_header({**header, "n_vocab": 5}, blob)
    with pytest.raises(TokenizerError, match="n_vocab"):
        encoding_from_model_header({**header, "n_vocab": "201088"}, blob)
    with pytest.raises(TokenizerError, match="line"):
        encoding_from_model_header(header, b"not base64 at all\n")


def test_bad_pattern_is_tokenizer_error() -> None:
    spec = TokenizerSpec("tiny", "(unclosed", _tiny_ranks(), {}, 257)
    with pytest.raises(TokenizerError, match="tiktoken rejected"):
        encoding_from_spec(spec)


# --------------------------------------------------------------------------------------
# Hugging Face directories
# --------------------------------------------------------------------------------------


def test_hf_dir_without_tokenizer(tmp_path: Path) -> None:
    assert spec_from_hf_dir(tmp_path) is None


def test_hf_dir_with_tiktoken_file(tmp_path: Path, o200k_spec: TokenizerSpec) -> None:
    (tmp_path / "tokenizer.tiktoken").write_bytes(o200k_raw_bytes())
    spec = spec_from_hf_dir(tmp_path)
    assert spec is not None and spec.ranks == o200k_spec.ranks
    assert spec.name == "o200k_harmony"


def _byte_level(token: bytes) -> str:
    from edgemoe.tokenizer import _bytes_to_unicode

    table = _bytes_to_unicode()
    return "".join(table[b] for b in token)


def _tiny_tokenizer_json(merges: list[list[str]] | None = None) -> dict[str, Any]:
    """A small byte-level BPE tokenizer.json: 256 bytes, then 'ab' (256), 'abc' (257)."""
    vocab = {_byte_level(bytes([b])): b for b in range(256)}
    vocab["ab"] = 256
    vocab["abc"] = 257
    return {
        "version": "1.0",
        "added_tokens": [{"id": 258, "content": "<|eot|>", "special": True}],
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": r"\s+|\S+"}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        },
        "model": {"type": "BPE", "vocab": vocab,
                  "merges": merges if merges is not None else [["a", "b"], ["ab", "c"]]},
    }


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")
    return tmp_path


def test_hf_tiny_tokenizer(tmp_path: Path) -> None:
    spec = spec_from_hf_dir(_write(tmp_path, _tiny_tokenizer_json()))
    assert spec is not None
    assert spec.name == "hf-bpe"
    assert spec.pat_str == r"\s+|\S+"
    assert spec.ranks[b"abc"] == 257 and spec.ranks[b"\n"] == 10
    assert spec.special_tokens == {"<|eot|>": 258}
    assert spec.n_vocab == 259
    enc = encoding_from_spec(spec)
    assert enc.encode("abc ab<|eot|>", allowed_special="all") == [257, 32, 256, 258]


def test_hf_string_merges_accepted(tmp_path: Path) -> None:
    doc = _tiny_tokenizer_json()
    doc["model"]["merges"] = ["a b", "ab c"]
    assert spec_from_hf_dir(_write(tmp_path, doc)) is not None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["model"].__setitem__("merges", [["ab", "c"], ["a", "b"]]), "rank order"),
        (lambda d: d["model"].__setitem__("merges", [["a", "b"], ["a", "bc"]]), "not in the vocab"),
        (lambda d: (d["model"]["vocab"].update({"abc": 299, "ab": 300}),
                    d["model"].__setitem__("merges", [["ab", "c"], ["a", "b"]])),
         "'abc' .*no merge"),
        (lambda d: d["model"].__setitem__("merges", [["a", "b"]]), "'abc' .*no merge"),
        (lambda d: d["model"]["vocab"].pop("Ā"), "single bytes"),
        (lambda d: d["model"]["vocab"].__setitem__("\u4e16", 400), "byte-level"),
        (lambda d: d.__setitem__("pre_tokenizer", None), "no Split regex"),
        (lambda d: d["model"].__setitem__("merges", [["a", "b", "c"]]), "not a pair"),
        (lambda d: d["model"].__setitem__("type", "Unigram"), "not BPE"),
        (lambda d: d["added_tokens"].append({"id": 65, "content": "<|x|>"}), "collides"),
    ],
)
def test_hf_rejects(tmp_path: Path, edit: Any, message: str) -> None:
    doc = _tiny_tokenizer_json()
    edit(doc)
    _write(tmp_path, doc)
    with pytest.raises(TokenizerError, match=message) as info:
        spec_from_hf_dir(tmp_path)
    assert "tokenizer.json" in str(info.value)


def test_hf_not_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        spec_from_hf_dir(tmp_path)


# The real-size file made by transformers' TikTokenConverter (session fixture, ~3 s).

_doc_cache: dict[str, Any] = {}


def _converter_spec(hf_dir: Path) -> TokenizerSpec:
    if "spec" not in _doc_cache:
        spec = spec_from_hf_dir(hf_dir)
        assert spec is not None
        _doc_cache["spec"] = spec
    return _doc_cache["spec"]


def _converter_doc(hf_dir: Path) -> dict[str, Any]:
    if "doc" not in _doc_cache:
        _doc_cache["doc"] = json.loads((hf_dir / "tokenizer.json").read_bytes())
    return _doc_cache["doc"]


def test_hf_converter_file_equals_tiktoken(
    hf_tokenizer_dir: Path, o200k_spec: TokenizerSpec
) -> None:
    spec = _converter_spec(hf_tokenizer_dir)
    assert spec.name == "o200k_harmony"
    assert spec.pat_str == O200K_PAT_STR
    assert spec.ranks == o200k_spec.ranks
    assert spec.special_tokens == o200k_harmony_special_tokens()  # alias added back
    assert spec.n_vocab == 201088
    assert spec.ranks_sha256() == O200K_SHA256
    assert spec.header() == o200k_spec.header()


def test_hf_round_trip_with_tokenizers(
    hf_tokenizer_dir: Path, o200k_enc: Any, tiktoken_ref_enc: Any
) -> None:
    from tokenizers import Tokenizer

    enc = encoding_from_spec(_converter_spec(hf_tokenizer_dir))
    hf = Tokenizer.from_file(str(hf_tokenizer_dir / "tokenizer.json"))
    # the file has no <|endofprompt|> (the alias of 200018), so HF reads that as text
    text = mixed_text(11, 400).replace("<|endofprompt|>", "")
    ids = enc.encode(text, allowed_special="all")
    assert ids == tiktoken_ref_enc.encode(text, allowed_special="all")
    assert ids == hf.encode(text, add_special_tokens=False).ids
    assert enc.decode(ids) == text


def test_hf_swapped_merges_rejected(hf_tokenizer_dir: Path, tmp_path: Path) -> None:
    doc = _converter_doc(hf_tokenizer_dir)
    merges = doc["model"]["merges"]
    merges[10], merges[5000] = merges[5000], merges[10]
    try:
        _write(tmp_path, doc)
    finally:
        merges[10], merges[5000] = merges[5000], merges[10]
    with pytest.raises(TokenizerError, match="merges are not in rank order") as info:
        spec_from_hf_dir(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(info.value)


def test_hf_missing_pattern_falls_back_to_o200k(hf_tokenizer_dir: Path, tmp_path: Path) -> None:
    doc = _converter_doc(hf_tokenizer_dir)
    saved = doc["pre_tokenizer"]
    doc["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    try:
        _write(tmp_path, doc)
    finally:
        doc["pre_tokenizer"] = saved
    spec = spec_from_hf_dir(tmp_path)
    assert spec is not None
    assert spec.pat_str == O200K_PAT_STR and spec.name == "o200k_harmony"


def test_hf_modified_o200k_rejected(hf_tokenizer_dir: Path, tmp_path: Path) -> None:
    doc = _converter_doc(hf_tokenizer_dir)
    vocab = doc["model"]["vocab"]
    # swap the ids of two top-ranked tokens that no merge uses as a part: merges stay valid
    a, b = sorted(vocab, key=vocab.__getitem__)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    merges = doc["model"]["merges"]
    saved = list(merges)
    merges.sort(key=lambda m: vocab[m[0] + m[1]])
    try:
        _write(tmp_path, doc)
    finally:
        vocab[a], vocab[b] = vocab[b], vocab[a]
        merges[:] = saved
    with pytest.raises(TokenizerError, match="differ from o200k_base"):
        spec_from_hf_dir(tmp_path)
