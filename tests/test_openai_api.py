"""Request validation of the OpenAI API (edgemoe/openai_api.py): every refusal names its field."""

from __future__ import annotations

from typing import Any

import pytest

from edgemoe import openai_api as api

MSGS = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(("extra", "param"), [
    ({"messages": []}, "messages"),
    ({"messages": "Hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "tool_calls": "x"}]}, "messages[0].tool_calls"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": "1"}, "top_p"),
    ({"seed": "7"}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [1]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": []}, "stream_options"),
    ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"n": 2}, "n"),
    ({"reasoning_effort": "max"}, "reasoning_effort"),
    ({"tools": {}}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"frequency_penalty": 1}, "frequency_penalty"),
    ({"logit_bias": {"5": 1}}, "logit_bias"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"model": 3}, "model"),
])
def test_chat_request_refusals(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(api.ApiError) as e:
        api.chat_request({"messages": MSGS} | extra)
    assert e.value.status == 400 and e.value.param == param
    assert e.value.body()["error"]["type"] == "invalid_request_error"


def test_chat_request_defaults_and_neutral_extras() -> None:
    r = api.chat_request({"messages": MSGS, "frequency_penalty": 0, "logprobs": False,
                          "response_format": {"type": "text"}, "user": "u", "store": True,
                          "something_new": {"x": 1}, "tool_choice": "none", "tools": []})
    s = r.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.stream) == (None, 1.0, 1.0, [], False)
    assert r.reasoning_effort == "low" and r.tools is None
    assert api.chat_request({"messages": MSGS, "stop": "x"}).sampling.stop == ["x"]


@pytest.mark.parametrize("prompt", ["", [], [-1], [True], [["a"]], None, 5])
def test_completion_prompt_refusals(prompt: Any) -> None:
    with pytest.raises(api.ApiError, match="prompt"):
        api.completion_request({"prompt": prompt})


def test_completion_prompt_forms() -> None:
    assert api.completion_request({"prompt": ["Hi"]}).prompt == "Hi"
    assert api.completion_request({"prompt": [[1, 2]]}).prompt == [1, 2]
    assert api.completion_request({"prompt": "Hi"}).sampling.max_tokens == 16


@pytest.mark.parametrize(("raw", "needle"), [
    (b"\xff", "UTF-8"), (b"{", "not valid JSON"), (b"[1]", "JSON object"),
    (b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", "nested"),
    (b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested"),
])
def test_body_refusals(raw: bytes, needle: str) -> None:
    with pytest.raises(api.ApiError, match=needle):
        api.parse_body(raw)
