"""``edgemoe serve`` through the official ``openai`` client.

Two servers: a real ``edgemoe serve`` process on a free loopback port (the random chat model:
its text is random, so its answers are compared with the Python API's at temperature 0),
and an in-process server whose token source is scripted (``edgemoe.chat.generate_tokens``
replaced), so that reasoning, tool calls and disconnects follow a known script through the
real parsing, HTTP and SSE code.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import edgemoe
from edgemoe.generate import GenerationStats

openai = pytest.importorskip("openai", reason="the openai client is a test dependency")

pytest_plugins = ["tokenizer_fixtures"]

KEY = "test-key-123"
N_CTX = 512
HELLO = [{"role": "user", "content": "Hello! What is 2+2?"}]


# ------------------------------------------------------------------ the real server


@pytest.fixture(scope="module")
def served(chat_model_path: Path) -> Iterator[str]:
    """A real ``edgemoe serve`` process; yields its base URL (…/v1)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgemoe", "serve", str(chat_model_path), "--port", "0", "-t", "1",
         "--ctx", str(N_CTX), "--api-key", KEY, "--quiet"],
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()   # "edgemoe serve: chat on http://127.0.0.1:PORT/v1 (...)"
        assert " on http://127.0.0.1:" in line, line + proc.stderr.read()
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(served: str) -> Any:
    return openai.OpenAI(base_url=served, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local(chat_model_path: Path) -> Iterator[edgemoe.Model]:
    """The same model through the Python API, for the expected answers."""
    with edgemoe.load(chat_model_path, n_ctx=N_CTX, threads=1) as m:
        yield m


def _raw(url: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    host = url.split("//", 1)[1].split("/", 1)[0]
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.request(method, "/v1" + path if path.startswith("/") and path != "/health" else path,
                 body=body, headers=headers or {})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def test_models_and_health(client: Any, served: str) -> None:
    assert [m.id for m in client.models.list().data] == ["chat"]
    status, body = _raw(served, "GET", "/health")   # no key needed for health
    assert status == 200 and body["status"] == "ok"


def test_chat_matches_the_python_api(client: Any, local: edgemoe.Model) -> None:
    resp = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=24,
                                          temperature=0)
    expected = local.chat(HELLO, max_tokens=24, temperature=0, reasoning_effort="low")
    msg = resp.choices[0].message
    assert msg.content == (expected.content or None)
    assert getattr(msg, "reasoning_content", None) == (expected.reasoning or None)
    assert resp.choices[0].finish_reason == expected.finish_reason
    assert resp.usage.prompt_tokens == expected.usage.prompt_tokens
    assert resp.usage.completion_tokens == expected.usage.completion_tokens == 24 or \
        expected.finish_reason != "length"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_streaming_equals_non_streaming(client: Any) -> None:
    full = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=24,
                                          temperature=0)
    content, reasoning, finish, usage = "", "", None, None
    for chunk in client.chat.completions.create(model="chat", messages=HELLO, max_tokens=24,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            content += c.delta.content or ""
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            finish = c.finish_reason or finish
    assert content == (full.choices[0].message.content or "")
    assert reasoning == (getattr(full.choices[0].message, "reasoning_content", None) or "")
    assert finish == full.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_prefix_reuse_of_a_second_turn(client: Any) -> None:
    first = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=8,
                                           temperature=0)
    turn2 = HELLO + [{"role": "assistant", "content": first.choices[0].message.content or "ok"},
                     {"role": "user", "content": "And 3+3?"}]
    second = client.chat.completions.create(model="chat", messages=turn2, max_tokens=4,
                                            temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens   # the whole first prompt was reused
    assert cached < second.usage.prompt_tokens


def test_completions_and_stop_sequences(client: Any, local: edgemoe.Model) -> None:
    full = client.completions.create(model="chat", prompt="The weather today", max_tokens=16,
                                     temperature=0)
    text = full.choices[0].text
    assert text == local.generate("The weather today", max_tokens=16, temperature=0)
    assert full.usage.completion_tokens == 16 and full.choices[0].finish_reason == "length"
    stop = next((text[i:i + 2] for i in range(3, len(text) - 2) if text[i:i + 2].strip()), None)
    if stop is None:
        pytest.skip(f"the random model's text {text!r} has no usable stop string")
    cut = client.completions.create(model="chat", prompt="The weather today", max_tokens=16,
                                    temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_concurrent_requests_get_their_own_answers(client: Any, local: edgemoe.Model) -> None:
    prompts = [[{"role": "user", "content": f"Count to {i}."}] for i in range(4)]
    expected = [local.chat(p, max_tokens=6, temperature=0).content for p in prompts]

    def ask(p: list[dict[str, str]]) -> str:
        r = client.chat.completions.create(model="chat", messages=p, max_tokens=6, temperature=0)
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ask, prompts * 2))
    assert got == [e or "" for e in expected] * 2


