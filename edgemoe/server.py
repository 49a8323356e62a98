"""``edgemoe serve``: an OpenAI-compatible HTTP server over one model (docs/SERVER.md).

Built on the standard library's ``http.server`` (one thread per connection): no dependency
to install on a device, and the API needs only JSON bodies and Server-Sent Events. Requests
are validated by :mod:`edgemoe.openai_api`; generations run one at a time on the model's
shared session (requests queue on the model's lock), so a new turn of a conversation
reuses the KV cache of its longest shared prefix with whatever ran before. A client that
disconnects stops its generation at the next token and frees the model for the next one.
"""

from __future__ import annotations

import hmac
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemoe import openai_api as api
from edgemoe.chat import Done, chat_events
from edgemoe.errors import (
    ContextFullError,
    EdgemoeError,
    InvalidArgumentError,
    TokenizerError,
)
from edgemoe.generate import GenerationStats, StopStrings, generate_text
from edgemoe.harmony import encode_chat
from edgemoe.harmony_parser import ContentDelta, ReasoningDelta, ToolCall
from edgemoe.sampling import Sampler, SamplingParams

if TYPE_CHECKING:
    from edgemoe.model import Model

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 4 << 20
#: Seconds a connection may stay silent while its request is read (or between requests).
IDLE_TIMEOUT_S = 120
#: Default wall-clock limit of one generation (seconds, queueing excluded).
REQUEST_TIMEOUT_S = 600.0


def unauthorized() -> api.ApiError:
    """The reply to a request without the right key (when --api-key is set)."""
    return api.ApiError(401, "invalid or missing API key", type_="authentication_error",
                        code="invalid_api_key")


class ClientGone(Exception):
    """The client closed its connection."""


