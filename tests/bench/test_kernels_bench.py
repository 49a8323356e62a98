"""matvec bandwidth of each kernel set at gpt-oss-20b shapes (pytest-benchmark).

Not part of the default test run. Run with:

    python -m pytest tests/bench/test_kernels_bench.py -s --benchmark-columns=min,median,rounds

Each matvec case reports GB/s of weight bytes streamed (``extra_info["GB/s"]``, from the fastest
round), printed as a table at the end with ``-s``:
- ``hot``: one matrix, called again and again, so it stays in the L3 cache (32 MiB on the
  machine these were first measured on): the kernel's arithmetic speed;
- ``dram``: a ring of copies of the matrix, 256 MB in all, one per call: weights come from
  memory as in a real decode, where each token streams the whole model once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from edgemoe._native import ffi, lib
from edgemoe.quant import encode_tensor

TYPE_IDS = {"f32": 0, "bf16": 2, "q8_0": 4, "mxfp4": 5}
#: (type, rows, cols): gpt-oss-20b attention/dense (2880 × 2880 q8_0 or bf16) and experts
#: (gate_up 5760 × 2880 and down 2880 × 2880, mxfp4).
SHAPES = [("q8_0", 2880, 2880), ("bf16", 2880, 2880), ("mxfp4", 5760, 2880), ("mxfp4", 2880, 2880)]
#: Kernel sets, and for the integer ones the activation rounding (bits): "avx2-int8" is the
#: avx2 set with edgemoe_model_params.activation_bits = 8.
SETS = ["reference", "avx512", "avx512-int8", "avx2", "avx2-int8", "neon", "neon-int8"]
DRAM_BYTES = 256 << 20

RESULTS: list[tuple[str, str, str, float]] = []




@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    yield
    if RESULTS:
        print("\n\n| kernels | weights | shape | residency | GB/s |\n|---|---|---|---|---|")
        for kernels, case, residency, gbs in RESULTS:
            type_, shape = case.split(" ")
            print(f"| {kernels} | {type_} | {shape} | {residency} | {gbs:.2f} |")


@pytest.mark.parametrize("residency", ["hot", "dram"])
@pytest.mark.parametrize(("type_", "rows", "cols"), SHAPES)
@pytest.mark.parametrize("kernels", SETS)
def test_matvec_bandwidth(benchmark: Any, kernels: str, type_: str, rows: int, cols: int,
                          residency: str) -> None:
    set_name, _, bits_name = kernels.partition("-")
    bits = 8 if bits_name == "int8" else 16
    if bits == 8 and type_ not in ("q8_0", "mxfp4"):
        pytest.skip("int8 activations concern the integer (q8_0, mxfp4) kernels only")
    if not lib.edgemoe_kernels_available(set_name.encode()):
        pytest.skip(f"kernel set {kernels!r} does not run on this CPU / build")
    if kernels == "reference" and residency == "dram":
        pytest.skip("the reference is compute-bound: where the weights live does not matter")
    g = np.random.default_rng(0)
    data = encode_tensor(type_, (g.standard_normal((rows, cols)) * cols**-0.5).astype(np.float32))
    copies = max(1, DRAM_BYTES // data.size) if residency == "dram" else 1
    ring = [data] + [data.copy() for _ in range(copies - 1)]
    weights = [ffi.from_buffer("uint8_t[]", d) for d in ring]
    x = g.standard_normal(cols).astype(np.float32)
    y = np.zeros(rows, dtype=np.float32)
    xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)
    name, type_id = set_name.encode(), TYPE_IDS[type_]
    state = {"i": 0}

    def run() -> None:
        w = weights[state["i"] % copies]
        state["i"] += 1
        assert lib.edgemoe_kernel_matmul(name, type_id, w, rows, cols, xp, 1, bits,
                                         yp) == lib.EDGEMOE_OK

    slow = kernels == "reference"
    benchmark.pedantic(run, rounds=3 if slow else max(30, 2 * copies), iterations=1,
                       warmup_rounds=1 if slow else copies)
    gbs = data.size / benchmark.stats.stats.min / 1e9
    benchmark.extra_info["GB/s"] = round(gbs, 2)
    RESULTS.append((kernels, f"{type_} {rows}x{cols}", residency, gbs))


#: (type, rows, cols, tokens): the batched product prompts use, experts seeing 16 or 64 tokens.
MATMUL_CASES = [("mxfp4", 5760, 2880, 16), ("mxfp4", 5760, 2880, 64), ("q8_0", 2880, 2880, 64),
                ("q8_0", 2880, 2880, 512)]


@pytest.mark.parametrize(("type_", "rows", "cols", "n_tok"), MATMUL_CASES)
@pytest.mark.parametrize("kernels", ["amx", "amx-int8", "avx512", "avx512-int8", "avx2",
                                     "avx2-int8", "neon", "neon-int8"])
def test_matmul_throughput(benchmark: Any, kernels: str, type_: str, rows: int, cols: int,
                           n_tok: int) -> None:
    """GFLOP/s (2 per multiply-add) of the batched integer product, one thread, weights hot."""
    set_name, _, bits_name = kernels.partition("-")
    bits = 8 if bits_name == "int8" else 16
    if not lib.edgemoe_kernels_available(set_name.encode()):
        pytest.skip(f"kernel set {kernels!r} does not run on this CPU / build")
    g = np.random.default_rng(0)
    data = encode_tensor(type_, (g.standard_normal((rows, cols)) * cols**-0.5).astype(np.float32))
    x = g.standard_normal((n_tok, cols)).astype(np.float32)
    y = np.zeros((n_tok, rows), dtype=np.float32)
    wp = ffi.from_buffer("uint8_t[]", data)
    xp, yp = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", y)

    def run() -> None:
        assert lib.edgemoe_kernel_matmul(set_name.encode(), TYPE_IDS[type_], wp, rows, cols,
                                         xp, n_tok, bits, yp) == lib.EDGEMOE_OK

    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    gflops = 2 * rows * cols * n_tok / benchmark.stats.stats.min / 1e9
    benchmark.extra_info["GFLOP/s"] = round(gflops, 1)
    print(f"\n{kernels} {type_} {rows}x{cols} x {n_tok} tokens: {gflops:.1f} GFLOP/s")
