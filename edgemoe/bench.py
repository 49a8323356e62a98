"""``edgemoe bench``: prompt-processing and generation speed, like llama-bench's pp/tg tests.

Each repetition starts from an empty KV cache, evaluates ``n_prompt`` random tokens in one
batch (pp), then generates ``n_gen`` tokens one at a time (tg, greedy). Figures are mean ±
standard deviation over the repetitions, after one untimed warm-up pass that also pulls
the weights into the page cache.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class BenchResult:
    """One ``edgemoe bench`` run (the JSON output has exactly these keys)."""

    model: str
    model_bytes: int
    kernels: str
    threads: int
    n_prompt: int
    n_gen: int
    repetitions: int
    pp_tok_s: float
    pp_tok_s_sd: float
    tg_tok_s: float
    tg_tok_s_sd: float
    weight_bytes_per_token: int
    tg_weight_gb_s: float
    peak_rss_bytes: int
    load_s: float
    first_token_s: float = 0.0   #: load + the first (untimed) prompt pass: a cold start's wait
    memory_budget: int = 0       #: bytes, 0 = none (plain mmap)
    policy: str = ""
    prefetch: bool = True
    activations: str = "int16"   #: activation rounding of the integer kernels
    cache: dict[str, float] | None = None  #: the timed passes' expert-cache counters


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def peak_rss_bytes() -> int:
    """The process's peak resident set size (the kernel's VmHWM on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


def weight_bytes_per_token(model: object) -> int:
    """Bytes of weights one generated token reads: every non-expert tensor except the
    embedding (one row of it), plus top-k experts per layer (at their mean span size)."""
    mf = model._file  # type: ignore[attr-defined]
    hp = mf.header["hparams"]
    total = 0
    for t in mf.tensors.values():
        if t.name.startswith("tokenizer.") or ".mlp.experts." in t.name:
            continue
        if t.name == "model.embed_tokens.weight":
            total += t.length // max(1, t.shape[0])
        else:
            total += t.length
    if mf.experts:
        mean_expert = sum(e.length for e in mf.experts) / len(mf.experts)
        total += int(hp["num_hidden_layers"] * hp["num_experts_per_tok"] * mean_expert)
    return total