class EdgemoeServer(ThreadingHTTPServer):
    """The HTTP server: one model, an optional API key."""

    daemon_threads = True
    quiet = False   #: no per-request log lines

    def __init__(self, model: Model, host: str = "127.0.0.1", port: int = 8080, *,
                 api_key: str | None = None, model_id: str | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.model = model
        self.request_timeout = request_timeout   # <= 0: none
        self.model_id = model_id or Path(model.path).stem
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self._active = 0
        self._active_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), Handler)

    def active(self, delta: int) -> None:
        """Count generations admitted and finished (``/health`` reports them)."""
        with self._active_lock:
            self._active += delta

    @property
    def active_requests(self) -> int:
        with self._active_lock:
            return self._active

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: EdgemoeServer
    protocol_version = "HTTP/1.1"
    server_version = "edgemoe"
    timeout = IDLE_TIMEOUT_S   # a client that stops sending holds only its own thread, briefly

    # ------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.server.quiet:
            sys.stderr.write(f"edgemoe serve: {self.address_string()} {format % args}\n")

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, e: api.ApiError) -> None:
        self._send_json(e.status, e.body())

    def _authorized(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        got = self.headers.get("Authorization", "")
        scheme, _, token = got.partition(" ")
        return hmac.compare_digest(token.strip().encode() if scheme.lower() == "bearer" else b"",
                                   key.encode())

    def _read_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if length is None:
            raise api.ApiError(411, "a request body needs a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            raise api.ApiError(400, f"bad Content-Length {length!r}") from None
        if n < 0 or n > self.server.max_body_bytes:
            self.close_connection = True
            raise api.ApiError(413, f"request body of {n} bytes is larger than the limit of "
                               f"{self.server.max_body_bytes} bytes")
        return api.parse_body(self.rfile.read(n))

    def _client_gone(self) -> bool:
        """True if the client closed its side (checked between tokens, never blocks)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._streaming = True

    def _event(self, obj: Any) -> None:
        data = obj if isinstance(obj, str) else json.dumps(obj)
        try:
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()
        except OSError:
            raise ClientGone from None
        if self._client_gone():
            raise ClientGone

    # ------------------------------------------------------------- routes
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if path == "/health":
            return self._send_json(200, {"status": "ok",
                                         "active_requests": self.server.active_requests})
        if not self._authorized():
            return self._send_error(unauthorized())
        if path == "/v1/models":
            return self._send_json(200, {"object": "list", "data": [self._model_object()]})
        if path == f"/v1/models/{self.server.model_id}":
            return self._send_json(200, self._model_object())
        return self._send_error(api.ApiError(404, f"no route GET {path}", code="not_found"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        routes = {"/v1/chat/completions": self._chat, "/v1/completions": self._completion}
        self._streaming = False
        try:
            if not self._authorized():
                self.close_connection = True   # the body is not read
                raise unauthorized()
            if path not in routes:
                self.close_connection = True   # the body is not read
                raise api.ApiError(404, f"no route POST {path}", code="not_found")
            body = self._read_body()
            self.server.active(+1)
            try:
                routes[path](body)
            except (InvalidArgumentError, TokenizerError, ContextFullError) as e:
                raise api.ApiError(400, str(e)) from None
            except EdgemoeError as e:
                raise api.ApiError(500, str(e), type_="server_error") from None
            finally:
                self.server.active(-1)
        except api.ApiError as e:
            self._fail(e)
        except ClientGone:
            self.close_connection = True
        except Exception as e:   # a bug: answer, log, keep serving
            self.log_error("internal error: %r", e)
            self._fail(api.ApiError(500, f"internal error: {type(e).__name__}: {e}",
                                    type_="server_error"))

    def _fail(self, e: api.ApiError) -> None:
        """The error as a reply, or as the last event of a stream already under way."""
        try:
            if self._streaming:
                self._event(e.body())
            else:
                self._send_error(e)
        except (ClientGone, OSError):
            self.close_connection = True

    def _model_object(self) -> dict[str, Any]:
        return {"id": self.server.model_id, "object": "model", "created": 0,
                "owned_by": "edgemoe"}

    # ------------------------------------------------------------- generation
    def _check_context(self, n_prompt: int) -> int:
        """Tokens left for generation; ApiError 400 if the prompt does not fit."""
        n_ctx = self.server.model.n_ctx
        if n_prompt >= n_ctx:
            raise api.ApiError(
                400, f"this model's context is {n_ctx} tokens, but the prompt is {n_prompt} "
                "tokens (at least one must be left to generate)",
                param="messages", code="context_length_exceeded")
        return n_ctx - n_prompt

    def _chat(self, body: dict[str, Any]) -> None:
        req = api.chat_request(body)
        model, s = self.server.model, req.sampling
        try:
            prompt = encode_chat(model.tokenizer, req.messages,
                                 reasoning_effort=req.reasoning_effort, tools=req.tools)
        except TokenizerError:
            raise
        except (ValueError, TypeError) as e:
            raise api.ApiError(400, f"messages: {e}", param="messages") from None
        room = self._check_context(len(prompt))
        max_tokens = min(s.max_tokens or room, room)
        stats = GenerationStats()
        sampler = Sampler(SamplingParams(temperature=s.temperature, top_p=s.top_p), s.seed)
        rid, name = api.new_id("chatcmpl"), self.server.model_id
        reply = api.Reply(prompt_tokens=len(prompt))
        if s.stream:
            self._start_stream()
            self._event(api.chat_chunk(rid, name, {"role": "assistant", "content": ""}))
        events = chat_events(model, prompt, max_tokens, sampler, stats)
        try:
            self._run_chat(events, reply, s, rid)
        finally:
            events.close()   # releases the model at once, also when the client left
        reply.completion_tokens = stats.generated_tokens
        reply.cached_tokens = stats.reused_tokens
        if not s.stream:
            return self._send_json(200, api.chat_completion(rid, name, reply))
        self._event(api.chat_chunk(rid, name, {}, reply.finish_reason))
        if s.include_usage:
            self._event(api.usage_chunk(rid, name, "chat.completion.chunk", reply))
        self._event("[DONE]")

    def _deadline(self) -> float:
        """When the generation starting now must stop (finish_reason "length")."""
        limit = self.server.request_timeout
        return time.monotonic() + limit if limit > 0 else float("inf")

    def _run_chat(self, events: Iterator[Any], reply: api.Reply, s: api.Sampling,
                  rid: str) -> None:
        name = self.server.model_id
        stops = StopStrings(s.stop)
        deadline = None
        for ev in events:
            deadline = deadline or self._deadline()   # counted from the first event: after queueing
            if time.monotonic() > deadline:
                reply.finish_reason = "length"
                return
            delta: dict[str, Any] | None = None
            if isinstance(ev, ReasoningDelta):
                reply.reasoning += ev.text
                delta = {"reasoning_content": ev.text}
            elif isinstance(ev, ContentDelta):
                text = stops.push(ev.text)
                reply.content += text
                delta = {"content": text} if text else None
            elif isinstance(ev, ToolCall):
                reply.tool_calls.append(ev)
                delta = {"tool_calls": [api.tool_call_object(ev, len(reply.tool_calls) - 1)]}
            elif isinstance(ev, Done):
                reply.finish_reason = ev.result.finish_reason
            if s.stream and delta:
                self._event(api.chat_chunk(rid, name, delta))
            elif not s.stream and self._client_gone():
                raise ClientGone
            if stops.stopped:
                reply.finish_reason = "stop"
                return
        tail = stops.flush()
        reply.content += tail
        if s.stream and tail:
            self._event(api.chat_chunk(rid, name, {"content": tail}))

    def _completion(self, body: dict[str, Any]) -> None:
        req = api.completion_request(body)
        model, s = self.server.model, req.sampling
        if isinstance(req.prompt, str):
            ids = model.encode(req.prompt)
        else:
            ids = req.prompt
            bad = [t for t in ids if t >= model.info.n_vocab]
            if bad:
                raise api.ApiError(400, f"prompt token {bad[0]} is not below the vocabulary "
                                   f"size {model.info.n_vocab}", param="prompt")
        room = self._check_context(len(ids))
        stats = GenerationStats()
        rid, name = api.new_id("cmpl"), self.server.model_id
        if s.stream:
            self._start_stream()
        pieces = generate_text(model, ids, max_tokens=min(s.max_tokens or room, room),
                               temperature=s.temperature, top_p=s.top_p, seed=s.seed,
                               stop=s.stop, stats=stats)
        text, deadline, timed_out = "", None, False
        try:
            for piece in pieces:
                deadline = deadline or self._deadline()
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                text += piece
                if s.stream:
                    self._event(api.completion(rid, name, piece, None, None))
                elif self._client_gone():
                    raise ClientGone
        finally:
            pieces.close()
        reply = api.Reply(prompt_tokens=len(ids), completion_tokens=stats.generated_tokens,
                          cached_tokens=stats.reused_tokens,
                          finish_reason="length" if timed_out else stats.finish_reason)
        if not s.stream:
            return self._send_json(200, api.completion(rid, name, text, reply, reply.finish_reason))
        self._event(api.completion(rid, name, "", None, reply.finish_reason))
        if s.include_usage:
            self._event(api.usage_chunk(rid, name, "text_completion", reply))
        self._event("[DONE]")


def serve(model: Model, host: str = "127.0.0.1", port: int = 8080, *,
          api_key: str | None = None, quiet: bool = False,
          request_timeout: float = REQUEST_TIMEOUT_S) -> None:
    """Serve ``model`` until interrupted (Ctrl-C)."""
    try:
        server = EdgemoeServer(model, host, port, api_key=api_key,
                               request_timeout=request_timeout)
    except OSError as e:
        raise EdgemoeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.quiet = quiet
    print(f"edgemoe serve: {server.model_id} on {server.url}/v1 "
          f"({'API key required' if api_key else 'no API key'})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
