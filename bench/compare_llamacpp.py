#!/usr/bin/env python3
"""edgemoe and llama.cpp side by side, on the very same weights, in one run.

    python bench/compare_llamacpp.py --llama-cpp PATH/TO/llama.cpp --work /data/cmp \\
        [--preset gpt-oss-20b] [-p 512] [-n 128] [-t 2] [-r 3] [--dense q8_0,bf16]
        [--no-repack] [--activations int16,int8] [--only edgemoe|llama.cpp] [--json]

Steps (each output is reused when it already exists in --work):

1. ``edgemoe quantize --synthetic PRESET --synthetic-format hf`` writes a Hugging Face
   checkpoint in gpt-oss's published layout (MXFP4 experts, BF16 rest): the common source,
   written only when a file below has to be made from it (so it may be deleted afterwards).
2. edgemoe converts it (``edgemoe quantize``, default dense q8_0 and ``--dense bf16``);
   llama.cpp's ``convert_hf_to_gguf.py`` converts it (``--outtype bf16``, its default for
   this model, and ``--outtype q8_0``). MXFP4 experts stay MXFP4 in both.
3. ``llama-bench`` (default flags, and with ``--no-repack`` also ``--repack 0``: plain mmap)
   and ``edgemoe bench`` run one after the other with the same prompt length, generation
   length, threads and repetitions (``--only`` runs, and makes the files of, one engine);
   each engine's peak RSS is read from the kernel
   (``wait4``) for its own process; edgemoe once per ``--activations`` setting (its
   integer kernels' activation rounding, default int16). Each finished row is printed to
   stderr at once.

The table gives tokens/s (mean ± sd), weight bytes read per generated token (non-expert
tensors but one embedding row, plus top-k experts per layer, from each file's own tensor
sizes), the bandwidth that makes, peak RSS, and edgemoe's ratios to llama.cpp.

llama.cpp is not a dependency of edgemoe: build it yourself (docs/PERFORMANCE.md shows how,
from the llama-cpp-python sdist that vendors it) and point --llama-cpp at its source tree
(``build/bin/llama-bench`` and ``convert_hf_to_gguf.py`` inside).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One engine on one file."""

    engine: str
    file: str
    dense: str
    pp_tok_s: float
    pp_tok_s_sd: float
    tg_tok_s: float
    tg_tok_s_sd: float
    weight_bytes_per_token: int
    peak_rss_bytes: int

    @property
    def tg_gb_s(self) -> float:
        return self.weight_bytes_per_token * self.tg_tok_s / 1e9


