"""Streaming parser for gpt-oss completions in the harmony format.

The prompt ends with ``<|start|>assistant``; the model then writes messages such as::

    <|channel|>analysis<|message|>thinking...<|end|>
    <|start|>assistant<|channel|>final<|message|>answer<|return|>
    <|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{...}<|call|>

:class:`HarmonyStreamParser` consumes those token ids one at a time and reports reasoning
text (``analysis`` channel), answer text (``final`` channel) and completed tool calls. It
follows openai-harmony's ``StreamableParser`` (header grammar, both ``to=`` positions,
``<|end|>`` ending a message and ``<|return|>``/``<|call|>`` ending the turn) and is
lenient where openai-harmony raises, so a misbehaving model never breaks a chat call.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING

from edgemoe.errors import TokenizerError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import tiktoken

__all__ = [
    "ROLES",
    "STOP_TOKENS",
    "STOP_TOKENS_ASSISTANT_ACTIONS",
    "ChatResult",
    "ContentDelta",
    "HarmonyTokens",
    "Event",
    "HarmonyMessage",
    "HarmonyStreamParser",
    "ReasoningDelta",
    "ToolCall",
    "parse_completion",
]

#: Harmony's formatting tokens (o200k_harmony ids).
START, END, MESSAGE, CHANNEL, CONSTRAIN = 200006, 200007, 200008, 200005, 200003
RETURN, CALL = 200002, 200012
TOKEN_NAMES = {
    START: "<|start|>",
    END: "<|end|>",
    MESSAGE: "<|message|>",
    CHANNEL: "<|channel|>",
    CONSTRAIN: "<|constrain|>",
    RETURN: "<|return|>",
    CALL: "<|call|>",
}

#: Tokens that end a message: ``<|return|>`` (final answer done), ``<|end|>`` (a message
#: such as the analysis is done; the assistant's turn goes on with ``<|start|>``) and
#: ``<|call|>`` (a tool call is complete). o200k_harmony ids; :class:`HarmonyTokens` has
#: them for any tokenizer.
STOP_TOKENS: frozenset[int] = frozenset({RETURN, END, CALL})

#: Tokens that end the assistant's turn, i.e. where generation should stop: ``<|return|>``
#: and ``<|call|>``. ``<|end|>`` is deliberately absent: after ``...analysis...<|end|>``
#: the model continues with ``<|start|>assistant<|channel|>final...``.
STOP_TOKENS_ASSISTANT_ACTIONS: frozenset[int] = frozenset({RETURN, CALL})


@dataclass(frozen=True)
class HarmonyTokens:
    """The ids of harmony's formatting tokens in one tokenizer.

    gpt-oss's o200k_harmony has them at fixed ids (:data:`TOKEN_NAMES`); another model's
    tokenizer (e.g. the bundled demo model's) has the same names at its own ids.
    """

    start: int
    end: int
    message: int
    channel: int
    constrain: int
    return_: int
    call: int

    @classmethod
    def of(cls, enc: tiktoken.Encoding) -> HarmonyTokens:
        """Look the seven names up in ``enc``'s special tokens.

        Raises:
            TokenizerError: a name is not a special token of ``enc`` (the message names it).
        """
        ids: dict[str, int] = {}
        # the fields are in TOKEN_NAMES's order
        for f, name in zip(fields(cls), TOKEN_NAMES.values(), strict=True):
            try:
                ids[f.name] = enc.encode_single_token(name)
            except KeyError:
                raise TokenizerError(
                    f"encoding {enc.name!r} lacks the harmony token {name}"
                ) from None
            if name not in enc.special_tokens_set:
                raise TokenizerError(
                    f"encoding {enc.name!r} has {name} as ordinary text, not a special token"
                )
        return cls(**ids)

    @cached_property
    def stop(self) -> frozenset[int]:
        """Tokens that end a message (``<|return|>``, ``<|end|>``, ``<|call|>``)."""
        return frozenset({self.return_, self.end, self.call})

    @cached_property
    def turn_stop(self) -> frozenset[int]:
        """Tokens that end the assistant's turn (``<|return|>``, ``<|call|>``)."""
        return frozenset({self.return_, self.call})


ROLES = ("system", "developer", "user", "assistant", "tool")

# A header longer than this (in tokens) without <|message|> is taken for plain text.
_MAX_HEADER_TOKENS = 64
_HEADER_STARTS = ("<|channel|>", "to=", "<|constrain|>")


@dataclass
class HarmonyMessage:
    """One harmony message (rendered or parsed).

    ``name`` is the author name; for a tool message it is the tool (``functions.NAME``).
    ``content_type`` is e.g. ``"<|constrain|>json"`` for a JSON tool call.
    """

    role: str
    content: str
    name: str | None = None
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class ReasoningDelta:
    """New text of the assistant's reasoning (``analysis`` channel)."""

    text: str


@dataclass(frozen=True)
class ContentDelta:
    """New text of the assistant's answer (``final`` channel, or a message with no channel,
    or a ``commentary`` preamble that is addressed to nobody)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A completed tool call.

    ``name`` is the function name (``recipient`` without its ``functions.`` prefix; other
    recipients, e.g. built-in tools, are kept whole); ``arguments`` is the raw text the
    model wrote (JSON when ``content_type`` is ``<|constrain|>json``).
    """

    name: str
    arguments: str
    recipient: str
    content_type: str | None = None


#: What :meth:`HarmonyStreamParser.feed` reports.
Event = ReasoningDelta | ContentDelta | ToolCall


@dataclass
class ChatResult:
    """A parsed completion: answer, reasoning, tool calls and the raw harmony messages.

    ``stop_token`` is the token that ended the turn (``<|return|>`` or ``<|call|>``), or
    None when the tokens ran out first.
    """

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    messages: list[HarmonyMessage] = field(default_factory=list)
    stop_token: int | None = None


def _parse_header(text: str, role: str | None) -> HarmonyMessage:
    """Parse a message header the way openai-harmony does (leniently: no errors).

    The header is what comes between ``<|start|>`` (or the start of the completion, when
    ``role`` is known) and ``<|message|>``: an author, an optional ``to=RECIPIENT``
    before or after ``<|channel|>NAME``, and an optional content type.
    """
    channel = None
    marker = TOKEN_NAMES[CHANNEL]
    idx = text.find(marker)
    if idx >= 0:
        after = text[idx + len(marker):]
        end = next((i for i, ch in enumerate(after) if ch.isspace() or ch == "<"), len(after))
        channel = after[:end] or None
        text = text[:idx] + after[end:]
    text = text.strip()
    constrain = TOKEN_NAMES[CONSTRAIN]
    if constrain in text:
        text = text.replace(constrain, " " + constrain).strip()
    parts = text.split()
    name = None
    if role is None:
        if not parts:
            role = "assistant"
        elif parts[0] in ROLES:
            role = parts[0]
        else:
            role, name = "tool", parts.pop(0)
    if parts and parts[0] == role:
        parts.pop(0)
    recipient = content_type = None
    if parts:
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif not parts:
            recipient = last
        else:
            content_type = last
            raw = parts.pop()
            recipient = raw[3:] if raw.startswith("to=") else raw
    return HarmonyMessage(role, "", name, channel, recipient, content_type)


def _plausible_header_start(text: str, role: str) -> bool:
    """Whether ``text`` can still become a header when the role is already known."""
    stripped = text.lstrip()
    if not stripped:
        return True
    for start in (*_HEADER_STARTS, role):
        if stripped.startswith(start) or start.startswith(stripped):
            return True
    return False


class HarmonyStreamParser:
    """Incremental parser of an assistant completion, one token id at a time.

    ``feed(token)`` returns the events the token completes: :class:`ReasoningDelta`,
    :class:`ContentDelta` and, when a message with a recipient ends, :class:`ToolCall`.
    Text is decoded incrementally: bytes of a UTF-8 character split across tokens are held
    back until the character is complete (invalid bytes become U+FFFD).

    Behaviour (openai-harmony's, plus leniency where it would raise):

    * The completion starts inside a header (the prompt ended with ``<|start|>assistant``).
    * ``<|end|>`` ends a message, ``<|return|>`` and ``<|call|>`` end a message and the
      turn (:attr:`done` becomes True, :attr:`stop_token` is set). Later tokens are still
      parsed.
    * A message with a recipient (``to=...``, before or after the channel) is a tool call,
      reported when it ends. Other assistant messages: ``analysis`` -> reasoning; ``final``,
      ``commentary`` (a preamble), any other channel or no channel -> content. Messages by
      other roles are recorded in :attr:`messages` but produce no events.
    * Channel-less output: if the model writes text where a header is expected (when the
      role is known, anything not starting like ``<|channel|>``, ``to=``, ``<|constrain|>``
      or the role name; in any header, a newline or more than 64 tokens without
      ``<|message|>``; or a stop token before ``<|message|>``), that text is treated as the
      content of a message without a channel, i.e. as final-answer content.
    * A token other than ``<|start|>`` between messages starts an implicit assistant
      message (openai-harmony raises).
    * :meth:`finish` ends a message cut off by the token limit (a truncated tool call is
      still reported; check :attr:`stop_token`).
    """

    def __init__(self, enc: tiktoken.Encoding, role: str = "assistant") -> None:
        """Start parsing a completion whose prompt ended with ``<|start|>{role}``.

        Raises:
            TokenizerError: ``enc`` lacks a harmony token.
        """
        self._ids = HarmonyTokens.of(enc)
        self._enc = enc
        self.messages: list[HarmonyMessage] = []
        self.done = False
        self.stop_token: int | None = None
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._state = "header"
        self._role: str | None = role
        self._header_tokens: list[int] = []
        self._header_bytes = bytearray()
        self._msg: HarmonyMessage | None = None
        self._text: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    # -- public -------------------------------------------------------------------------

    def feed(self, token: int) -> list[Event]:
        """Consume one token id; return the events it produces (often none or one)."""
        if self._state == "expect_start":
            if token == self._ids.start:
                self._begin_header(None)
                return []
            self._begin_header("assistant")
        if self._state == "header":
            return self._feed_header(token)
        return self._feed_content(token)

    def feed_many(self, tokens: Iterable[int]) -> list[Event]:
        """Consume several tokens; return all their events in order."""
        events: list[Event] = []
        for token in tokens:
            events.extend(self.feed(token))
        return events

    def finish(self) -> list[Event]:
        """End of input: complete a message that was cut off (e.g. by max_tokens)."""
        if self._state == "header" and self._header_tokens:
            return self._header_as_content(None)
        if self._state == "content":
            return self._end_message(None)
        return []

    def result(self) -> ChatResult:
        """Everything parsed so far as a :class:`ChatResult` (call after :meth:`finish`)."""
        return ChatResult(
            content="".join(self._content),
            reasoning="".join(self._reasoning),
            tool_calls=list(self._tool_calls),
            messages=list(self.messages),
            stop_token=self.stop_token,
        )

    # -- header -------------------------------------------------------------------------

    def _begin_header(self, role: str | None) -> None:
        self._state = "header"
        self._role = role
        self._header_tokens = []
        self._header_bytes = bytearray()

    def _token_bytes(self, token: int) -> bytes:
        try:
            return self._enc.decode_single_token_bytes(token)
        except (KeyError, ValueError):
            return "\N{REPLACEMENT CHARACTER}".encode()

    def _feed_header(self, token: int) -> list[Event]:
        if token == self._ids.message:
            text = self._header_bytes.decode("utf-8", "replace")
            self._start_content(_parse_header(text, self._role))
            return []
        if token in self._ids.stop:
            if not self._header_tokens:
                self._mark_stop(token)
                self._state = "expect_start"
                return []
            return self._header_as_content(token)
        self._header_tokens.append(token)
        self._header_bytes += self._token_bytes(token)
        text = self._header_bytes.decode("utf-8", "replace")
        implausible = "\n" in text or len(self._header_tokens) > _MAX_HEADER_TOKENS
        if self._role is not None and not _plausible_header_start(text, self._role):
            implausible = True
        if implausible:
            return self._header_as_content(None, keep_open=True)
        return []

    def _header_as_content(self, stop: int | None, keep_open: bool = False) -> list[Event]:
        """Treat the tokens buffered as a header as the text of a channel-less message."""
        role = self._role or "assistant"
        self._start_content(HarmonyMessage(role, ""))
        events = self._emit(self._decoder.decode(bytes(self._header_bytes)))
        if keep_open:
            return events
        return events + self._end_message(stop)

    # -- content ------------------------------------------------------------------------

    def _start_content(self, msg: HarmonyMessage) -> None:
        self._state = "content"
        self._msg = msg
        self._text = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def _feed_content(self, token: int) -> list[Event]:
        if token in self._ids.stop:
            return self._end_message(token)
        return self._emit(self._decoder.decode(self._token_bytes(token)))

    def _kind(self) -> str:
        msg = self._msg
        assert msg is not None
        if msg.role != "assistant":
            return "other"
        if msg.recipient is not None:
            return "tool"
        if msg.channel == "analysis":
            return "reasoning"
        return "content"

    def _emit(self, text: str) -> list[Event]:
        if not text:
            return []
        self._text.append(text)
        kind = self._kind()
        if kind == "reasoning":
            self._reasoning.append(text)
            return [ReasoningDelta(text)]
        if kind == "content":
            self._content.append(text)
            return [ContentDelta(text)]
        return []

    def _end_message(self, stop: int | None) -> list[Event]:
        events = self._emit(self._decoder.decode(b"", final=True))
        msg = self._msg
        assert msg is not None
        msg.content = "".join(self._text)
        self.messages.append(msg)
        if self._kind() == "tool":
            assert msg.recipient is not None
            name = msg.recipient.removeprefix("functions.")
            call = ToolCall(name, msg.content, msg.recipient, msg.content_type)
            self._tool_calls.append(call)
            events.append(call)
        self._msg = None
        self._state = "expect_start"
        self._mark_stop(stop)
        return events

    def _mark_stop(self, stop: int | None) -> None:
        if stop in self._ids.turn_stop:
            self.done = True
            self.stop_token = stop


def parse_completion(enc: tiktoken.Encoding, tokens: Iterable[int]) -> ChatResult:
    """Parse a whole assistant completion (the ids generated after ``<|start|>assistant``)."""
    parser = HarmonyStreamParser(enc)
    parser.feed_many(tokens)
    parser.finish()
    return parser.result()
