"""Oracle helpers: tiny random gpt-oss models in transformers, written as real-layout MXFP4
checkpoints and read back in fp32 (shared/ORACLES.md §2.1, §2.4, §2.5).

The numpy helpers (``mxfp4_quantize``, ``mxfp4_dequantize``, ``q8_0_roundtrip``,
``rel_l2``) need no torch. Everything that touches torch/transformers imports them lazily,
so importing this module is cheap and works without the ``test`` extra.

Used by ``tests/make_fixtures.py`` (golden data) and ``tests/test_oracle.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

# transformers must never try the network in tests (loading local paths doesn't, but guard).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QK = 32
FP4_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=np.float32,
)
# Tensor names whose weights the converter stores in the "dense type" (FORMAT.md).
DENSE_SUFFIXES = (
    "embed_tokens.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "lm_head.weight",
)
MXFP4_MODULES_NOT_CONVERTED = [
    "model.layers.*.self_attn",
    "model.layers.*.mlp.router",
    "model.embed_tokens",
    "lm_head",
]
# §2.1: with the recipe (seed 0) and prompt randint(0, 512, (1, 12), seed 1), the fp32
# (unquantized) model's greedy continuation of 20 tokens with torch 2.13.0.
RECIPE_GREEDY_20 = [150, 102, 277, 130, 175, 474, 324, 426, 277, 310,
                    178, 361, 360, 18, 113, 229, 101, 122, 423, 274]


def have_torch_stack() -> bool:
    """True if torch and transformers (with GptOss and Mxfp4Config) import."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import GptOssForCausalLM, Mxfp4Config  # noqa: F401
    except Exception:
        return False
    return True


# ============================================================================ numpy helpers


def rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    """Relative L2 error ``||got - ref|| / ||ref||`` (computed in float64)."""
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"shape mismatch: {g.shape} vs {r.shape}")
    den = float(np.linalg.norm(r))
    return float(np.linalg.norm(g - r)) / (den if den > 0 else 1.0)


