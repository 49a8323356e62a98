"""Read a gpt-oss checkpoint's config.json and normalize it to FORMAT.md's ``hparams``.

Handles the transformers-5 layout (``rope_parameters``), the legacy one (``rope_scaling`` +
``rope_theta``, ``experts_per_token``), and the "original" gpt-oss reference config
(``num_experts``, ``rope_scaling_factor``, ``rope_ntk_alpha``/``rope_ntk_beta``). Missing
optional values take transformers' ``GptOssConfig`` defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemoe.errors import ConversionError, ModelFormatError
from edgemoe.format import validate_hparams

HF = "hf"
ORIGINAL = "original"

# transformers GptOssConfig defaults (configuration_gpt_oss.py, transformers 5.24).
_DEFAULT_ROPE = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
_DEFAULT_THETA = 150000.0
_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)


@dataclass(frozen=True)
class ModelConfig:
    """A checkpoint's normalized configuration."""

    layout: str  # HF or ORIGINAL
    hparams: dict[str, Any]
    tie_word_embeddings: bool
    raw: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConversionError(f"{path}: cannot read: {e.strerror or e}") from e
    except (UnicodeDecodeError, ValueError) as e:
        raise ConversionError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def load_config(hf_dir: Path) -> ModelConfig:
    """Read ``hf_dir/config.json`` (and ``generation_config.json`` if present).

    Raises:
        ConversionError: the directory or config.json is missing, the model is not gpt-oss,
            or a value is missing or out of range (the message names the file and field).
    """
    if not hf_dir.is_dir():
        raise ConversionError(f"{hf_dir}: checkpoint directory does not exist")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ConversionError(f"{hf_dir}: no config.json (not a Hugging Face checkpoint)")
    cfg = _read_json(path)
    gen_path = hf_dir / "generation_config.json"
    gen = _read_json(gen_path) if gen_path.is_file() else {}
    if "model_type" not in cfg and "num_experts" in cfg and "rope_ntk_alpha" in cfg:
        hp, layout, tie = _original_hparams(cfg, path), ORIGINAL, False
    else:
        mt = cfg.get("model_type")
        if mt != "gpt_oss":
            raise ConversionError(f"{path}: model_type {mt!r} is not gpt_oss")
        hp, layout = _hf_hparams(cfg, gen, path), HF
        tie = bool(cfg.get("tie_word_embeddings", False))
    _check(hp, path)
    return ModelConfig(layout, hp, tie, cfg)


def _field(cfg: dict[str, Any], key: str, path: Path, kind: type, default: Any = None) -> Any:
    v = cfg.get(key)
    if v is None:
        if default is None:
            raise ConversionError(f"{path}: {key} is missing")
        return default
    if kind is int and not (isinstance(v, int) and not isinstance(v, bool)):
        raise ConversionError(f"{path}: {key} must be an integer, got {v!r}")
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConversionError(f"{path}: {key} must be a number, got {v!r}")
        v = float(v)
    return v


def _hf_hparams(cfg: dict[str, Any], gen: dict[str, Any], path: Path) -> dict[str, Any]:
    hp: dict[str, Any] = {k: _field(cfg, k, path, int) for k in _REQUIRED}
    experts = cfg.get("num_local_experts", cfg.get("num_experts"))
    hp["head_dim"] = _field(cfg, "head_dim", path, int,
                            hp["hidden_size"] // hp["num_attention_heads"])
    hp["num_local_experts"] = _field({"num_local_experts": experts}, "num_local_experts",
                                     path, int)
    per_tok = cfg.get("num_experts_per_tok", cfg.get("experts_per_token"))
    hp["num_experts_per_tok"] = _field({"num_experts_per_tok": per_tok}, "num_experts_per_tok",
                                       path, int, 4)
    hp["sliding_window"] = _field(cfg, "sliding_window", path, int, 128)
    n = hp["num_hidden_layers"]
    default_types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]
    hp["layer_types"] = cfg.get("layer_types") or default_types
    hp["rms_norm_eps"] = _field(cfg, "rms_norm_eps", path, float, 1e-5)
    hp["swiglu_limit"] = _field(cfg, "swiglu_limit", path, float, 7.0)
    hp["swiglu_alpha"] = _field(cfg, "swiglu_alpha", path, float, 1.702)
    hp["max_position_embeddings"] = _field(cfg, "max_position_embeddings", path, int, 131072)
    hp["rope"] = _hf_rope(cfg, hp["max_position_embeddings"], path)
    hp["eos_token_ids"] = _eos_ids(cfg, gen, path)
    return hp


