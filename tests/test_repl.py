"""The chat REPL of ``edgemoe run`` (edgemoe/repl.py) with a stand-in model."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest

from edgemoe.chat import ChatResult, ContentDelta, Done, ReasoningDelta
from edgemoe.generate import Usage
from edgemoe.repl import DIM, ChatRepl


class FakeModel:
    """Records each chat call; streams a fixed turn, or raises Ctrl-C after the first piece."""

    def __init__(self, interrupt: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.interrupt = interrupt
        self.closed = False

    def chat(self, messages: list[dict[str, Any]], **kw: Any) -> Iterator[Any]:
        self.calls.append({"messages": [dict(m) for m in messages], **kw})
        return self._events()

    def _events(self) -> Iterator[Any]:
        try:
            yield ReasoningDelta("thinking")
            yield ContentDelta("Hello")
            if self.interrupt:
                raise KeyboardInterrupt
            yield ContentDelta(" there")
            yield Done(ChatResult("Hello there", "thinking",
                                  usage=Usage(12, 2, 7, 100.0, 10.0)))
        finally:
            self.closed = True


def args(**kw: Any) -> argparse.Namespace:
    base = {"effort": "low", "show_reasoning": False, "max_tokens": 16, "temp": 0.0,
            "top_p": 1.0, "seed": None, "no_stats": False}
    return argparse.Namespace(**(base | kw))


def test_turn_streams_answer_and_stats(capsys: pytest.CaptureFixture[str]) -> None:
    m = FakeModel()
    repl = ChatRepl(m, args(), [{"role": "user", "content": "Hi"}])
    assert repl.turn() == "Hello there"
    out, err = capsys.readouterr()
    assert out == "Hello there\n" and "thinking" not in out + err
    assert "7 reused" in err and "RSS" in err and "GiB" in err
    assert repl.messages[-1] == {"role": "assistant", "content": "Hello there"}


def test_commands_change_effort_reasoning_and_reset(capsys: pytest.CaptureFixture[str]) -> None:
    m = FakeModel()
    repl = ChatRepl(m, args(), [{"role": "developer", "content": "Be brief."}])
    assert repl.command("/effort high") == "reasoning effort: high"
    assert repl.command("/reasoning on") == "reasoning shown"
    assert "unknown command" in repl.command("/effort extreme")
    repl.messages.append({"role": "user", "content": "Hi"})
    repl.turn()
    assert m.calls[-1]["reasoning_effort"] == "high"
    assert DIM + "thinking" in capsys.readouterr().err
    assert repl.command("/reset") == "conversation cleared"
    assert repl.messages == [{"role": "developer", "content": "Be brief."}]


def test_ctrl_c_stops_the_answer_and_keeps_the_session(capsys: pytest.CaptureFixture[str]) -> None:
    m = FakeModel(interrupt=True)
    repl = ChatRepl(m, args(), [{"role": "user", "content": "Hi"}])
    assert repl.turn() == "Hello"
    assert m.closed
    assert "[interrupted]" in capsys.readouterr().out
    assert repl.messages[-1]["content"] == "Hello"
