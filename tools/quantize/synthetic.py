"""Synthetic models with real gpt-oss shapes and random weights (``--synthetic PRESET``).

Real weights cannot be downloaded everywhere; speed and memory work needs a model of the
real size. The weights are seeded random values, written straight in their stored formats
(random MXFP4 nibbles and q8_0 integers with a fixed scale per tensor), so writing is bound
by disk speed and memory stays flat. The scales keep activations finite (every matrix has
roughly unit gain on a normalized input) and the router spreads tokens over all experts:
evenly, or with ``--routing-skew S`` some experts of each layer far more often than others
(``routing_skew_offsets``).
The real o200k_harmony tokenizer is embedded, so chat and generation run end to end (the
text is random, of course).
"""

from __future__ import annotations

import math
import numbers
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.format import (
    DENSE_TYPES,
    EXPERT_PARTS,
    TensorSpec,
    expert_tensor_name,
    tensor_nbytes,
)
from edgemoe.quant import QK, to_bf16
from edgemoe.writer import RANKS_TENSOR, ModelWriter, make_meta, tokenizer_header

from .progress import Progress

_ROPE = {
    "type": "yarn", "theta": 150000.0, "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
    "original_max_position_embeddings": 4096, "truncate": False,
}
_COMMON: dict[str, Any] = {
    "vocab_size": 201088, "num_experts_per_tok": 4, "rms_norm_eps": 1e-5,
    "swiglu_limit": 7.0, "swiglu_alpha": 1.702, "max_position_embeddings": 131072,
    "rope": _ROPE, "eos_token_ids": [200002, 199999, 200012],
}


def _preset(layers: int, hidden: int, ff: int, heads: int, kv: int, hd: int, experts: int,
            window: int) -> dict[str, Any]:
    return {
        **_COMMON, "hidden_size": hidden, "intermediate_size": ff, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
        "num_local_experts": experts, "sliding_window": window,
        "layer_types": ["sliding_attention", "full_attention"] * (layers // 2),
    }


#: name → FORMAT.md hparams. gpt-oss-20b and -120b are the published shapes.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt-oss-tiny": _preset(4, 64, 64, 4, 2, 16, 8, 8),
    "gpt-oss-1b": _preset(12, 1024, 1024, 16, 4, 64, 16, 128),
    "gpt-oss-20b": _preset(24, 2880, 2880, 64, 8, 64, 32, 128),
    "gpt-oss-120b": _preset(36, 2880, 2880, 64, 8, 64, 128, 128),
}

_ROWS_PER_CHUNK = 4096


def _o200k_spec() -> Any:
    from edgemoe.tokenizer import spec_from_tiktoken_file

    vocab = resources.files("edgemoe_quantize") / "data" / "o200k_base.tiktoken.gz"
    with resources.as_file(vocab) as p:
        return spec_from_tiktoken_file(Path(p))


@dataclass(frozen=True)
class _Tensor:
    """How to fill one tensor: its spec, the std of its values, and an offset added."""

    spec: TensorSpec
    std: float
    mean: float = 0.0