def run_bench(
    path: str,
    *,
    n_prompt: int = 512,
    n_gen: int = 128,
    threads: int | None = None,
    repetitions: int = 3,
    seed: int = 0,
    memory_budget: str | int | None = None,
    policy: str = "lfu",
    prefetch: bool = True,
    activations: str = "int16",
) -> BenchResult:
    """Measure one model; see the module docstring. Under ``memory_budget`` the result also
    has the expert cache's counters over the timed passes (hit rate, bytes read per generated
    token, prediction accuracy)."""
    import edgemoe
    from edgemoe._native import ffi, lib

    if n_prompt < 1 or n_gen < 0 or repetitions < 1:
        raise ValueError("need n_prompt >= 1, n_gen >= 0 and repetitions >= 1")
    t0 = time.perf_counter()
    model = edgemoe.load(path, threads=threads, n_ctx=n_prompt + n_gen,
                         memory_budget=memory_budget, policy=policy, prefetch=prefetch,
                         activations=activations)
    session = model.session()
    load_s = time.perf_counter() - t0
    try:
        rng = np.random.default_rng(seed)
        prompt = rng.integers(0, model.info.n_vocab, n_prompt).tolist()
        pp: list[float] = []
        tg: list[float] = []
        for rep in range(repetitions + 1):  # rep 0 is the warm-up
            if rep == 1:
                before = model.stats()   # the cache's counters cover the timed passes only
            session.reset()
            t = time.perf_counter()
            logits = session.eval(prompt, logits="last")[-1]
            pp_s = time.perf_counter() - t
            if rep == 0:
                first_token_s = load_s + pp_s
            t = time.perf_counter()
            for _ in range(n_gen):
                logits = session.eval([int(np.argmax(logits))], logits="last")[-1]
            tg_s = time.perf_counter() - t
            if rep:
                pp.append(n_prompt / pp_s)
                if n_gen:
                    tg.append(n_gen / tg_s)
        pp_m, pp_sd = _mean_sd(pp)
        tg_m, tg_sd = _mean_sd(tg) if tg else (0.0, 0.0)
        wbt = weight_bytes_per_token(model)
        after = model.stats()
        cache = None
        if after.budget_bytes:
            uses = after.expert_uses - before.expert_uses
            hits = after.hits - before.hits
            pred = after.predicted - before.predicted
            cache = {
                "n_slots": after.n_slots,
                "dense_resident_bytes": after.dense_resident_bytes,
                "expert_uses": uses,
                "hit_rate": hits / uses if uses else 0.0,
                "resident_hit_rate": (hits - (after.predicted_used - before.predicted_used))
                / uses if uses else 0.0,
                "bytes_read": after.bytes_read - before.bytes_read,
                "bytes_read_per_token": (after.bytes_read - before.bytes_read)
                / max(1, repetitions * (n_prompt + n_gen)),
                "io_wait_s": after.io_wait_s - before.io_wait_s,
                "predicted": pred,
                "prediction_accuracy": (after.predicted_used - before.predicted_used) / pred
                if pred else 0.0,
            }
        return BenchResult(
            model=str(path),
            model_bytes=Path(path).stat().st_size,
            kernels=ffi.string(lib.edgemoe_kernels_name()).decode(),
            threads=model.threads,
            n_prompt=n_prompt,
            n_gen=n_gen,
            repetitions=repetitions,
            pp_tok_s=pp_m,
            pp_tok_s_sd=pp_sd,
            tg_tok_s=tg_m,
            tg_tok_s_sd=tg_sd,
            weight_bytes_per_token=wbt,
            tg_weight_gb_s=wbt * tg_m / 1e9,
            peak_rss_bytes=peak_rss_bytes(),
            load_s=load_s,
            first_token_s=first_token_s,
            memory_budget=after.budget_bytes,
            policy=policy if after.budget_bytes else "",
            prefetch=prefetch,
            activations=activations,
            cache=cache,
        )
    finally:
        model.close()


def format_result(r: BenchResult, as_json: bool = False) -> str:
    """The result as a llama-bench-like table, or as one JSON object."""
    if as_json:
        return json.dumps(asdict(r))
    gib = 1024**3
    kernels = f"{r.kernels} {r.activations}"
    head = "| model | size | kernels | threads | test | t/s |\n|---|---|---|---|---|---|"
    rows = [
        f"| {Path(r.model).name} | {r.model_bytes / gib:.2f} GiB | {kernels} | {r.threads} "
        f"| pp{r.n_prompt} | {r.pp_tok_s:.2f} ± {r.pp_tok_s_sd:.2f} |"
    ]
    if r.n_gen:
        rows.append(
            f"| {Path(r.model).name} | {r.model_bytes / gib:.2f} GiB | {kernels} | {r.threads} "
            f"| tg{r.n_gen} | {r.tg_tok_s:.2f} ± {r.tg_tok_s_sd:.2f} |"
        )
    tail = (
        f"\nload {r.load_s:.2f} s, peak RSS {r.peak_rss_bytes / gib:.2f} GiB, "
        f"{r.weight_bytes_per_token / 1e6:.1f} MB of weights per generated token "
        f"({r.tg_weight_gb_s:.2f} GB/s during tg), {r.repetitions} repetitions, "
        f"first token after {r.first_token_s:.2f} s"
    )
    if r.cache is not None:
        c = r.cache
        tail += (
            f"\nmemory budget {r.memory_budget / gib:.2f} GiB ({r.policy}"
            f"{', prefetch' if r.prefetch else ''}): {c['n_slots']:.0f} expert slots, "
            f"hit rate {c['hit_rate']:.1%} ({c['resident_hit_rate']:.1%} without prediction) "
            f"over {c['expert_uses']:.0f} uses, "
            f"{c['bytes_read_per_token'] / 1e6:.1f} MB read per token, "
            f"waited {c['io_wait_s']:.2f} s for reads, "
            f"prediction accuracy {c['prediction_accuracy']:.1%}"
        )
    return "\n".join([head, *rows]) + tail