def test_errors_and_the_server_keeps_serving(client: Any, served: str) -> None:
    status, body = _raw(served, "POST", "/chat/completions", b"{not json", _auth())
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = _raw(served, "POST", "/chat/completions", b"\xff\xfe", _auth())
    assert status == 400 and "UTF-8" in body["error"]["message"]
    nested = b"[" * 200 + b"]" * 200
    status, body = _raw(served, "POST", "/chat/completions", b'{"messages": ' + nested + b"}",
                        _auth())
    assert status == 400
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="chat", messages=HELLO, max_tokens=-3)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="chat", messages=HELLO, temperature="hot")
    with pytest.raises(openai.BadRequestError, match=r"context is 512 tokens, but the prompt "
                                                     r"is \d+ tokens"):
        client.chat.completions.create(model="chat", max_tokens=4, messages=[
            {"role": "user", "content": "word " * 600}])
    for key in ("wrong-key", ""):
        bad = openai.OpenAI(base_url=served, api_key=key or "x", max_retries=0,
                            default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    status, body = _raw(served, "GET", "/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, _ = _raw(served, "POST", "/nowhere", b"{}", _auth())
    assert status == 404
    r = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=2)
    assert r.usage.completion_tokens <= 2


# ------------------------------------------------------------------ scripted generations


class Script:
    """Stands in for edgemoe.chat.generate_tokens: yields the tokens of ``text`` (harmony,
    specials allowed) up to a stop token, records every prompt, optionally one token per
    ``delay`` seconds, and notes when its consumer closed it."""

    def __init__(self, enc: Any) -> None:
        self.enc = enc
        self.text = ""
        self.delay = 0.0
        self.prompts: list[list[int]] = []
        self.closed = threading.Event()

    def __call__(self, session: Any, prompt: list[int], *, max_tokens: int, sampler: Any,
                 stop_tokens: set[int], stats: GenerationStats | None = None) -> Iterator[int]:
        self.prompts.append(list(prompt))
        stats = stats if stats is not None else GenerationStats()
        stats.prompt_tokens, stats.finish_reason = len(prompt), "length"
        try:
            for tok in self.enc.encode(self.text, allowed_special="all")[:max_tokens]:
                if tok in stop_tokens:
                    stats.finish_reason, stats.stop_token = "stop", tok
                    return
                time.sleep(self.delay)
                stats.generated_tokens += 1
                yield tok
        finally:
            self.closed.set()


@pytest.fixture()
def scripted(chat_model_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[Any, Script, Any]]:
    from edgemoe.server import EdgemoeServer

    with edgemoe.load(chat_model_path, n_ctx=N_CTX, threads=1) as model:
        script = Script(model.tokenizer)
        monkeypatch.setattr("edgemoe.chat.generate_tokens", script)
        server = EdgemoeServer(model, "127.0.0.1", 0)
        server.quiet = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0,
                              timeout=60)
            yield c, script, server
        finally:
            server.shutdown()
            server.server_close()


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_reasoning_is_kept_out_of_content(scripted: tuple[Any, Script, Any]) -> None:
    c, script, _ = scripted
    script.text = ("<|channel|>analysis<|message|>The user wants a sum.<|end|>"
                   "<|start|>assistant<|channel|>final<|message|>It is 4.<|return|>")
    r = c.chat.completions.create(model="m", messages=HELLO)
    assert r.choices[0].message.content == "It is 4."
    assert r.choices[0].message.reasoning_content == "The user wants a sum."
    assert r.choices[0].finish_reason == "stop"
    deltas = [ch.choices[0].delta for ch in c.chat.completions.create(
        model="m", messages=HELLO, stream=True) if ch.choices]
    assert "".join(d.content or "" for d in deltas) == "It is 4."
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == \
        "The user wants a sum."


