"""The demo model's tokenizer: byte-level BPE trained on its corpus, with harmony's tokens.

Trained with Hugging Face ``tokenizers`` (a fast, well-kept BPE trainer; hand-writing one
would be slower and no better) on the same split rule as o200k (its regex), so tiktoken
runs it exactly: the converter reads the resulting ``tokenizer.json`` like any Hugging Face
checkpoint's and embeds it in model.bin. The BPE ranks take ids ``[0, n_ranks)``; harmony's
special tokens follow.
"""

from __future__ import annotations

from pathlib import Path

from edgemoe.tokenizer import O200K_PAT_STR

#: Harmony's special tokens, in the order they get ids after the BPE ranks.
SPECIAL_TOKENS = (
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>",
    "<|start|>", "<|end|>", "<|message|>", "<|call|>",
)


def train_tokenizer(texts: list[str], n_ranks: int, out: Path) -> Path:
    """Train ``n_ranks`` BPE ranks (256 bytes + merges) on ``texts``; write tokenizer.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(O200K_PAT_STR), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_ranks, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out
