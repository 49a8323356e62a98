"""Expert-cache hit rates by policy and prediction, on the same token stream (docs/MEMORY.md).

    python bench/cache_policy.py MODEL.bin [MODEL.bin ...] --budgets 310M,390M [-n 200]

For every model, budget, policy (lfu, lru) and prediction (off, on): a fresh model under that
budget evaluates a 16-token prompt, then ``-n`` random tokens one at a time (the decode path;
random tokens are the hardest case for a cache). Prints a Markdown row each: hit rate, the hit
rate without the prediction's hits, prediction accuracy, MiB read from the file per token.
Write skewed and uniform models with ``edgemoe quantize --synthetic gpt-oss-1b --routing-skew S``.
"""

from __future__ import annotations

import argparse

import numpy as np

import edgemoe


def measure(path: str, budget: str, policy: str, prefetch: bool, n: int) -> str:
    stream = np.random.default_rng(0).integers(0, 200000, 16 + n).tolist()
    with edgemoe.load(path, threads=2, n_ctx=16 + n, memory_budget=budget, policy=policy,
                      prefetch=prefetch) as m:
        s = m.session()
        s.eval(stream[:16], logits="none")
        a = m.stats()
        for t in stream[16:]:
            s.eval([t], logits="none")
        b = m.stats()
    uses, hits = b.expert_uses - a.expert_uses, b.hits - a.hits
    pred, used = b.predicted - a.predicted, b.predicted_used - a.predicted_used
    accuracy = f"{used / pred:.1%}" if pred else "–"
    return (f"| {path} | {budget} ({b.n_slots} slots) | {policy} | {'on' if prefetch else 'off'} "
            f"| {hits / uses:.1%} | {(hits - used) / uses:.1%} | {accuracy} "
            f"| {(b.bytes_read - a.bytes_read) / n / 2**20:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--budgets", default="310M,390M", help="comma-separated budgets")
    ap.add_argument("-n", type=int, default=200, help="tokens decoded one at a time")
    args = ap.parse_args()
    print("| model | budget | policy | prediction | hit rate | without prediction's hits "
          "| prediction accuracy | MiB read / token |\n|---|---|---|---|---|---|---|---|")
    for path in args.models:
        for budget in args.budgets.split(","):
            for policy in ("lru", "lfu"):
                for prefetch in (False, True):
                    print(measure(path, budget, policy, prefetch, args.n), flush=True)


if __name__ == "__main__":
    main()