def value_fill(name: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """``(std, mean)`` of the random values of tensor ``name`` (model.bin or HF name; for
    an MXFP4 matrix, ``shape`` is its logical [out, in]).

    Norms are about 1, the embedding and the sinks unit normal, the router bias spreads
    tokens over the experts, other biases are small, and every matrix has std
    ``fan_in ** -0.5`` so that it has roughly unit gain on a normalized input.
    """
    if name.endswith("norm.weight"):
        return 0.05, 1.0
    if name.endswith(("embed_tokens.weight", "sinks")):
        return 1.0, 0.0
    if name.endswith("router.bias"):
        return 0.1, 0.0
    if len(shape) == 1 or name.endswith("_bias"):
        return 0.02, 0.0
    return shape[-1] ** -0.5, 0.0


# ------------------------------------------------------------------------------ routing skew

#: The largest probability of being among a token's top-k that ``--routing-skew`` gives.
SKEW_P_MAX = 0.95
#: Seeds the per-layer expert ranks apart from the tensors' streams (``[seed, i]``).
_SKEW_TAG = 0x736B6577  # "skew"


def check_routing_skew(skew: Any) -> float:
    """``skew`` as a float, or ValueError naming ``--routing-skew`` (negative, NaN, inf,
    not a number)."""
    if isinstance(skew, bool) or not isinstance(skew, numbers.Real) or not (
            math.isfinite(skew) and skew >= 0):
        raise ValueError(f"--routing-skew must be a finite number >= 0, got {skew!r}")
    return float(skew)


def router_logit_std(hp: dict[str, Any]) -> float:
    """The std of one router logit on a normalized hidden state under ``value_fill``'s
    recipe (router weight std ``H ** -0.5``, norm weight about 1, small bias): about 1."""
    H, E = hp["hidden_size"], hp["num_local_experts"]
    w_std = value_fill("mlp.router.weight", (E, H))[0]
    g_std, g_mean = value_fill("post_attention_layernorm.weight", (H,))
    b_std = value_fill("mlp.router.bias", (E,))[0]
    return math.sqrt(H * w_std**2 * (g_mean**2 + g_std**2) + b_std**2)


def skew_top_k_probabilities(num_experts: int, top_k: int, skew: float) -> np.ndarray:
    """The target probability of the rank-r expert (r = 1 .. E) being among a token's
    top-k: ``min(SKEW_P_MAX, lam * r ** -skew)`` with ``lam`` such that they sum to k."""
    E, k = num_experts, top_k
    cap = max(SKEW_P_MAX, (k / E + 1) / 2)  # feasible even when k is close to E
    log_w = -skew * np.log(np.arange(1, E + 1, dtype=np.float64))
    for m in range(E):  # m: how many of the most popular experts sit at the cap
        rel = np.exp(log_w[m:] - log_w[m])  # <= 1: no overflow whatever the skew
        lam = (k - m * cap) / rel.sum()
        if lam <= cap:
            return np.concatenate([np.full(m, cap), lam * rel])
    return np.full(E, k / E)  # pragma: no cover - unreachable while k < E * cap


def skew_rank_offsets(num_experts: int, top_k: int, skew: float) -> np.ndarray:
    """The router-bias offset of the rank-r expert (r = 1 .. E), in units of the router
    logits' std; zero mean, decreasing with r, all zero when ``skew`` is 0.

    If each logit is the offset plus unit normal noise and an expert is picked when its
    logit passes a fixed threshold, the rank-r expert is picked with probability
    ``skew_top_k_probabilities(E, k, skew)[r - 1]`` when its offset is the probit
    ``Phi^-1`` of that probability (up to a constant). The real top-k threshold moves
    from token to token, yet on 100000 unit normal logit vectors the picks come within
    10% (relative) of every target of at least 0.01, for E = 8, 16, 32, 128, k=4 and
    skew 0.5, 1, 2 (e.g. E=128, skew 1: the most popular expert 0.742 for 0.736, the
    least 0.0062 for 0.0058). A plain ``skew * ln(1/r)`` offset gives ``r ** -skew``
    only for Gumbel noise; with normal logits it starves the tail (E=128, skew 1, offset
    in units of the logit std: the least popular expert picked 1 time in 20000).
    """
    if skew == 0 or top_k >= num_experts:
        return np.zeros(num_experts)
    p = np.maximum(skew_top_k_probabilities(num_experts, top_k, skew), 1e-300)
    z = np.array([statistics.NormalDist().inv_cdf(float(x)) for x in p])
    return z - z.mean()


def routing_skew_offsets(hp: dict[str, Any], seed: int, skew: float) -> list[np.ndarray]:
    """Per layer, the f32 [E] offset ``--routing-skew skew`` adds to the router bias.

    In layer l a permutation drawn from ``[seed, l, _SKEW_TAG]`` ranks the experts; the
    rank-r expert gets ``router_logit_std(hp) * skew_rank_offsets(E, k, skew)[r - 1]``.
    model.bin and the Hugging Face checkpoint add the same offsets. The probability of
    being among a token's top-k then falls roughly like ``r ** -skew`` (capped at
    ``SKEW_P_MAX``).

    Measured (seed 0): 4096 random normalized hidden states (times the layer's
    post-attention norm weight) through each layer's router (f32 weight and bias as
    model.bin holds them: written files for tiny and 1b, the same generated tensors for
    20b and 120b), top-4 picks counted per expert. Share of the picks taken by the most
    popular 25% of a layer's experts, mean over layers (uniform routing: 0.25; with E=8
    and k=4 the top 2 experts can take at most 0.50):

    =====  ==============  ============  =============  ===============
    skew   tiny (E=8)      1b (E=16)     20b (E=32)     120b (E=128)
    =====  ==============  ============  =============  ===============
    0      0.277           0.293         0.306          0.331
    0.5    0.390           0.427         0.447          0.479
    1      0.459           0.594         0.668          0.746
    2      0.476           0.758         0.874          0.965
    =====  ==============  ============  =============  ===============

    Layers differ by about +-0.03. At skew 1 the most popular expert of a layer is picked
    by 96% of tokens (74% for 120b, whose law stays below the cap) and the least popular one
    still 664 / 226 / 72 / 7 times in the 4096 tokens; at skew 2 a 120b layer's last
    experts go unpicked in 4096 tokens (target 0.0003 per token). At skew 0 the share is
    above 0.25 only through sampling and the random router weights. The tiny model's
    actual forward pass (transformers on the ``--synthetic-format hf`` checkpoint, 4096
    random tokens) routes the same way: 0.27-0.29 at skew 0, 0.46-0.47 at skew 1.
    """
    skew = check_routing_skew(skew)
    E, k = hp["num_local_experts"], hp["num_experts_per_tok"]
    by_rank = router_logit_std(hp) * skew_rank_offsets(E, k, skew)
    out = []
    for layer in range(hp["num_hidden_layers"]):
        perm = np.random.default_rng([seed, layer, _SKEW_TAG]).permutation(E)
        off = np.empty(E)
        off[perm] = by_rank  # expert perm[j] has rank j + 1
        out.append(off.astype(np.float32))
    return out


def router_bias_offsets(hp: dict[str, Any], seed: int, skew: float) -> dict[str, np.ndarray]:
    """``routing_skew_offsets`` by tensor name (``model.layers.L.mlp.router.bias``, the same
    in model.bin and the HF checkpoint); empty when ``skew`` is 0."""
    if check_routing_skew(skew) == 0:
        return {}
    return {f"model.layers.{L}.mlp.router.bias": off
            for L, off in enumerate(routing_skew_offsets(hp, seed, skew))}


def _tensor(name: str, typ: str, shape: tuple[int, ...]) -> _Tensor:
    std, mean = value_fill(name, shape)
    return _Tensor(TensorSpec(name, typ, shape), std, mean)


def _plan(hp: dict[str, Any], dense: str, head: str) -> list[_Tensor]:
    H, FF, V = hp["hidden_size"], hp["intermediate_size"], hp["vocab_size"]
    nh, nkv, hd, E = (hp["num_attention_heads"], hp["num_key_value_heads"], hp["head_dim"],
                      hp["num_local_experts"])
    out = [
        _tensor("model.embed_tokens.weight", dense, (V, H)),
        _tensor("model.norm.weight", "f32", (H,)),
        _tensor("lm_head.weight", head, (V, H)),
    ]
    for L in range(hp["num_hidden_layers"]):
        p = f"model.layers.{L}."
        out += [
            _tensor(p + "input_layernorm.weight", "f32", (H,)),
            _tensor(p + "post_attention_layernorm.weight", "f32", (H,)),
            _tensor(p + "self_attn.sinks", "f32", (nh,)),
            _tensor(p + "mlp.router.weight", "f32", (E, H)),
            _tensor(p + "mlp.router.bias", "f32", (E,)),
            _tensor(p + "self_attn.o_proj.weight", dense, (H, nh * hd)),
            _tensor(p + "self_attn.o_proj.bias", "f32", (H,)),
        ]
        for name, rows in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
            out += [
                _tensor(p + f"self_attn.{name}_proj.weight", dense, (rows, H)),
                _tensor(p + f"self_attn.{name}_proj.bias", "f32", (rows,)),
            ]
        for e in range(E):
            shapes = {"gate_up_proj": (2 * FF, H), "gate_up_proj_bias": (2 * FF,),
                      "down_proj": (H, FF), "down_proj_bias": (H,)}
            for part in EXPERT_PARTS:
                shape = shapes[part]
                typ = "mxfp4" if len(shape) == 2 else "f32"
                out.append(_tensor(expert_tensor_name(L, e, part), typ, shape))
    return out


# Root mean square of the FP4 values (uniform random codes) and of uniform int8.
_FP4_RMS = math.sqrt(np.mean(np.array([0, .5, 1, 1.5, 2, 3, 4, 6]) ** 2))
_INT8_RMS = math.sqrt(np.mean(np.arange(-128, 128, dtype=np.float64) ** 2))


def mxfp4_scale_byte(std: float) -> int:
    """The E8M0 scale byte giving uniformly random FP4 codes a std of about ``std``."""
    return round(math.log2(std / _FP4_RMS)) + 127


def _mxfp4_bytes(t: _Tensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Random FP4 codes (all blocks, in chunks), then one scale per block (planar layout)."""
    rows, cols = t.spec.shape
    groups = rows * cols // QK
    step = _ROWS_PER_CHUNK * cols // QK
    for g0 in range(0, groups, step):
        yield np.frombuffer(rng.bytes(16 * min(step, groups - g0)), np.uint8)
    yield np.full(groups, mxfp4_scale_byte(t.std), np.uint8)


def _q8_0_bytes(t: _Tensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Random int8 values with one f16 scale per tensor, a few thousand rows at a time."""
    rows, cols = t.spec.shape
    d = np.frombuffer(np.float16(t.std / _INT8_RMS).tobytes(), np.uint8)
    for r0 in range(0, rows, _ROWS_PER_CHUNK):
        n = min(_ROWS_PER_CHUNK, rows - r0)
        blk = np.frombuffer(rng.bytes(n * cols // QK * 34), np.uint8).reshape(-1, 34).copy()
        blk[:, 0:2] = d
        yield blk.reshape(-1)


def _float_bytes(t: _Tensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Normal values (mean, std) as f32 or bf16, a few thousand rows at a time."""
    rows = t.spec.shape[0] if len(t.spec.shape) == 2 else 1
    cols = t.spec.shape[-1]
    for r0 in range(0, rows, _ROWS_PER_CHUNK):
        n = min(_ROWS_PER_CHUNK, rows - r0)
        v = np.float32(t.mean) + np.float32(t.std) * rng.standard_normal(n * cols, np.float32)
        yield to_bf16(v) if t.spec.type == "bf16" else v


def _tensor_bytes(t: _Tensor, rng: np.random.Generator) -> Iterator[np.ndarray]:
    if t.spec.type == "mxfp4":
        return _mxfp4_bytes(t, rng)
    if t.spec.type == "q8_0":
        return _q8_0_bytes(t, rng)
    return _float_bytes(t, rng)


def _plus_offset(chunks: Iterator[np.ndarray], offset: np.ndarray) -> Iterator[np.ndarray]:
    """The f32 values of ``chunks`` (one tensor) plus ``offset``, element by element."""
    yield np.concatenate(list(chunks)) + offset


def write_synthetic(
    preset: str, out_path: str | Path, *, dense: str = "q8_0", head: str | None = None,
    seed: int = 0,
    routing_skew: float = 0.0, progress: bool = True,
) -> int:
    """Write the synthetic model ``preset`` to ``out_path``; returns the file's length.

    ``routing_skew`` > 0 makes some experts of each layer more popular than others
    (``routing_skew_offsets``); 0 spreads tokens evenly.

    Raises:
        ValueError: unknown preset or dense type, negative or non-finite routing_skew.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r} (known: {', '.join(PRESETS)})")
    for opt, typ in (("--dense", dense), ("--head", head)):
        if typ is not None and typ not in DENSE_TYPES:
            raise ValueError(f"{opt} must be one of {', '.join(DENSE_TYPES)}, got {typ!r}")
    skew = check_routing_skew(routing_skew)
    hp = PRESETS[preset]
    offsets = router_bias_offsets(hp, seed, skew)
    plan = _plan(hp, dense, head or dense)
    tok = _o200k_spec()
    blob = tok.ranks_blob()
    specs = [t.spec for t in plan] + [TensorSpec(RANKS_TENSOR, "u8", (len(blob),))]
    source = {"converter": "edgemoe synthetic", "preset": preset, "seed": seed,
              "dense_type": dense, "weights": "random (not a trained model)"}
    if head is not None:
        source["head_type"] = head
    if skew:
        source["routing_skew"] = skew
    meta = make_meta(hp, tokenizer_header(tok), source)
    total = sum(tensor_nbytes(s.type, s.shape) for s in specs)
    bar = Progress(total, enabled=progress)
    with ModelWriter(out_path, meta, specs) as w:
        for i, t in enumerate(plan):
            rng = np.random.default_rng([seed, i])
            chunks = _tensor_bytes(t, rng)
            if t.spec.name in offsets:  # a router bias (f32, a few dozen values)
                chunks = _plus_offset(chunks, offsets[t.spec.name])
            w.write_tensor(t.spec.name, chunks)
            bar.advance(tensor_nbytes(t.spec.type, t.spec.shape), t.spec.name)
        w.write_tensor(RANKS_TENSOR, blob)
        bar.advance(len(blob), RANKS_TENSOR)
        length = w.file_length
    seconds = bar.finish()
    if progress:
        print(f"wrote {out_path}: {length / 1e9:.2f} GB in {seconds:.1f} s", file=sys.stderr)
    return length
