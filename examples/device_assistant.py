"""A small assistant embedded in a device's own Python program.

    python examples/device_assistant.py MODEL.bin "How much memory is free?"

The model may call one tool, ``device_status``, which this program answers from psutil;
the result goes back to the model, which then answers. Everything runs in this process, on
this machine: no server, no network.
"""

from __future__ import annotations

import json
import sys

import psutil

import edgemoe
from edgemoe.chat import ContentDelta, Done, ToolCall

TOOLS = [{
    "type": "function",
    "function": {
        "name": "device_status",
        "description": "CPU load, memory and disk usage of this device",
        "parameters": {"type": "object", "properties": {}},
    },
}]


def device_status() -> dict[str, float]:
    mem, disk = psutil.virtual_memory(), psutil.disk_usage("/")
    return {"cpu_percent": psutil.cpu_percent(interval=0.1),
            "memory_free_gib": round(mem.available / 2**30, 2),
            "disk_free_gib": round(disk.free / 2**30, 2)}


def ask(model: edgemoe.Model, question: str, max_rounds: int = 3) -> str:
    """Answer ``question``, running the tool calls the model makes (at most max_rounds)."""
    messages: list[dict] = [
        {"role": "developer", "content": "You help the user of this device. Be brief."},
        {"role": "user", "content": question},
    ]
    answer = ""
    for _ in range(max_rounds):
        calls: list[ToolCall] = []
        for event in model.chat(messages, tools=TOOLS, max_tokens=256, stream=True):
            if isinstance(event, ContentDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, ToolCall):
                calls.append(event)
            elif isinstance(event, Done):
                answer = event.result.content
        if not calls:
            break
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)]})
        for i, c in enumerate(calls):
            result = device_status() if c.name == "device_status" else {"error": "unknown tool"}
            messages.append({"role": "tool", "tool_call_id": f"call_{i}",
                             "content": json.dumps(result)})
    print()
    return answer


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with edgemoe.load(argv[0], n_ctx=2048) as model:
        ask(model, argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
