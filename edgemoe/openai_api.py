"""The OpenAI API's shapes: request validation and response objects, no I/O.

:mod:`edgemoe.server` parses a request body with :func:`chat_request` or
:func:`completion_request` (which raise :class:`ApiError` naming the field at fault), runs
it, and builds the JSON replies with the helpers below. Fields follow OpenAI's chat
completions and completions APIs; the analysis channel of gpt-oss is returned as
``reasoning_content`` (the field llama.cpp's server uses), never inside ``content``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgemoe.harmony_parser import ToolCall

#: Most stop strings a request may give (OpenAI's limit).
MAX_STOP = 4
#: Deepest JSON nesting accepted in a request body.
MAX_DEPTH = 64


class ApiError(Exception):
    """An error reply: HTTP status and OpenAI's error object."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


@dataclass
class Sampling:
    """The generation fields both endpoints share."""

    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    stream: bool
    include_usage: bool


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    sampling: Sampling
    reasoning_effort: str = "low"
    tools: list[dict[str, Any]] | None = None


@dataclass
class CompletionRequest:
    prompt: str | list[int]
    sampling: Sampling


@dataclass
class Reply:
    """What a finished generation produced, for the response objects."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


# ------------------------------------------------------------------ request parsing


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or ApiError 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not UTF-8 (byte {e.start})") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise ApiError(400, f"request body is nested deeper than {MAX_DEPTH} levels")
    return body


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nxt: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, list):
                nxt.extend(v)
        level = nxt
    return depth


def _type_error(name: str, what: str, value: Any) -> ApiError:
    return ApiError(400, f"'{name}' must be {what}, got {json.dumps(value)[:80]}", param=name)


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise _type_error(name, f"a number in [{lo:g}, {hi:g}]", v)
    return float(v)


def _int(body: Mapping[str, Any], name: str, lo: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _type_error(name, f"an integer >= {lo}", v)
    return v


def _bool(body: Mapping[str, Any], name: str) -> bool:
    v = body.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _type_error(name, "a boolean", v)
    return v


def _unsupported(body: Mapping[str, Any]) -> None:
    """Fields edgemoe does not implement: accepted at their neutral value (clients send
    them), refused otherwise rather than silently ignored."""
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, 0.0, -2.0, 2.0) != 0.0:
            raise ApiError(400, f"'{name}' is not supported (only 0)", param=name)
    bias = body.get("logit_bias")
    if bias is not None and not isinstance(bias, dict):
        raise _type_error("logit_bias", "an object", bias)
    if bias:
        raise ApiError(400, "'logit_bias' is not supported", param="logit_bias")
    if _bool(body, "logprobs") or body.get("top_logprobs") not in (None, 0):
        raise ApiError(400, "'logprobs' is not supported", param="logprobs")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError(400, "'response_format' other than {\"type\": \"text\"} is not "
                       "supported", param="response_format")
    for name in ("user", "model"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise _type_error(name, "a string", body[name])


def _sampling(body: Mapping[str, Any], default_max: int | None) -> Sampling:
    _unsupported(body)
    max_tokens = _int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1)
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP:
        stops = list(stop)
    else:
        raise _type_error("stop", f"a string or a list of at most {MAX_STOP} strings", stop)
    n = _int(body, "n", 1)
    if n not in (None, 1):
        raise ApiError(400, "'n' must be 1: one choice per request", param="n")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    include_usage = (options or {}).get("include_usage") or False
    if not isinstance(include_usage, bool):
        raise _type_error("stream_options.include_usage", "a boolean", include_usage)
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else default_max,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
        seed=_int(body, "seed", -(2**63)),
        stop=stops,
        stream=_bool(body, "stream"),
        include_usage=include_usage,
    )


ROLES = ("system", "developer", "user", "assistant", "tool")


def chat_request(body: Mapping[str, Any]) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body (unknown fields are ignored)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _type_error("messages", "a non-empty list of messages", messages)
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _type_error(f"messages[{i}]", "an object", m)
        if m.get("role") not in ROLES:
            raise _type_error(f"messages[{i}].role", f"one of {', '.join(ROLES)}", m.get("role"))
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _type_error(f"messages[{i}].content", "a string or a list of parts", content)
        calls = m.get("tool_calls")
        if calls is not None and not (isinstance(calls, list)
                                      and all(isinstance(c, dict) for c in calls)):
            raise _type_error(f"messages[{i}].tool_calls", "a list of objects", calls)
    effort = body.get("reasoning_effort")
    if effort is None:
        effort = "low"
    if effort not in ("low", "medium", "high"):
        raise _type_error("reasoning_effort", "one of low, medium, high", effort)
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list)
                                  and all(isinstance(t, dict) for t in tools)):
        raise _type_error("tools", "a list of tool objects", tools)
    if not isinstance(body.get("parallel_tool_calls", True), bool):
        raise _type_error("parallel_tool_calls", "a boolean", body["parallel_tool_calls"])
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise ApiError(400, "'tool_choice' must be \"auto\" or \"none\" (the model decides)",
                       param="tool_choice")
    if choice == "none":
        tools = None
    return ChatRequest(messages=messages, sampling=_sampling(body, None),
                       reasoning_effort=effort, tools=tools or None)


def completion_request(body: Mapping[str, Any]) -> CompletionRequest:
    """Validate a ``/v1/completions`` body: ``prompt`` is a string or a list of token ids
    (or a list holding one of those)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    ok = isinstance(prompt, str) and prompt != "" or (
        isinstance(prompt, list) and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt))
    if not ok:
        raise _type_error("prompt", "a non-empty string or list of token ids", prompt)
    return CompletionRequest(prompt=prompt, sampling=_sampling(body, 16))


# ------------------------------------------------------------------ responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def tool_call_object(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}}
    if index is not None:
        out["index"] = index
    return out


def usage_object(r: Reply) -> dict[str, Any]:
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cached_tokens}}


def chat_completion(rid: str, model: str, r: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": r.content or None}
    if r.reasoning:
        message["reasoning_content"] = r.reasoning
    if r.tool_calls:
        message["tool_calls"] = [tool_call_object(c) for c in r.tool_calls]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": r.finish_reason,
                         "logprobs": None}],
            "usage": usage_object(r)}


def chat_chunk(rid: str, model: str, delta: dict[str, Any],
               finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                         "logprobs": None}]}


def usage_chunk(rid: str, model: str, obj: str, r: Reply) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [], "usage": usage_object(r)}


def completion(rid: str, model: str, text: str, r: Reply | None,
               finish_reason: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason,
                     "logprobs": None}]}
    if r is not None:
        out["usage"] = usage_object(r)
    return out
