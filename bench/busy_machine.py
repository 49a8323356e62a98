"""Decode speed while other processes keep every core busy (a laptop running other work).

    python bench/busy_machine.py [MODEL] [--busy N] [--seconds S] [--threads 1,2]

Starts N busy-looping processes (default: one per core), then generates one token at a time
on MODEL (default: the bundled demo model) for S seconds with each thread count and prints
tokens/s; then the same without the busy processes. A pool that waits for workers the
scheduler has not run shows here as a collapse of the multi-thread figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import edgemoe
from edgemoe.demo import demo_model_path


def spin(stop: mp.synchronize.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def decode_rate(model: str, threads: int, seconds: float) -> float:
    with edgemoe.load(model, threads=threads) as m:
        s = m.session()
        s.eval([1, 2, 3], logits="last")
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.eval([5 + n % 7], logits="last")
            n += 1
            if s.n_past >= m.n_ctx - 1:
                s.reset()
                s.eval([1, 2, 3], logits="last")
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=str(demo_model_path()))
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    stop = mp.Event()
    procs = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in procs:
        p.start()
    try:
        busy = {t: decode_rate(args.model, t, args.seconds) for t in counts}
    finally:
        stop.set()
        for p in procs:
            p.join()
    idle = {t: decode_rate(args.model, t, args.seconds) for t in counts}
    print(f"| threads | tok/s, {args.busy} busy processes | tok/s, idle machine |")
    print("|---|---|---|")
    for t in counts:
        print(f"| {t} | {busy[t]:.1f} | {idle[t]:.1f} |")


if __name__ == "__main__":
    main()
