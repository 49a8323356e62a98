"""The harmony chat format of gpt-oss: render conversations, parse completions.

Rendering turns OpenAI-style chat messages into the prompt gpt-oss expects, identical
(text and token ids) to openai-harmony 0.0.8's
``render_conversation_for_completion(conversation, Role.ASSISTANT)`` for the equivalent
harmony conversation. Parsing (:class:`HarmonyStreamParser`, :func:`parse_completion`)
lives in :mod:`edgemoe.harmony_parser` and is re-exported here. openai-harmony is only a
test oracle; nothing here needs it.

Message shape accepted by :func:`render_chat` / :func:`encode_chat`::

    {"role": "system" | "developer", "content": str}      # -> developer instructions
    {"role": "user", "content": str}
    {"role": "assistant", "content": str | None,
     "reasoning": str,                                    # or "thinking" / "reasoning_content"
     "tool_calls": [{"id": str, "function": {"name": str, "arguments": str | dict}}]}
    {"role": "tool", "content": str, "name": str}         # or "tool_call_id" of an earlier call

``content`` may also be a list of text parts (``{"type": "text", "text": ...}``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgemoe.harmony_parser import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    MESSAGE,
    START,
    STOP_TOKENS,
    STOP_TOKENS_ASSISTANT_ACTIONS,
    TOKEN_NAMES,
    ChatResult,
    ContentDelta,
    Event,
    HarmonyMessage,
    HarmonyStreamParser,
    ReasoningDelta,
    ToolCall,
    parse_completion,
)
from edgemoe.harmony_schema import FunctionTool, normalize_tools, render_tools_section

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "DEFAULT_KNOWLEDGE_CUTOFF",
    "DEFAULT_MODEL_IDENTITY",
    "REASONING_EFFORTS",
    "STOP_TOKENS",
    "STOP_TOKENS_ASSISTANT_ACTIONS",
    "ChatResult",
    "ContentDelta",
    "Event",
    "FunctionTool",
    "HarmonyMessage",
    "HarmonyStreamParser",
    "ReasoningDelta",
    "ToolCall",
    "build_conversation",
    "encode_chat",
    "parse_completion",
    "render_chat",
    "render_segments",
]

DEFAULT_MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
DEFAULT_KNOWLEDGE_CUTOFF = "2024-06"
REASONING_EFFORTS = ("low", "medium", "high")
VALID_CHANNELS = ("analysis", "commentary", "final")
JSON_CONTENT_TYPE = TOKEN_NAMES[CONSTRAIN] + "json"

#: A rendered piece: (True, special-token name) or (False, ordinary text).
Segment = tuple[bool, str]


# --------------------------------------------------------------------------------------
# System and developer message text
# --------------------------------------------------------------------------------------


def _system_text(
    *,
    model_identity: str,
    knowledge_cutoff: str | None,
    current_date: str | None,
    reasoning_effort: str | None,
    has_function_tools: bool,
) -> str:
    top = [model_identity] if model_identity else []
    if knowledge_cutoff:
        top.append(f"Knowledge cutoff: {knowledge_cutoff}")
    if current_date:
        top.append(f"Current date: {current_date}")
    sections = ["\n".join(top)] if top else []
    if reasoning_effort is not None:
        sections.append(f"Reasoning: {reasoning_effort}")
    channels = (
        f"# Valid channels: {', '.join(VALID_CHANNELS)}. "
        "Channel must be included for every message."
    )
    if has_function_tools:
        channels += "\nCalls to these tools must go to the commentary channel: 'functions'."
    sections.append(channels)
    return "\n\n".join(sections)


def _developer_text(instructions: str | None, tools: Sequence[FunctionTool]) -> str:
    sections = []
    if instructions is not None:
        sections += ["# Instructions", instructions]
    if tools:
        sections.append(render_tools_section(tools))
    return "\n\n".join(sections)


# --------------------------------------------------------------------------------------
# OpenAI-style messages -> harmony messages
# --------------------------------------------------------------------------------------


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and all(
        isinstance(p, str) or (isinstance(p, Mapping) and isinstance(p.get("text"), str))
        for p in content
    ):
        return "".join(p if isinstance(p, str) else p["text"] for p in content)
    raise TypeError(f"{where}: content must be a string or a list of text parts")


def _tool_result_text(content: Any, where: str) -> str:
    try:
        return _text_of(content, where)
    except TypeError:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def _assistant_messages(
    msg: Mapping[str, Any], where: str, call_names: dict[str, str]
) -> list[HarmonyMessage]:
    out: list[HarmonyMessage] = []
    reasoning = next(
        (msg[k] for k in ("reasoning", "thinking", "reasoning_content") if msg.get(k)), None
    )
    if reasoning:
        out.append(
            HarmonyMessage("assistant", _text_of(reasoning, where), channel="analysis")
        )
    content = _text_of(msg.get("content"), where)
    tool_calls = msg.get("tool_calls") or []
    if not tool_calls:
        if content or not reasoning:
            out.append(HarmonyMessage("assistant", content, channel="final"))
        return out
    if content:  # text said before calling: a commentary preamble
        out.append(HarmonyMessage("assistant", content, channel="commentary"))
    for j, call in enumerate(tool_calls):
        fn = call.get("function", call) if isinstance(call, Mapping) else None
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: tool_calls[{j}] has no function name")
        name = name.removeprefix("functions.")
        if isinstance(call.get("id"), str):
            call_names[call["id"]] = name
        out.append(
            HarmonyMessage(
                "assistant",
                _arguments_text(fn.get("arguments")),
                channel="commentary",
                recipient=f"functions.{name}",
                content_type=JSON_CONTENT_TYPE,
            )
        )
    return out


def _normalize_effort(reasoning_effort: str | None) -> str | None:
    if reasoning_effort is None:
        return None
    effort = str(reasoning_effort).lower()
    if effort not in REASONING_EFFORTS:
        raise ValueError(
            f"reasoning_effort must be one of {REASONING_EFFORTS} or None, "
            f"got {reasoning_effort!r}"
        )
    return effort


def build_conversation(
    messages: Sequence[Mapping[str, Any]],
    *,
    reasoning_effort: str | None = "medium",
    tools: Sequence[Mapping[str, Any]] | None = None,
    model_identity: str | None = None,
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF,
    current_date: str | _dt.date | None = None,
) -> list[HarmonyMessage]:
    """Turn OpenAI-style chat messages into the harmony messages to render.

    The result starts with the system message (identity, knowledge cutoff, date, reasoning
    effort, channels), then a developer message when there are instructions or tools.
    Every ``system`` and ``developer`` message in ``messages`` becomes part of the
    developer instructions (joined by blank lines, wherever they appear), as gpt-oss's own
    chat template does with the system prompt: in harmony the system message is reserved
    for the fields above. Assistant reasoning becomes an ``analysis`` message, content a
    ``final`` message (or a ``commentary`` preamble when the message has tool calls), and
    each tool call a ``commentary`` message to ``functions.NAME`` with content type
    ``<|constrain|>json``. Tool results are messages from ``functions.NAME`` to the
    assistant on the ``commentary`` channel.

    Raises:
        ValueError: unknown role, bad reasoning effort, a tool result whose tool cannot be
            identified, a tool call without a name, or an invalid tools list.
        TypeError: content that is not text.
    """
    effort = _normalize_effort(reasoning_effort)
    fn_tools = normalize_tools(tools)
    if isinstance(current_date, _dt.date):
        current_date = current_date.isoformat()
    instructions: list[str] = []
    body: list[HarmonyMessage] = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise TypeError(f"{where} is not a mapping")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"), where)
            if text:
                instructions.append(text)
        elif role == "user":
            body.append(HarmonyMessage("user", _text_of(msg.get("content"), where)))
        elif role == "assistant":
            body.extend(_assistant_messages(msg, where, call_names))
        elif role == "tool":
            name = msg.get("name") or call_names.get(msg.get("tool_call_id") or "")
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{where}: tool message needs 'name' or the 'tool_call_id' of an earlier "
                    "assistant tool call"
                )
            body.append(
                HarmonyMessage(
                    "tool",
                    _tool_result_text(msg.get("content"), where),
                    name="functions." + name.removeprefix("functions."),
                    channel="commentary",
                    recipient="assistant",
                )
            )
        else:
            raise ValueError(f"{where}: unknown role {role!r}")

    system = HarmonyMessage(
        "system",
        _system_text(
            model_identity=DEFAULT_MODEL_IDENTITY if model_identity is None else model_identity,
            knowledge_cutoff=knowledge_cutoff,
            current_date=current_date,
            reasoning_effort=effort,
            has_function_tools=bool(fn_tools),
        ),
    )
    head = [system]
    joined = "\n\n".join(instructions) if instructions else None
    if joined is not None or fn_tools:
        head.append(HarmonyMessage("developer", _developer_text(joined, fn_tools)))
    return head + _drop_old_analysis(body)


def _drop_old_analysis(msgs: list[HarmonyMessage]) -> list[HarmonyMessage]:
    """openai-harmony's ``auto_drop_analysis`` (on by default when rendering).

    If the last assistant message is on the ``final`` channel, analysis messages that come
    before the *first* ``final`` message of the conversation are dropped. (Analysis of
    later turns is kept; that is how openai-harmony 0.0.8 behaves, and it is mirrored so
    that the prompts stay token-identical.) While the assistant is mid-turn (last message
    a tool call), its analysis is kept, as the model needs it.
    """
    last_assistant = next((m for m in reversed(msgs) if m.role == "assistant"), None)
    if last_assistant is None or last_assistant.channel != "final":
        return msgs
    first_final = next(i for i, m in enumerate(msgs) if m.channel == "final")
    return [m for i, m in enumerate(msgs) if not (i < first_final and m.channel == "analysis")]


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _message_segments(msg: HarmonyMessage) -> list[Segment]:
    """The pieces of one message, split exactly where openai-harmony encodes separately."""
    seg: list[Segment] = [(True, TOKEN_NAMES[START])]
    if msg.role == "tool":
        seg.append((False, msg.name or ""))
    else:
        seg.append((False, msg.role))
        if msg.name is not None:
            seg.append((False, f":{msg.name}"))
    if msg.recipient is not None and msg.recipient != "all":
        seg.append((False, f" to={msg.recipient}"))
    if msg.channel is not None:
        seg += [(True, TOKEN_NAMES[CHANNEL]), (False, msg.channel)]
    if msg.content_type is not None:
        marker = TOKEN_NAMES[CONSTRAIN]
        if msg.content_type.startswith(marker):
            seg += [(False, " "), (True, marker)]
            rest = msg.content_type[len(marker):]
            if rest:
                seg.append((False, rest))
        else:
            seg.append((False, f" {msg.content_type}"))
    seg += [(True, TOKEN_NAMES[MESSAGE]), (False, msg.content)]
    tool_call = msg.role == "assistant" and msg.recipient is not None
    seg.append((True, TOKEN_NAMES[CALL if tool_call else END]))
    return seg


def render_segments(conversation: Sequence[HarmonyMessage]) -> list[Segment]:
    """Segments of a rendered conversation followed by ``<|start|>assistant``."""
    seg: list[Segment] = []
    for msg in conversation:
        seg += _message_segments(msg)
    seg += [(True, TOKEN_NAMES[START]), (False, "assistant")]
    return seg


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    *,
    reasoning_effort: str | None = "medium",
    tools: Sequence[Mapping[str, Any]] | None = None,
    model_identity: str | None = None,
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF,
    current_date: str | _dt.date | None = None,
) -> str:
    """Render a chat as harmony prompt text, ending with ``<|start|>assistant``.

    Args:
        messages: OpenAI-style messages (see the module docstring). ``system`` and
            ``developer`` messages become the developer message's ``# Instructions``.
        reasoning_effort: ``"low"``, ``"medium"`` or ``"high"`` (``Reasoning: ...`` line);
            None omits the line.
        tools: OpenAI-style function tools, rendered as ``namespace functions``.
        model_identity: the system message's first line (default: gpt-oss's
            "You are ChatGPT, a large language model trained by OpenAI."; ``""`` omits it).
        knowledge_cutoff: ``Knowledge cutoff: ...`` (None omits it).
        current_date: ``Current date: YYYY-MM-DD`` (omitted by default, as in harmony).

    Returns:
        The prompt, special tokens written as their names (``<|start|>`` ...).

    Raises:
        ValueError, TypeError: malformed messages or arguments (see
            :func:`build_conversation`).
    """
    conversation = build_conversation(
        messages,
        reasoning_effort=reasoning_effort,
        tools=tools,
        model_identity=model_identity,
        knowledge_cutoff=knowledge_cutoff,
        current_date=current_date,
    )
    return "".join(text for _, text in render_segments(conversation))


def encode_chat(
    enc: tiktoken.Encoding,
    messages: Sequence[Mapping[str, Any]],
    *,
    reasoning_effort: str | None = "medium",
    tools: Sequence[Mapping[str, Any]] | None = None,
    model_identity: str | None = None,
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF,
    current_date: str | _dt.date | None = None,
) -> list[int]:
    """Render a chat (as :func:`render_chat`) straight to token ids with ``enc``.

    The formatting tokens are emitted as ids and every text piece is encoded as ordinary
    text, as openai-harmony does. For ordinary conversations this equals
    ``enc.encode(render_chat(...), allowed_special="all")``; unlike that, text that merely
    looks like a special token (a user typing ``<|end|>``) stays plain text and cannot
    inject harmony structure.
    """
    conversation = build_conversation(
        messages,
        reasoning_effort=reasoning_effort,
        tools=tools,
        model_identity=model_identity,
        knowledge_cutoff=knowledge_cutoff,
        current_date=current_date,
    )
    ids: list[int] = []
    for special, text in render_segments(conversation):
        if special:
            ids.append(enc.encode_single_token(text))
        elif text:
            ids.extend(enc.encode_ordinary(text))
    return ids
