"""Write a tiktoken tokenizer as Hugging Face tokenizer files (the reverse of tokenizer_source).

``tokenizer_json`` turns a :class:`edgemoe.tokenizer.TokenizerSpec` into the byte-level BPE
``tokenizer.json`` that transformers' ``TikTokenConverter`` makes from the same ranks (same
vocab, same merges in the same order, same pre-tokenizer, special tokens as added tokens),
without needing transformers. ``harmony_tokenizer_files`` adds gpt-oss's
tokenizer_config.json, special_tokens_map.json and a short harmony chat template, so
``AutoTokenizer.from_pretrained`` (and llama.cpp's convert_hf_to_gguf.py, which uses it)
accept the directory.
"""

from __future__ import annotations

import json
from typing import Any

from edgemoe.tokenizer import TokenizerSpec, _bytes_to_unicode

#: gpt-oss's bos / eos / pad tokens (tokenizer_config.json of openai/gpt-oss-20b).
HARMONY_BOS, HARMONY_EOS, HARMONY_PAD = "<|startoftext|>", "<|return|>", "<|endoftext|>"

#: A short harmony template: messages as ``<|start|>ROLE<|message|>TEXT<|end|>``, assistant
#: turns on the final channel. Not OpenAI's full template (no system preamble, tools or
#: reasoning); enough to render a chat for a synthetic model.
HARMONY_CHAT_TEMPLATE = """\
{#- Short harmony chat template (edgemoe synthetic checkpoint, not OpenAI's full one) -#}
{%- for message in messages -%}
{%- if message['role'] == 'assistant' -%}
<|start|>assistant<|channel|>final<|message|>{{ message['content'] }}<|end|>
{%- else -%}
<|start|>{{ message['role'] }}<|message|>{{ message['content'] }}<|end|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}
"""

_BYTE_LEVEL = _bytes_to_unicode()
_BYTE_LEVEL_TABLE = [_BYTE_LEVEL[b] for b in range(256)]


def _byte_level(token: bytes) -> str:
    """Token bytes in GPT-2's printable byte-level alphabet (tokenizer.json vocab keys)."""
    table = _BYTE_LEVEL_TABLE
    return "".join([table[b] for b in token])


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merges of ``ranks`` as ``TikTokenConverter`` lists them: for every multi-byte
    token in rank order, each split into two tokens of the vocabulary, ordered by the
    (left, right) ranks."""
    merges: list[tuple[bytes, bytes]] = []
    for token, _ in sorted(ranks.items(), key=lambda kv: kv[1]):
        local = [
            (ranks[token[:i]], ranks[token[i:]], token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        local.sort(key=lambda m: (m[0], m[1]))
        merges += [(left, right) for _, _, left, right in local]
    return merges


def added_tokens(spec: TokenizerSpec) -> list[dict[str, Any]]:
    """``added_tokens`` entries: one per special id, sorted by id. An id with several names
    gets the last one in the spec's table (for o200k_harmony, 200018 is
    ``<|reserved_200018|>``, as openai-harmony names it, not ``<|endofprompt|>``)."""
    names = {token_id: name for name, token_id in spec.special_tokens.items()}
    return [
        {"id": token_id, "content": names[token_id], "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for token_id in sorted(names)
    ]


def _byte_level_step(add_prefix_space: bool, trim_offsets: bool, use_regex: bool
                     ) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space,
            "trim_offsets": trim_offsets, "use_regex": use_regex}


def tokenizer_json(spec: TokenizerSpec) -> dict[str, Any]:
    """The tokenizer.json document of ``spec`` (byte-level BPE, ``ignore_merges`` on so a
    whole pre-token in the vocab is one token, exactly as tiktoken does)."""
    ranks = sorted(spec.ranks.items(), key=lambda kv: kv[1])
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(spec),
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": spec.pat_str}, "behavior": "Isolated",
             "invert": False},
            _byte_level_step(False, True, False),
        ]},
        "post_processor": _byte_level_step(True, False, True),
        "decoder": _byte_level_step(True, True, True),
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {_byte_level(token): rank for token, rank in ranks},
            "merges": [[_byte_level(a), _byte_level(b)] for a, b in bpe_merges(spec.ranks)],
        },
    }


def _tokenizer_config(spec: TokenizerSpec) -> dict[str, Any]:
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                          "single_word", "special")}
        for t in added_tokens(spec)
    }
    return {
        "added_tokens_decoder": decoder,
        "bos_token": HARMONY_BOS,
        "clean_up_tokenization_spaces": False,
        "eos_token": HARMONY_EOS,
        "extra_special_tokens": {},
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": HARMONY_PAD,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def harmony_tokenizer_files(spec: TokenizerSpec) -> dict[str, bytes]:
    """File name -> contents of gpt-oss's tokenizer files for an o200k_harmony ``spec``:
    tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja."""
    for name in (HARMONY_BOS, HARMONY_EOS, HARMONY_PAD):
        if name not in spec.special_tokens:
            raise ValueError(f"tokenizer {spec.name!r} has no special token {name}")
    return {
        "tokenizer.json": _dumps(tokenizer_json(spec)),
        "tokenizer_config.json": _dumps(_tokenizer_config(spec)),
        "special_tokens_map.json": _dumps(
            {"bos_token": HARMONY_BOS, "eos_token": HARMONY_EOS, "pad_token": HARMONY_PAD}),
        "chat_template.jinja": HARMONY_CHAT_TEMPLATE.encode("utf-8"),
    }
