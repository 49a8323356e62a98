"""``edgemoe quantize`` / ``python -m edgemoe_quantize``: argument parsing around ``convert``."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Any

from edgemoe.errors import EdgemoeError
from edgemoe.format import DENSE_TYPES

from .convert import convert, print_report

SYNTHETIC_FORMATS = ("bin", "hf")


def _routing_skew(text: str) -> float:
    """argparse type of --routing-skew: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def build_parser(prog: str = "edgemoe quantize") -> argparse.ArgumentParser:
    """The argument parser of the quantize command."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Convert a Hugging Face gpt-oss checkpoint (config.json + safetensors) "
        "to one self-contained model.bin.",
    )
    p.add_argument("hf_dir", nargs="?", help="checkpoint directory (config.json, *.safetensors)")
    p.add_argument("--synthetic", metavar="PRESET",
                   help="instead of converting, write random weights with a preset's real "
                   "shapes: gpt-oss-tiny, gpt-oss-1b, gpt-oss-20b, gpt-oss-120b")
    p.add_argument("--synthetic-format", choices=SYNTHETIC_FORMATS, metavar="{bin,hf}",
                   help="what --synthetic writes: bin, a model.bin (default); hf, a Hugging "
                   "Face checkpoint directory in gpt-oss's published layout (MXFP4 experts, "
                   "bf16 rest, tokenizer files), e.g. for llama.cpp's convert_hf_to_gguf.py")
    p.add_argument("--seed", type=int, default=0, help="seed of --synthetic weights (default 0)")
    p.add_argument("--routing-skew", type=_routing_skew, default=None, metavar="S",
                   help="with --synthetic, make some experts of each layer more popular: "
                   "the expert of popularity rank r (random per layer) is among a token's "
                   "top-k with probability roughly proportional to r**-S (at most 0.95). "
                   "0 (default) spreads tokens evenly; at 1 the most popular 25%% of a "
                   "layer's experts take about 46%% (gpt-oss-tiny) to 75%% (gpt-oss-120b) "
                   "of the picks")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="OUT",
                   help="model.bin to write (replaced atomically when complete); with "
                   "--synthetic-format hf, a new or empty directory")
    p.add_argument("--dense", choices=DENSE_TYPES, default=None,
                   help="type of the embedding, attention and lm_head matrices (default q8_0; "
                   "mxfp4 halves the bytes they read per token, at a fidelity cost: "
                   "docs/QUALITY.md)")
    p.add_argument("--head", choices=DENSE_TYPES, default=None,
                   help="type of lm_head alone (default: --dense's); the output head is a "
                   "quarter of what gpt-oss-20b reads per token at q8_0")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", metavar="PATH",
                     help="tokenizer.json or .tiktoken[.gz] file to embed instead of the "
                     "checkpoint's tokenizer.json")
    tok.add_argument("--no-tokenizer", action="store_true", help="embed no tokenizer")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line or summary")
    return p


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _check_synthetic_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject options that do not go with --synthetic / --synthetic-format (argparse error)."""
    if args.synthetic is None:
        if args.synthetic_format is not None:
            parser.error("argument --synthetic-format: only applies with --synthetic PRESET")
        if args.routing_skew is not None:
            parser.error("argument --routing-skew: only applies with --synthetic PRESET")
        return
    if args.synthetic_format != "hf":
        return
    for opt, val in (("--dense", args.dense), ("--head", args.head)):
        if val is not None:
            parser.error(f"argument {opt}: not used with --synthetic-format hf (the "
                         "checkpoint's dense tensors are bf16, as published; pass it when "
                         "converting the checkpoint)")
    if args.tokenizer is not None or args.no_tokenizer:
        parser.error("argument --tokenizer/--no-tokenizer: not used with --synthetic-format hf "
                     "(the o200k_harmony tokenizer files are always written)")


def _synthetic(args: argparse.Namespace) -> int:
    from .synthetic import write_synthetic
    from .synthetic_hf import write_synthetic_hf

    try:
        if args.synthetic_format == "hf":
            write_synthetic_hf(args.synthetic, args.out, seed=args.seed,
                               routing_skew=args.routing_skew or 0.0, progress=not args.quiet)
        else:
            write_synthetic(args.synthetic, args.out, dense=args.dense or "q8_0",
                            head=args.head, seed=args.seed, routing_skew=args.routing_skew or 0.0,
                            progress=not args.quiet)
    except (ValueError, EdgemoeError) as e:
        print(f"edgemoe quantize: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the quantize command; returns the process exit status (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.hf_dir is None) == (args.synthetic is None):
        parser.error("give either a checkpoint directory or --synthetic PRESET")
    _check_synthetic_args(parser, args)
    if args.synthetic is not None:
        return _synthetic(args)
    tokenizer: Any = False if args.no_tokenizer else args.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            report = convert(args.hf_dir, args.out, dense=args.dense or "q8_0",
                             head=args.head, tokenizer=tokenizer, progress=not args.quiet)
        except EdgemoeError as e:
            print(f"edgemoe quantize: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; nothing was written", file=sys.stderr)
            return 130
    if not args.quiet:
        print_report(report)
    return 0
