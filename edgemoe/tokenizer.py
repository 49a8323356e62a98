"""Tokenizer specs for model.bin: the o200k_harmony table, readers and tiktoken construction.

A :class:`TokenizerSpec` is everything a byte-level BPE tokenizer needs: the split pattern,
the mergeable ranks (token bytes -> id), the special tokens (name -> id) and the vocabulary
size. The converter builds one from a ``.tiktoken`` file (:func:`spec_from_tiktoken_file`)
or from a Hugging Face ``tokenizer.json`` (:func:`spec_from_hf_dir`) and stores it in
model.bin as the ``tokenizer`` header object plus the ``tokenizer.ranks`` blob (see
docs/FORMAT.md). At run time :func:`encoding_from_model_header` turns those back into a
``tiktoken.Encoding``.

Nothing here touches the network or tiktoken's download cache: the ranks are parsed by this
module and handed to ``tiktoken.Encoding`` directly.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemoe.errors import TokenizerError

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ENDOFPROMPT_ALIAS",
    "O200K_BASE_N_RANKS",
    "O200K_BASE_SHA256",
    "O200K_HARMONY_N_VOCAB",
    "O200K_PAT_STR",
    "TOKENIZER_KIND",
    "TokenizerSpec",
    "encoding_from_model_header",
    "encoding_from_spec",
    "o200k_harmony_special_tokens",
    "parse_ranks_blob",
    "spec_from_hf_dir",
    "spec_from_tiktoken_file",
]

TOKENIZER_KIND = "tiktoken-bpe"
RANKS_TENSOR = "tokenizer.ranks"

#: sha256 of the o200k_base ranks in tiktoken text format (the uncompressed
#: ``o200k_base.tiktoken`` file, equal to :meth:`TokenizerSpec.ranks_blob` for those ranks).
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_BASE_N_RANKS = 199_998
O200K_HARMONY_N_VOCAB = 201_088

#: The second name of id 200018: o200k_base's ``<|endofprompt|>``, which o200k_harmony
#: keeps next to ``<|reserved_200018|>``.
ENDOFPROMPT_ALIAS = "<|endofprompt|>"

#: The o200k split pattern (seven alternatives joined by ``|``), as tiktoken uses it for
#: o200k_base and o200k_harmony.
O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# Named harmony tokens between 199998 and 200012; every other id in 200000..201087 is
# ``<|reserved_ID|>``.
_HARMONY_NAMED = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200012: "<|call|>",
}


def o200k_harmony_special_tokens() -> dict[str, int]:
    """The o200k_harmony special-token table: 1091 names over ids 199998..201087.

    Ids 199998..200012 carry the harmony names (``<|start|>``, ``<|channel|>``, ...) or
    ``<|reserved_ID|>``; ids 200013..201087 are ``<|reserved_ID|>``. Id 200018 has a second
    name, ``<|endofprompt|>`` (inherited from o200k_base), so 1091 names map to 1090 ids.
    The dict's insertion order is tiktoken's (o200k_base's two tokens first), so an
    Encoding built from it behaves exactly like tiktoken's own, including which name
    ``decode`` picks for the aliased id.
    """
    table: dict[str, int] = {"<|endoftext|>": 199999, ENDOFPROMPT_ALIAS: 200018}
    for token_id in range(199998, O200K_HARMONY_N_VOCAB):
        table[_HARMONY_NAMED.get(token_id, f"<|reserved_{token_id}|>")] = token_id
    return table


@dataclass
class TokenizerSpec:
    """A byte-level BPE tokenizer as tiktoken runs it.

    Attributes:
        name: encoding name (``o200k_harmony`` for gpt-oss).
        pat_str: the regex that splits text into pieces before BPE.
        ranks: mergeable token bytes -> rank (= token id); lower ranks merge first.
        special_tokens: special-token name -> id (several names may share an id).
        n_vocab: number of ids the tokenizer can produce (max id + 1).
    """

    name: str
    pat_str: str
    ranks: dict[bytes, int] = field(repr=False)
    special_tokens: dict[str, int] = field(repr=False)
    n_vocab: int

    def ranks_blob(self) -> bytes:
        """The ranks in tiktoken text format: ``base64(token) SP rank LF``, sorted by rank."""
        b2a = binascii.b2a_base64
        items = sorted(self.ranks.items(), key=lambda kv: kv[1])
        return b"".join(b2a(tok, newline=False) + b" %d\n" % rank for tok, rank in items)

    def ranks_sha256(self) -> str:
        """Hex sha256 of :meth:`ranks_blob` (equals the .tiktoken file's hash)."""
        return hashlib.sha256(self.ranks_blob()).hexdigest()

    def header(self) -> dict[str, Any]:
        """The model.bin ``tokenizer`` header object (docs/FORMAT.md)."""
        return {
            "kind": TOKENIZER_KIND,
            "name": self.name,
            "pat_str": self.pat_str,
            "special_tokens": dict(self.special_tokens),
            "n_vocab": self.n_vocab,
            "ranks_tensor": RANKS_TENSOR,
        }

    def validate(self) -> None:
        """Check internal consistency.

        Raises:
            TokenizerError: empty ranks or pattern, an empty token, a negative or repeated
                rank, a special id that is also a rank, or ``n_vocab`` other than max id + 1.
        """
        if not self.pat_str:
            raise TokenizerError(f"tokenizer {self.name!r}: empty split pattern")
        if not self.ranks:
            raise TokenizerError(f"tokenizer {self.name!r}: no mergeable ranks")
        if b"" in self.ranks:
            raise TokenizerError(f"tokenizer {self.name!r}: empty token in the ranks")
        rank_values = set(self.ranks.values())
        if len(rank_values) != len(self.ranks):
            raise TokenizerError(f"tokenizer {self.name!r}: two tokens share a rank")
        if min(rank_values) < 0:
            raise TokenizerError(f"tokenizer {self.name!r}: negative rank")
        for name, token_id in self.special_tokens.items():
            if type(token_id) is not int or token_id < 0:
                raise TokenizerError(
                    f"tokenizer {self.name!r}: special token {name!r} has invalid id {token_id!r}"
                )
            if token_id in rank_values:
                raise TokenizerError(
                    f"tokenizer {self.name!r}: special token {name!r} id {token_id} "
                    "collides with a BPE rank"
                )
        max_id = max(max(rank_values), max(self.special_tokens.values(), default=-1))
        if self.n_vocab != max_id + 1:
            raise TokenizerError(
                f"tokenizer {self.name!r}: n_vocab {self.n_vocab} != max id + 1 ({max_id + 1})"
            )


# --------------------------------------------------------------------------------------
# tiktoken text format
# --------------------------------------------------------------------------------------

if sys.version_info >= (3, 11):

    def _b64decode(data: bytes) -> bytes:
        return binascii.a2b_base64(data, strict_mode=True)

else:  # pragma: no cover - Python 3.10

    def _b64decode(data: bytes) -> bytes:
        return base64.b64decode(data, validate=True)


def parse_ranks_blob(
    data: bytes | bytearray | memoryview, source: str = "ranks"
) -> dict[bytes, int]:
    """Parse tiktoken text format (``base64(token) SP rank`` per line) into bytes -> rank.

    Blank lines are skipped. ``source`` names the origin in error messages.

    Raises:
        TokenizerError: a malformed line, invalid base64, a repeated token or rank.
    """
    raw = bytes(data)
    ranks: dict[bytes, int] = {}
    lineno = 0
    try:
        for lineno, line in enumerate(raw.splitlines(), 1):
            if not line:
                continue
            token_b64, rank_text = line.split(b" ")
            token = _b64decode(token_b64)
            if token in ranks:
                raise TokenizerError(f"{source}: line {lineno}: token repeated")
            ranks[token] = int(rank_text)
    except TokenizerError:
        raise
    except (ValueError, binascii.Error) as exc:
        raise TokenizerError(f"{source}: line {lineno}: malformed rank line ({exc})") from None
    if len(set(ranks.values())) != len(ranks):
        raise TokenizerError(f"{source}: two tokens share a rank")
    return ranks


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise TokenizerError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def spec_from_tiktoken_file(path: str | Path, name: str = "o200k_harmony") -> TokenizerSpec:
    """Read a ``.tiktoken`` (or gzipped ``.tiktoken.gz``) BPE file into an o200k_harmony spec.

    The file is parsed here (tiktoken's loader would go through its download cache); the
    special tokens and split pattern are o200k_harmony's. gzip is detected by its magic.

    Raises:
        TokenizerError: unreadable or malformed file, or ranks that collide with the
            harmony special ids.
    """
    path = Path(path)
    ranks = parse_ranks_blob(_read_maybe_gzip(path), source=str(path))
    specials = o200k_harmony_special_tokens()
    n_vocab = max(max(ranks.values(), default=-1), max(specials.values())) + 1
    spec = TokenizerSpec(name, O200K_PAT_STR, ranks, specials, n_vocab)
    try:
        spec.validate()
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
    return spec


# --------------------------------------------------------------------------------------
# Hugging Face tokenizer.json (byte-level BPE)
# --------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_BYTE_LEVEL_ALPHABET = frozenset(_bytes_to_unicode().values())
# byte-level character -> the latin-1 character of its byte (then .encode("latin-1"))
_TO_LATIN1 = str.maketrans({ch: chr(b) for b, ch in _bytes_to_unicode().items()})


def _byte_level_to_bytes(keys: list[str], source: str) -> list[bytes]:
    """Convert byte-level vocab keys back to the token bytes they stand for."""
    foreign = set("".join(keys)) - _BYTE_LEVEL_ALPHABET
    if foreign:
        ch = min(foreign)
        key = next(k for k in keys if ch in k)
        raise TokenizerError(
            f"{source}: vocab entry {key!r} has {ch!r}, which is not in the byte-level "
            "alphabet; only byte-level BPE tokenizers are supported"
        )
    return [key.translate(_TO_LATIN1).encode("latin-1") for key in keys]


def _find_split_pattern(node: Any) -> str | None:
    """The Regex of the first ``Split`` pre-tokenizer in a (possibly nested) pre_tokenizer."""
    if isinstance(node, dict):
        if node.get("type") == "Split":
            pattern = node.get("pattern")
            if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
                return pattern["Regex"]
        for key in ("pretokenizers", "pre_tokenizers"):
            for child in node.get(key) or []:
                found = _find_split_pattern(child)
                if found is not None:
                    return found
    return None


def _merge_pairs(merges: Any, source: str) -> list[tuple[str, str]]:
    """``model.merges`` as pairs; entries may be ``"a b"`` strings or ``["a", "b"]`` lists."""
    if not isinstance(merges, list):
        raise TokenizerError(f"{source}: model.merges is missing or not a list")
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for merge in merges:
        parts = merge.split(" ") if type(merge) is str else merge
        if type(parts) is not list or len(parts) != 2:
            break
        left, right = parts
        if type(left) is not str or type(right) is not str:
            break
        append((left, right))
    else:
        return pairs
    i = len(pairs)
    raise TokenizerError(f"{source}: model.merges[{i}] is not a pair: {merges[i]!r}")


def _check_merges(
    pairs: list[tuple[str, str]], vocab: dict[str, int], source: str
) -> None:
    """Check that HF's merge-order BPE equals tiktoken's rank-order BPE on these ranks.

    * every merge joins two vocab tokens into a vocab token;
    * merges come in non-decreasing order of their result's rank (so "lowest merge index
      first" picks the same pair as tiktoken's "lowest resulting rank first"; a token may
      have several merges, one per split);
    * every multi-byte token is made by at least one merge of two lower-ranked parts, so
      BPE can reach it.

    A merge whose part ranks above its result is allowed: o200k has such tokens (e.g.
    4 spaces, rank 257, vs 3 spaces, rank 271) and transformers' TikTokenConverter writes
    a merge for every split of a token, constructive or not. Both merge orders then still
    agree, because they depend only on the ranks of the results.
    """
    previous = -1
    reachable: set[str] = set()
    for i, (left, right) in enumerate(pairs):
        result = left + right
        try:
            r_left, r_right, r_result = vocab[left], vocab[right], vocab[result]
        except KeyError as exc:
            raise TokenizerError(
                f"{source}: merge #{i} ({left!r}, {right!r}) uses {exc.args[0]!r}, "
                "which is not in the vocab"
            ) from None
        if r_result < previous:
            raise TokenizerError(
                f"{source}: merge #{i} ({left!r}, {right!r}) makes rank {r_result} after a "
                f"merge that made rank {previous}: merges are not in rank order"
            )
        previous = r_result
        if r_left < r_result and r_right < r_result:
            reachable.add(result)
    for token, rank in vocab.items():
        if len(token) > 1 and token not in reachable:
            raise TokenizerError(
                f"{source}: token {token!r} (rank {rank}) is made by no merge of two "
                "lower-ranked tokens"
            )


def _normalize_harmony_specials(specials: dict[str, int]) -> dict[str, int] | None:
    """The full o200k_harmony table if ``specials`` is it, possibly without one alias name."""
    harmony = o200k_harmony_special_tokens()
    if set(specials.values()) != set(harmony.values()):
        return None
    if any(harmony.get(name) != token_id for name, token_id in specials.items()):
        return None
    return harmony


def spec_from_hf_dir(path: str | Path) -> TokenizerSpec | None:
    """Read the tokenizer of a Hugging Face checkpoint directory.

    Looks for ``tokenizer.json`` first (byte-level BPE: ``model.vocab`` keys in GPT-2's
    bytes-to-unicode alphabet, ``model.merges``, ``added_tokens``, a ``Split`` regex in
    the pre_tokenizer), then for ``tokenizer.tiktoken`` / ``*.tiktoken`` / ``*.tiktoken.gz``
    (read with :func:`spec_from_tiktoken_file`). Returns None when there is neither.

    From tokenizer.json: ranks are the ids of the vocab entries that are not added tokens,
    special tokens are all ``added_tokens`` (id -> content), the pattern is the Split
    regex. The merges are verified to give the same BPE as tiktoken's rank order (see
    :func:`_check_merges`). When the ranks are exactly o200k_base (sha256 of
    :meth:`TokenizerSpec.ranks_blob`), the special tokens are o200k_harmony's (the
    ``<|endofprompt|>`` alias of id 200018 may be absent: it is added back) and the pattern
    is the o200k one, the spec is named ``o200k_harmony``; otherwise ``hf-bpe`` (keeping the
    file's own pattern and special tokens). If the file has no Split regex, the o200k pattern
    is used when the ranks are o200k_base's, and it is an error otherwise. Ranks of
    o200k_base's size next to harmony's special tokens must be o200k_base exactly.

    Raises:
        TokenizerError: the file is unreadable, not byte-level BPE, or fails a check; the
            message names the file and the problem.
    """
    root = Path(path)
    tj = root / "tokenizer.json"
    if not tj.is_file():
        candidates = [root / "tokenizer.tiktoken"]
        candidates += sorted(root.glob("*.tiktoken")) + sorted(root.glob("*.tiktoken.gz"))
        for cand in candidates:
            if cand.is_file():
                return spec_from_tiktoken_file(cand)
        return None
    source = str(tj)
    try:
        doc = json.loads(tj.read_bytes())
    except OSError as exc:
        raise TokenizerError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise TokenizerError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise TokenizerError(f"{source}: top level is not an object")
    model = doc.get("model")
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
        raise TokenizerError(f"{source}: model is not BPE")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError(f"{source}: model.vocab is missing or empty")

    specials: dict[str, int] = {}
    for i, added in enumerate(doc.get("added_tokens") or []):
        content = added.get("content") if isinstance(added, dict) else None
        token_id = added.get("id") if isinstance(added, dict) else None
        if not isinstance(content, str) or not isinstance(token_id, int):
            raise TokenizerError(f"{source}: added_tokens[{i}] lacks a string content / int id")
        if content in specials and specials[content] != token_id:
            raise TokenizerError(f"{source}: added token {content!r} has two ids")
        specials[content] = token_id

    byte_vocab: dict[str, int] = {}
    for key, token_id in vocab.items():
        if type(token_id) is not int:
            raise TokenizerError(f"{source}: model.vocab[{key!r}] is not an integer id")
        if key not in specials:  # some files repeat the added tokens in the vocab
            byte_vocab[key] = token_id
    token_bytes = _byte_level_to_bytes(list(byte_vocab), source)
    ranks = dict(zip(token_bytes, byte_vocab.values(), strict=True))
    if len(ranks) != len(byte_vocab):
        raise TokenizerError(f"{source}: model.vocab has a token twice")
    missing_bytes = [b for b in range(256) if bytes([b]) not in ranks]
    if missing_bytes:
        raise TokenizerError(
            f"{source}: {len(missing_bytes)} single bytes are not in the vocab "
            f"(first: 0x{missing_bytes[0]:02x}); byte-level BPE needs all 256"
        )
    _check_merges(_merge_pairs(model.get("merges"), source), byte_vocab, source)

    blob_sha = ""
    if len(ranks) == O200K_BASE_N_RANKS:
        blob_sha = TokenizerSpec("", "", ranks, {}, 0).ranks_sha256()
    is_o200k = blob_sha == O200K_BASE_SHA256
    harmony = _normalize_harmony_specials(specials)
    if blob_sha and not is_o200k and harmony is not None:
        raise TokenizerError(
            f"{source}: o200k_harmony special tokens and o200k_base's size, but the ranks "
            f"differ from o200k_base (sha256 {blob_sha}, expected {O200K_BASE_SHA256})"
        )

    pat_str = _find_split_pattern(doc.get("pre_tokenizer"))
    if pat_str is None:
        if not is_o200k:
            raise TokenizerError(
                f"{source}: no Split regex in pre_tokenizer and the ranks are not o200k_base"
            )
        pat_str = O200K_PAT_STR

    name = "hf-bpe"
    if is_o200k and harmony is not None and pat_str == O200K_PAT_STR:
        name, specials = "o200k_harmony", harmony
    n_vocab = max(max(ranks.values()), max(specials.values(), default=-1)) + 1
    spec = TokenizerSpec(name, pat_str, ranks, specials, n_vocab)
    try:
        spec.validate()
    except TokenizerError as exc:
        raise TokenizerError(f"{source}: {exc}") from None
    return spec


# --------------------------------------------------------------------------------------
# tiktoken Encoding
# --------------------------------------------------------------------------------------


def encoding_from_spec(spec: TokenizerSpec) -> tiktoken.Encoding:
    """Build a ``tiktoken.Encoding`` from a spec, offline and without touching any cache.

    Aliased special ids (200018's two names) are passed as they are, exactly as tiktoken's
    own o200k_harmony table does: both names encode to the id.

    Raises:
        TokenizerError: tiktoken is missing or rejects the spec (e.g. a bad pattern).
    """
    try:
        import tiktoken
    except ImportError as exc:  # pragma: no cover - tiktoken is a runtime dependency
        raise TokenizerError(f"tiktoken is required for tokenization ({exc})") from None
    try:
        return tiktoken.Encoding(
            spec.name,
            pat_str=spec.pat_str,
            mergeable_ranks=spec.ranks,
            special_tokens=spec.special_tokens,
        )
    except Exception as exc:  # tiktoken raises ValueError, or a Rust panic
        raise TokenizerError(f"tokenizer {spec.name!r}: tiktoken rejected it ({exc})") from None


def spec_from_model_header(
    tok_header: dict[str, Any], ranks_blob: bytes | bytearray | memoryview
) -> TokenizerSpec:
    """Rebuild a validated :class:`TokenizerSpec` from model.bin's tokenizer object and blob.

    Raises:
        TokenizerError: unknown ``kind``, missing or mistyped fields, a malformed blob.
    """
    if not isinstance(tok_header, dict):
        raise TokenizerError("model.bin tokenizer: header is not an object")
    kind = tok_header.get("kind")
    if kind != TOKENIZER_KIND:
        raise TokenizerError(f"model.bin tokenizer: unsupported kind {kind!r}")
    name, pat_str = tok_header.get("name"), tok_header.get("pat_str")
    specials, n_vocab = tok_header.get("special_tokens"), tok_header.get("n_vocab")
    if not isinstance(name, str) or not isinstance(pat_str, str):
        raise TokenizerError("model.bin tokenizer: name and pat_str must be strings")
    if not isinstance(specials, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in specials.items()
    ):
        raise TokenizerError("model.bin tokenizer: special_tokens must map names to ints")
    if not isinstance(n_vocab, int):
        raise TokenizerError("model.bin tokenizer: n_vocab must be an integer")
    ranks = parse_ranks_blob(ranks_blob, source="model.bin tokenizer.ranks")
    spec = TokenizerSpec(name, pat_str, ranks, dict(specials), n_vocab)
    try:
        spec.validate()
    except TokenizerError as exc:
        raise TokenizerError(f"model.bin tokenizer: {exc}") from None
    return spec


def encoding_from_model_header(
    tok_header: dict[str, Any], ranks_blob: bytes | bytearray | memoryview
) -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` stored in a model.bin (tokenizer object + ranks blob).

    Raises:
        TokenizerError: the header or blob is invalid, or tiktoken rejects it.
    """
    return encoding_from_spec(spec_from_model_header(tok_header, ranks_blob))
