"""Plain text completion: the token loop, incremental UTF-8 decoding and stop strings."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgemoe.errors import ContextFullError, InvalidArgumentError
from edgemoe.sampling import Sampler, SamplingParams

if TYPE_CHECKING:
    from edgemoe.model import Model, Session


@dataclass
class GenerationStats:
    """Counts and timings of one generation (filled in as it runs)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
    finish_reason: str = ""
    stop_token: int | None = None
    tokens: list[int] = field(default_factory=list)

    @property
    def prompt_tok_s(self) -> float:
        evaluated = self.prompt_tokens - self.reused_tokens
        return evaluated / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generation_tok_s(self) -> float:
        t = self.generation_seconds
        return self.generated_tokens / t if t > 0 else 0.0


@dataclass(frozen=True)
class Usage:
    """Token counts and speeds of one generation (prompt tokens/s counts evaluated tokens,
    not the ones reused from the KV cache)."""

    prompt_tokens: int
    completion_tokens: int
    reused_tokens: int
    prompt_tok_s: float
    generation_tok_s: float

    @classmethod
    def from_stats(cls, s: GenerationStats) -> Usage:
        return cls(
            s.prompt_tokens, s.generated_tokens, s.reused_tokens, s.prompt_tok_s, s.generation_tok_s
        )

    def line(self) -> str:
        """One line for humans (the CLI's stats line)."""
        reused = f", {self.reused_tokens} reused" if self.reused_tokens else ""
        return (
            f"prompt: {self.prompt_tokens} tokens{reused}, {self.prompt_tok_s:.2f} tok/s | "
            f"generation: {self.completion_tokens} tokens, {self.generation_tok_s:.2f} tok/s"
        )


def generate_tokens(
    session: Session,
    prompt: Sequence[int],
    *,
    max_tokens: int,
    sampler: Sampler,
    stop_tokens: set[int],
    stats: GenerationStats | None = None,
) -> Iterator[int]:
    """Evaluate ``prompt`` in ``session`` (reusing its longest cached prefix) and yield up to
    ``max_tokens`` sampled tokens; a token in ``stop_tokens`` ends generation and is not yielded.

    When the context fills up, generation ends with ``finish_reason == "length"``.
    """
    if max_tokens < 0:
        raise InvalidArgumentError(f"max_tokens must be >= 0, got {max_tokens}")
    prompt = [int(t) for t in prompt]
    if not prompt:
        raise InvalidArgumentError("the prompt is empty: give at least one token")
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(prompt)
    if len(prompt) > session.n_ctx:
        raise ContextFullError(
            f"prompt of {len(prompt)} tokens does not fit the context of {session.n_ctx} tokens"
        )
    # Reuse the cached prefix, but always evaluate at least the last prompt token so that
    # its logits are available.
    keep = min(session.common_prefix(prompt), len(prompt) - 1)
    session.truncate(keep)
    stats.reused_tokens = keep
    t0 = time.perf_counter()
    logits = session.eval(prompt[keep:], logits="last")[-1]
    stats.prompt_seconds = time.perf_counter() - t0
    stats.finish_reason = "length"
    t0 = time.perf_counter()
    try:
        for _ in range(max_tokens):
            tok = sampler.sample(logits)
            if tok in stop_tokens:
                stats.finish_reason = "stop"
                stats.stop_token = tok
                return
            stats.generated_tokens += 1
            stats.tokens.append(tok)
            yield tok
            if session.n_past >= session.n_ctx:
                return
            logits = session.eval([tok], logits="last")[-1]
    finally:
        stats.generation_seconds = time.perf_counter() - t0


class StopStrings:
    """Cuts a stream of text at the first of some stop strings: text that could be the start
    of a stop string is held back until it is known not to be one."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._stop = [s for s in stop if s]
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add text; return the text that is now safe to emit ('' if none)."""
        self._pending += text
        return self._release(final=False)

    def flush(self) -> str:
        """Return whatever is still held back (at the end of generation)."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        for s in self._stop:
            i = self._pending.find(s)
            if i >= 0:
                out, self._pending, self.stopped = self._pending[:i], "", True
                return out
        if final or not self._stop:
            out, self._pending = self._pending, ""
            return out
        # Hold back the longest suffix that is a prefix of some stop string.
        hold = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out


class TextStreamer:
    """Turns token ids into text pieces: whole UTF-8 characters only, cut at stop strings
    (:class:`StopStrings`)."""

    def __init__(self, token_bytes: Callable[[int], bytes], stop: Sequence[str] = ()) -> None:
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = StopStrings(stop)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def push(self, token: int) -> str:
        """Add one token; return the text that is now safe to emit ('' if none)."""
        return self._stops.push(self._decoder.decode(self._token_bytes(token)))

    def flush(self) -> str:
        """Return whatever is still held back (at the end of generation)."""
        self._stops.push(self._decoder.decode(b"", final=True))
        return self._stops.flush()


def generate_text(
    model: Model,
    prompt: str | Sequence[int],
    *,
    max_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    stats: GenerationStats | None = None,
) -> Iterator[str]:
    """Yield the text continuing ``prompt`` piece by piece (see :meth:`Model.generate`)."""
    params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k)
    ids = model.encode(prompt) if isinstance(prompt, str) else [int(t) for t in np.asarray(prompt)]
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    enc = model.tokenizer if model.header.get("tokenizer") else None
    token_bytes = enc.decode_single_token_bytes if enc else (lambda t: f"<{t}>".encode())
    streamer = TextStreamer(token_bytes, stops)
    with model._lock:
        session = model._shared_session()
        for tok in generate_tokens(
            session,
            ids,
            max_tokens=max_tokens,
            sampler=Sampler(params, seed),
            stop_tokens=set(model.eos_token_ids),
            stats=stats,
        ):
            piece = streamer.push(tok)
            if piece:
                yield piece
            if streamer.stopped:
                if stats is not None:
                    stats.finish_reason = "stop"
                return
        tail = streamer.flush()
        if tail:
            yield tail