def test_tool_call_round_trip(scripted: tuple[Any, Script, Any], harmony_enc: Any) -> None:
    from openai_harmony import Role
    from test_harmony import _harmony_conversation

    c, script, _ = scripted
    script.text = ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant"
                   "<|channel|>commentary to=functions.get_weather <|constrain|>json"
                   '<|message|>{"city":"Tokyo"}<|call|>')
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Tokyo?"}]
    r = c.chat.completions.create(model="m", messages=msgs, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    streamed = [d.tool_calls for ch in c.chat.completions.create(
        model="m", messages=msgs, tools=[WEATHER_TOOL], stream=True)
        for d in [ch.choices[0].delta] if ch.choices and d.tool_calls]
    assert [tc[0].function.name for tc in streamed] == ["get_weather"]

    # the client runs the tool and sends the result back
    msgs += [{"role": "assistant", "content": None, "reasoning": "Need the weather.",
              "tool_calls": [{"id": call.id, "type": "function",
                              "function": {"name": "get_weather",
                                           "arguments": call.function.arguments}}]},
             {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
    script.text = "<|channel|>final<|message|>21 °C in Tokyo.<|return|>"
    r2 = c.chat.completions.create(model="m", messages=msgs, tools=[WEATHER_TOOL],
                                   reasoning_effort="low")
    assert r2.choices[0].message.content == "21 °C in Tokyo."
    case = {"messages": msgs, "tools": [WEATHER_TOOL], "reasoning_effort": "low"}
    expected = harmony_enc.render_conversation_for_completion(_harmony_conversation(case),
                                                              Role.ASSISTANT)
    assert script.prompts[-1] == list(expected)   # token for token, as openai-harmony renders


def test_disconnect_mid_stream_frees_the_model(scripted: tuple[Any, Script, Any]) -> None:
    c, script, server = scripted
    script.text = "<|channel|>final<|message|>" + "la " * 400
    script.delay = 0.02   # 400 tokens: 8 s if nobody stops it
    stream = c.chat.completions.create(model="m", messages=HELLO, stream=True, max_tokens=400)
    it = iter(stream)
    for _ in range(3):
        next(it)
    t0 = time.monotonic()
    stream.close()
    assert script.closed.wait(5), "the generation went on after the client left"
    assert time.monotonic() - t0 < 5
    for _ in range(100):
        if server.active_requests == 0:
            break
        time.sleep(0.05)
    assert server.active_requests == 0
    script.delay, script.text = 0.0, "<|channel|>final<|message|>next<|return|>"
    assert c.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == \
        "next"


def test_chat_stop_sequences(scripted: tuple[Any, Script, Any]) -> None:
    c, script, _ = scripted
    script.text = ("<|channel|>analysis<|message|>say hello world<|end|><|start|>assistant"
                   "<|channel|>final<|message|>Hello world, and more.<|return|>")
    r = c.chat.completions.create(model="m", messages=HELLO, stop=["world", "zzz"])
    assert r.choices[0].message.content == "Hello "
    assert r.choices[0].message.reasoning_content == "say hello world"   # stops apply to content
    assert r.choices[0].finish_reason == "stop"
    assert script.closed.is_set()
    chunks = list(c.chat.completions.create(model="m", messages=HELLO, stop="world",
                                            stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_slow_client_does_not_block_others(scripted: tuple[Any, Script, Any]) -> None:
    """Slow-loris: connections that send half a request and stall hold only their threads."""
    import socket

    c, script, server = scripted
    host, port = server.server_address[:2]
    stalled = []
    for _ in range(5):
        s = socket.create_connection((host, port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5000\r\n")
        stalled.append(s)
    script.text = "<|channel|>final<|message|>still here<|return|>"
    t0 = time.monotonic()
    r = c.chat.completions.create(model="m", messages=HELLO)
    assert r.choices[0].message.content == "still here"
    assert time.monotonic() - t0 < 10
    for s in stalled:
        s.close()


def test_request_time_limit(scripted: tuple[Any, Script, Any]) -> None:
    c, script, server = scripted
    server.request_timeout = 0.5
    script.text = "<|channel|>final<|message|>" + "la " * 400
    script.delay = 0.01   # 4 s if nobody stops it
    t0 = time.monotonic()
    r = c.chat.completions.create(model="m", messages=HELLO, max_tokens=400)
    assert time.monotonic() - t0 < 3
    assert r.choices[0].finish_reason == "length"
    assert 0 < r.usage.completion_tokens < 400
