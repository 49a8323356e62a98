"""Synthetic checkpoints in Hugging Face layout (``quantize --synthetic P --synthetic-format hf``).

The directory must look like openai/gpt-oss-20b (shared/ORACLES.md §3.1, §3.2), convert
unchanged with ``edgemoe quantize``, load in transformers with the same logits as edgemoe on
the converted model.bin, and carry a tokenizer that transformers (hence llama.cpp's
convert_hf_to_gguf.py) reads as o200k_harmony.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgemoe
from edgemoe.errors import ConversionError
from edgemoe.format import read_model
from edgemoe.quant import bf16_to_f32, to_bf16

pytest_plugins = ["tokenizer_fixtures"]

PRESET, SEED = "gpt-oss-tiny", 5
SHARD_BYTES = 20_000_000  # the tiny preset then has 3 shards: embedding, layers, lm_head
HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH, reason="torch/transformers not installed (pip install -e '.[test]')"
)
# llama.cpp convert_hf_to_gguf.py, get_vocab_base_pre: sha256 of str(tokenizer.encode(CHKTXT))
# identifies the pre-tokenizer; this one is "gpt-4o" (o200k), which gpt-oss uses.
LLAMA_CPP_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
LLAMA_CPP_GPT4O_CHKHSH = "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja")


def write(out: Path, seed: int = SEED, preset: str = PRESET, **kwargs: Any) -> Path:
    from edgemoe_quantize.synthetic_hf import write_synthetic_hf

    write_synthetic_hf(preset, out, seed=seed, max_shard_bytes=SHARD_BYTES, progress=False,
                       **kwargs)
    return out


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("synth_hf") / "tiny-hf")


@pytest.fixture(scope="module")
def converted(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory converted as a user would (tokenizer from the directory), dense bf16
    (exact: the checkpoint's dense tensors are bf16)."""
    from edgemoe_quantize import convert

    out = tmp_path_factory.mktemp("synth_hf_bin") / "tiny.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "ignored unknown tensor(s)"
        convert(hf_dir, out, dense="bf16", progress=False)
    return out


