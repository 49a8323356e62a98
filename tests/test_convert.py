"""The converter (tools/quantize, package edgemoe_quantize) on tiny checkpoints built here
with numpy: MXFP4 and dense layouts, shards, config variants, tokenizer, error cases."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from edgemoe import format as F
from edgemoe.errors import ConversionError
from edgemoe.quant import bf16_to_f32, quantize_mxfp4, quantize_mxfp4_blocks, quantize_q8_0, to_bf16

ROOT = Path(__file__).resolve().parent.parent


def _import_quantize() -> types.ModuleType:
    """edgemoe_quantize, from the installed package or else straight from tools/quantize
    (also when a stale editable install maps it to a namespace package)."""
    try:
        import edgemoe_quantize

        if hasattr(edgemoe_quantize, "convert"):
            return edgemoe_quantize
    except ImportError:
        pass
    for name in [m for m in sys.modules if m.split(".")[0] == "edgemoe_quantize"]:
        del sys.modules[name]
    pkg = ROOT / "tools" / "quantize"
    spec = importlib.util.spec_from_file_location(
        "edgemoe_quantize", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["edgemoe_quantize"] = mod
    spec.loader.exec_module(mod)
    return mod


Q = _import_quantize()
convert_mod = sys.modules["edgemoe_quantize.convert"]

V, H, I, L, NH, NKV, HD, E = 96, 64, 32, 2, 4, 2, 16, 4  # noqa: E741

# ----------------------------------------------------------------------------- builders


def config(style: str = "tf5", **over: Any) -> dict[str, Any]:
    """A tiny gpt-oss config.json; style "tf5" (rope_parameters) or "legacy" (rope_scaling)."""
    cfg: dict[str, Any] = {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
        "vocab_size": V, "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L,
        "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": HD,
        "num_local_experts": E, "sliding_window": 8,
        "layer_types": ["sliding_attention", "full_attention"], "rms_norm_eps": 1e-5,
        "swiglu_limit": 7.0, "max_position_embeddings": 131072, "attention_bias": True,
        "tie_word_embeddings": False, "eos_token_id": 5, "pad_token_id": 4,
    }
    rope = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
            "truncate": False, "original_max_position_embeddings": 4096}
    if style == "tf5":
        cfg.update(num_experts_per_tok=2, dtype="bfloat16",
                   rope_parameters={**rope, "rope_theta": 150000.0})
    else:
        cfg.update(experts_per_token=2, num_experts_per_tok=2, torch_dtype="bfloat16",
                   rope_theta=150000, rope_scaling=rope, initial_context_length=4096)
    cfg.update(over)
    return cfg


def master_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """f32 weights in the HF dense layout (experts [E, in, out], interleaved gate/up)."""
    rng = np.random.default_rng(seed)
    q, kv = NH * HD, NKV * HD
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (V, H),
                                         "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for n in range(L):
        p = f"model.layers.{n}."
        shapes.update({
            p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
            p + "self_attn.q_proj.weight": (q, H), p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.weight": (kv, H), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (H, q), p + "self_attn.o_proj.bias": (H,),
            p + "self_attn.sinks": (NH,), p + "mlp.router.weight": (E, H),
            p + "mlp.router.bias": (E,),
            p + "mlp.experts.gate_up_proj": (E, H, 2 * I),
            p + "mlp.experts.gate_up_proj_bias": (E, 2 * I),
            p + "mlp.experts.down_proj": (E, I, H), p + "mlp.experts.down_proj_bias": (E, H),
        })
    return {k: (0.35 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """A safetensors file written by hand (numpy has no bf16): name -> (dtype, array);
    BF16 arrays are given as f32 and rounded to nearest even."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, pos = [], 0
    for name, (dtype, arr) in tensors.items():
        data = (to_bf16(arr) if dtype == "BF16" else np.ascontiguousarray(arr)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def mxfp4_state(w: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """The real gpt-oss layout (ORACLES 2.4): MXFP4 expert blocks/scales, bf16 elsewhere."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for k, v in w.items():
        if k.endswith(("experts.gate_up_proj", "experts.down_proj")):
            blocks, scales = quantize_mxfp4_blocks(v.transpose(0, 2, 1))
            out[k + "_blocks"], out[k + "_scales"] = ("U8", blocks), ("U8", scales)
        else:
            out[k] = ("BF16", v)
    return out


def make_ckpt(d: Path, state: dict[str, tuple[str, np.ndarray]],
              cfg: dict[str, Any] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg or config()))
    write_safetensors(d / "model.safetensors", state)
    return d


def bf16_round(x: np.ndarray) -> np.ndarray:
    return bf16_to_f32(to_bf16(x))


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return master_weights()


@pytest.fixture()
def mx_dir(tmp_path: Path, weights: dict[str, np.ndarray]) -> Path:
    return make_ckpt(tmp_path / "mx", mxfp4_state(weights))


def convert(src: Path, out: Path, **kw: Any) -> Any:
    kw.setdefault("progress", False)
    kw.setdefault("tokenizer", False)
    return Q.convert(src, out, **kw)


# ----------------------------------------------------------------------------- conversions


def test_mxfp4_checkpoint(tmp_path: Path, mx_dir: Path, weights: dict[str, np.ndarray]) -> None:
    out = tmp_path / "model.bin"
    with pytest.warns(UserWarning, match="no tokenizer"):
        report = Q.convert(mx_dir, out, progress=False)
    assert report.experts == "mxfp4 (copied)" and report.tokenizer is None
    state = mxfp4_state(weights)
    with F.read_model(out) as mf:
        mf.verify()
        hp = mf.hparams
        assert (hp["vocab_size"], hp["hidden_size"], hp["num_local_experts"]) == (V, H, E)
        assert hp["eos_token_ids"] == [5] and hp["swiglu_alpha"] == 1.702
        assert mf.header["tokenizer"] is None
        assert mf.header["source"]["dense_type"] == "q8_0"
        for n in range(L):
            for part in ("gate_up_proj", "down_proj"):
                blocks = state[f"model.layers.{n}.mlp.experts.{part}_blocks"][1]
                scales = state[f"model.layers.{n}.mlp.experts.{part}_scales"][1]
                for e in range(E):
                    got = bytes(mf.tensor_bytes(F.expert_tensor_name(n, e, part)))
                    assert got == blocks[e].tobytes() + scales[e].tobytes()  # bit-exact copy
                bias = weights[f"model.layers.{n}.mlp.experts.{part}_bias"]
                for e in range(E):
                    np.testing.assert_array_equal(
                        mf.tensor(F.expert_tensor_name(n, e, part + "_bias")),
                        bf16_round(bias[e]))
        emb = bf16_round(weights["model.embed_tokens.weight"])
        assert mf.tensors["model.embed_tokens.weight"].type == "q8_0"
        assert bytes(mf.tensor_bytes("model.embed_tokens.weight")) == quantize_q8_0(emb).tobytes()
        np.testing.assert_array_equal(mf.tensor("model.layers.1.mlp.router.weight"),
                                      bf16_round(weights["model.layers.1.mlp.router.weight"]))
        assert mf.tensors["model.layers.1.mlp.router.weight"].type == "f32"


def test_dense_f32_experts(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    src = make_ckpt(tmp_path / "dense", {k: ("F32", v) for k, v in weights.items()})
    out = tmp_path / "model.bin"
    report = convert(src, out, dense="f32")
    assert report.experts == "dense -> mxfp4"
    with F.read_model(out) as mf:
        for n in range(L):
            for part in ("gate_up_proj", "down_proj"):
                w = weights[f"model.layers.{n}.mlp.experts.{part}"]
                for e in range(E):
                    name = F.expert_tensor_name(n, e, part)
                    assert mf.tensors[name].shape == (w.shape[2], w.shape[1])  # [out, in]
                    want = quantize_mxfp4(np.ascontiguousarray(w[e].T)).tobytes()
                    assert bytes(mf.tensor_bytes(name)) == want
        for name in ("lm_head.weight", "model.layers.0.self_attn.q_proj.weight"):
            assert mf.tensors[name].type == "f32"
            np.testing.assert_array_equal(mf.tensor(name), weights[name])


def test_dense_bf16_output(tmp_path: Path, mx_dir: Path, weights: dict[str, np.ndarray]) -> None:
    out = tmp_path / "model.bin"
    convert(mx_dir, out, dense="bf16")
    with F.read_model(out) as mf:
        t = mf.tensors["model.layers.0.self_attn.o_proj.weight"]
        assert t.type == "bf16"
        want = to_bf16(weights["model.layers.0.self_attn.o_proj.weight"]).tobytes()
        assert bytes(mf.tensor_bytes(t.name)) == want  # bf16 in, bf16 out: unchanged


@pytest.mark.parametrize("dense, head", [("mxfp4", None), ("q8_0", "mxfp4"), ("mxfp4", "bf16")])
def test_dense_and_head_mxfp4(tmp_path: Path, mx_dir: Path, weights: dict[str, np.ndarray],
                              dense: str, head: str | None) -> None:
    """``--dense mxfp4`` / ``--head``: planar mxfp4 bytes of the converter's rule, lm_head
    alone overridden by ``head``, recorded in the header's source, and the model loads."""
    import edgemoe

    out = tmp_path / "model.bin"
    report = convert(mx_dir, out, dense=dense, head=head)
    assert report.head_type == head
    with F.read_model(out) as mf:
        assert mf.header["source"]["dense_type"] == dense
        assert mf.header["source"].get("head_type") == head
        for name in ("model.embed_tokens.weight", "model.layers.1.self_attn.o_proj.weight",
                     "lm_head.weight"):
            typ = head if name == "lm_head.weight" and head else dense
            assert mf.tensors[name].type == typ, name
            if typ == "mxfp4":
                want = quantize_mxfp4(bf16_round(weights[name])).tobytes()   # bf16 source
                assert bytes(mf.tensor_bytes(name)) == want
    with edgemoe.load(out) as m:
        assert np.isfinite(m.logits([1, 2, 3])).all()


def test_bad_head_type(mx_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="head type 'q4_0'"):
        convert(mx_dir, tmp_path / "m.bin", head="q4_0")
    assert not (tmp_path / "m.bin").exists()


def test_sharded_with_index(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    single = make_ckpt(tmp_path / "single", {k: ("F32", v) for k, v in weights.items()})
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(json.dumps(config()))
    names = list(weights)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    weight_map = {}
    for fname, part in shards.items():
        save_file({k: weights[k] for k in part}, str(sharded / fname))  # the real library
        weight_map.update({k: fname for k in part})
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    convert(single, tmp_path / "a.bin")
    convert(sharded, tmp_path / "b.bin")
    with F.read_model(tmp_path / "a.bin") as a, F.read_model(tmp_path / "b.bin") as b:
        assert a.tensors == b.tensors  # same layout and same CRC-32 for every tensor


def test_legacy_and_tf5_configs_agree(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    state = mxfp4_state(weights)
    hps = []
    for style in ("tf5", "legacy"):
        d = make_ckpt(tmp_path / style, state, config(style))
        convert(d, tmp_path / f"{style}.bin")
        with F.read_model(tmp_path / f"{style}.bin") as mf:
            hps.append(mf.hparams)
    assert hps[0] == hps[1]
    assert hps[0]["rope"] == {"type": "yarn", "theta": 150000.0, "factor": 32.0,
                              "beta_fast": 32.0, "beta_slow": 1.0,
                              "original_max_position_embeddings": 4096, "truncate": False}
    assert hps[0]["num_experts_per_tok"] == 2


def test_config_normalization(tmp_path: Path) -> None:
    load = sys.modules["edgemoe_quantize.hf"].load_config

    def hp(cfg: dict[str, Any], gen: dict[str, Any] | None = None) -> dict[str, Any]:
        d = tmp_path / "cfg"
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "generation_config.json").unlink(missing_ok=True)
        if gen is not None:
            (d / "generation_config.json").write_text(json.dumps(gen))
        return load(d).hparams

    base = config()
    del base["rope_parameters"], base["layer_types"]
    h = hp(base, {"eos_token_id": [7, 5, 9]})
    assert h["rope"]["type"] == "yarn" and h["rope"]["theta"] == 150000.0  # GptOssConfig default
    assert h["layer_types"] == ["sliding_attention", "full_attention"]
    assert h["eos_token_ids"] == [5, 7, 9]
    h = hp(config("legacy", rope_scaling=None, rope_theta=10000.0))
    assert h["rope"]["theta"] == 10000.0
    h = hp(config("tf5", rope_parameters={"rope_type": "default", "rope_theta": 5e5}))
    assert h["rope"] == {"type": "default", "theta": 5e5}
    h = hp(config("legacy", rope_scaling={"type": "yarn", "factor": 8.0}))
    assert h["rope"]["truncate"] is True and h["rope"]["beta_fast"] == 32.0
    assert h["rope"]["original_max_position_embeddings"] == 131072
    with pytest.raises(ConversionError, match="rope_type 'linear'"):
        hp(config("tf5", rope_parameters={"rope_type": "linear", "factor": 2.0}))


def test_tied_embeddings(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    state = {k: ("F32", v) for k, v in weights.items() if k != "lm_head.weight"}
    d = make_ckpt(tmp_path / "tied", state, config(tie_word_embeddings=True))
    convert(d, tmp_path / "m.bin")
    with F.read_model(tmp_path / "m.bin") as mf:
        assert bytes(mf.tensor_bytes("lm_head.weight")) == bytes(
            mf.tensor_bytes("model.embed_tokens.weight"))


def to_original(w: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """The gpt-oss reference layout (ORACLES 3.6) of the same weights."""
    mx = mxfp4_state(w)
    out = {"embedding.weight": mx["model.embed_tokens.weight"], "norm.scale":
           mx["model.norm.weight"], "unembedding.weight": mx["lm_head.weight"]}
    for n in range(L):
        p, b = f"model.layers.{n}.", f"block.{n}."
        for dst, src in {"attn.norm.scale": "input_layernorm.weight",
                         "mlp.norm.scale": "post_attention_layernorm.weight",
                         "attn.sinks": "self_attn.sinks", "attn.out.weight":
                         "self_attn.o_proj.weight", "attn.out.bias": "self_attn.o_proj.bias",
                         "mlp.gate.weight": "mlp.router.weight",
                         "mlp.gate.bias": "mlp.router.bias",
                         "mlp.mlp1_weight.blocks": "mlp.experts.gate_up_proj_blocks",
                         "mlp.mlp1_weight.scales": "mlp.experts.gate_up_proj_scales",
                         "mlp.mlp1_bias": "mlp.experts.gate_up_proj_bias",
                         "mlp.mlp2_weight.blocks": "mlp.experts.down_proj_blocks",
                         "mlp.mlp2_weight.scales": "mlp.experts.down_proj_scales",
                         "mlp.mlp2_bias": "mlp.experts.down_proj_bias"}.items():
            out[b + dst] = mx[p + src]
        for kind in ("weight", "bias"):
            parts = [w[p + f"self_attn.{x}_proj.{kind}"] for x in "qkv"]
            out[b + f"attn.qkv.{kind}"] = ("BF16", np.concatenate(parts))
    return out


def test_original_layout(tmp_path: Path, mx_dir: Path, weights: dict[str, np.ndarray]) -> None:
    cfg = {"num_hidden_layers": L, "num_experts": E, "experts_per_token": 2, "vocab_size": V,
           "hidden_size": H, "intermediate_size": I, "swiglu_limit": 7.0, "head_dim": HD,
           "num_attention_heads": NH, "num_key_value_heads": NKV, "sliding_window": 8,
           "initial_context_length": 4096, "rope_theta": 150000, "rope_scaling_factor": 32.0,
           "rope_ntk_alpha": 1.0, "rope_ntk_beta": 32.0}
    orig = make_ckpt(tmp_path / "original", to_original(weights), cfg)
    report = convert(orig, tmp_path / "o.bin")
    assert report.layout == "original"
    convert(mx_dir, tmp_path / "h.bin")
    with F.read_model(tmp_path / "o.bin") as o, F.read_model(tmp_path / "h.bin") as h:
        assert {n: t.crc32 for n, t in o.tensors.items()} == {
            n: t.crc32 for n, t in h.tensors.items()}
        assert o.hparams["rope"] == h.hparams["rope"]
        assert o.hparams["layer_types"] == h.hparams["layer_types"]


# ----------------------------------------------------------------------------- tokenizer


class FakeSpec:
    def __init__(self, n_vocab: int) -> None:
        self.name, self.n_vocab = "toy", n_vocab

    def header(self) -> dict[str, Any]:
        return {"kind": "tiktoken-bpe", "name": self.name, "pat_str": r"\S+",
                "special_tokens": {"<|end|>": self.n_vocab - 1}, "n_vocab": self.n_vocab}

    def ranks_blob(self) -> bytes:
        return b"YQ== 0\n"


@pytest.fixture()
def fake_tokenizer(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    mod = types.ModuleType("edgemoe.tokenizer")
    n = {"value": 90}

    def from_dir(path: Path) -> FakeSpec | None:
        calls.append(("dir", Path(path)))
        return FakeSpec(n["value"]) if (Path(path) / "tokenizer.json").is_file() else None

    def from_tiktoken(path: Path) -> FakeSpec:
        calls.append(("tiktoken", Path(path)))
        return FakeSpec(n["value"])

    mod.spec_from_hf_dir = from_dir  # type: ignore[attr-defined]
    mod.spec_from_tiktoken_file = from_tiktoken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgemoe.tokenizer", mod)
    calls.append(n)
    return calls


def test_tokenizer_embedded(tmp_path: Path, mx_dir: Path, fake_tokenizer: list[Any]) -> None:
    (mx_dir / "tokenizer.json").write_text("{}")
    out = tmp_path / "m.bin"
    report = Q.convert(mx_dir, out, progress=False)
    assert report.tokenizer == "toy"
    assert ("dir", mx_dir) in fake_tokenizer
    with F.read_model(out) as mf:
        tok = mf.header["tokenizer"]
        assert tok["ranks_tensor"] == "tokenizer.ranks" and tok["n_vocab"] == 90
        assert bytes(mf.tensor_bytes("tokenizer.ranks")) == b"YQ== 0\n"
    bpe = tmp_path / "x.tiktoken"
    bpe.write_text("YQ== 0\n")
    convert(mx_dir, out, tokenizer=bpe)
    assert ("tiktoken", bpe) in fake_tokenizer


def test_tokenizer_too_big(tmp_path: Path, mx_dir: Path, fake_tokenizer: list[Any]) -> None:
    (mx_dir / "tokenizer.json").write_text("{}")
    fake_tokenizer[-1]["value"] = V + 1
    with pytest.raises(ConversionError, match=f"n_vocab {V + 1} > the model's vocab_size {V}"):
        Q.convert(mx_dir, tmp_path / "m.bin", progress=False)
    assert not (tmp_path / "m.bin").exists()


O200K = ROOT / "tools" / "quantize" / "data" / "o200k_base.tiktoken.gz"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def _real_tokenizer_module() -> Any:
    tok = pytest.importorskip("edgemoe.tokenizer")
    if not hasattr(tok, "spec_from_tiktoken_file") or not O200K.is_file():
        pytest.skip("edgemoe.tokenizer.spec_from_tiktoken_file or the o200k file is missing")
    return tok


def test_real_tiktoken_file_too_big(tmp_path: Path, mx_dir: Path) -> None:
    _real_tokenizer_module()
    with pytest.raises(ConversionError, match="vocab_size 96"):
        convert(mx_dir, tmp_path / "m.bin", tokenizer=O200K)


def test_real_o200k_harmony_embedded(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    tok = _real_tokenizer_module()
    big_v = 201088
    w = dict(weights)
    row = np.linspace(-1, 1, H, dtype=np.float32)
    w["model.embed_tokens.weight"] = w["lm_head.weight"] = np.broadcast_to(row, (big_v, H))
    d = make_ckpt(tmp_path / "c", mxfp4_state(w), config(vocab_size=big_v))
    out = tmp_path / "m.bin"
    report = convert(d, out, tokenizer=O200K, dense="bf16")
    assert report.tokenizer == "o200k_harmony"
    with F.read_model(out) as mf:
        header, blob = mf.header["tokenizer"], bytes(mf.tensor_bytes("tokenizer.ranks"))
    assert header["n_vocab"] == big_v and header["special_tokens"]["<|return|>"] == 200002
    assert hashlib.sha256(blob).hexdigest() == O200K_SHA256  # the o200k_base file's bytes
    enc = tok.encoding_from_model_header(header, blob)
    assert enc.encode("Hello, world!") == [13225, 11, 2375, 0]


# ----------------------------------------------------------------------------- errors


def test_missing_dir_and_config(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="does not exist"):
        convert(tmp_path / "nope", tmp_path / "m.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no config.json"):
        convert(tmp_path / "empty", tmp_path / "m.bin")


def test_wrong_model_type(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    d = make_ckpt(tmp_path / "llama", {}, config(model_type="llama"))
    with pytest.raises(ConversionError, match=r"config.json: model_type 'llama' is not gpt_oss"):
        convert(d, tmp_path / "m.bin")


def test_missing_tensor(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    state = mxfp4_state(weights)
    del state["model.layers.1.self_attn.k_proj.bias"]
    d = make_ckpt(tmp_path / "c", state)
    with pytest.raises(ConversionError,
                       match=r"missing tensor 'model.layers.1.self_attn.k_proj.bias'"):
        convert(d, tmp_path / "m.bin")
    del state["model.layers.0.mlp.experts.down_proj_blocks"]
    make_ckpt(d, state)
    with pytest.raises(ConversionError, match="model.layers.0.mlp.experts.down_proj_blocks"):
        convert(d, tmp_path / "m.bin")


def test_shape_mismatch(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    state = mxfp4_state(weights)
    state["model.layers.0.self_attn.q_proj.weight"] = ("BF16", np.zeros((NH * HD, H + 32),
                                                                        np.float32))
    d = make_ckpt(tmp_path / "c", state)
    with pytest.raises(ConversionError) as info:
        convert(d, tmp_path / "m.bin")
    msg = str(info.value)
    assert "model.layers.0.self_attn.q_proj.weight" in msg
    assert "[64, 96]" in msg and "expected [64, 64]" in msg
    state = mxfp4_state(weights)
    name = "model.layers.1.mlp.experts.gate_up_proj_scales"
    state[name] = ("U8", state[name][1][:, :-1])
    make_ckpt(d, state)
    with pytest.raises(ConversionError, match=name):
        convert(d, tmp_path / "m.bin")


def test_dimension_not_multiple_of_32(tmp_path: Path, weights: dict[str, np.ndarray]) -> None:
    d = make_ckpt(tmp_path / "c", {}, config(hidden_size=80))
    with pytest.raises(ConversionError,
                       match="config.json: hidden_size 80 is not a multiple of 32"):
        convert(d, tmp_path / "m.bin")
    # head_dim 12: o_proj's input dimension 48 cannot be q8_0, but bf16 works
    w = master_weights()
    for n in range(L):
        p = f"model.layers.{n}.self_attn."
        w[p + "q_proj.weight"] = w[p + "q_proj.weight"][:48]
        w[p + "q_proj.bias"] = w[p + "q_proj.bias"][:48]
        for x in "kv":
            w[p + f"{x}_proj.weight"] = w[p + f"{x}_proj.weight"][:24]
            w[p + f"{x}_proj.bias"] = w[p + f"{x}_proj.bias"][:24]
        w[p + "o_proj.weight"] = np.ascontiguousarray(w[p + "o_proj.weight"][:, :48])
    make_ckpt(d, mxfp4_state(w), config(head_dim=12))
    with pytest.raises(ConversionError, match=r"o_proj.weight.*multiple of 32.*--dense bf16"):
        convert(d, tmp_path / "m.bin")
    convert(d, tmp_path / "m.bin", dense="bf16")


def test_corrupt_safetensors(tmp_path: Path, mx_dir: Path) -> None:
    path = mx_dir / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ConversionError,
                       match=r"model.safetensors: corrupt or truncated.*past the end"):
        convert(mx_dir, tmp_path / "m.bin")
    path.write_bytes(raw[:8] + b"{not json" + raw[17:])
    with pytest.raises(ConversionError, match="not valid JSON"):
        convert(mx_dir, tmp_path / "m.bin")
    path.write_bytes(b"\xff" * 8 + raw[8:])
    with pytest.raises(ConversionError, match="header length"):
        convert(mx_dir, tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_index_points_to_missing_shard(tmp_path: Path, mx_dir: Path) -> None:
    (mx_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ConversionError,
                       match="shard 'model-00002-of-00002.safetensors' is missing"):
        convert(mx_dir, tmp_path / "m.bin")


def test_bad_shard_mid_stream_leaves_nothing(tmp_path: Path,
                                             weights: dict[str, np.ndarray]) -> None:
    w = dict(weights)
    w["lm_head.weight"] = w["lm_head.weight"].copy()
    w["lm_head.weight"][3, 5] = np.nan  # found only when that tensor is converted
    d = make_ckpt(tmp_path / "c", mxfp4_state(w))
    out = tmp_path / "out" / "m.bin"
    out.parent.mkdir()
    out.write_bytes(b"old")
    with pytest.raises(ConversionError, match=r"'lm_head.weight'.*NaN"):
        convert(d, out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in out.parent.iterdir()] == ["m.bin"]


def test_interrupted_conversion_leaves_nothing(tmp_path: Path, mx_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = convert_mod.tensor_chunks
    seen: list[str] = []

    def flaky(ckpt: Any, name: str, src: Any, out_type: str) -> Any:
        seen.append(name)
        if len(seen) == 20:
            raise KeyboardInterrupt  # e.g. Ctrl-C half way
        yield from real(ckpt, name, src, out_type)

    monkeypatch.setattr(convert_mod, "tensor_chunks", flaky)
    out = tmp_path / "m.bin"
    with pytest.raises(KeyboardInterrupt):
        convert(mx_dir, out)
    assert len(seen) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mx"]


def test_cli(tmp_path: Path, mx_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.bin"
    assert Q.main([str(mx_dir), "-o", str(out), "--dense", "bf16", "--no-tokenizer"]) == 0
    err = capsys.readouterr().err
    assert "converting" in err and "wrote" in err and "100.0%" in err
    with F.read_model(out) as mf:
        assert mf.tensors["lm_head.weight"].type == "bf16"
    assert Q.main([str(tmp_path / "nope"), "-o", str(out), "-q"]) == 1
    assert "error:" in capsys.readouterr().err
    assert Q.main([str(mx_dir), "-o", str(tmp_path / "n.bin"), "-q"]) == 0
    assert "warning: " in capsys.readouterr().err  # no tokenizer in the checkpoint
