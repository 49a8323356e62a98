"""Where each model.bin tensor comes from in a checkpoint (HF or "original" layout).

``plan_sources`` maps every tensor FORMAT.md requires to a recipe reading the checkpoint:
a float slice (``FloatSource``), an MXFP4 expert copied bit for bit (``Mxfp4Source``), or a
dense expert to transpose and quantize (``DenseExpertSource``). Every source shape and
dtype is checked here, before any data is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgemoe.errors import ConversionError
from edgemoe.format import expert_tensor_name

from .hf import ORIGINAL, ModelConfig
from .safetensors_io import FLOAT_DTYPES, Checkpoint, TensorEntry


@dataclass(frozen=True)
class FloatSource:
    """Elements ``[start, start + prod(shape))`` of a float tensor, viewed as ``shape``."""

    entry: TensorEntry
    start: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Mxfp4Source:
    """Expert ``expert`` of stacked ``*_blocks`` [E, R, K/32, 16] / ``*_scales`` [E, R, K/32]."""

    blocks: TensorEntry
    scales: TensorEntry
    expert: int


@dataclass(frozen=True)
class DenseExpertSource:
    """Expert ``expert`` of a dense stacked [E, in, out] tensor; written transposed [out, in]."""

    entry: TensorEntry
    expert: int


Source = FloatSource | Mxfp4Source | DenseExpertSource


class _Resolver:
    def __init__(self, ckpt: Checkpoint, mc: ModelConfig) -> None:
        self.ckpt = ckpt
        self.hp = mc.hparams
        self.used: set[str] = set()

    def where(self, e: TensorEntry) -> str:
        return f"{e.path}: tensor {e.name!r}"

    def get(self, name: str, *alternatives: str) -> TensorEntry:
        for n in (name, *alternatives):
            e = self.ckpt.get(n)
            if e is not None:
                self.used.add(n)
                return e
        names = " or ".join(repr(n) for n in (name, *alternatives))
        raise ConversionError(f"{self.ckpt.directory}: missing tensor {names}")

    def shaped(self, e: TensorEntry, shape: tuple[int, ...], dtypes: frozenset[str]
               ) -> TensorEntry:
        if e.dtype not in dtypes:
            raise ConversionError(f"{self.where(e)}: dtype {e.dtype}, expected one of "
                                  f"{', '.join(sorted(dtypes))}")
        if e.shape != shape:
            raise ConversionError(f"{self.where(e)}: shape {list(e.shape)}, expected "
                                  f"{list(shape)}")
        return e

    def float(self, name: str, shape: tuple[int, ...], *alternatives: str) -> FloatSource:
        return FloatSource(self.shaped(self.get(name, *alternatives), shape, FLOAT_DTYPES),
                           0, shape)


def _split_rows(e: TensorEntry, parts: list[tuple[str, int]], width: int
                ) -> dict[str, FloatSource]:
    """Consecutive row blocks of a [sum(rows), width] (or 1-D when width == 0) tensor."""
    out, row = {}, 0
    for name, rows in parts:
        shape = (rows, width) if width else (rows,)
        out[name] = FloatSource(e, row * max(width, 1), shape)
        row += rows
    return out


def _experts(r: _Resolver, layer: int, prefix: str, names: dict[str, str]) -> dict[str, Source]:
    """Per-expert sources of one layer; ``names`` maps our part to the checkpoint's stem."""
    hp = r.hp
    E, H, I = hp["num_local_experts"], hp["hidden_size"], hp["intermediate_size"]  # noqa: E741
    u8 = frozenset({"U8"})
    out: dict[str, Source] = {}
    dims = {"gate_up_proj": (2 * I, H), "down_proj": (H, I)}
    for part, (rows, cols) in dims.items():
        stem = prefix + names[part]
        blocks_name, scales_name = stem + names["blocks"], stem + names["scales"]
        if r.ckpt.get(blocks_name) is not None:
            b = r.shaped(r.get(blocks_name), (E, rows, cols // 32, 16), u8)
            s = r.shaped(r.get(scales_name), (E, rows, cols // 32), u8)
            for e in range(E):
                out[expert_tensor_name(layer, e, part)] = Mxfp4Source(b, s, e)
        elif r.ckpt.get(stem) is not None:
            d = r.shaped(r.get(stem), (E, cols, rows), FLOAT_DTYPES)
            for e in range(E):
                out[expert_tensor_name(layer, e, part)] = DenseExpertSource(d, e)
        else:
            raise ConversionError(f"{r.ckpt.directory}: missing tensor {blocks_name!r} "
                                  f"(or dense {stem!r})")
        bias_rows = rows
        bias = r.shaped(r.get(prefix + names[part + "_bias"]), (E, bias_rows), FLOAT_DTYPES)
        for e in range(E):
            out[expert_tensor_name(layer, e, part + "_bias")] = FloatSource(
                bias, e * bias_rows, (bias_rows,))
    return out


_HF_EXPERT_NAMES = {
    "gate_up_proj": "gate_up_proj", "down_proj": "down_proj", "blocks": "_blocks",
    "scales": "_scales", "gate_up_proj_bias": "gate_up_proj_bias",
    "down_proj_bias": "down_proj_bias",
}
_ORIGINAL_EXPERT_NAMES = {
    "gate_up_proj": "mlp1_weight", "down_proj": "mlp2_weight", "blocks": ".blocks",
    "scales": ".scales", "gate_up_proj_bias": "mlp1_bias", "down_proj_bias": "mlp2_bias",
}


def _hf_layer(r: _Resolver, n: int) -> dict[str, Source]:
    hp = r.hp
    H, E = hp["hidden_size"], hp["num_local_experts"]
    q, kv = hp["num_attention_heads"] * hp["head_dim"], hp["num_key_value_heads"] * hp["head_dim"]
    p = f"model.layers.{n}."
    out: dict[str, Source] = {}
    for name, shape in (
        ("input_layernorm.weight", (H,)), ("post_attention_layernorm.weight", (H,)),
        ("self_attn.q_proj.weight", (q, H)), ("self_attn.q_proj.bias", (q,)),
        ("self_attn.k_proj.weight", (kv, H)), ("self_attn.k_proj.bias", (kv,)),
        ("self_attn.v_proj.weight", (kv, H)), ("self_attn.v_proj.bias", (kv,)),
        ("self_attn.o_proj.weight", (H, q)), ("self_attn.o_proj.bias", (H,)),
        ("self_attn.sinks", (hp["num_attention_heads"],)),
        ("mlp.router.weight", (E, H)), ("mlp.router.bias", (E,)),
    ):
        out[p + name] = r.float(p + name, shape)
    out.update(_experts(r, n, p + "mlp.experts.", _HF_EXPERT_NAMES))
    return out


def _original_layer(r: _Resolver, n: int) -> dict[str, Source]:
    hp = r.hp
    H, E, nh = hp["hidden_size"], hp["num_local_experts"], hp["num_attention_heads"]
    q, kv = nh * hp["head_dim"], hp["num_key_value_heads"] * hp["head_dim"]
    b, p = f"block.{n}.", f"model.layers.{n}."
    out: dict[str, Source] = {
        p + "input_layernorm.weight": r.float(b + "attn.norm.scale", (H,)),
        p + "post_attention_layernorm.weight": r.float(b + "mlp.norm.scale", (H,)),
        p + "self_attn.sinks": r.float(b + "attn.sinks", (nh,)),
        p + "self_attn.o_proj.weight": r.float(b + "attn.out.weight", (H, q)),
        p + "self_attn.o_proj.bias": r.float(b + "attn.out.bias", (H,)),
        p + "mlp.router.weight": r.float(b + "mlp.gate.weight", (E, H)),
        p + "mlp.router.bias": r.float(b + "mlp.gate.bias", (E,)),
    }
    w = r.float(b + "attn.qkv.weight", (q + 2 * kv, H)).entry
    bias = r.float(b + "attn.qkv.bias", (q + 2 * kv,)).entry
    rows = [("q", q), ("k", kv), ("v", kv)]
    for k, src in _split_rows(w, rows, H).items():
        out[p + f"self_attn.{k}_proj.weight"] = src
    for k, src in _split_rows(bias, rows, 0).items():
        out[p + f"self_attn.{k}_proj.bias"] = src
    out.update(_experts(r, n, b + "mlp.", _ORIGINAL_EXPERT_NAMES))
    return out


def plan_sources(ckpt: Checkpoint, mc: ModelConfig) -> tuple[dict[str, Source], list[str]]:
    """Map every required model.bin tensor to its source.

    Returns ``(sources in FORMAT.md order, names of checkpoint tensors left unused)``.

    Raises:
        ConversionError: a tensor is missing or has the wrong shape or dtype.
    """
    r = _Resolver(ckpt, mc)
    hp: dict[str, Any] = mc.hparams
    V, H = hp["vocab_size"], hp["hidden_size"]
    original = mc.layout == ORIGINAL
    out: dict[str, Source] = {
        "model.embed_tokens.weight": r.float(
            "embedding.weight" if original else "model.embed_tokens.weight", (V, H)),
    }
    layer = _original_layer if original else _hf_layer
    for n in range(hp["num_hidden_layers"]):
        out.update(layer(r, n))
    out["model.norm.weight"] = r.float("norm.scale" if original else "model.norm.weight", (H,))
    head = "unembedding.weight" if original else "lm_head.weight"
    if ckpt.get(head) is None and mc.tie_word_embeddings:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    else:
        out["lm_head.weight"] = r.float(head, (V, H))
    unused = sorted(set(ckpt.entries) - r.used)
    return out, unused

