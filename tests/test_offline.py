"""No network, ever (issue 6): load → generate → chat in a process that cannot reach one.

The child process runs with a Python audit hook that raises on any socket connection, name
lookup, datagram or URL request (so an attempt fails loudly rather than timing out), and,
where ``unshare -rn`` works (Linux user namespaces), inside a network namespace of its own
with no interface up, so the C core cannot reach a network either. tiktoken's cache
directories are pointed at paths that must still not exist afterwards: the tokenizer is built
from the ranks embedded in model.bin, never downloaded or cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys
BLOCKED = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.sendto",
           "socket.sendmsg", "urllib.Request", "http.client.connect"}

def hook(event, args):
    if event in BLOCKED:
        raise RuntimeError(f"network access attempted: {event} {args!r}")

sys.addaudithook(hook)
if sys.argv[2] == "control":
    import socket
    socket.create_connection(("127.0.0.1", 9), timeout=1)
import edgemoe
with edgemoe.load(sys.argv[1], n_ctx=256) as m:
    text = m.generate("Hello", max_tokens=4, temperature=0)
    reply = m.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    assert m.encode("Hello world") and m.decode(m.encode("Hello world")) == "Hello world"
print("offline ok", len(reply.tokens))
"""


def isolated(cmd: list[str]) -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn", *cmd]
    return cmd


def run_child(model: Path, mode: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    cache = tmp / "tiktoken-cache"
    env = os.environ | {"TIKTOKEN_CACHE_DIR": str(cache), "DATA_GYM_CACHE_DIR": str(cache),
                        "TMPDIR": str(tmp)}
    proc = subprocess.run(isolated([sys.executable, str(script), str(model), mode]),
                          capture_output=True, text=True, timeout=300, env=env)
    return proc, cache


def test_load_generate_chat_without_network(chat_model_path: Path, tmp_path: Path) -> None:
    proc, cache = run_child(chat_model_path, "run", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "offline ok" in proc.stdout
    assert not cache.exists(), "tiktoken wrote a cache"
    assert not (tmp_path / "data-gym-cache").exists()


def test_the_guard_catches_a_connection(chat_model_path: Path, tmp_path: Path) -> None:
    """The same child with one connection attempt fails: the test above can fail."""
    proc, _ = run_child(chat_model_path, "control", tmp_path)
    assert proc.returncode != 0 and "network access attempted: socket." in proc.stderr