def run(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[str, int]:
    """Run cmd; return (stdout, peak RSS of that process in bytes). Raises on failure."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} exited with {proc.returncode}")
    return out, usage.ru_maxrss * 1024


def ensure(path: Path, cmd: list[str]) -> Path:
    """Make path with cmd unless it exists."""
    if path.exists():
        print(f"reusing {path}", file=sys.stderr)
    else:
        t = time.perf_counter()
        run(cmd)
        print(f"made {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


# ------------------------------------------------------------------ bytes read per token


def gguf_bytes_per_token(path: Path) -> int:
    """Weight bytes one generated token reads from a gpt-oss GGUF (gguf-py reads the index)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = "gpt-oss"
    fields = {f.name: f for f in reader.fields.values()}
    n_expert = int(fields[f"{arch}.expert_count"].contents())
    n_used = int(fields[f"{arch}.expert_used_count"].contents())
    total = 0
    for t in reader.tensors:
        nbytes = int(t.n_bytes)
        if t.name == "token_embd.weight":
            total += nbytes // int(t.shape[-1])   # one row (gguf shapes are innermost first)
        elif "_exps." in t.name:
            total += nbytes * n_used // n_expert
        else:
            total += nbytes
    return total


# ------------------------------------------------------------------ the two engines


def bench_llamacpp(bench_bin: Path, gguf: Path, args: argparse.Namespace,
                   extra: list[str]) -> Row:
    out, rss = run([str(bench_bin), "-m", str(gguf), "-p", str(args.n_prompt), "-n",
                    str(args.n_gen), "-t", str(args.threads), "-r", str(args.repetitions),
                    "-o", "json", *extra])
    results = json.loads(out)
    pp = next(r for r in results if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r for r in results if r["n_gen"] > 0 and r["n_prompt"] == 0)
    dense = "bf16" if "bf16" in gguf.name else "q8_0"
    return Row(f"llama.cpp{' ' + ' '.join(extra) if extra else ''}", gguf.name, dense,
               pp["avg_ts"], pp["stddev_ts"], tg["avg_ts"], tg["stddev_ts"],
               gguf_bytes_per_token(gguf), rss)


def bench_edgemoe(model: Path, args: argparse.Namespace, dense: str, activations: str) -> Row:
    out, rss = run([sys.executable, "-m", "edgemoe", "bench", str(model), "-p",
                    str(args.n_prompt), "-n", str(args.n_gen), "-t", str(args.threads), "-r",
                    str(args.repetitions), "--activations", activations, "--json"])
    r = json.loads(out)
    engine = "edgemoe" if activations == "int16" else f"edgemoe --activations {activations}"
    return Row(engine, model.name, dense, r["pp_tok_s"], r["pp_tok_s_sd"], r["tg_tok_s"],
               r["tg_tok_s_sd"], r["weight_bytes_per_token"], rss)


def dense_label(model: Path) -> str:
    """The dense (and head, if set apart) type a model.bin was written with."""
    from edgemoe.format import read_model

    with read_model(model) as mf:
        types = {name: t.type for name, t in mf.tensors.items()}
    dense, head = types["model.layers.0.self_attn.q_proj.weight"], types["lm_head.weight"]
    return dense if head == dense else f"{dense}, head {head}"


# ------------------------------------------------------------------ report


def report(row: Row) -> Row:
    """Print a finished row to stderr at once (a later failure does not lose it)."""
    print(json.dumps(asdict(row)), file=sys.stderr, flush=True)
    return row


def table(rows: list[Row]) -> str:
    gib = 1024**3
    lines = [
        "| engine | file | dense | pp tok/s | tg tok/s | weights/token | tg bandwidth | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.engine} | {r.file} | {r.dense} | {r.pp_tok_s:.2f} ± {r.pp_tok_s_sd:.2f} "
            f"| {r.tg_tok_s:.2f} ± {r.tg_tok_s_sd:.2f} | {r.weight_bytes_per_token / 1e9:.2f} GB "
            f"| {r.tg_gb_s:.1f} GB/s | {r.peak_rss_bytes / gib:.2f} GiB |"
        )
    return "\n".join(lines)


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    """edgemoe's pp and tg over each llama.cpp row (same dense type first)."""
    out = []
    for e in (r for r in rows if r.engine.startswith("edgemoe")):
        for ll in (r for r in rows if r.engine.startswith("llama.cpp")):
            out.append({
                "edgemoe": f"{e.engine} {e.file}", "llama.cpp": f"{ll.engine} {ll.file}",
                "pp_ratio": e.pp_tok_s / ll.pp_tok_s if ll.pp_tok_s else float("nan"),
                "tg_ratio": e.tg_tok_s / ll.tg_tok_s if ll.tg_tok_s else float("nan"),
            })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", type=Path, required=True,
                    help="llama.cpp source tree with build/bin/llama-bench")
    ap.add_argument("--llama-bench", type=Path, default=None,
                    help="the llama-bench binary (default: LLAMA_CPP/build/bin/llama-bench), e.g. "
                         "of a build made with another compiler")
    ap.add_argument("--work", type=Path, required=True, help="directory for the model files")
    ap.add_argument("--preset", default="gpt-oss-20b",
                    help="synthetic preset (default %(default)s)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--dense", default="q8_0,bf16",
                    help="dense types to compare, comma-separated (default %(default)s)")
    ap.add_argument("--no-repack", action="store_true",
                    help="also run llama.cpp with --repack 0 (plain mmap, no second copy)")
    ap.add_argument("--activations", default="int16",
                    help="edgemoe activation roundings to run, comma-separated (int16, int8)")
    ap.add_argument("--also", type=Path, action="append", default=[], metavar="MODEL",
                    help="another edgemoe model.bin of the same weights to bench beside (e.g. "
                    "one written with --dense mxfp4 or --head mxfp4); repeatable")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--only", choices=("edgemoe", "llama.cpp"),
                    help="run one engine only (e.g. to repeat it)")
    args = ap.parse_args(argv)

    bench_bin = args.llama_bench or args.llama_cpp / "build" / "bin" / "llama-bench"
    convert = args.llama_cpp / "convert_hf_to_gguf.py"
    for p in (bench_bin, convert):
        if not p.exists():
            flag = "--llama-bench" if args.llama_bench and p == args.llama_bench else "--llama-cpp"
            ap.error(f"{flag}: {p} not found (build llama.cpp first)")
    args.work.mkdir(parents=True, exist_ok=True)
    w = args.work
    hf = w / f"{args.preset}_hf"
    hf_cmd = [sys.executable, "-m", "edgemoe", "quantize", "--synthetic", args.preset,
              "--synthetic-format", "hf", "-o", str(hf)]

    def made_from_hf(path: Path, cmd: list[str]) -> Path:
        """path, converted from the HF checkpoint (written first if missing) unless it exists:
        the checkpoint (13 GB for gpt-oss-20b) may be deleted once every file is made."""
        if not path.exists():
            ensure(hf, hf_cmd)
        return ensure(path, cmd)

    rows: list[Row] = []
    for dense in args.dense.split(","):
        if args.only != "edgemoe":
            gguf = w / f"{args.preset}-{dense}.gguf"
            made_from_hf(gguf, [sys.executable, str(convert), str(hf), "--outtype", dense,
                                "--outfile", str(gguf)])
            rows.append(report(bench_llamacpp(bench_bin, gguf, args, [])))
            if args.no_repack:
                rows.append(report(bench_llamacpp(bench_bin, gguf, args, ["--repack", "0"])))
        if args.only != "llama.cpp":
            ours = w / f"{args.preset}-{dense}.bin"
            made_from_hf(ours, [sys.executable, "-m", "edgemoe", "quantize", str(hf), "-o",
                                str(ours), "--dense", dense])
            for activations in args.activations.split(","):
                rows.append(report(bench_edgemoe(ours, args, dense, activations)))
    if args.only != "llama.cpp":
        for model in args.also:
            for activations in args.activations.split(","):
                rows.append(report(bench_edgemoe(model, args, dense_label(model), activations)))
    rs = ratios(rows)
    if args.json:
        print(json.dumps({"rows": [asdict(r) | {"tg_gb_s": r.tg_gb_s} for r in rows],
                          "ratios": rs, "threads": args.threads, "n_prompt": args.n_prompt,
                          "n_gen": args.n_gen, "repetitions": args.repetitions}))
    else:
        print(table(rows))
        print()
        for r in rs:
            print(f"{r['edgemoe']} vs {r['llama.cpp']}: pp x{r['pp_ratio']:.2f}, "
                  f"tg x{r['tg_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