def expected_tensors(hp: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """ORACLES §3.2: name -> (dtype, shape) of the published gpt-oss checkpoint."""
    V, H, FF, E = (hp["vocab_size"], hp["hidden_size"], hp["intermediate_size"],
                   hp["num_local_experts"])
    nh, hd = hp["num_attention_heads"], hp["head_dim"]
    q, kv = nh * hd, hp["num_key_value_heads"] * hd
    out = {"model.embed_tokens.weight": ("BF16", (V, H)), "model.norm.weight": ("BF16", (H,)),
           "lm_head.weight": ("BF16", (V, H))}
    for n in range(hp["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out.update({
            p + "input_layernorm.weight": ("BF16", (H,)),
            p + "post_attention_layernorm.weight": ("BF16", (H,)),
            p + "self_attn.sinks": ("BF16", (nh,)),
            p + "mlp.router.weight": ("BF16", (E, H)),
            p + "mlp.router.bias": ("BF16", (E,)),
            p + "mlp.experts.gate_up_proj_blocks": ("U8", (E, 2 * FF, H // 32, 16)),
            p + "mlp.experts.gate_up_proj_scales": ("U8", (E, 2 * FF, H // 32)),
            p + "mlp.experts.gate_up_proj_bias": ("BF16", (E, 2 * FF)),
            p + "mlp.experts.down_proj_blocks": ("U8", (E, H, FF // 32, 16)),
            p + "mlp.experts.down_proj_scales": ("U8", (E, H, FF // 32)),
            p + "mlp.experts.down_proj_bias": ("BF16", (E, H)),
        })
        for proj, rows, cols in (("q", q, H), ("k", kv, H), ("v", kv, H), ("o", H, q)):
            out[p + f"self_attn.{proj}_proj.weight"] = ("BF16", (rows, cols))
            out[p + f"self_attn.{proj}_proj.bias"] = ("BF16", (rows,))
    return out


def safetensors_table(directory: Path) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """name -> (dtype, shape, shard) from the shards' headers, via the index."""
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    out: dict[str, tuple[str, tuple[int, ...], str]] = {}
    for shard in sorted(set(index["weight_map"].values())):
        raw = (directory / shard).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        assert n % 8 == 0 and header.pop("__metadata__") == {"format": "pt"}
        ends = sorted(v["data_offsets"][1] for v in header.values())
        assert len(raw) == 8 + n + ends[-1]  # no hole, nothing after the data
        for name, v in header.items():
            out[name] = (v["dtype"], tuple(v["shape"]), shard)
    assert {k: v[2] for k, v in out.items()} == index["weight_map"]
    return out


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


# ================================================================================ layout


def test_files_names_shapes_dtypes(hf_dir: Path) -> None:
    from edgemoe_quantize.synthetic import PRESETS

    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert sorted(p.name for p in hf_dir.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors.index.json",
         *shards, *TOKENIZER_FILES])
    table = safetensors_table(hf_dir)
    assert {k: v[:2] for k, v in table.items()} == expected_tensors(PRESETS[PRESET])
    assert table["model.embed_tokens.weight"][2] == shards[0]
    assert table["lm_head.weight"][2] == shards[2]
    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    sizes = {s: (hf_dir / s).stat().st_size for s in shards}
    assert index["metadata"]["total_size"] < sum(sizes.values()) < index["metadata"][
        "total_size"] + 3 * 20_000


def test_config_as_published(hf_dir: Path) -> None:
    from edgemoe_quantize.synthetic import PRESETS

    hp = PRESETS[PRESET]
    cfg = json.loads((hf_dir / "config.json").read_text())
    assert cfg["model_type"] == "gpt_oss" and cfg["architectures"] == ["GptOssForCausalLM"]
    assert cfg["quantization_config"] == {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
        "lm_head"]}
    assert cfg["rope_scaling"] == {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                   "beta_slow": 1.0, "original_max_position_embeddings": 4096,
                                   "truncate": False}
    assert cfg["rope_theta"] == 150000 and cfg["torch_dtype"] == "bfloat16"
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "num_local_experts",
                "num_experts_per_tok", "sliding_window", "layer_types", "swiglu_limit",
                "rms_norm_eps", "max_position_embeddings"):
        assert cfg[key] == hp[key], key
    assert cfg["experts_per_token"] == 4 and cfg["tie_word_embeddings"] is False
    assert (cfg["eos_token_id"], cfg["pad_token_id"]) == (200002, 199999)
    gen = json.loads((hf_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [200002, 199999, 200012]


def test_values_finite_and_scaled(hf_dir: Path) -> None:
    """MXFP4 experts decode to std ~ fan_in^-0.5 (unit gain); norms ~1; bf16 all finite."""
    from edgemoe_quantize.safetensors_io import Checkpoint
    from oracle import mxfp4_dequantize

    with Checkpoint(hf_dir) as ck:
        p = "model.layers.1.mlp.experts."
        for part, fan_in in (("gate_up_proj", 64), ("down_proj", 64)):
            b, s = ck.entries[p + part + "_blocks"], ck.entries[p + part + "_scales"]
            w = mxfp4_dequantize(np.frombuffer(ck.read(b), np.uint8).reshape(b.shape),
                                 np.frombuffer(ck.read(s), np.uint8).reshape(s.shape))
            assert 0.5 < w.std() * math.sqrt(fan_in) < 2.0, part
        norm = ck.read_f32(ck.entries["model.layers.1.input_layernorm.weight"])
        assert abs(norm.mean() - 1) < 0.05
        for name, e in ck.entries.items():
            if e.dtype == "BF16":
                assert np.isfinite(ck.read_f32(e)).all(), name


def test_plan_of_gpt_oss_20b() -> None:
    """The full-size preset (nothing written): ORACLES §3.2 shapes, shards of at most 5 GB."""
    from edgemoe_quantize.synthetic import PRESETS
    from edgemoe_quantize.synthetic_hf import MAX_SHARD_BYTES, hf_plan, shard_plan

    hp = PRESETS["gpt-oss-20b"]
    plan = hf_plan(hp)
    assert {t.name: (t.dtype, t.shape) for t in plan} == expected_tensors(hp)
    blocks = next(t for t in plan if t.name.endswith("0.mlp.experts.gate_up_proj_blocks"))
    assert blocks.shape == (32, 5760, 90, 16)
    shards = shard_plan(plan)
    assert len(shards) == 3
    assert all(sum(t.nbytes for t in ts) <= MAX_SHARD_BYTES for ts in shards.values())
    assert 13.5e9 < sum(t.nbytes for t in plan) < 14e9


# ================================================================================ converter


def test_converts_and_loads(hf_dir: Path, converted: Path, tmp_path: Path) -> None:
    from edgemoe_quantize import convert
    from edgemoe_quantize.synthetic import PRESETS

    q8 = tmp_path / "q8.bin"
    convert(hf_dir, q8, dense="q8_0", tokenizer=False, progress=False)  # the default type
    for path in (converted, q8):
        with read_model(path) as mf:
            mf.verify()
            assert mf.hparams == PRESETS[PRESET]
            assert mf.tensors["model.layers.3.mlp.experts.7.down_proj"].type == "mxfp4"
    with read_model(converted) as mf:
        assert mf.header["tokenizer"]["name"] == "o200k_harmony"
    with edgemoe.load(converted) as m:
        assert m.tokenizer.encode("Hello, world!") == [13225, 11, 2375, 0]
        logits = m.logits(np.random.default_rng(0).integers(0, 201088, 16))
        assert np.isfinite(logits).all() and len(set(logits.argmax(-1).tolist())) > 4


@needs_torch
def test_transformers_and_edgemoe_agree(hf_dir: Path, converted: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers (fp32, experts dequantized) on the directory vs edgemoe's f32 reference
    path on the bf16 conversion: the same weights, so the logits agree (ORACLES §8)."""
    import oracle

    monkeypatch.setenv("EDGEMOE_KERNELS", "reference")
    ids = oracle.random_ids(24, 201088, seed=1)  # 24 > sliding window 8
    ref = oracle.hf_logits_fp32(hf_dir, ids)
    with edgemoe.load(converted) as m:
        got = m.logits(ids)
    err = oracle.rel_l2(got, ref)
    print(f"transformers vs edgemoe: rel L2 {err:.2e}, max abs {oracle.max_abs(got, ref):.2e}")
    assert np.isfinite(ref).all() and ref.std() > 0.1
    assert err < 1e-3
    assert (got.argmax(-1) == ref.argmax(-1)).all()


# ================================================================================ tokenizer


@needs_torch
def test_tokenizer_equals_transformers_tiktoken_converter(hf_dir: Path,
                                                          hf_tokenizer_dir: Path) -> None:
    """Same document as transformers' TikTokenConverter makes from the same vocabulary."""
    ours = json.loads((hf_dir / "tokenizer.json").read_bytes())
    theirs = json.loads((hf_tokenizer_dir / "tokenizer.json").read_bytes())
    assert ours == theirs


@needs_torch
def test_autotokenizer_reads_it_as_o200k_harmony(hf_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<|startoftext|>", "<|return|>", "<|endoftext|>")
    assert tok.convert_tokens_to_ids("<|call|>") == 200012
    assert max(tok.get_vocab().values()) == 201087
    assert tok.encode("Hello, world!") == [13225, 11, 2375, 0]
    assert tok.encode("<|start|>user<|message|>Hi<|end|>") == [200006, 1428, 200008, 12194,
                                                                200007]
    chkhsh = hashlib.sha256(str(tok.encode(LLAMA_CPP_CHKTXT)).encode()).hexdigest()
    assert chkhsh == LLAMA_CPP_GPT4O_CHKHSH
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|start|>user<|message|>Hi<|end|><|start|>assistant"


# ================================================================================ determinism


def test_same_seed_same_bytes(hf_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()  # an existing empty directory is fine
    a = file_hashes(write(tmp_path / "a"))
    assert a == file_hashes(hf_dir)
    b = file_hashes(write(tmp_path / "b", seed=SEED + 1))
    same = {*TOKENIZER_FILES, "generation_config.json", "model.safetensors.index.json"}
    assert {n for n in a if a[n] == b[n]} == same  # config.json records the seed
    assert not list(tmp_path.glob("*.partial-*"))


# ================================================================================ errors


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe_quantize import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["--synthetic-format", "hf", "-o", str(out)])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--synthetic-format", "hf", "-o", str(out)])
    assert "--synthetic-format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--synthetic", PRESET, "--synthetic-format", "hf", "--dense", "q8_0",
              "-o", str(out)])
    assert "argument --dense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--synthetic", PRESET, "--synthetic-format", "gguf", "-o", str(out)])

    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["--synthetic", PRESET, "--synthetic-format", "hf", "-o", str(out), "-q"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["--synthetic", PRESET, "--synthetic-format", "hf", "-q",
                 "-o", str(tmp_path / "file")]) == 1
    assert main(["--synthetic", "gpt-oss-999b", "--synthetic-format", "hf", "-q",
                 "-o", str(tmp_path / "new")]) == 1
    assert "unknown synthetic preset" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error (or Ctrl-C) mid-write removes the partial directory; OUT never appears."""
    from edgemoe_quantize import synthetic_hf

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_hf, "_write_shard", boom)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("direct", [True, False])
def test_direct_writer_bytes(tmp_path: Path, direct: bool) -> None:
    """Chunks of odd sizes across buffer boundaries come out exact (O_DIRECT or not)."""
    from edgemoe_quantize.direct_writer import BUFFER_BYTES, DirectWriter

    rng = np.random.default_rng(0)
    data = rng.bytes(2 * BUFFER_BYTES + 12345)
    cuts = [0, 7, 4096, BUFFER_BYTES - 1, BUFFER_BYTES + 5, len(data)]
    with DirectWriter(tmp_path / "f", direct=direct) as w:
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            assert w.write(data[a:b]) == b - a
    assert (tmp_path / "f").read_bytes() == data
    with pytest.raises(FileExistsError):
        DirectWriter(tmp_path / "f")


def test_direct_writer_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that accepts O_DIRECT at open but refuses the write (EINVAL)."""
    import errno
    import os

    from edgemoe_quantize import direct_writer

    real_write = os.write

    def refuse_direct(fd: int, buf: Any) -> int:
        if direct_writer.fcntl.fcntl(fd, direct_writer.fcntl.F_GETFL) & direct_writer._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, buf)

    monkeypatch.setattr(direct_writer.os, "write", refuse_direct)
    with direct_writer.DirectWriter(tmp_path / "f") as w:
        w.write(b"abc" * 5000)
    assert (tmp_path / "f").read_bytes() == b"abc" * 5000


# ================================================================================ routing skew


@pytest.fixture(scope="module")
def hf_skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("synth_hf_skew") / "tiny-hf", routing_skew=1.0)


def hf_routers(directory: Path) -> list[tuple[np.ndarray, ...]]:
    """Per layer (post-attention norm weight, router weight, router bias), as f32."""
    from edgemoe_quantize.safetensors_io import Checkpoint

    with Checkpoint(directory) as ck:
        return [tuple(ck.read_f32(ck.entries[f"model.layers.{n}.{t}"]).reshape(
            ck.entries[f"model.layers.{n}.{t}"].shape) for t in (
            "post_attention_layernorm.weight", "mlp.router.weight", "mlp.router.bias"))
            for n in range(4)]


def test_routing_skew_zero_same_bytes(hf_dir: Path, tmp_path: Path) -> None:
    assert file_hashes(write(tmp_path / "a", routing_skew=0.0)) == file_hashes(hf_dir)


def test_routing_skew_recorded_and_deterministic(hf_dir: Path, hf_skewed: Path,
                                                 tmp_path: Path) -> None:
    cfg = json.loads((hf_skewed / "config.json").read_text())
    assert cfg["edgemoe_synthetic"] == {"preset": PRESET, "seed": SEED, "routing_skew": 1.0,
                                        "weights": "random (not a trained model)"}
    assert file_hashes(write(tmp_path / "a", routing_skew=1.0)) == file_hashes(hf_skewed)
    a, plain = file_hashes(hf_skewed), file_hashes(hf_dir)
    # config.json and the shard of the layers (router biases) change, nothing else
    assert {n for n in a if a[n] != plain[n]} == {"config.json",
                                                  "model-00002-of-00003.safetensors"}


def test_routing_skew_bin_and_hf_agree(hf_dir: Path, hf_skewed: Path, tmp_path: Path) -> None:
    """The same seed gives both formats the same router-bias offsets (each added to its own
    random bias, which differ between the formats as without skew), hence the same
    popular experts, and about the same skew; converting the checkpoint keeps its bias."""
    from edgemoe_quantize import convert
    from edgemoe_quantize.synthetic import PRESETS, routing_skew_offsets, write_synthetic
    from test_synthetic import bin_routers, router_counts, top_quarter_share

    offsets = routing_skew_offsets(PRESETS[PRESET], SEED, 1.0)
    hf_plain, hf_skew = hf_routers(hf_dir), hf_routers(hf_skewed)
    for n, off in enumerate(offsets):
        assert (hf_skew[n][2] == bf16_to_f32(to_bf16(hf_plain[n][2] + off))).all()
        assert (hf_skew[n][1] == hf_plain[n][1]).all()
    write_synthetic(PRESET, tmp_path / "plain.bin", seed=SEED, progress=False)
    write_synthetic(PRESET, tmp_path / "skew.bin", seed=SEED, routing_skew=1.0, progress=False)
    bin_plain, bin_skew = bin_routers(tmp_path / "plain.bin"), bin_routers(tmp_path / "skew.bin")
    for n, off in enumerate(offsets):
        np.testing.assert_allclose(bin_skew[n][2] - bin_plain[n][2], off, atol=1e-6)

    hf_counts, bin_counts = router_counts(hf_skew, 4), router_counts(bin_skew, 4)
    top = [int(o.argmax()) for o in offsets]
    assert [int(c.argmax()) for c in hf_counts] == [int(c.argmax()) for c in bin_counts] == top
    hf_share, bin_share = top_quarter_share(hf_counts), top_quarter_share(bin_counts)
    assert (hf_share > 0.42).all() and (bin_share > 0.42).all()
    assert np.abs(hf_share - bin_share).max() < 0.05
    assert hf_counts.min() > 200

    convert(hf_skewed, tmp_path / "conv.bin", dense="bf16", tokenizer=False, progress=False)
    for n, layer in enumerate(bin_routers(tmp_path / "conv.bin")):
        assert (layer[2] == hf_skew[n][2]).all()


def test_routing_skew_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe_quantize import main

    for bad in (-0.5, float("inf"), "x"):
        with pytest.raises(ConversionError, match="--routing-skew must be a finite number"):
            write(tmp_path / "out", routing_skew=bad)
    with pytest.raises(SystemExit):
        main(["--synthetic", PRESET, "--synthetic-format", "hf", "--routing-skew", "-1",
              "-o", str(tmp_path / "out")])
    assert "argument --routing-skew" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
