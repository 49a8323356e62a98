"""``edgemoe quality``: what a quantization costs, measured the way llama.cpp's
``llama-perplexity --kl-divergence`` measures it (docs/QUALITY.md).

Two models, A (the base, e.g. transformers fp32 or an f32 model.bin on the reference
kernels) and B (the candidate, e.g. a q8_0/MXFP4 model.bin on the fast kernels), read the
same text. The text is tokenized once, cut into independent windows of ``ctx`` tokens, and
in each window only the second half is scored, so every scored token has at least ``ctx/2``
tokens of context (llama.cpp's convention: logits at positions ``ctx/2 .. ctx-2`` against
the tokens that follow them, ``ctx - 1 - ctx/2`` tokens per window). Per scored token:

* ``KL(P_A || P_B) = sum_v p_A(v) * (log p_A(v) - log p_B(v))``, from float64 log-softmax;
* whether A's and B's most likely tokens agree ("same top");
* the negative log-likelihood of the actual next token under A and under B.

:class:`QualityAccumulator` takes these chunk by chunk (only per-token numbers are kept,
never a text's logits), and its :class:`QualityStats` has the aggregates llama.cpp prints:
mean KLD ± standard error, median, 99th percentile and maximum, the same-top rate, both
perplexities and their ratio.

Logits come from a :class:`LogitsSource`: an edgemoe model.bin (:class:`ModelBinSource`,
with its kernel set and activation rounding) or a Hugging Face checkpoint directory run by
transformers in fp32 on the CPU (:class:`HFSource`; torch and transformers are optional).
:func:`run_quality` opens two of them and compares them on a text.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgemoe.errors import EdgemoeError, InvalidArgumentError, TokenizerError

if TYPE_CHECKING:
    import tiktoken

    from edgemoe.model import Model

#: Window length in tokens, as llama-perplexity's default ``-c 512``.
DEFAULT_CTX = 512
#: Kernel sets a model.bin source may ask for (``EDGEMOE_KERNELS`` at load).
KERNELS = ("auto", "reference")
#: The held-out text ``edgemoe quality`` reads when no ``--text`` is given (if it exists).
DEFAULT_TEXT = Path(__file__).resolve().parent / "data" / "heldout.txt"
# float64 elements per block of rows in token_stats (32 MiB per temporary array).
_BLOCK_ELEMENTS = 1 << 22


class MissingDependencyError(EdgemoeError, ImportError):
    """An optional package (torch, transformers) is needed and not installed."""


# ====================================================================== statistics


@dataclass(frozen=True)
class TokenStats:
    """Per-token numbers for a chunk of scored tokens (all arrays have one entry per token)."""

    kld: np.ndarray       #: float64, KL(P_A || P_B) in nats
    same_top: np.ndarray  #: bool, argmax A == argmax B
    nll_a: np.ndarray     #: float64, -log p_A(next token)
    nll_b: np.ndarray     #: float64, -log p_B(next token)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (max subtracted first)."""
    z = x.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


