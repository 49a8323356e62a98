"""Resource stability (issue 6): a long-lived process does not grow.

In a fresh process: 1,000 short generations (each on a new session half of the time, so
contexts are created and freed), 50 model open/close cycles, and 200 requests to an
in-process ``edgemoe serve``; resident memory (after ``malloc_trim``) and open file descriptors
are sampled after a warm-up, half-way and at the end. The figures are printed (``pytest -s``)
for docs/SECURITY.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import ctypes, ctypes.util, json, os, sys, threading, time, urllib.request
import psutil
import edgemoe
from edgemoe.server import EdgemoeServer

path = sys.argv[1]
proc = psutil.Process()
handlers = threading.active_count() + 1   # main, plus the server's accept loop once started
libc = ctypes.CDLL(ctypes.util.find_library("c"))
trim = getattr(libc, "malloc_trim", None)   # glibc
def sample():
    # let the server's handler threads finish closing their connections (up to 5 s)
    deadline = time.monotonic() + 5
    while threading.active_count() > handlers and time.monotonic() < deadline:
        time.sleep(0.01)
    # free heap pages back to the system first: RSS then counts live memory, and a leak is
    # not hidden by pages freed earlier (nor noise added by a new thread's malloc arena)
    if trim:
        trim(0)
    return proc.memory_info().rss, proc.num_fds()

out = {}
def phase(name, op, warm, n):   # op(i) warm times, then samples around two halves of n more
    for i in range(warm):
        op(i)
    out[name + "_before"] = sample()
    for i in range(n // 2):
        op(i)
    out[name + "_mid"] = sample()
    for i in range(n // 2, n):
        op(i)
    out[name + "_after"] = sample()

with edgemoe.load(path, n_ctx=128, threads=2) as m:
    def gen(i):
        if i % 2:
            with m.session() as s:
                s.eval(m.encode("Hello there"), logits="last")
        m.generate("Hello", max_tokens=2, temperature=0)
    phase("gen", gen, 100, 1000)

def load(i):
    with edgemoe.load(path) as m:
        m.generate("Hi", max_tokens=1)
phase("load", load, 10, 50)

with edgemoe.load(path, n_ctx=128, threads=1) as m:
    server = EdgemoeServer(m, "127.0.0.1", 0)
    server.quiet = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                       "stream": False}).encode()
    def ask(i):
        stream = i % 2 == 1
        req = urllib.request.Request(
            server.url + "/v1/chat/completions",
            data=body.replace(b'"stream": false', b'"stream": true') if stream else body,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
    phase("server", ask, 20, 200)
    server.shutdown()
    server.server_close()
print(json.dumps(out))
"""


def test_rss_and_fds_stay_flat(chat_model_path: Path, tmp_path: Path) -> None:
    if os.environ.get("EDGEMOE_UNDER_SANITIZER"):
        pytest.skip("AddressSanitizer's quarantine holds freed memory: RSS says nothing there")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(chat_model_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 1 << 20
    # a load builds the 200k-entry tokenizer (~25 MiB) that malloc may or may not have given
    # back when sampled: 32 MiB of slack over 50 loads still catches 0.7 MiB per load.
    # A leak grows RSS in both halves of a phase; a one-off step (seen once in CI: the server
    # phase grew 12.4 MiB) lands in one. So the smaller half's growth is held to half the
    # slack: the same leak rate is caught.
    for phase, rss_slack in (("gen", 8 * mib), ("load", 32 * mib), ("server", 8 * mib)):
        (rss0, fd0), (rss_mid, _), (rss1, fd1) = (s[f"{phase}_{when}"]
                                                  for when in ("before", "mid", "after"))
        print(f"{phase}: RSS {rss0 / mib:.1f} -> {rss_mid / mib:.1f} -> {rss1 / mib:.1f} MiB, "
              f"fds {fd0} -> {fd1}")
        assert fd1 <= fd0, f"{phase}: file descriptors grew {fd0} -> {fd1}"
        growth = min(rss_mid - rss0, rss1 - rss_mid)
        assert growth <= rss_slack / 2, (
            f"{phase}: RSS grew in both halves: {rss0 / mib:.1f} -> {rss_mid / mib:.1f} -> "
            f"{rss1 / mib:.1f} MiB")