def max_abs(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference."""
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))))


def _mx_exponent(amax: np.ndarray) -> np.ndarray:
    """Smallest integer e with amax <= 6 * 2**e, exact (frexp, no floating log2)."""
    mant, k = np.frexp(amax.astype(np.float32))
    # amax = mant * 2**k with mant in [0.5, 1): 6 * 2**(k-3) = 0.75 * 2**k.
    e = np.where(mant <= 0.75, k - 3, k - 2)
    e = np.where(amax > 0, e, -127)
    return np.clip(e, -127, 127).astype(np.int32)


def mxfp4_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``w[..., out, in]`` (``in % 32 == 0``) to gpt-oss's MXFP4 tensors.

    Returns ``(blocks[..., out, in/32, 16], scales[..., out, in/32])`` uint8: per block of 32
    along ``in``, the smallest scale ``2**e`` with ``amax / 2**e <= 6`` (nothing saturates),
    each element the nearest FP4 value (ties to the lower code index, so to the smaller
    magnitude; a value rounding to zero is code 0), low nibble = even element.
    A tests-only helper for building checkpoints; the converter has its own.
    """
    a = np.asarray(w, dtype=np.float32)
    *lead, n = a.shape
    if n % QK:
        raise ValueError(f"last dimension {n} is not a multiple of {QK}")
    b = a.reshape(*lead, n // QK, QK)
    e = _mx_exponent(np.abs(b).max(-1))
    v = np.ldexp(b, -e[..., None])  # exact scaling
    # argmin over all 16 codes returns the first (lowest) index on ties.
    codes = np.abs(v[..., None] - FP4_VALUES).argmin(-1).astype(np.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scales = (e + 127).astype(np.uint8)
    return np.ascontiguousarray(blocks, np.uint8), np.ascontiguousarray(scales, np.uint8)


def mxfp4_dequantize(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Decode ``blocks[..., R, G, 16]``, ``scales[..., R, G]`` to f32 ``[..., R, G*32]``."""
    v = np.stack([FP4_VALUES[blocks & 15], FP4_VALUES[blocks >> 4]], -1)
    v = v.reshape(*blocks.shape[:-1], QK)
    out = np.ldexp(v, scales.astype(np.int32)[..., None] - 127).astype(np.float32)
    return out.reshape(*blocks.shape[:-2], -1)


def q8_0_roundtrip(w: np.ndarray) -> np.ndarray:
    """``w`` rounded exactly as FORMAT.md's q8_0 rule and decoded back to f32.

    Per block of 32 along the last dim: ``d = f16(min(f32(amax / 127), 65504))`` (nearest
    even), ``q = clamp(round_half_away(f32(x / f32(d))), ±127)``, ``q = 0`` if ``d == 0``;
    value ``f32(d) * q``. Written independently of ``edgemoe.quant`` on purpose.
    """
    a = np.asarray(w, dtype=np.float32)
    if a.shape[-1] % QK:
        raise ValueError(f"last dimension {a.shape[-1]} is not a multiple of {QK}")
    b = a.reshape(-1, QK)
    amax = np.abs(b).max(-1)
    d = np.minimum(np.float32(amax / np.float32(127)), np.float32(65504))
    d = d.astype(np.float16).astype(np.float32)
    safe = np.where(d == 0, np.float32(1), d)
    x = (b / safe[:, None]).astype(np.float32)  # f32 division
    # Round halves away from zero; |x| + 0.5 is exact in float64.
    q = np.sign(x) * np.floor(np.abs(x).astype(np.float64) + 0.5)
    q = np.clip(q, -127, 127).astype(np.float32)
    q[d == 0] = 0
    return (d[:, None] * q).astype(np.float32).reshape(a.shape)


def is_dense_weight(name: str) -> bool:
    """True for the 2-D weights the converter writes in the ``--dense`` type."""
    return name.endswith(DENSE_SUFFIXES)


# ============================================================================ transformers side


def tiny_config(**over: Any) -> GptOssConfig:
    """The tiny gpt-oss-20b-shaped config of ORACLES §2.1 (overridable by keyword)."""
    from transformers import GptOssConfig

    kw: dict[str, Any] = dict(
        vocab_size=512, hidden_size=96, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        num_local_experts=8, num_experts_per_tok=4, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"] * 2,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                         "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        max_position_embeddings=131072, rms_norm_eps=1e-5, swiglu_limit=7.0,
        attention_bias=True, tie_word_embeddings=False, eos_token_id=None, pad_token_id=None,
    )
    kw.update(over)
    if "layer_types" not in over and "num_hidden_layers" in over:
        n = int(over["num_hidden_layers"])
        kw["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention"
                             for i in range(n)]
    return GptOssConfig(**kw)


def randomize(model: GptOssForCausalLM, seed: int = 0) -> GptOssForCausalLM:
    """Re-initialize every parameter so routing, the SwiGLU clamp and the sinks all matter
    (ORACLES §2.1; the default init leaves the experts nearly silent)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "experts" in name and not name.endswith("bias"):
                p.copy_(0.35 * torch.randn(p.shape, generator=g))
            elif name.endswith("sinks"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                std = 1.0 if "embed" in name else (0.1 if p.dim() == 1 else fan_in ** -0.5)
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model


def build_hf_model(seed: int = 0, **config_over: Any) -> GptOssForCausalLM:
    """A randomized fp32 ``GptOssForCausalLM`` with eager attention, in eval mode."""
    import torch
    from transformers import GptOssForCausalLM

    model = GptOssForCausalLM._from_config(
        tiny_config(**config_over), attn_implementation="eager", dtype=torch.float32
    )
    return randomize(model, seed).eval()


def _legacy_rope(cfg: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a transformers-5 config dict in the published gpt-oss style:
    ``rope_theta`` + ``rope_scaling`` instead of ``rope_parameters``, ``torch_dtype``,
    ``experts_per_token`` and ``initial_context_length``."""
    cfg = dict(cfg)
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = rp
    cfg["torch_dtype"] = cfg.pop("dtype", "bfloat16")
    cfg["experts_per_token"] = cfg["num_experts_per_tok"]
    cfg["initial_context_length"] = rp.get("original_max_position_embeddings", 4096)
    return cfg


def checkpoint_tensors(model: GptOssForCausalLM) -> dict[str, torch.Tensor]:
    """The state dict in the published MXFP4 layout: experts as ``*_blocks``/``*_scales``
    (uint8, [E, out, in/32, 16] / [E, out, in/32]), everything else bf16."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.endswith(("experts.gate_up_proj", "experts.down_proj")):
            dense = v.detach().to(torch.float32).transpose(1, 2).contiguous().numpy()  # [E,out,in]
            blocks, scales = mxfp4_quantize(dense)
            out[k + "_blocks"] = torch.from_numpy(blocks)
            out[k + "_scales"] = torch.from_numpy(scales)
        else:
            out[k] = v.detach().to(torch.bfloat16).contiguous()
    return out


def save_mxfp4_checkpoint(
    model: GptOssForCausalLM,
    directory: str | os.PathLike[str],
    *,
    max_shard_bytes: int | None = None,
    legacy_rope: bool = False,
) -> Path:
    """Write ``model`` as a checkpoint in the real gpt-oss MXFP4 layout (ORACLES §2.4).

    Args:
        model: an fp32 transformers model (not modified).
        directory: created if missing.
        max_shard_bytes: if given, split the tensors (in state-dict order) into shards of at
            most about this many bytes, ``model-0000i-of-0000n.safetensors``, and write
            ``model.safetensors.index.json``; otherwise one ``model.safetensors``.
        legacy_rope: write ``rope_theta`` + ``rope_scaling`` (and ``torch_dtype``) as the
            published config.json does, instead of transformers 5's ``rope_parameters``.

    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = checkpoint_tensors(model)
    meta = {"format": "pt"}
    if max_shard_bytes is None:
        save_file(tensors, str(d / "model.safetensors"), metadata=meta)
    else:
        shards: list[dict[str, Any]] = [{}]
        size = 0
        for name, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = t
            size += nbytes
        n = len(shards)
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{n:05d}.safetensors"
            save_file(shard, str(d / fname), metadata=meta)
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    cfg = model.config.to_dict()
    cfg["architectures"] = ["GptOssForCausalLM"]
    cfg["dtype"] = "bfloat16"
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": list(MXFP4_MODULES_NOT_CONVERTED),
    }
    if legacy_rope:
        cfg = _legacy_rope(cfg)
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return d


def load_hf_fp32(checkpoint_dir: str | os.PathLike[str]) -> GptOssForCausalLM:
    """Load an MXFP4 checkpoint on CPU in fp32: experts dequantized, eager attention (§2.5)."""
    import torch
    from transformers import GptOssForCausalLM, Mxfp4Config

    model = GptOssForCausalLM.from_pretrained(
        str(checkpoint_dir),
        attn_implementation="eager",
        dtype=torch.float32,
        quantization_config=Mxfp4Config(dequantize=True),
    )
    for p in model.parameters():
        if p.dtype != torch.float32:
            raise AssertionError(f"oracle model is not fp32: a parameter is {p.dtype}")
    return model.eval()


def model_logits(
    model: GptOssForCausalLM, ids: Sequence[int] | np.ndarray, position_offset: int = 0
) -> np.ndarray:
    """fp32 logits ``[T, V]`` of one forward pass over ``ids`` at positions
    ``position_offset ..`` (``position_ids`` only moves RoPE; the mask stays causal)."""
    import torch

    t = torch.as_tensor(np.asarray(ids, dtype=np.int64)).reshape(1, -1)
    kw: dict[str, Any] = {}
    if position_offset:
        kw["position_ids"] = torch.arange(position_offset, position_offset + t.shape[1])[None]
    with torch.inference_mode():
        out = model(t, use_cache=False, **kw)
    return out.logits[0].to(torch.float32).numpy().copy()


def hf_logits_fp32(
    checkpoint_dir: str | os.PathLike[str],
    ids: Sequence[int] | np.ndarray,
    position_offset: int = 0,
) -> np.ndarray:
    """transformers' fp32 logits ``[T, V]`` for ``ids`` from an MXFP4 checkpoint dir."""
    return model_logits(load_hf_fp32(checkpoint_dir), ids, position_offset)


def apply_q8_0(model: GptOssForCausalLM, skip: Sequence[str] = ()) -> list[str]:
    """Round the model's dense 2-D weights (embedding, q/k/v/o, lm_head — not the router;
    not those ending with one of ``skip``) in place exactly as the converter's
    ``--dense q8_0`` does. Returns the names changed."""
    import torch

    done: list[str] = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_dense_weight(name) and not name.endswith(tuple(skip)):
                w = p.detach().to(torch.float32).numpy()
                p.copy_(torch.from_numpy(q8_0_roundtrip(w)))
                done.append(name)
    return done


def apply_mxfp4(model: GptOssForCausalLM, names: Sequence[str] | None = None) -> list[str]:
    """Round the model's dense 2-D weights (or only those ending with one of ``names``) in
    place to MXFP4 by this module's own quantizer, as ``--dense mxfp4`` / ``--head mxfp4``
    do. Returns the names changed."""
    import torch

    done: list[str] = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_dense_weight(name) and (names is None or name.endswith(tuple(names))):
                w = p.detach().to(torch.float32).numpy()
                p.copy_(torch.from_numpy(mxfp4_dequantize(*mxfp4_quantize(w))))
                done.append(name)
    return done


def hf_greedy(model: GptOssForCausalLM, prompt: Sequence[int], n_new: int) -> list[int]:
    """transformers' greedy continuation (with its KV cache) of ``prompt``."""
    import torch

    ids = torch.as_tensor(np.asarray(prompt, dtype=np.int64)).reshape(1, -1)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new,
                             min_new_tokens=n_new, do_sample=False, pad_token_id=0)
    return [int(t) for t in out[0, ids.shape[1]:]]


def random_ids(n: int, vocab: int, seed: int) -> np.ndarray:
    """``n`` token ids drawn as ``torch.randint(0, vocab, (1, n), generator=seed)`` when torch
    is present (the recipe's prompts); int64 numpy."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=g)[0].numpy().astype(np.int64)


def versions() -> Mapping[str, str]:
    """Versions of the oracle stack, for fixture metadata."""
    import safetensors
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__}