def token_stats(
    logits_a: np.ndarray,
    logits_b: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    *,
    block_rows: int | None = None,
) -> TokenStats:
    """Per-token KL divergence, same-top flag and both next-token NLLs.

    Args:
        logits_a: ``[n_tokens, n_vocab]`` logits of the base model A (any float dtype).
        logits_b: the candidate model B's logits, same shape.
        targets: ``[n_tokens]`` the token that actually follows each row.
        block_rows: rows converted to float64 at a time (default: about 4M elements).

    Raises:
        ValueError: shapes disagree, a target is outside ``[0, n_vocab)``, or a logit is
            not finite.
    """
    a = np.asarray(logits_a)
    b = np.asarray(logits_b)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"logits must be two arrays [n_tokens, n_vocab] of the same shape, "
                         f"got {a.shape} and {b.shape}")
    n, n_vocab = a.shape
    if t.shape != (n,):
        raise ValueError(f"{t.size} targets for {n} rows of logits")
    if n and (t.min() < 0 or t.max() >= n_vocab):
        raise ValueError(f"a target is outside [0, {n_vocab}): {t[(t < 0) | (t >= n_vocab)][0]}")
    step = block_rows or max(1, _BLOCK_ELEMENTS // max(1, n_vocab))
    kld = np.empty(n, dtype=np.float64)
    nll_a = np.empty(n, dtype=np.float64)
    nll_b = np.empty(n, dtype=np.float64)
    same = np.empty(n, dtype=bool)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        blk_a, blk_b = a[lo:hi], b[lo:hi]
        for name, blk in (("A", blk_a), ("B", blk_b)):
            if not np.isfinite(blk).all():
                row = lo + int(np.flatnonzero(~np.isfinite(blk).all(axis=-1))[0])
                raise ValueError(f"logits of {name} are not finite at row {row}")
        same[lo:hi] = blk_a.argmax(axis=-1) == blk_b.argmax(axis=-1)
        la = _log_softmax(blk_a)
        lb = _log_softmax(blk_b)
        rows = np.arange(hi - lo)
        nll_a[lo:hi] = -la[rows, t[lo:hi]]
        nll_b[lo:hi] = -lb[rows, t[lo:hi]]
        np.subtract(la, lb, out=lb)   # log p_A - log p_B
        np.exp(la, out=la)            # p_A
        kld[lo:hi] = np.einsum("ij,ij->i", la, lb)
    return TokenStats(kld=kld, same_top=same, nll_a=nll_a, nll_b=nll_b)


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error ``sqrt(var / (n - 1))`` (llama.cpp's uncertainty);
    the error is NaN for fewer than two values."""
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan
    return mean, math.sqrt(float(np.mean((x - mean) ** 2)) / (x.size - 1))


@dataclass(frozen=True)
class QualityStats:
    """Aggregates over the scored tokens (KLD in nats; ``*_se`` are standard errors)."""

    n_tokens: int
    kld_mean: float
    kld_se: float
    kld_median: float
    kld_p99: float
    kld_max: float
    same_top_rate: float      #: fraction of tokens whose argmax agrees, in [0, 1]
    same_top_se: float
    ppl_a: float              #: exp(mean NLL under A)
    ppl_a_se: float
    ppl_b: float
    ppl_b_se: float
    ppl_ratio: float          #: ppl_b / ppl_a = exp(mean(NLL_B - NLL_A))
    ppl_ratio_se: float


class QualityAccumulator:
    """Collects per-token statistics chunk by chunk; :meth:`result` aggregates them.

    Only four numbers per token are kept, so a long text never needs its logits in memory
    at once. Percentiles are exact (linear interpolation between sorted values, as
    numpy's default and llama.cpp's).
    """

    def __init__(self) -> None:
        self._parts: list[TokenStats] = []
        self._n = 0

    @property
    def n_tokens(self) -> int:
        """Tokens accumulated so far."""
        return self._n

    def add(self, logits_a: np.ndarray, logits_b: np.ndarray,
            targets: Sequence[int] | np.ndarray) -> TokenStats:
        """Score a chunk (see :func:`token_stats`) and keep its per-token numbers."""
        stats = token_stats(logits_a, logits_b, targets)
        self.add_stats(stats)
        return stats

    def add_stats(self, stats: TokenStats) -> None:
        """Keep already computed per-token numbers."""
        self._parts.append(stats)
        self._n += int(stats.kld.size)

    def tokens(self) -> TokenStats:
        """All per-token numbers so far, concatenated."""
        return TokenStats(
            kld=np.concatenate([p.kld for p in self._parts]) if self._parts else np.empty(0),
            same_top=np.concatenate([p.same_top for p in self._parts]) if self._parts
            else np.empty(0, dtype=bool),
            nll_a=np.concatenate([p.nll_a for p in self._parts]) if self._parts
            else np.empty(0),
            nll_b=np.concatenate([p.nll_b for p in self._parts]) if self._parts
            else np.empty(0),
        )

    def result(self) -> QualityStats:
        """The aggregates over every token so far.

        Raises:
            ValueError: no token was added.
        """
        if not self._n:
            raise ValueError("no tokens were scored")
        s = self.tokens()
        n = self._n
        kld_mean, kld_se = _mean_se(s.kld)
        p_same = float(s.same_top.mean())
        same_se = math.sqrt(p_same * (1 - p_same) / (n - 1)) if n > 1 else math.nan
        nll_a, nll_a_se = _mean_se(s.nll_a)
        nll_b, nll_b_se = _mean_se(s.nll_b)
        diff, diff_se = _mean_se(s.nll_b - s.nll_a)
        ppl_a, ppl_b, ratio = math.exp(nll_a), math.exp(nll_b), math.exp(diff)
        return QualityStats(
            n_tokens=n,
            kld_mean=kld_mean,
            kld_se=kld_se,
            kld_median=float(np.percentile(s.kld, 50)),
            kld_p99=float(np.percentile(s.kld, 99)),
            kld_max=float(s.kld.max()),
            same_top_rate=p_same,
            same_top_se=same_se,
            ppl_a=ppl_a,
            ppl_a_se=ppl_a * nll_a_se,
            ppl_b=ppl_b,
            ppl_b_se=ppl_b * nll_b_se,
            ppl_ratio=ratio,
            ppl_ratio_se=ratio * diff_se,
        )


def compare_logits(logits_a: np.ndarray, logits_b: np.ndarray,
                   targets: Sequence[int] | np.ndarray) -> QualityStats:
    """:class:`QualityStats` of one chunk of logits (A = base, B = candidate)."""
    acc = QualityAccumulator()
    acc.add(logits_a, logits_b, targets)
    return acc.result()


# ====================================================================== logits sources


class LogitsSource:
    """Something that turns a window of token ids into next-token logits."""

    #: the model's path as given
    path: str
    #: ``"model.bin"`` or ``"hf"``
    kind: str
    #: logits per row
    n_vocab: int
    #: what computes the logits (a kernel set, or ``"transformers-fp32"``)
    kernels: str
    #: activation rounding of the integer kernels (``"f32"`` for transformers)
    activations: str

    def tokenizer(self) -> tiktoken.Encoding | None:
        """The model's own tokenizer, or None if it has none."""
        raise NotImplementedError

    def window_logits(self, tokens: Sequence[int], first: int) -> np.ndarray:
        """float32 ``[len(tokens) - first, n_vocab]``: the logits at positions
        ``first ..`` of ``tokens`` evaluated from position 0 in a fresh context."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the model."""

    def __enter__(self) -> LogitsSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def kernels_env(kernels: str | None) -> Iterator[None]:
    """Set ``EDGEMOE_KERNELS`` to ``kernels`` for the block (the core reads it when a model is
    opened) and restore it afterwards; ``None`` leaves the environment alone."""
    if kernels is None:
        yield
        return
    old = os.environ.get("EDGEMOE_KERNELS")
    os.environ["EDGEMOE_KERNELS"] = kernels
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EDGEMOE_KERNELS", None)
        else:
            os.environ["EDGEMOE_KERNELS"] = old


class ModelBinSource(LogitsSource):
    """An edgemoe model.bin. Each window runs in a new session: the first ``first`` tokens
    fill the KV cache without logits, the rest return theirs (any split of a sequence gives
    the same numbers as one batch, docs/DESIGN.md)."""

    kind = "model.bin"

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = DEFAULT_CTX,
                 threads: int | None = None, activations: str | None = None,
                 kernels: str | None = None) -> None:
        import edgemoe
        from edgemoe._native import ffi, lib

        if kernels is not None and kernels not in KERNELS:
            raise InvalidArgumentError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        self.path = str(path)
        with kernels_env(kernels):
            self.model: Model = edgemoe.load(path, threads=threads, n_ctx=n_ctx,
                                             activations=activations or "int16")
            self.kernels = ffi.string(lib.edgemoe_kernels_name()).decode()
        self.activations = self.model.activations
        self.n_vocab = self.model.info.n_vocab
        if n_ctx > self.model.info.n_ctx_train:
            self.close()
            raise InvalidArgumentError(f"{self.path}: ctx {n_ctx} exceeds the model's context "
                                       f"of {self.model.info.n_ctx_train} tokens")

    def tokenizer(self) -> tiktoken.Encoding | None:
        return self.model.tokenizer if self.model.header.get("tokenizer") else None

    def window_logits(self, tokens: Sequence[int], first: int) -> np.ndarray:
        with self.model.session(n_ctx=len(tokens)) as s:
            if first:
                s.eval(tokens[:first], logits="none")
            return s.eval(tokens[first:], logits="all")

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model.close()


class HFSource(LogitsSource):
    """A Hugging Face gpt-oss checkpoint directory, run by transformers'
    ``GptOssForCausalLM`` in float32 on the CPU with eager attention (MXFP4 experts are
    dequantized at load). Each window is one forward pass without a cache."""

    kind = "hf"
    kernels = "transformers-fp32"
    activations = "f32"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        try:
            import torch
            from transformers import GptOssForCausalLM
        except ImportError as exc:
            raise MissingDependencyError(
                f"{path}: evaluating a Hugging Face checkpoint needs torch and transformers "
                f"(pip install torch transformers, or pip install -e '.[test]'): {exc}"
            ) from None
        self.path = str(path)
        self._torch = torch
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        kw: dict[str, Any] = {}
        if (config.get("quantization_config") or {}).get("quant_method") == "mxfp4":
            from transformers import Mxfp4Config

            kw["quantization_config"] = Mxfp4Config(dequantize=True)
        if threads:
            torch.set_num_threads(threads)
        model = GptOssForCausalLM.from_pretrained(
            self.path, attn_implementation="eager", dtype=torch.float32,
            local_files_only=True, **kw)
        self.model: Any = model.float().eval()
        self.n_vocab = int(self.model.config.vocab_size)
        self._tokenizer: tiktoken.Encoding | None = None
        self._tokenizer_read = False

    def tokenizer(self) -> tiktoken.Encoding | None:
        """The checkpoint's tokenizer.json / .tiktoken as an Encoding, if it has one (used
        only to check that it tokenizes the text as the model.bin does)."""
        if not self._tokenizer_read:
            from edgemoe.tokenizer import encoding_from_spec, spec_from_hf_dir

            spec = spec_from_hf_dir(self.path)
            self._tokenizer = None if spec is None else encoding_from_spec(spec)
            self._tokenizer_read = True
        return self._tokenizer

    def window_logits(self, tokens: Sequence[int], first: int) -> np.ndarray:
        torch = self._torch
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).reshape(1, -1)
        with torch.inference_mode():
            out = self.model(ids, use_cache=False, logits_to_keep=len(tokens) - first)
        return out.logits[0].to(torch.float32).numpy().copy()

    def close(self) -> None:
        self.model = None


