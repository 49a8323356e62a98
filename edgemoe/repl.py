"""The chat of ``edgemoe run``: one streamed answer (``-p``) or an interactive session.

Each turn streams the final answer to stdout and, with reasoning shown, the analysis
channel dimmed to stderr; a stats line follows on stderr (prompt and generation tokens/s,
prompt tokens reused from the KV cache, resident memory). Ctrl-C stops the answer being
written and returns to the prompt. Commands: ``/reset``, ``/effort low|medium|high``,
``/reasoning on|off``, ``/help``; an empty line or Ctrl-D quits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgemoe.chat import ContentDelta, Done, ReasoningDelta, ToolCall

DIM, RESET = "\x1b[2m", "\x1b[0m"
EFFORTS = ("low", "medium", "high")
HELP = ("commands: /reset (start over), /effort low|medium|high, /reasoning on|off, /help; "
        "Ctrl-C stops an answer; an empty line or Ctrl-D quits")


def resident_gib() -> float:
    """This process's resident memory in GiB."""
    import psutil

    return psutil.Process().memory_info().rss / 1024**3


class ChatRepl:
    """A conversation with ``model`` driven by the options of ``edgemoe run``."""

    def __init__(self, model: Any, args: argparse.Namespace,
                 messages: list[dict[str, Any]]) -> None:
        self.model = model
        self.args = args
        self.messages = messages
        self.effort: str = args.effort
        self.show_reasoning: bool = args.show_reasoning
        self._n_fixed = len(messages)   # the developer instructions survive /reset

    def run(self) -> int:
        """Read lines until an empty one or end of input; return the exit code."""
        print(f"edgemoe chat — {HELP}.", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                print(file=sys.stderr)
                return 0
            except KeyboardInterrupt:
                print(file=sys.stderr)
                continue
            if not line.strip():
                return 0
            if line.startswith("/"):
                print(self.command(line.strip()), file=sys.stderr)
                continue
            self.messages.append({"role": "user", "content": line})
            self.turn()

    def command(self, line: str) -> str:
        """Apply a /command; return what to tell the user."""
        name, _, arg = line.partition(" ")
        arg = arg.strip().lower()
        if name == "/reset":
            del self.messages[self._n_fixed:]
            return "conversation cleared"
        if name == "/effort" and arg in EFFORTS:
            self.effort = arg
            return f"reasoning effort: {arg}"
        if name == "/reasoning" and arg in ("on", "off"):
            self.show_reasoning = arg == "on"
            return f"reasoning {'shown' if self.show_reasoning else 'hidden'}"
        if name == "/help":
            return HELP
        return f"unknown command {line!r}; {HELP}"

    def turn(self) -> str:
        """Stream one assistant turn; append it to the conversation; return its content."""
        args = self.args
        content: list[str] = []
        dimmed = False
        result = None
        events = self.model.chat(self.messages, reasoning_effort=self.effort,
                                 max_tokens=args.max_tokens, temperature=args.temp,
                                 top_p=args.top_p, seed=args.seed, stream=True)
        try:
            for ev in events:
                if isinstance(ev, ReasoningDelta) and self.show_reasoning:
                    if not dimmed:
                        sys.stderr.write(DIM)
                        dimmed = True
                    sys.stderr.write(ev.text)
                    sys.stderr.flush()
                elif isinstance(ev, ContentDelta):
                    if dimmed:
                        sys.stderr.write(RESET + "\n")
                        dimmed = False
                    content.append(ev.text)
                    sys.stdout.write(ev.text)
                    sys.stdout.flush()
                elif isinstance(ev, ToolCall):
                    sys.stdout.write(f"\n[tool call {ev.name}({ev.arguments})]")
                elif isinstance(ev, Done):
                    result = ev.result
        except KeyboardInterrupt:
            events.close()   # stops generating and frees the model at once
            sys.stdout.write(" [interrupted]")
        if dimmed:
            sys.stderr.write(RESET)
        sys.stdout.write("\n")
        sys.stdout.flush()
        text = "".join(content)
        self.messages.append({"role": "assistant", "content": text})
        if result is not None and result.usage is not None and not args.no_stats:
            print(f"{result.usage.line()} | RSS {resident_gib():.2f} GiB", file=sys.stderr)
        return text
