"""Random gpt-oss models written straight to model.bin (no torch): for API, CLI and
robustness tests that need a model that runs, not one that matches an oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.format import expert_tensor_name
from edgemoe.writer import write_model


def tiny_hparams(vocab: int = 512, **over: Any) -> dict[str, Any]:
    """FORMAT.md hparams of a small gpt-oss (4 layers, 8 experts top-4, hidden 64)."""
    hp: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 8,
        "num_experts_per_tok": 4,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "rms_norm_eps": 1e-5,
        "swiglu_limit": 7.0,
        "swiglu_alpha": 1.702,
        "max_position_embeddings": 131072,
        "rope": {
            "type": "yarn",
            "theta": 150000.0,
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "original_max_position_embeddings": 4096,
            "truncate": False,
        },
        "eos_token_ids": [],
    }
    hp.update(over)
    return hp


def random_tensors(hp: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights in the FORMAT.md layout, scaled as ORACLES.md §2.1 recommends."""
    g = np.random.default_rng(seed)
    H, FF, V = hp["hidden_size"], hp["intermediate_size"], hp["vocab_size"]
    nh, nkv, hd, E = (
        hp["num_attention_heads"],
        hp["num_key_value_heads"],
        hp["head_dim"],
        hp["num_local_experts"],
    )

    def w(*shape: int, std: float | None = None) -> np.ndarray:
        s = shape[-1] ** -0.5 if std is None else std
        return (s * g.standard_normal(shape)).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": w(V, H, std=1.0),
        "model.norm.weight": 1 + w(H, std=0.1),
        "lm_head.weight": w(V, H),
    }
    for L in range(hp["num_hidden_layers"]):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = 1 + w(H, std=0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + w(H, std=0.1)
        for name, rows in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
            t[p + f"self_attn.{name}_proj.weight"] = w(rows, H)
            t[p + f"self_attn.{name}_proj.bias"] = w(rows, std=0.1)
        t[p + "self_attn.o_proj.weight"] = w(H, nh * hd)
        t[p + "self_attn.o_proj.bias"] = w(H, std=0.1)
        t[p + "self_attn.sinks"] = w(nh, std=1.0)
        t[p + "mlp.router.weight"] = w(E, H)
        t[p + "mlp.router.bias"] = w(E, std=0.1)
        for e in range(E):
            t[expert_tensor_name(L, e, "gate_up_proj")] = w(2 * FF, H, std=0.35)
            t[expert_tensor_name(L, e, "gate_up_proj_bias")] = w(2 * FF, std=0.1)
            t[expert_tensor_name(L, e, "down_proj")] = w(H, FF, std=0.35)
            t[expert_tensor_name(L, e, "down_proj_bias")] = w(H, std=0.1)
    return t


def write_random_model(
    path: Path, *, seed: int = 0, tokenizer: Any = None, dense: str = "q8_0", **hp_over: Any
) -> Path:
    """Write a random tiny model.bin to ``path`` and return the path."""
    hp = tiny_hparams(**hp_over)
    write_model(path, hp, random_tensors(hp, seed), tokenizer, dense=dense)
    return path