def source_kind(path: str | os.PathLike[str]) -> str:
    """``"hf"`` for a directory with config.json, ``"model.bin"`` for anything else.

    Raises:
        InvalidArgumentError: a directory without config.json.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InvalidArgumentError(
                f"{p}: a directory without config.json is not a Hugging Face checkpoint "
                "(give a model.bin file or a checkpoint directory)")
        return "hf"
    return "model.bin"


def open_source(path: str | os.PathLike[str], *, n_ctx: int = DEFAULT_CTX,
                threads: int | None = None, activations: str | None = None,
                kernels: str | None = None) -> LogitsSource:
    """Open a model.bin (with ``kernels``: ``"auto"``/``"reference"``, None = whatever
    ``EDGEMOE_KERNELS`` says; ``activations``: ``"int16"``/``"int8"``) or a Hugging Face
    checkpoint directory (which takes neither).

    Raises:
        InvalidArgumentError: a bad option, or kernels/activations for a checkpoint dir.
        MissingDependencyError: a checkpoint dir without torch/transformers installed.
    """
    if source_kind(path) == "hf":
        if kernels is not None or activations is not None:
            raise InvalidArgumentError(
                f"{path}: kernels and activations apply to a model.bin, not to a Hugging Face "
                "checkpoint (transformers runs it in fp32)")
        return HFSource(path, threads=threads)
    return ModelBinSource(path, n_ctx=n_ctx, threads=threads, activations=activations,
                          kernels=kernels)


# ====================================================================== driver


@dataclass(frozen=True)
class QualityReport:
    """One comparison: what was compared, how, and the statistics."""

    model_a: str
    model_b: str
    kernels_a: str
    kernels_b: str
    activations_a: str
    activations_b: str
    ctx: int
    n_windows: int
    n_text_tokens: int   #: tokens of the text (after ``max_tokens``), scored or not
    stats: QualityStats

    def to_dict(self) -> dict[str, Any]:
        """A flat dict for JSON: every field, the statistics inlined, NaN as None."""
        d = {k: v for k, v in asdict(self).items() if k != "stats"}
        for k, v in asdict(self.stats).items():
            d[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        return d


def _both_checkpoints(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> Exception:
    return InvalidArgumentError(
        f"{a} and {b} are both Hugging Face checkpoints: one side must be a model.bin, whose "
        "tokenizer reads the text")


def tokenize_for_comparison(a: LogitsSource, b: LogitsSource, text: str) -> list[int]:
    """The text's token ids under the model.bin's tokenizer (A's if both are model.bins),
    checked against the other model's tokenizer when it has one.

    Special-token text in ``text`` is encoded as ordinary text (as llama-perplexity does).

    Raises:
        InvalidArgumentError: both are Hugging Face directories.
        TokenizerError: the model.bin has no tokenizer, or the two tokenize differently.
    """
    if a.kind == "model.bin":
        main, other = a, b
    elif b.kind == "model.bin":
        main, other = b, a
    else:
        raise _both_checkpoints(a.path, b.path)
    enc = main.tokenizer()
    if enc is None:
        raise TokenizerError(f"{main.path}: model.bin has no tokenizer, so it cannot read a "
                             "text (convert it with one)")
    ids = enc.encode_ordinary(text)
    other_enc = other.tokenizer()
    if other_enc is None:
        if other.kind == "model.bin":
            raise TokenizerError(
                f"{other.path}: model.bin has no tokenizer, so there is no checking that it "
                f"reads the text as {main.path} does")
        return ids
    other_ids = other_enc.encode_ordinary(text)
    if other_ids != ids:
        n = min(len(ids), len(other_ids))
        i = next((k for k in range(n) if ids[k] != other_ids[k]), n)
        x = str(ids[i]) if i < len(ids) else "end of text"
        y = str(other_ids[i]) if i < len(other_ids) else "end of text"
        raise TokenizerError(
            f"{a.path} and {b.path} tokenize the text differently: {main.path} reads it as "
            f"{len(ids)} tokens, {other.path} as {len(other_ids)}, first difference at token "
            f"{i} ({x} vs {y}); the comparison needs the same tokenizer")
    return ids


ProgressFn = Callable[[int, int, QualityAccumulator], None]


def compare_sources(
    a: LogitsSource,
    b: LogitsSource,
    text: str,
    *,
    ctx: int = DEFAULT_CTX,
    max_tokens: int | None = None,
    progress: ProgressFn | None = None,
) -> QualityReport:
    """Compare two open sources on ``text`` (see the module docstring).

    Args:
        a: the base model.
        b: the candidate.
        text: the text to read.
        ctx: window length in tokens (>= 3); ``ctx - 1 - ctx // 2`` tokens are scored per
            window, the tokens past the last whole window are not used.
        max_tokens: use only the first ``max_tokens`` tokens of the text.
        progress: called after each window with (windows done, windows, accumulator).

    Raises:
        InvalidArgumentError: a bad ``ctx``/``max_tokens``, a text shorter than one window,
            or models with different vocabulary sizes.
        TokenizerError: see :func:`tokenize_for_comparison`.
    """
    if ctx < 3:
        raise InvalidArgumentError(f"ctx must be >= 3, got {ctx}")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidArgumentError(f"max_tokens must be >= 1, got {max_tokens}")
    ids = tokenize_for_comparison(a, b, text)
    n_text = len(ids)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n_windows = len(ids) // ctx
    if n_windows == 0:
        limited = f" (the first {max_tokens} kept)" if max_tokens is not None else ""
        raise InvalidArgumentError(
            f"the text has {n_text} tokens{limited}, fewer than one window of ctx={ctx}: "
            "give a longer text or a smaller ctx")
    if a.n_vocab != b.n_vocab:
        raise InvalidArgumentError(f"{a.path} has {a.n_vocab} logits per token and {b.path} "
                                   f"{b.n_vocab}: the models' vocabularies differ")
    first = ctx // 2
    acc = QualityAccumulator()
    for w in range(n_windows):
        window = ids[w * ctx : (w + 1) * ctx]
        # logits at positions first .. ctx-2 predict the tokens at first+1 .. ctx-1
        la = a.window_logits(window[:-1], first)
        lb = b.window_logits(window[:-1], first)
        acc.add(la, lb, window[first + 1 :])
        del la, lb
        if progress is not None:
            progress(w + 1, n_windows, acc)
    return QualityReport(
        model_a=a.path, model_b=b.path, kernels_a=a.kernels, kernels_b=b.kernels,
        activations_a=a.activations, activations_b=b.activations, ctx=ctx,
        n_windows=n_windows, n_text_tokens=len(ids), stats=acc.result())


def run_quality(
    model_a: str | os.PathLike[str],
    model_b: str | os.PathLike[str],
    text: str,
    *,
    ctx: int = DEFAULT_CTX,
    max_tokens: int | None = None,
    threads: int | None = None,
    kernels_a: str | None = None,
    kernels_b: str | None = None,
    activations_a: str | None = None,
    activations_b: str | None = None,
    progress: ProgressFn | None = None,
) -> QualityReport:
    """Open ``model_a`` (base) and ``model_b`` (candidate) — each a model.bin or a Hugging
    Face checkpoint directory, not both directories — and compare them on ``text``
    (:func:`compare_sources`). ``kernels_*`` (``"auto"``/``"reference"``; None: the
    ``EDGEMOE_KERNELS`` environment variable) and ``activations_*`` (``"int16"``/``"int8"``;
    None: int16) apply to model.bin sides only."""
    if source_kind(model_a) == "hf" and source_kind(model_b) == "hf":
        raise _both_checkpoints(model_a, model_b)
    with open_source(model_a, n_ctx=ctx, threads=threads, activations=activations_a,
                     kernels=kernels_a) as a, \
         open_source(model_b, n_ctx=ctx, threads=threads, activations=activations_b,
                     kernels=kernels_b) as b:
        return compare_sources(a, b, text, ctx=ctx, max_tokens=max_tokens, progress=progress)


# ====================================================================== output


def _fmt_kld(x: float) -> str:
    return f"{x:10.6f}" if x == 0 or abs(x) >= 1e-3 else f"{x:10.3e}"


def _fmt_se(x: float, fmt: Callable[[float], str]) -> str:
    return fmt(x) if math.isfinite(x) else f"{'n/a':>10}"


def format_report(r: QualityReport, as_json: bool = False) -> str:
    """The report as llama-perplexity-like lines, or as one JSON object."""
    if as_json:
        return json.dumps(r.to_dict())
    s = r.stats

    def num(x: float) -> str:
        return f"{x:10.4f}"

    scored = r.ctx - 1 - r.ctx // 2
    lines = [
        f"A (base):      {r.model_a} ({r.kernels_a}, activations {r.activations_a})",
        f"B (candidate): {r.model_b} ({r.kernels_b}, activations {r.activations_b})",
        f"{s.n_tokens} tokens scored: {r.n_windows} windows of {r.ctx} tokens, the last "
        f"{scored} of each",
        "",
        "====== Perplexity statistics ======",
        f"Mean PPL(A)          : {num(s.ppl_a)} ± {_fmt_se(s.ppl_a_se, num)}",
        f"Mean PPL(B)          : {num(s.ppl_b)} ± {_fmt_se(s.ppl_b_se, num)}",
        f"Mean PPL(B)/PPL(A)   : {num(s.ppl_ratio)} ± {_fmt_se(s.ppl_ratio_se, num)}",
        "",
        "====== KL divergence statistics ======",
        f"Mean    KLD          : {_fmt_kld(s.kld_mean)} ± {_fmt_se(s.kld_se, _fmt_kld)}",
        f"Maximum KLD          : {_fmt_kld(s.kld_max)}",
        f"99.0%   KLD          : {_fmt_kld(s.kld_p99)}",
        f"Median  KLD          : {_fmt_kld(s.kld_median)}",
        "",
        "====== Token probability statistics ======",
        f"Same top p           : {100 * s.same_top_rate:10.3f} ± "
        f"{_fmt_se(100 * s.same_top_se, lambda x: f'{x:10.3f}')} %",
    ]
    return "\n".join(lines)
