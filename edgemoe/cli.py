"""The ``edgemoe`` command: run, serve, info, bench, quality, verify, quantize."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from edgemoe.errors import EdgemoeError


def _add_model_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("model", nargs="?", default=None,
                       help="path to a model.bin written by 'edgemoe quantize' (default: the "
                       "bundled demo model)")
    else:
        p.add_argument("model", help="path to a model.bin written by 'edgemoe quantize'")
    p.add_argument(
        "-t", "--threads", type=int, default=None, help="worker threads (default: physical cores)"
    )
    p.add_argument("--ctx", type=int, default=None, help="context length in tokens (default 4096)")
    _add_load_args(p)


def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-budget", metavar="SIZE", default=None,
        help="keep at most SIZE of weights in memory (e.g. 6G, 512M): dense weights resident, "
        "experts through a cache read from disk (docs/MEMORY.md); default: plain mmap")
    p.add_argument("--policy", choices=["lfu", "lru"], default="lfu",
                   help="expert cache replacement policy under --memory-budget (default lfu)")
    p.add_argument("--no-prefetch", action="store_true",
                   help="under --memory-budget, do not read ahead the next layer's likely experts")
    p.add_argument("--activations", choices=["int16", "int8"], default="int16",
                   help="how q8_0/mxfp4 products round activations: int16 blocks (default) or "
                   "int8 blocks (faster generation, coarser; docs/PERFORMANCE.md)")


def _load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"memory_budget": args.memory_budget, "policy": args.policy,
            "prefetch": not args.no_prefetch, "activations": args.activations}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemoe",
        description="Run Mixture-of-Experts language models (gpt-oss) on CPUs, offline.",
    )
    from edgemoe import __version__

    parser.add_argument("--version", action="version", version=f"edgemoe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="chat with a model (one prompt with -p, else interactive)")
    _add_model_args(run, optional=True)
    run.add_argument("-p", "--prompt", help="one prompt; answer it and exit")
    run.add_argument(
        "-n", "--max-tokens", type=int, default=1024, help="maximum new tokens (default 1024)"
    )
    run.add_argument(
        "--temp", type=float, default=1.0, help="sampling temperature, 0 = greedy (default 1.0)"
    )
    run.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0)"
    )
    run.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    run.add_argument(
        "--effort",
        choices=["low", "medium", "high"],
        default="low",
        help="reasoning effort (default low)",
    )
    run.add_argument("--system", default=None, help="developer instructions for the chat")
    run.add_argument(
        "--show-reasoning", action="store_true", help="print the reasoning (dimmed, on stderr)"
    )
    run.add_argument(
        "--raw", action="store_true", help="plain text completion of the prompt, no chat format"
    )
    run.add_argument("--no-stats", action="store_true", help="do not print the stats line")
    run.add_argument("--stats", action="store_true",
                     help="at exit, print the expert cache's counters and peak RSS on stderr")

    srv = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    _add_model_args(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any)")
    srv.add_argument("--api-key", default=None,
                     help="require 'Authorization: Bearer KEY' (default: the EDGEMOE_API_KEY "
                     "environment variable, else no key)")
    srv.add_argument("--request-timeout", type=float, default=600.0, metavar="S",
                     help="stop a generation after S seconds (finish_reason \"length\"; "
                     "default 600; 0: no limit)")
    srv.add_argument("--quiet", action="store_true", help="do not log each request")

    info = sub.add_parser("info", help="describe a model.bin")
    info.add_argument("model")
    info.add_argument(
        "--json", action="store_true", help="print the header as JSON (without tensors)"
    )

    bench = sub.add_parser("bench", help="measure prompt-processing and generation tokens/s")
    bench.add_argument("model")
    bench.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (pp)")
    bench.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (tg)")
    bench.add_argument("-t", "--threads", type=int, default=None, help="worker threads")
    bench.add_argument("-r", "--repetitions", type=int, default=3, help="timed repetitions")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    _add_load_args(bench)

    qual = sub.add_parser(
        "quality", help="what a quantization costs: KL divergence, same top token and "
        "perplexity of model B against model A on a text (docs/QUALITY.md)")
    qual.add_argument("model_a", help="the base: a model.bin or a Hugging Face checkpoint "
                      "directory (run by transformers in fp32)")
    qual.add_argument("model_b", help="the candidate: a model.bin or a checkpoint directory")
    qual.add_argument("--text", metavar="FILE", default=None,
                      help="UTF-8 text to read (default: edgemoe/data/heldout.txt if present)")
    qual.add_argument("--ctx", type=int, default=512,
                      help="window length in tokens; the second half of each is scored "
                      "(default 512)")
    qual.add_argument("--max-tokens", type=int, default=None, metavar="N",
                      help="use only the first N tokens of the text")
    qual.add_argument("-t", "--threads", type=int, default=None, help="worker threads")
    for side in ("a", "b"):
        qual.add_argument(f"--kernels-{side}", choices=["auto", "reference"], default=None,
                          help=f"kernel set of model {side.upper()} if a model.bin (default: "
                          "EDGEMOE_KERNELS, else auto)")
        qual.add_argument(f"--activations-{side}", choices=["int16", "int8"], default=None,
                          help=f"activation rounding of model {side.upper()} if a model.bin "
                          "(default int16)")
    qual.add_argument("--json", action="store_true", help="print one JSON object")

    ver = sub.add_parser("verify", help="check every checksum of a model.bin")
    ver.add_argument("model")

    sub.add_parser(
        "quantize", help="convert a Hugging Face gpt-oss checkpoint to model.bin", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgemoe`` command. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "quantize":
        from edgemoe_quantize import main as quantize_main

        return quantize_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "info":
            return cmd_info(args)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "quality":
            return cmd_quality(args)
    except EdgemoeError as exc:
        print(f"edgemoe: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


# ------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import edgemoe
    from edgemoe.server import serve

    if not 0 <= args.port <= 65535:
        print(f"edgemoe serve: error: --port must be in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    key = args.api_key if args.api_key is not None else os.environ.get("EDGEMOE_API_KEY")
    with edgemoe.load(args.model, threads=args.threads, n_ctx=args.ctx,
                      **_load_kwargs(args)) as model:
        serve(model, args.host, args.port, api_key=key or None, quiet=args.quiet,
              request_timeout=args.request_timeout)
    return 0


# ------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    import edgemoe

    if args.model is None:
        from edgemoe.demo import demo_model_path

        args.model = str(demo_model_path())
        print("edgemoe: no MODEL given: running the bundled demo model (a 12 M-parameter "
              "gpt-oss trained on Python's documentation; it knows nothing else)",
              file=sys.stderr)
    with edgemoe.load(args.model, threads=args.threads, n_ctx=args.ctx,
                      **_load_kwargs(args)) as model:
        try:
            return _run_loaded(model, args)
        finally:
            if args.stats:
                print(model.stats().summary(), file=sys.stderr)


def _run_loaded(model: Any, args: argparse.Namespace) -> int:
    from edgemoe.repl import ChatRepl

    if args.raw:
        if args.prompt is None:
            print("edgemoe: error: --raw needs a prompt (-p)", file=sys.stderr)
            return 2
        return _run_raw(model, args)
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "developer", "content": args.system})
    if args.prompt is not None:
        messages.append({"role": "user", "content": args.prompt})
        ChatRepl(model, args, messages).turn()
        return 0
    return ChatRepl(model, args, messages).run()


def _run_raw(model: Any, args: argparse.Namespace) -> int:
    from edgemoe.generate import GenerationStats, Usage, generate_text

    stats = GenerationStats()
    for piece in generate_text(
        model,
        args.prompt,
        max_tokens=args.max_tokens,
        temperature=args.temp,
        top_p=args.top_p,
        seed=args.seed,
        stats=stats,
    ):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if not args.no_stats:
        print(Usage.from_stats(stats).line(), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------- info
def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from edgemoe.format import read_model

    with read_model(args.model) as mf:
        h = mf.header
        if args.json:
            print(
                json.dumps(
                    {k: v for k, v in h.items() if k not in ("tensors", "experts")}, indent=2
                )
            )
            return 0
        hp = h["hparams"]
        print(f"file:          {args.model} ({_fmt_bytes(mf.file_length)})")
        print(f"format:        edgemoe model.bin v{mf.version}")
        print(f"architecture:  {h.get('architecture')}")
        print(
            f"layers:        {hp['num_hidden_layers']} "
            f"({sum(t == 'sliding_attention' for t in hp['layer_types'])} sliding window "
            f"{hp['sliding_window']}, the rest full attention)"
        )
        print(f"hidden:        {hp['hidden_size']}, expert intermediate {hp['intermediate_size']}")
        print(
            f"attention:     {hp['num_attention_heads']} query heads, {hp['num_key_value_heads']} "
            f"key/value heads of {hp['head_dim']}"
        )
        print(
            f"experts:       {hp['num_local_experts']} per layer, top-{hp['num_experts_per_tok']}"
        )
        rope = hp.get("rope", {})
        print(
            f"rope:          {rope.get('type')} theta {rope.get('theta')} "
            f"factor {rope.get('factor', 1)}"
        )
        print(f"max context:   {hp['max_position_embeddings']}")
        by_type: dict[str, list[int]] = {}
        n_params = 0
        for t in mf.tensors.values():
            if t.name.startswith("tokenizer."):
                continue
            n = 1
            for d in t.shape:
                n *= d
            n_params += n
            agg = by_type.setdefault(t.type, [0, 0, 0])
            agg[0] += 1
            agg[1] += n
            agg[2] += t.length
        expert_bytes = sum(e.length for e in mf.experts)
        scaled = f"{n_params / 1e9:.2f} B" if n_params >= 1e9 else f"{n_params / 1e6:.2f} M"
        print(f"parameters:    {scaled}")
        print(f"expert spans:  {len(mf.experts)}, {_fmt_bytes(expert_bytes)}")
        for typ, (count, n, nbytes) in sorted(by_type.items()):
            print(
                f"  {typ:6s} {count:6d} tensors {n / 1e6:12.2f} M params {_fmt_bytes(nbytes):>12s}"
                f"  ({8 * nbytes / max(n, 1):.2f} bits/weight)"
            )
        tok = h.get("tokenizer")
        if tok:
            print(
                f"tokenizer:     {tok['name']} ({tok['kind']}), n_vocab {tok['n_vocab']}, "
                f"{len(tok['special_tokens'])} special tokens"
            )
        else:
            print("tokenizer:     none")
        src = h.get("source", {})
        if src:
            print("source:        " + ", ".join(f"{k}={v}" for k, v in src.items()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from edgemoe.bench import format_result, run_bench

    if args.n_prompt < 1 or args.n_gen < 0 or args.repetitions < 1:
        print("edgemoe bench: error: need -p >= 1, -n >= 0 and -r >= 1", file=sys.stderr)
        return 2
    result = run_bench(
        args.model,
        n_prompt=args.n_prompt,
        n_gen=args.n_gen,
        threads=args.threads,
        repetitions=args.repetitions,
        **_load_kwargs(args),
    )
    print(format_result(result, as_json=args.json))
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    from edgemoe import quality

    if args.text is not None:
        text_path = args.text
    elif quality.DEFAULT_TEXT.is_file():
        text_path = str(quality.DEFAULT_TEXT)
    else:
        print("edgemoe quality: error: --text FILE is required (there is no default held-out "
              f"text at {quality.DEFAULT_TEXT})", file=sys.stderr)
        return 2
    if args.ctx < 3 or (args.max_tokens is not None and args.max_tokens < 1):
        print("edgemoe quality: error: need --ctx >= 3 and --max-tokens >= 1", file=sys.stderr)
        return 2
    try:
        with open(text_path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"edgemoe quality: error: cannot read {text_path}: {exc}", file=sys.stderr)
        return 1

    def progress(done: int, total: int, acc: quality.QualityAccumulator) -> None:
        s = acc.result()
        print(f"\r[{done}/{total}] {s.n_tokens} tokens, mean KLD {s.kld_mean:.6f}, "
              f"same top {100 * s.same_top_rate:.2f} %", end="" if done < total else "\n",
              file=sys.stderr, flush=True)

    report = quality.run_quality(
        args.model_a, args.model_b, text, ctx=args.ctx, max_tokens=args.max_tokens,
        threads=args.threads, kernels_a=args.kernels_a, kernels_b=args.kernels_b,
        activations_a=args.activations_a, activations_b=args.activations_b,
        progress=progress if sys.stderr.isatty() else None)
    print(quality.format_report(report, as_json=args.json))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from edgemoe.format import read_model

    with read_model(args.model) as mf:
        mf.verify()
        print(f"{args.model}: OK ({len(mf.tensors)} tensors, checksums match)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
