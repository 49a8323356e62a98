#!/usr/bin/env python3
"""Time to first token from a cold page cache: edgemoe and (optionally) llama.cpp.

    sudo python bench/ttft.py MODEL.bin [--gguf MODEL.gguf --llama-cpp DIR] [-t 2] [-r 3]

Each run drops the page cache first (``sync; echo 3 > /proc/sys/vm/drop_caches``, which
needs root; ``--warm`` skips it), then starts a fresh process that loads the model, reads
a prompt of about 16 tokens and generates one token, and exits. Reported per engine: the
wall time of that process (start to exit: the first-token latency a user of the command
line sees, interpreter start-up included) and the bytes it read from disk (``ru_inblock``
from ``wait4``), min / median over the runs.

edgemoe runs ``edgemoe run MODEL -p PROMPT -n 1 --raw --no-stats``; llama.cpp runs
``llama-completion -m GGUF -p PROMPT -n 1 -no-cnv --no-warmup`` with its default flags and, with
``--no-repack``, again with ``--no-repack`` (plain mmap).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog near the river bank at dawn"


def drop_caches() -> None:
    """Empty the page cache (root only); raises PermissionError otherwise."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, bytes read from disk) of one run of cmd; raises on failure."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{err[-2000:]}")
    return seconds, usage.ru_inblock * 512


def measure(name: str, cmd: list[str], runs: int, warm: bool) -> dict[str, object]:
    times, reads = [], []
    for _ in range(runs):
        if not warm:
            drop_caches()
        s, b = timed(cmd)
        times.append(s)
        reads.append(b)
        print(f"{name}: {s:.2f} s, {b / 1e9:.2f} GB read", file=sys.stderr, flush=True)
    return {"engine": name, "min_s": min(times), "median_s": statistics.median(times),
            "median_read_bytes": int(statistics.median(reads)), "runs": runs,
            "cache": "warm" if warm else "dropped", "command": " ".join(cmd)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="edgemoe model.bin")
    ap.add_argument("--gguf", type=Path, help="the same weights as GGUF, for llama.cpp")
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp tree with build/bin/")
    ap.add_argument("--no-repack", action="store_true", help="also llama.cpp --no-repack")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.warm:
        try:
            drop_caches()
        except OSError as e:
            ap.error(f"cannot drop the page cache ({e}); run as root or pass --warm")
    rows = [measure("edgemoe", [sys.executable, "-m", "edgemoe", "run", str(args.model), "-p",
                                PROMPT, "-n", "1", "--raw", "--no-stats", "-t",
                                str(args.threads)], args.runs, args.warm)]
    if args.gguf:
        if not args.llama_cpp:
            ap.error("--gguf needs --llama-cpp")
        exe = args.llama_cpp / "build" / "bin" / "llama-completion"
        base = [str(exe), "-m", str(args.gguf), "-p", PROMPT, "-n", "1", "-no-cnv", "-t",
                str(args.threads), "--no-warmup"]
        rows.append(measure("llama.cpp", base, args.runs, args.warm))
        if args.no_repack:
            rows.append(measure("llama.cpp --no-repack", [*base, "--no-repack"], args.runs,
                                args.warm))
    if args.json:
        print(json.dumps(rows))
    else:
        print("| engine | first token (min / median) | read from disk | page cache |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['engine']} | {r['min_s']:.2f} / {r['median_s']:.2f} s "
                  f"| {int(r['median_read_bytes']) / 1e9:.2f} GB | {r['cache']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
