"""Harmony chat on top of the token loop: render the conversation, generate the assistant's
turn, and split it into reasoning, answer and tool calls as it streams."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgemoe.generate import GenerationStats, Usage, generate_tokens
from edgemoe.harmony import encode_chat
from edgemoe.harmony_parser import (
    ContentDelta,
    HarmonyStreamParser,
    HarmonyTokens,
    ReasoningDelta,
    ToolCall,
)
from edgemoe.sampling import Sampler, SamplingParams

if TYPE_CHECKING:
    from edgemoe.model import Model

__all__ = ["ChatResult", "ContentDelta", "Done", "ReasoningDelta", "ToolCall", "Usage", "chat",
           "chat_events"]


@dataclass
class ChatResult:
    """The assistant's turn: ``content`` (final channel), ``reasoning`` (analysis channel),
    ``tool_calls``, ``usage``, and ``finish_reason`` (``"stop"``, ``"tool_calls"`` or
    ``"length"``)."""

    content: str
    reasoning: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = "stop"
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Done:
    """Last event of a streamed chat: the whole result."""

    result: ChatResult


ChatEvent = ReasoningDelta | ContentDelta | ToolCall | Done


def chat(
    model: Model,
    messages: Sequence[Mapping[str, Any]],
    *,
    reasoning_effort: str = "low",
    tools: Sequence[Mapping[str, Any]] | None = None,
    max_tokens: int = 1024,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stream: bool = False,
) -> ChatResult | Iterator[ChatEvent]:
    """See :meth:`edgemoe.model.Model.chat`."""
    params = SamplingParams(temperature=temperature, top_p=top_p)
    prompt = encode_chat(model.tokenizer, messages, reasoning_effort=reasoning_effort, tools=tools)
    events = chat_events(model, prompt, max_tokens, Sampler(params, seed))
    if stream:
        return events
    result: ChatResult | None = None
    for ev in events:
        if isinstance(ev, Done):
            result = ev.result
    assert result is not None
    return result


def chat_events(
    model: Model,
    prompt: list[int],
    max_tokens: int,
    sampler: Sampler,
    stats: GenerationStats | None = None,
) -> Iterator[ChatEvent]:
    """The assistant's turn after ``prompt`` (harmony token ids ending in
    ``<|start|>assistant``) as events, the last a :class:`Done`. ``stats`` (if given) is
    filled in as generation runs, so a caller that stops early still has the counts. The
    model's lock is held while the iterator is open: close it to stop early."""
    parser = HarmonyStreamParser(model.tokenizer)
    stats = stats if stats is not None else GenerationStats()
    stops = set(HarmonyTokens.of(model.tokenizer).turn_stop) | set(model.eos_token_ids)
    with model._lock:
        session = model._shared_session()
        for tok in generate_tokens(
            session, prompt, max_tokens=max_tokens, sampler=sampler, stop_tokens=stops, stats=stats
        ):
            yield from parser.feed(tok)
    if stats.stop_token is not None:
        yield from parser.feed(stats.stop_token)
    yield from parser.finish()
    parsed = parser.result()
    if parsed.tool_calls:
        finish = "tool_calls"
    else:
        finish = "stop" if stats.finish_reason == "stop" else "length"
    yield Done(
        ChatResult(
            content=parsed.content,
            reasoning=parsed.reasoning,
            tool_calls=parsed.tool_calls,
            usage=Usage.from_stats(stats),
            finish_reason=finish,
            tokens=list(stats.tokens),
        )
    )
