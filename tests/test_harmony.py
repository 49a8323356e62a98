"""edgemoe.harmony: rendering and parsing the harmony chat format, against openai-harmony.

The golden tests run from tests/data/harmony_golden.json alone; the oracle tests need
openai-harmony (loaded offline from the local vocab) and skip without it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from tokenizer_helpers import golden_data

from edgemoe.harmony import (
    STOP_TOKENS,
    STOP_TOKENS_ASSISTANT_ACTIONS,
    ContentDelta,
    HarmonyMessage,
    HarmonyStreamParser,
    ReasoningDelta,
    ToolCall,
    build_conversation,
    encode_chat,
    parse_completion,
    render_chat,
)
from edgemoe.harmony_schema import json_compact, schema_to_typescript

pytest_plugins = ["tokenizer_fixtures"]

RETURN, CALL, END = 200002, 200012, 200007

# --------------------------------------------------------------------------------------
# Test conversations (OpenAI-style)
# --------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Gets the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

RICH_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "limit": {"type": "integer", "description": "Max results", "default": 10},
        "lang": {"type": "string", "enum": ["en", "fr", "de"], "default": "en"},
        "safe": {"type": "boolean", "default": True},
        "ratio": {"type": "number", "default": 0.5},
        "big": {"type": "number", "default": 1e20},
        "tiny": {"type": "number", "default": 1e-7},
        "small": {"type": "number", "default": 0.00012},
        "whole": {"type": "number", "default": 3.0},
        "name": {"type": "string", "default": "x \"q\""},
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
        "anything": {"type": "array"},
        "filters": {
            "type": "object",
            "description": "Filters to apply",
            "properties": {
                "site": {"type": "string"},
                "after": {"type": "string", "title": "After date", "examples": ["2024-01-01"]},
                "nested": {
                    "type": "object",
                    "properties": {"deep": {"type": "integer", "enum": [1, 2]}},
                },
            },
            "required": ["site"],
        },
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            },
        },
        "mode": {"type": ["string", "null", "integer"]},
        "maybe": {"type": "string", "nullable": True},
        "unit": {
            "description": "Unit",
            "oneOf": [
                {"type": "string", "enum": ["c", "f"], "description": "Unit"},
                {"type": "integer", "description": "Kelvin offset", "default": 0},
            ],
            "default": "c",
        },
        "choice": {
            "description": "A choice",
            "oneOf": [{"type": "string"}, {"type": "number", "nullable": True}],
        },
        "meta": {"type": "object"},
        "opts": {"type": "object", "properties": {}},
        "listdef": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
        "objdef": {"type": "object", "default": {"k": 1, "s": "x"}},
        "nodefault": {},
        "nulldefault": {"type": "string", "default": None},
    },
    "required": ["query", "filters"],
}

RICH_TOOLS = [
    {"type": "function", "function": {"name": "search",
                                      "description": "Search the web.\nReturns top results.",
                                      "parameters": RICH_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time."}},
    {"name": "noop", "description": "", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "function": {
        "name": "pick", "description": "Top-level oneOf.",
        "parameters": {"oneOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "number"}}, "description": "B",
             "default": {"b": 1}},
        ]}}},
    {"type": "function", "function": {"name": "untyped", "description": "No type.",
                                      "parameters": {"properties": {"a": {"type": "string"}}}}},
]

TOKYO_CALL = {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}

CASES: dict[str, dict[str, Any]] = {
    "user_only_default": {"messages": [{"role": "user", "content": "Hi"}]},
    "effort_low_with_date": {
        "messages": [{"role": "user", "content": "Hello there"}],
        "reasoning_effort": "low", "current_date": "2025-01-02",
    },
    "effort_high_date_object": {
        "messages": [{"role": "user", "content": "Prove it."}],
        "reasoning_effort": "HIGH", "current_date": dt.date(2024, 12, 31),
    },
    "no_effort_custom_identity": {
        "messages": [{"role": "user", "content": "Who are you?"}],
        "reasoning_effort": None, "model_identity": "You are a helpful robot.",
        "knowledge_cutoff": "2023-10",
    },
    "instructions_no_tools_multiturn": {
        "messages": [
            {"role": "system", "content": "Be brief.\nUse metric units."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "reasoning": "Simple arithmetic.", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "thinking": "Again simple.", "content": "6"},
            {"role": "user", "content": "Thanks! 日本語 🦜 naïve\ttab\r\nCRLF"},
        ],
        "reasoning_effort": "medium", "current_date": "2025-06-28",
    },
    "two_system_messages": {
        "messages": [
            {"role": "system", "content": "First rule."},
            {"role": "developer", "content": [{"type": "text", "text": "Second rule."}]},
            {"role": "user", "content": "Go"},
        ],
    },
    "tool_call_result_then_final": {
        "messages": [
            {"role": "system", "content": "Answer tersely."},
            {"role": "user", "content": "What is the weather in Tokyo?"},
            {"role": "assistant", "reasoning": "Need to call the weather tool.",
             "content": None, "tool_calls": [TOKYO_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky":"sunny","temp_c":25}'},
            {"role": "assistant", "reasoning": "It is sunny.", "content": "Sunny, 25 C."},
            {"role": "user", "content": "And in Paris?"},
        ],
        "tools": [WEATHER_TOOL], "reasoning_effort": "low", "current_date": "2025-06-28",
    },
    "tool_preamble_dict_args_named_result": {
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                {"function": {"name": "functions.get_weather", "arguments": '{"city":"Rome"}'}},
            ]},
            {"role": "tool", "name": "get_weather", "content": {"temp_c": -3}},
            {"role": "tool", "name": "functions.get_weather", "content": "22 C"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "rich_tool_schemas": {
        "messages": [
            {"role": "system", "content": "Use tools when useful."},
            {"role": "user", "content": "Find papers on MoE."},
        ],
        "tools": RICH_TOOLS, "reasoning_effort": "high", "current_date": "2025-03-04",
    },
    "tools_without_instructions": {
        "messages": [{"role": "user", "content": "time?"}],
        "tools": [RICH_TOOLS[1], WEATHER_TOOL],
    },
    "special_text_in_user_content": {
        "messages": [{"role": "user", "content": "Type <|end|> then <|start|>assistant"}],
    },
}


# --------------------------------------------------------------------------------------
# Independent conversion of the same conversations into openai-harmony objects
# --------------------------------------------------------------------------------------


def _harmony_conversation(case: dict[str, Any]) -> Any:
    import openai_harmony as oh

    effort = case.get("reasoning_effort", "medium")
    system = oh.SystemContent.new()
    system.reasoning_effort = None if effort is None else oh.ReasoningEffort(effort.title())
    if "model_identity" in case:
        system = system.with_model_identity(case["model_identity"])
    if "knowledge_cutoff" in case:
        system = system.with_knowledge_cutoff(case["knowledge_cutoff"])
    date = case.get("current_date")
    if date is not None:
        system = system.with_conversation_start_date(str(date))
    out = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]

    def text(content: Any) -> str:
        if isinstance(content, list):
            return "".join(p["text"] for p in content)
        return content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))

    instructions = [text(m["content"]) for m in case["messages"]
                    if m["role"] in ("system", "developer")]
    tools = [t.get("function", t) for t in case.get("tools") or []]
    if instructions or tools:
        dev = oh.DeveloperContent.new()
        if instructions:
            dev = dev.with_instructions("\n\n".join(instructions))
        if tools:
            dev = dev.with_function_tools([
                oh.ToolDescription.new(t["name"], t.get("description", ""),
                                       parameters=t.get("parameters"))
                for t in tools
            ])
        out.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev))
    for m in case["messages"]:
        if m["role"] == "user":
            out.append(oh.Message.from_role_and_content(oh.Role.USER, text(m["content"])))
        elif m["role"] == "assistant":
            reasoning = m.get("reasoning") or m.get("thinking")
            if reasoning:
                out.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, reasoning)
                           .with_channel("analysis"))
            calls = m.get("tool_calls") or []
            if m.get("content"):
                out.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, m["content"])
                           .with_channel("commentary" if calls else "final"))
            for call in calls:
                name = call["function"]["name"].removeprefix("functions.")
                args = call["function"]["arguments"]
                args = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))
                out.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, args)
                           .with_channel("commentary").with_recipient(f"functions.{name}")
                           .with_content_type("<|constrain|>json"))
        elif m["role"] == "tool":
            name = m.get("name") or "get_weather"
            name = "functions." + name.removeprefix("functions.")
            out.append(oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, name),
                                                          text(m["content"]))
                       .with_recipient("assistant").with_channel("commentary"))
    return oh.Conversation.from_messages(out)


def _kwargs(case: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case.items() if k != "messages"}


# --------------------------------------------------------------------------------------
# Golden data (no openai-harmony needed)
# --------------------------------------------------------------------------------------


def _golden_messages() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    conv = golden_data()["conversation"]
    messages = [
        {"role": "system", "content": conv["developer"]["instructions"]},
        {"role": "user", "content": conv["user"]},
    ]
    kwargs = {
        "tools": [{"type": "function", "function": t} for t in conv["developer"]["function_tools"]],
        "reasoning_effort": conv["system"]["reasoning_effort"],
        "current_date": conv["system"]["conversation_start_date"],
        "knowledge_cutoff": conv["system"]["knowledge_cutoff"],
    }
    return messages, kwargs


def test_golden_prompt(o200k_enc: Any, golden: dict[str, Any]) -> None:
    messages, kwargs = _golden_messages()
    assert render_chat(messages, **kwargs) == golden["prompt_text"]
    ids = encode_chat(o200k_enc, messages, **kwargs)
    assert ids == golden["prompt_ids"]
    assert len(ids) == 135
    assert o200k_enc.encode(golden["prompt_text"], allowed_special="all") == ids


def test_golden_turn2_with_tool_result(o200k_enc: Any, golden: dict[str, Any]) -> None:
    messages, kwargs = _golden_messages()
    messages += [
        {"role": "assistant", "reasoning": "Need to call the weather tool.",
         "tool_calls": [TOKYO_CALL]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": golden["turn2_with_tool_result"]["tool_message"]["content"]},
    ]
    turn2 = golden["turn2_with_tool_result"]
    assert render_chat(messages, **kwargs) == turn2["prompt_text"]
    assert encode_chat(o200k_enc, messages, **kwargs) == turn2["prompt_ids"]


def _as_golden(msg: HarmonyMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "name": msg.name,
                           "content": [{"type": "text", "text": msg.content}],
                           "channel": msg.channel}
    if msg.recipient is not None:
        out["recipient"] = msg.recipient
    if msg.content_type is not None:
        out["content_type"] = msg.content_type
    return out


@pytest.mark.parametrize("key", ["completion_tool_call", "completion_final"])
def test_golden_completions(o200k_enc: Any, golden: dict[str, Any], key: str) -> None:
    sample = golden[key]
    assert o200k_enc.encode(sample["text"], allowed_special="all") == sample["ids"]
    result = parse_completion(o200k_enc, sample["ids"])
    assert [_as_golden(m) for m in result.messages] == sample["parsed"]
    if key == "completion_final":
        assert result.content == "Sunny, 25 C."
        assert result.reasoning == "It is sunny."
        assert result.tool_calls == [] and result.stop_token == RETURN
    else:
        assert result.content == ""
        assert result.reasoning == "Need to call the weather tool."
        assert result.tool_calls == [ToolCall("get_weather", '{"city":"Tokyo"}',
                                              "functions.get_weather", "<|constrain|>json")]
        assert result.stop_token == CALL


def test_golden_streaming_events(o200k_enc: Any, golden: dict[str, Any]) -> None:
    parser = HarmonyStreamParser(o200k_enc)
    events = []
    for token in golden["completion_tool_call"]["ids"]:
        assert not parser.done
        events += parser.feed(token)
    assert parser.done and parser.stop_token == CALL
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == (
        "Need to call the weather tool."
    )
    assert not any(isinstance(e, ContentDelta) for e in events)
    assert isinstance(events[-1], ToolCall) and events[-1].name == "get_weather"


def test_stop_token_sets(golden: dict[str, Any]) -> None:
    assert set(golden["stop_tokens"]) == STOP_TOKENS == {200002, 200007, 200012}
    assert set(golden["stop_tokens_for_assistant_actions"]) == STOP_TOKENS_ASSISTANT_ACTIONS
    assert STOP_TOKENS_ASSISTANT_ACTIONS == {200002, 200012}


# --------------------------------------------------------------------------------------
# Rendering against openai-harmony
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_equals_openai_harmony(o200k_enc: Any, harmony_enc: Any, name: str) -> None:
    from openai_harmony import Role

    case = CASES[name]
    expected = harmony_enc.render_conversation_for_completion(
        _harmony_conversation(case), Role.ASSISTANT
    )
    ids = encode_chat(o200k_enc, case["messages"], **_kwargs(case))
    text = render_chat(case["messages"], **_kwargs(case))
    assert text == harmony_enc.decode_utf8(expected)
    assert ids == expected


@pytest.mark.parametrize("name", sorted(set(CASES) - {"special_text_in_user_content"}))
def test_encode_chat_equals_encoding_the_text(o200k_enc: Any, name: str) -> None:
    case = CASES[name]
    text = render_chat(case["messages"], **_kwargs(case))
    assert encode_chat(o200k_enc, case["messages"], **_kwargs(case)) == o200k_enc.encode(
        text, allowed_special="all"
    )


def test_special_looking_text_stays_text(o200k_enc: Any) -> None:
    case = CASES["special_text_in_user_content"]
    ids = encode_chat(o200k_enc, case["messages"])
    # one <|end|> per message (system, user) only: the user's "<|end|>" is plain text
    assert ids.count(END) == 2
    assert ids.count(200006) == 3


def test_analysis_dropping_rule() -> None:
    # harmony drops analysis before the first final message once the last assistant
    # message is final; a pending tool call keeps its analysis
    case = CASES["instructions_no_tools_multiturn"]
    conv = build_conversation(case["messages"])
    channels = [(m.role, m.channel, m.content) for m in conv if m.role == "assistant"]
    assert channels == [("assistant", "final", "4"), ("assistant", "analysis", "Again simple."),
                        ("assistant", "final", "6")]
    pending = build_conversation(CASES["tool_call_result_then_final"]["messages"][:4])
    assert [m.channel for m in pending if m.role == "assistant"] == ["analysis", "commentary"]


def test_system_messages_become_developer_instructions() -> None:
    text = render_chat(CASES["two_system_messages"]["messages"])
    expected = "# Instructions\n\nFirst rule.\n\nSecond rule."
    assert f"<|start|>developer<|message|>{expected}<|end|>" in text
    assert text.count("<|start|>system") == 1
    assert "Reasoning: medium" in text and "Current date" not in text


def test_render_errors() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        render_chat([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="reasoning_effort"):
        render_chat([{"role": "user", "content": "x"}], reasoning_effort="extreme")
    with pytest.raises(ValueError, match="tool_call_id"):
        render_chat([{"role": "tool", "tool_call_id": "nope", "content": "x"}])
    with pytest.raises(ValueError, match="no function name"):
        render_chat([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}])
    with pytest.raises(ValueError, match="function tools"):
        render_chat([{"role": "user", "content": "x"}], tools=[{"type": "web_search"}])
    with pytest.raises(TypeError, match="content"):
        render_chat([{"role": "user", "content": 5}])


def test_schema_rendering_examples() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "enum": ["x", "y"], "default": "x"},
        "b": {"type": "integer", "default": 3},
        "c": {"type": "array", "items": {"type": "object", "properties": {"d": {}}}},
    }, "required": ["a"]}
    assert schema_to_typescript(schema) == (
        '{\na: "x" | "y", // default: x\nb?: number, // default: 3\n'
        "c?: {\n    d?: any,\n    }[],\n}"
    )
    assert json_compact({"a": [1, 2.0, 1e20, None, True, "é\n"]}) == (
        '{"a":[1,2.0,1e20,null,true,"é\\n"]}'
    )


# --------------------------------------------------------------------------------------
# Parsing against openai-harmony
# --------------------------------------------------------------------------------------

COMPLETIONS = {
    "recipient_before_channel": ' to=functions.get_weather<|channel|>commentary <|constrain|>json'
                                '<|message|>{"city":"Oslo"}<|call|>',
    "unicode": "<|channel|>analysis<|message|>Think: 日本語, naïve, 🦜🪿 𓀀.<|end|>"
               "<|start|>assistant<|channel|>final<|message|>答え: 🦜 — ok\n```py\nx = 1\n```"
               "<|return|>",
    "preamble_then_call": "<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant"
                          "<|channel|>commentary to=functions.search <|constrain|>json"
                          '<|message|>{"query":"moe"}<|call|>',
    "call_without_constrain": "<|channel|>commentary to=functions.get_time<|message|>{}<|call|>",
    "call_plain_content_type": "<|channel|>commentary to=functions.f json<|message|>[]<|call|>",
    "final_ended_by_end": "<|channel|>final<|message|>Done.<|end|>",
    "truncated_final": "<|channel|>analysis<|message|>ok<|end|><|start|>assistant"
                       "<|channel|>final<|message|>Partial answ",
    "truncated_call": '<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a":',
}


def _harmony_messages(harmony_enc: Any, ids: list[int]) -> list[tuple[Any, ...]]:
    from openai_harmony import Role

    msgs = harmony_enc.parse_messages_from_completion_tokens(ids, Role.ASSISTANT)
    return [(m.author.role.value, m.author.name, m.channel, m.recipient, m.content_type,
             "".join(c.text for c in m.content)) for m in msgs]


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_parse_equals_openai_harmony(o200k_enc: Any, harmony_enc: Any, name: str) -> None:
    from openai_harmony import Role, StreamableParser

    ids = o200k_enc.encode(COMPLETIONS[name], allowed_special="all")
    result = parse_completion(o200k_enc, ids)
    ours = [(m.role, m.name, m.channel, m.recipient, m.content_type, m.content)
            for m in result.messages]
    assert ours == _harmony_messages(harmony_enc, ids)

    # per-token text deltas equal openai-harmony's StreamableParser deltas
    theirs = StreamableParser(harmony_enc, role=Role.ASSISTANT)
    parser = HarmonyStreamParser(o200k_enc)
    for token in ids:
        theirs.process(token)
        events = parser.feed(token)
        delta = "".join(e.text for e in events if isinstance(e, (ReasoningDelta, ContentDelta)))
        if theirs.current_recipient is None and theirs.current_channel is not None:
            assert delta == (theirs.last_content_delta or ""), token


def test_parse_multibyte_split_across_tokens(o200k_enc: Any) -> None:
    text = "🪿𓀀🦜ꙮ"
    ids = o200k_enc.encode("<|channel|>final<|message|>" + text + "<|return|>",
                           allowed_special="all")
    assert any(not _valid_utf8(o200k_enc.decode_single_token_bytes(t)) for t in ids)
    parser = HarmonyStreamParser(o200k_enc)
    deltas = [e.text for t in ids for e in parser.feed(t) if isinstance(e, ContentDelta)]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Lenient parsing (defined behaviour where openai-harmony raises)
# --------------------------------------------------------------------------------------


def _parse_text(enc: Any, text: str) -> Any:
    return parse_completion(enc, enc.encode(text, allowed_special="all"))


def test_channel_less_output_is_content(o200k_enc: Any) -> None:
    parser = HarmonyStreamParser(o200k_enc)
    ids = o200k_enc.encode("Hello there, friend!") + [RETURN]
    first = parser.feed(ids[0])
    assert first == [ContentDelta("Hello")]  # reported at once, not held back
    for token in ids[1:]:
        parser.feed(token)
    result = parser.result()
    assert result.content == "Hello there, friend!" and result.reasoning == ""
    assert result.stop_token == RETURN and parser.done
    assert _parse_text(o200k_enc, " to be or not<|return|>").content == " to be or not"


def test_role_name_in_header_and_missing_start(o200k_enc: Any) -> None:
    result = _parse_text(o200k_enc, "assistant<|channel|>final<|message|>Hi<|return|>")
    assert result.content == "Hi"
    no_start = "<|channel|>analysis<|message|>think<|end|><|channel|>final<|message|>ans<|return|>"
    result = _parse_text(o200k_enc, no_start)
    assert (result.reasoning, result.content) == ("think", "ans")


def test_stop_before_anything_and_long_header(o200k_enc: Any) -> None:
    parser = HarmonyStreamParser(o200k_enc)
    assert parser.feed(RETURN) == []
    assert parser.done and parser.result().messages == []
    long_header = "<|channel|>analysis<|message|>x<|end|><|start|>" + "word " * 80
    result = _parse_text(o200k_enc, long_header)
    assert result.content.startswith("word word") and result.reasoning == "x"


def test_truncated_tool_call_and_unknown_ids(o200k_enc: Any) -> None:
    result = _parse_text(o200k_enc, COMPLETIONS["truncated_call"])
    assert result.stop_token is None
    assert result.tool_calls == [ToolCall("f", '{"a":', "functions.f", "<|constrain|>json")]
    ids = o200k_enc.encode("<|channel|>final<|message|>a", allowed_special="all")
    result = parse_completion(o200k_enc, [*ids, 999_999, RETURN])
    assert result.content == "a\ufffd"


def test_other_roles_produce_no_events(o200k_enc: Any) -> None:
    text = ("<|channel|>final<|message|>A<|end|><|start|>functions.f to=assistant"
            "<|channel|>commentary<|message|>{}<|end|>")
    result = _parse_text(o200k_enc, text)
    assert result.content == "A"
    assert result.messages[1] == HarmonyMessage("tool", "{}", "functions.f", "commentary",
                                                "assistant", None)


def _small_harmony_encoding(names: tuple[str, ...]) -> Any:
    """A byte-only tiktoken encoding whose harmony tokens sit at small, non-o200k ids."""
    import tiktoken

    from edgemoe.tokenizer import O200K_PAT_STR

    ranks = {bytes([b]): b for b in range(256)}
    specials = {name: 256 + i for i, name in enumerate(names)}
    return tiktoken.Encoding("small", pat_str=O200K_PAT_STR, mergeable_ranks=ranks,
                             special_tokens=specials)


HARMONY_NAMES = ("<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
                 "<|end|>", "<|message|>", "<|call|>")


def test_harmony_tokens_follow_the_tokenizer() -> None:
    """A model with its own tokenizer (the bundled demo) has harmony's names at its own ids:
    rendering, parsing and the stop sets use those."""
    from edgemoe.harmony_parser import HarmonyTokens

    enc = _small_harmony_encoding(HARMONY_NAMES)
    ids = HarmonyTokens.of(enc)
    assert (ids.return_, ids.start, ids.end, ids.call) == (257, 260, 261, 263)
    assert ids.turn_stop == {257, 263} and ids.stop == {257, 261, 263}
    completion = enc.encode(
        "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final"
        "<|message|>answer é<|return|>", allowed_special="all")
    result = parse_completion(enc, completion)
    assert (result.reasoning, result.content, result.stop_token) == ("think", "answer é", 257)
    prompt = encode_chat(enc, [{"role": "user", "content": "hi <|end|>"}])
    tail = [ids.start, *enc.encode("assistant")]
    assert prompt[-len(tail):] == tail
    assert prompt.count(ids.end) == 2   # system and user messages; the typed <|end|> is text


def test_harmony_tokens_missing_is_a_clear_error() -> None:
    from edgemoe.errors import TokenizerError
    from edgemoe.harmony_parser import HarmonyStreamParser

    enc = _small_harmony_encoding(tuple(n for n in HARMONY_NAMES if n != "<|call|>"))
    with pytest.raises(TokenizerError, match=r"lacks the harmony token <\|call\|>"):
        HarmonyStreamParser(enc)
