"""Write the golden oracle fixtures into tests/data/ (run by hand; needs the test extra).

    python tests/make_fixtures.py            # writes the files below
    python tests/make_fixtures.py --check    # rebuilds in a temp dir, compares, writes nothing

Outputs (all deterministic for a given torch/transformers version):

* ``tests/data/tiny_mxfp4/{config.json,model.safetensors}`` — the tiny gpt-oss checkpoint of
  shared/ORACLES.md §2.1 (recipe seed 0) in the published MXFP4 layout of §2.4: bf16 dense
  tensors, experts as ``*_blocks``/``*_scales``, ``quantization_config`` in config.json.
* ``tests/data/tiny_expected.npz`` — token ids and transformers' fp32 logits of that checkpoint
  (loaded with ``Mxfp4Config(dequantize=True)``, eager attention; §2.5):

  - ``ids_a`` (24 tokens, > sliding_window 8) with all rows ``logits_a``;
  - ``ids_b`` (300 tokens) with all rows ``logits_b``;
  - ``ids_c`` (2,400 tokens, positions past 2,048) with rows ``rows_c`` only (every 50th row
    and the last 16) in ``logits_c``;
  - ``greedy_prompt`` (12 tokens) and ``greedy_tokens``: transformers' greedy continuation
    (``generate``, KV cache, 20 new tokens) of the checkpoint model;
  - ``q8_logits_a``, ``q8_logits_c`` (rows ``rows_c``): the same model with its dense 2-D
    weights (embedding, q/k/v/o, lm_head) rounded by FORMAT.md's q8_0 rule, i.e. the oracle
    of ``edgemoe quantize --dense q8_0`` (the default).

* ``tests/data/tiny_expected.json`` — metadata: versions, seeds, sizes, tolerance notes.

The tests that use them (tests/test_oracle.py) need no torch. The live-oracle tests rebuild
the checkpoint from the recipe and check these files still match.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import oracle  # noqa: E402

DATA = HERE / "data"
CKPT_NAME = "tiny_mxfp4"
NPZ_NAME = "tiny_expected.npz"
META_NAME = "tiny_expected.json"

MODEL_SEED = 0
VOCAB = 512
# (name, length, torch seed of the ids)
SEQUENCES = (("a", 24, 1), ("b", 300, 2), ("c", 2400, 3))
GREEDY_PROMPT = (12, 1)  # length, seed: the recipe's prompt of §2.1
GREEDY_NEW = 20
Q8_SEQUENCES = ("a", "c")  # sequences that also get q8_0-oracle logits


def long_rows(n: int) -> np.ndarray:
    """Rows of a long sequence kept in the fixture: every 50th and the last 16."""
    return np.unique(np.concatenate([np.arange(0, n, 50), np.arange(n - 16, n)])).astype(np.int64)


def build(out_dir: Path) -> dict[str, Any]:
    """Build the checkpoint in ``out_dir/tiny_mxfp4`` and return the npz arrays + metadata."""
    t0 = time.perf_counter()
    model = oracle.build_hf_model(MODEL_SEED)
    prompt = oracle.random_ids(*GREEDY_PROMPT[:1], VOCAB, GREEDY_PROMPT[1])
    recipe_greedy = oracle.hf_greedy(model, prompt, GREEDY_NEW)
    if recipe_greedy != oracle.RECIPE_GREEDY_20:
        print(f"WARNING: the recipe's fp32 greedy tokens differ from ORACLES §2.1: {recipe_greedy}",
              file=sys.stderr)
    ckpt = oracle.save_mxfp4_checkpoint(model, out_dir / CKPT_NAME)
    hf = oracle.load_hf_fp32(ckpt)

    arrays: dict[str, np.ndarray] = {}
    for name, n, seed in SEQUENCES:
        ids = oracle.random_ids(n, VOCAB, seed)
        logits = oracle.model_logits(hf, ids)
        arrays[f"ids_{name}"] = ids.astype(np.int32)
        if n > 1000:
            rows = long_rows(n)
            arrays[f"rows_{name}"] = rows
            arrays[f"logits_{name}"] = logits[rows].astype(np.float32)
        else:
            arrays[f"logits_{name}"] = logits.astype(np.float32)
    arrays["greedy_prompt"] = prompt.astype(np.int32)
    arrays["greedy_tokens"] = np.asarray(oracle.hf_greedy(hf, prompt, GREEDY_NEW), np.int32)

    # The same model with its dense 2-D weights rounded by the converter's q8_0 rule
    # (embedding, q/k/v/o, lm_head; not the router): the oracle of `--dense q8_0`.
    oracle.apply_q8_0(hf)
    for name in Q8_SEQUENCES:
        logits = oracle.model_logits(hf, arrays[f"ids_{name}"])
        if f"rows_{name}" in arrays:
            logits = logits[arrays[f"rows_{name}"]]
        arrays[f"q8_logits_{name}"] = logits.astype(np.float32)

    meta = {
        "description": "Golden logits of transformers GptOssForCausalLM (fp32, eager attention, "
                       "MXFP4 experts dequantized) for the tiny checkpoint in tiny_mxfp4/.",
        "generator": "tests/make_fixtures.py",
        "versions": dict(oracle.versions()),
        "recipe": "shared/ORACLES.md §2.1 tiny_config() + randomize(seed), §2.4 MXFP4 layout",
        "model_seed": MODEL_SEED,
        "config": {k: v for k, v in json.loads((ckpt / "config.json").read_text()).items()
                   if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "num_key_value_heads", "head_dim",
                            "num_local_experts", "num_experts_per_tok", "sliding_window",
                            "layer_types", "rope_parameters")},
        "sequences": {name: {"length": n, "ids": f"torch.randint(0, {VOCAB}, (1, {n}), "
                             f"generator=torch.Generator().manual_seed({seed}))",
                             "rows": "every 50th row and the last 16" if n > 1000 else "all"}
                      for name, n, seed in SEQUENCES},
        "greedy": {"prompt": f"torch.randint(0, {VOCAB}, (1, {GREEDY_PROMPT[0]}), "
                             f"generator=torch.Generator().manual_seed({GREEDY_PROMPT[1]}))",
                   "new_tokens": GREEDY_NEW,
                   "recipe_fp32_model_tokens": recipe_greedy,
                   "recipe_matches_oracles_md": recipe_greedy == oracle.RECIPE_GREEDY_20},
        "tolerance": "edgemoe's f32 reference path (converted with --dense bf16, exact for this "
                     "bf16 checkpoint) must match within relative L2 error <= 1e-3 per sequence "
                     "and with equal argmax on every row; see tests/test_oracle.py for the "
                     "tighter regression bound. Positions past 2,048 differ a little more "
                     "(transformers computes RoPE angles in fp32).",
    }
    seconds = round(time.perf_counter() - t0, 1)
    return {"arrays": arrays, "meta": meta, "ckpt": ckpt, "seconds": seconds}


def write(built: dict[str, Any], data: Path) -> None:
    np.savez_compressed(data / NPZ_NAME, **built["arrays"])
    (data / META_NAME).write_text(json.dumps(built["meta"], indent=2, ensure_ascii=False) + "\n")


def sizes(data: Path) -> dict[str, int]:
    files = [data / NPZ_NAME, data / META_NAME, *sorted((data / CKPT_NAME).iterdir())]
    return {str(f.relative_to(data)): f.stat().st_size for f in files}


def compare(built: dict[str, Any], data: Path, logits_tol: float = 1e-5) -> list[str]:
    """Differences between a fresh build and the files in ``data``: the checkpoint's tensors
    and config must be identical, ids and greedy tokens equal, logits within ``logits_tol``
    relative L2 (transformers' fp32 math may differ in the last bits across CPUs)."""
    import torch
    from safetensors.torch import load_file

    problems: list[str] = []
    new_cfg = json.loads((built["ckpt"] / "config.json").read_text())
    old_cfg = json.loads((data / CKPT_NAME / "config.json").read_text())
    for k in sorted(set(new_cfg) | set(old_cfg)):
        if k != "transformers_version" and new_cfg.get(k) != old_cfg.get(k):
            problems.append(f"config.json: {k} differs: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}")
    new_t = load_file(str(built["ckpt"] / "model.safetensors"))
    old_t = load_file(str(data / CKPT_NAME / "model.safetensors"))
    if set(new_t) != set(old_t):
        problems.append(f"tensor names differ: {sorted(set(new_t) ^ set(old_t))}")
    for k in sorted(set(new_t) & set(old_t)):
        a, b = new_t[k], old_t[k]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            problems.append(f"tensor {k} differs")
    with np.load(data / NPZ_NAME) as old:
        new = built["arrays"]
        if set(old.files) != set(new):
            problems.append(f"npz keys differ: {sorted(old.files)} vs {sorted(new)}")
        for k in sorted(set(new) & set(old.files)):
            a, b = new[k], old[k]
            if a.shape != b.shape:
                problems.append(f"{k}: shape {b.shape} -> {a.shape}")
            elif a.dtype.kind == "f":
                err = oracle.rel_l2(a, b)
                if not err <= logits_tol:
                    problems.append(f"{k}: relative L2 {err:.3g} > {logits_tol:g}")
            elif not np.array_equal(a, b):
                problems.append(f"{k} differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temporary dir and compare with tests/data (write nothing)")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            built = build(Path(tmp))
            problems = compare(built, DATA)
        for p in problems:
            print(p)
        print("fixtures are up to date" if not problems else "fixtures differ")
        return 1 if problems else 0
    DATA.mkdir(exist_ok=True)
    built = build(DATA)
    write(built, DATA)
    for name, size in sizes(DATA).items():
        print(f"{size:>10,d}  tests/data/{name}")
    print(f"built in {built['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
