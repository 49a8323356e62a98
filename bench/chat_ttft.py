#!/usr/bin/env python3
"""Time to first token of a conversation's second turn, with and without prefix reuse.

    python bench/chat_ttft.py MODEL.bin [-t 2] [--words 300] [-r 3] [--json]

Turn 1 is a user message of about ``--words`` words; the model answers (8 tokens). Turn 2
appends that answer and a short question. "reuse" runs turn 2 on the session turn 1 left
(edgemoe's behaviour in ``Model.chat`` and ``edgemoe serve``); "no reuse" empties the KV
cache first, as a server without prefix caching would. The time to first token is from the
call to the first sampled token (prompt evaluation + one sampling step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import edgemoe
from edgemoe.chat import chat_events
from edgemoe.generate import GenerationStats
from edgemoe.harmony import encode_chat
from edgemoe.sampling import Sampler, SamplingParams

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly "
         "pack boxes of liquor and jugs").split()


def turn(model: edgemoe.Model, messages: list[dict[str, str]], max_tokens: int
         ) -> tuple[float, GenerationStats, str]:
    """(seconds to the first token, stats, content) of one greedy turn."""
    prompt = encode_chat(model.tokenizer, messages, reasoning_effort="low")
    stats = GenerationStats()
    t0, first = time.perf_counter(), None
    content = ""
    events = chat_events(model, prompt, max_tokens, Sampler(SamplingParams(temperature=0)), stats)
    for ev in events:
        if first is None and stats.generated_tokens:
            first = time.perf_counter() - t0
        content = getattr(getattr(ev, "result", None), "content", content)
    if first is None:   # the first token ended the turn
        first = time.perf_counter() - t0
    return first, stats, content


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--words", type=int, default=300, help="words in the first user message")
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    text = " ".join(WORDS[i % len(WORDS)] for i in range(args.words))
    turn1 = [{"role": "user", "content": f"Summarize this in one word: {text}"}]
    results: dict[str, list[float]] = {"reuse": [], "no reuse": []}
    info: dict[str, int] = {}
    with edgemoe.load(args.model, threads=args.threads, n_ctx=4096) as model:
        session = model._shared_session()
        for _ in range(args.repetitions):
            for mode in results:
                session.reset()
                _, s1, answer = turn(model, turn1, 8)
                turn2 = turn1 + [{"role": "assistant", "content": answer or "Fox."},
                                 {"role": "user", "content": "And in two words?"}]
                if mode == "no reuse":
                    session.reset()
                ttft, s2, _ = turn(model, turn2, 1)
                results[mode].append(ttft)
                info |= {"turn1_prompt_tokens": s1.prompt_tokens,
                         "turn2_prompt_tokens": s2.prompt_tokens}
                info[f"{mode.replace(' ', '_')}_reused_tokens"] = s2.reused_tokens
    out = {"model": args.model, "threads": model.threads, **info,
           **{f"ttft_{k.replace(' ', '_')}_s": statistics.fmean(v) for k, v in results.items()},
           **{f"ttft_{k.replace(' ', '_')}_sd": statistics.stdev(v) if len(v) > 1 else 0.0
              for k, v in results.items()}}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in results.items():
            print(f"{k:>8}: time to first token of turn 2 {statistics.fmean(v):.2f} s "
                  f"(runs: {', '.join(f'{x:.2f}' for x in v)})")
        print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