def _hf_rope(cfg: dict[str, Any], max_pos: int, path: Path) -> dict[str, Any]:
    """transformers' rule: ``rope_scaling`` (legacy) wins over ``rope_parameters``; neither
    gives GptOssConfig's YaRN default; ``rope_theta`` fills a missing theta."""
    src = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    key = "rope_scaling" if cfg.get("rope_scaling") else "rope_parameters"
    params = dict(src) if isinstance(src, dict) else dict(_DEFAULT_ROPE)
    if src is not None and not isinstance(src, dict):
        raise ConversionError(f"{path}: {key} must be an object, got {src!r}")
    theta = params.get("rope_theta", cfg.get("rope_theta", _DEFAULT_THETA))
    theta = _field({"rope_theta": theta}, "rope_theta", path, float)
    rtype = params.get("rope_type", params.get("type", "default"))
    for bad in ("attention_factor", "mscale", "mscale_all_dim"):
        if params.get(bad) is not None:
            raise ConversionError(f"{path}: {key}.{bad} is not supported by model.bin v1")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConversionError(f"{path}: {key}.partial_rotary_factor must be 1.0")
    if rtype == "default":
        return {"type": "default", "theta": theta}
    if rtype != "yarn":
        raise ConversionError(f"{path}: {key}.rope_type {rtype!r} is not supported "
                              "(expected 'yarn' or 'default')")
    # transformers gives a top-level original_max_position_embeddings priority (Phi-3 rule).
    orig = cfg.get("original_max_position_embeddings") or params.get(
        "original_max_position_embeddings", max_pos)
    orig = _field({"original_max_position_embeddings": orig},
                  "original_max_position_embeddings", path, int)
    factor = params.get("factor")
    factor = float(max_pos) / orig if factor is None else factor
    truncate = params.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ConversionError(f"{path}: {key}.truncate must be true or false, got {truncate!r}")
    return {
        "type": "yarn",
        "theta": theta,
        "factor": _field({"factor": factor}, "factor", path, float),
        "beta_fast": float(params.get("beta_fast") or 32.0),
        "beta_slow": float(params.get("beta_slow") or 1.0),
        "original_max_position_embeddings": orig,
        "truncate": truncate,
    }


def _eos_ids(cfg: dict[str, Any], gen: dict[str, Any], path: Path) -> list[int]:
    """config.json's eos_token_id, then generation_config.json's, without duplicates."""
    out: list[int] = []
    for src in (cfg, gen):
        v = src.get("eos_token_id")
        for i in v if isinstance(v, list) else [] if v is None else [v]:
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise ConversionError(f"{path}: eos_token_id {i!r} is not a token id")
            if i not in out:
                out.append(i)
    return out


def _original_hparams(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """The gpt-oss reference config (gpt_oss.torch.model.ModelConfig fields)."""
    hp: dict[str, Any] = {k: _field(cfg, k, path, int) for k in _REQUIRED}
    hp["head_dim"] = _field(cfg, "head_dim", path, int, 64)
    hp["num_local_experts"] = _field(cfg, "num_experts", path, int)
    hp["num_experts_per_tok"] = _field(cfg, "experts_per_token", path, int, 4)
    hp["sliding_window"] = _field(cfg, "sliding_window", path, int, 128)
    n = hp["num_hidden_layers"]
    hp["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention"
                         for i in range(n)]
    hp["rms_norm_eps"] = 1e-5
    hp["swiglu_limit"] = _field(cfg, "swiglu_limit", path, float, 7.0)
    hp["swiglu_alpha"] = 1.702
    ctx = _field(cfg, "initial_context_length", path, int, 4096)
    factor = _field(cfg, "rope_scaling_factor", path, float, 32.0)
    hp["max_position_embeddings"] = int(ctx * factor)
    hp["rope"] = {
        "type": "yarn",
        "theta": _field(cfg, "rope_theta", path, float, _DEFAULT_THETA),
        "factor": factor,
        "beta_fast": _field(cfg, "rope_ntk_beta", path, float, 32.0),
        "beta_slow": _field(cfg, "rope_ntk_alpha", path, float, 1.0),
        "original_max_position_embeddings": ctx,
        "truncate": False,
    }
    hp["eos_token_ids"] = []
    return hp


def _check(hp: dict[str, Any], path: Path) -> None:
    for key in ("hidden_size", "intermediate_size"):
        if isinstance(hp.get(key), int) and hp[key] % 32:
            raise ConversionError(
                f"{path}: {key} {hp[key]} is not a multiple of 32 (MXFP4 experts need it)"
            )
    try:
        validate_hparams(hp, str(path))
    except ModelFormatError as e:
        raise ConversionError(str(e).replace("hparams.", "", 1)) from e
