"""The programs in examples/ run end to end (on the random chat model: the text is random)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_device_assistant_runs(chat_model_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(EXAMPLES / "device_assistant.py"), str(chat_model_path),
         "How much memory is free?"],
        capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr


def test_device_assistant_tool_answers() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import device_assistant
    finally:
        sys.path.remove(str(EXAMPLES))
    status = device_assistant.device_status()
    assert set(status) == {"cpu_percent", "memory_free_gib", "disk_free_gib"}
    assert status["memory_free_gib"] > 0
