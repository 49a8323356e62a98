"""model.bin v1 (edgemoe.format, .quant, .writer): quantizers, writer layout, reader validation."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemoe import format as F
from edgemoe import quant as Q
from edgemoe import writer as W
from edgemoe.errors import ChecksumError, ModelFormatError, UnsupportedVersionError

# ----------------------------------------------------------------------------- fixtures

HP: dict[str, Any] = {
    "vocab_size": 96,
    "hidden_size": 64,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention"],
    "rms_norm_eps": 1e-5,
    "swiglu_limit": 7.0,
    "swiglu_alpha": 1.702,
    "max_position_embeddings": 131072,
    "rope": {"type": "yarn", "theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
             "beta_slow": 1.0, "original_max_position_embeddings": 4096, "truncate": False},
    "eos_token_ids": [3],
}
TOKENIZER = ({"kind": "tiktoken-bpe", "name": "toy", "pat_str": r"\S+|\s+",
              "special_tokens": {"<|end|>": 90}, "n_vocab": 91},
             b"YQ== 0\nYg== 1\n")


def random_tensors(hp: dict[str, Any] = HP, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)
            for name, (_, shape) in F.required_tensors(hp).items()}


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return random_tensors()


@pytest.fixture()
def model_path(tmp_path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "model.bin"
    W.write_model(path, HP, tensors, TOKENIZER)
    return path


def read_parts(path: Path) -> tuple[list[Any], dict[str, Any]]:
    raw = path.read_bytes()
    fields = list(F.PREAMBLE.unpack_from(raw, 0))
    header = json.loads(raw[64 : 64 + fields[4]])
    return fields, header


def rewrite(path: Path, header: dict[str, Any] | None = None, **preamble: int) -> None:
    """Rewrite header JSON (same length, padded) and/or preamble fields, fixing the CRC."""
    raw = bytearray(path.read_bytes())
    names = ["magic", "version", "header_crc32", "header_offset", "header_length",
             "data_offset", "file_length", "alignment", "expert_alignment", "reserved"]
    fields = dict(zip(names, F.PREAMBLE.unpack_from(raw, 0), strict=True))
    if header is not None:
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= fields["header_length"]
        raw[64 : 64 + fields["header_length"]] = text.ljust(fields["header_length"])
        fields["header_crc32"] = zlib.crc32(raw[64 : 64 + fields["header_length"]])
    fields.update(preamble)
    raw[:64] = F.PREAMBLE.pack(*fields.values())
    path.write_bytes(bytes(raw))


def expect_error(path: Path, exc: type[Exception], *words: str) -> str:
    """Both readers refuse the file: the Python one (``read_model``) with a message holding
    ``words``, and the C core (``edgemoe.load``, which opens the file in C first) with the
    same exception type and a message naming the file."""
    with pytest.raises(exc) as info:
        F.read_model(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    import edgemoe

    with pytest.raises(exc) as c_info:
        edgemoe.load(path)
    assert str(path) in str(c_info.value), str(c_info.value)
    return msg


# ----------------------------------------------------------------------------- quantizers


def q8_0_scalar(block: list[float]) -> tuple[int, list[int]]:
    """FORMAT.md's q8_0 rule on one block, one element at a time (independent of numpy)."""
    f32 = np.float32
    amax = max(abs(f32(v)) for v in block)
    d = np.float16(min(f32(amax) / f32(127), f32(65504)))
    d32 = f32(d)
    qs = []
    for v in block:
        if d32 == 0:
            qs.append(0)
            continue
        x = f32(v) / d32
        t = int(x)  # trunc
        q = t + (1 if x - t >= 0.5 else -1 if x - t <= -0.5 else 0)
        qs.append(max(-127, min(127, q)))
    return int(d.view(np.uint16)), qs


def test_q8_0_matches_scalar_rule() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 64)).astype(np.float32)
    x[0, :32] = 0
    x[1, :32] = np.arange(32, dtype=np.float32) - 15.5  # many exact halves after scaling
    x[2, :32] = 1e-9  # d underflows f16 -> all zero
    x[3, :32] = np.linspace(-1, 1, 32) * 254  # d = 2 exactly: ties at odd values
    data = Q.quantize_q8_0(x)
    assert data.size == F.tensor_nbytes("q8_0", x.shape) == 12 * 34
    blocks = data.view(Q.Q8_0_BLOCK)
    for i, block in enumerate(x.reshape(-1, 32)):
        d_bits, qs = q8_0_scalar([float(v) for v in block])
        assert int(blocks["d"][i].view(np.uint16)) == d_bits
        assert blocks["q"][i].tolist() == qs


def test_q8_0_round_trip_error() -> None:
    x = np.random.default_rng(2).standard_normal((16, 256)).astype(np.float32) * 3
    y = Q.dequantize_q8_0(Q.quantize_q8_0(x), x.shape)
    amax = np.abs(x.reshape(-1, 32)).max(1, keepdims=True)
    err = np.abs((y - x).reshape(-1, 32))
    assert (err <= amax / 127 * 0.51 + 1e-7).all()  # half a step (+ f16 rounding of d)


def test_q8_0_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        Q.quantize_q8_0(np.zeros((2, 48), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        Q.quantize_q8_0(np.full((1, 32), np.nan, np.float32))


def oracle_mxfp4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ORACLES.md section 2.4's test quantizer, verbatim in behaviour."""
    *lead, n = w.shape
    b = w.reshape(*lead, n // 32, 32)
    amax = np.abs(b).max(-1)
    e = np.where(amax > 0, np.ceil(np.log2(np.maximum(amax, 1e-38) / 6.0)), -127)
    e = e.astype(np.int32).clip(-127, 127)
    scaled = b / np.ldexp(np.float32(1), e)[..., None]
    idx = np.abs(scaled[..., None] - Q.FP4_VALUES).argmin(-1).astype(np.uint8)
    blocks = idx[..., 0::2] | (idx[..., 1::2] << 4)
    return blocks, (e + 127).astype(np.uint8)


def oracle_dequant(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """ORACLES.md appendix decode."""
    v = np.stack([Q.FP4_VALUES[blocks & 15], Q.FP4_VALUES[blocks >> 4]], -1)
    v = v.reshape(*blocks.shape[:-1], 32)
    return np.ldexp(v, scales.astype(np.int32)[..., None] - 127).reshape(*blocks.shape[:-2], -1)


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 0.35, 1.0, 1e4])
def test_mxfp4_matches_oracle(scale: float) -> None:
    w = (np.random.default_rng(3).standard_normal((3, 40, 96)) * scale).astype(np.float32)
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5,
            -5, -6, 0, -0.0, 0.1, -0.1]
    w[0, 0, :32] = np.array(ties + [0] * 12, np.float32)  # amax 6: e = 0, exact midpoints
    w[0, 1, :32] = 0
    w[0, 2, :32] = 3.0  # amax / 6 is exactly a power of two
    blocks, scales = Q.quantize_mxfp4_blocks(w)
    ob, os_ = oracle_mxfp4(w)
    assert blocks.shape == (3, 40, 3, 16) and scales.shape == (3, 40, 3)
    np.testing.assert_array_equal(blocks, ob)
    np.testing.assert_array_equal(scales, os_)
    planar = Q.quantize_mxfp4(w.reshape(-1, 96))
    assert planar.size == F.tensor_nbytes("mxfp4", (120, 96))
    got = Q.dequantize_mxfp4(planar, (120, 96))
    np.testing.assert_array_equal(got, oracle_dequant(ob, os_).reshape(120, 96))


def test_mxfp4_round_trip_error_and_planar_layout() -> None:
    w = np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)
    blocks, scales = Q.quantize_mxfp4_blocks(w)
    data = Q.quantize_mxfp4(w)
    assert data[: blocks.size].tobytes() == blocks.tobytes()  # all blocks first ...
    assert data[blocks.size :].tobytes() == scales.tobytes()  # ... then all scales
    y = Q.dequantize_mxfp4(data, w.shape)
    step = np.ldexp(np.float32(1), scales.astype(np.int32) - 127)  # a code gap is <= 2 steps
    err = np.abs(y - w).reshape(8, 2, 32)
    assert (err <= step[..., None] + 1e-12).all()
    assert (np.abs(y).reshape(8, 2, 32) <= 6 * step[..., None]).all()  # never saturates
    assert (np.abs(w).reshape(8, 2, 32).max(-1) > 3 * step).all()  # smallest such scale


def test_mxfp4_negative_zero_and_nibble_order() -> None:
    x = np.zeros(32, np.float32)
    x[0], x[1], x[2] = 6.0, -0.1, -3.0  # e = 0
    blocks, scales = Q.quantize_mxfp4_blocks(x)
    assert scales.tolist() == [127]
    assert blocks[0, 0] == 0x07  # element 0 (+6, code 7) low nibble, element 1 -> code 0
    assert blocks[0, 1] == 0x0D  # element 2 (-3, code 13)


def test_bf16_round_to_nearest_even() -> None:
    bits = np.array([0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F80FFFF,
                     0x7F7FFFFF, 0x7F800000, 0xFF800000, 0x80000000, 0x7FC00001,
                     0x00008000, 0x00018000], np.uint32)
    want = [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x3F81, 0x7F80, 0x7F80, 0xFF80, 0x8000, 0x7FC0,
            0x0000, 0x0002]
    assert Q.to_bf16(bits.view(np.float32)).tolist() == want
    back = Q.bf16_to_f32(np.array(want[:3], np.uint16))
    assert back.tolist() == [1.0, 1.0, 1.015625]


def test_tensor_nbytes() -> None:
    assert F.tensor_nbytes("f32", (3, 5)) == 60
    assert F.tensor_nbytes("bf16", (3, 5)) == 30
    assert F.tensor_nbytes("u8", (7,)) == 7
    assert F.tensor_nbytes("q8_0", (2880, 2880)) == 2880 * 90 * 34
    assert F.tensor_nbytes("mxfp4", (5760, 2880)) == 5760 * 90 * 17
    with pytest.raises(ValueError):
        F.tensor_nbytes("q8_0", (4, 33))
    with pytest.raises(ValueError):
        F.tensor_nbytes("q4_k", (32,))


# ----------------------------------------------------------------------------- writer


def test_round_trip(model_path: Path, tensors: dict[str, np.ndarray]) -> None:
    with F.read_model(model_path) as mf:
        mf.verify()
        assert mf.version == 1 and mf.hparams == HP
        assert mf.tokenizer is not None and mf.tokenizer["ranks_tensor"] == "tokenizer.ranks"
        assert bytes(mf.tensor_bytes("tokenizer.ranks")) == TOKENIZER[1]
        for name, x in tensors.items():
            t = mf.tensors[name]
            assert t.type == W.default_tensor_type(name) and t.shape == x.shape
            got = mf.tensor(name)
            if t.type == "f32":
                np.testing.assert_array_equal(got, x)
            elif t.type == "q8_0":
                np.testing.assert_array_equal(got, Q.dequantize_q8_0(Q.quantize_q8_0(x), x.shape))
            else:
                np.testing.assert_array_equal(got, Q.dequantize_mxfp4(Q.quantize_mxfp4(x), x.shape))
        assert len(mf.experts) == HP["num_hidden_layers"] * HP["num_local_experts"]


def test_layout_invariants(model_path: Path) -> None:
    fields, header = read_parts(model_path)
    _, _, crc, h_off, h_len, d_off, f_len, align, e_align, reserved = fields
    assert (h_off, align, e_align, reserved) == (64, 64, 65536, bytes(8))
    assert d_off % 4096 == 0 and h_off + h_len == d_off
    assert f_len == model_path.stat().st_size
    assert crc == zlib.crc32(model_path.read_bytes()[64 : 64 + h_len])
    entries = header["tensors"]
    offsets = [t["offset"] for t in entries]
    assert offsets == sorted(offsets)
    assert offsets[0] >= d_off and entries[-1]["offset"] + entries[-1]["length"] == f_len
    for a, b in zip(entries, entries[1:], strict=False):
        assert a["offset"] + a["length"] <= b["offset"]
    by_name = {t["name"]: t for t in entries}
    raw = model_path.read_bytes()
    for t in entries:
        assert t["offset"] % 64 == 0
        assert t["length"] == F.tensor_nbytes(t["type"], t["shape"])
        assert f"{zlib.crc32(raw[t['offset'] : t['offset'] + t['length']]):08x}" == t["crc32"]
    first_expert = min(s["offset"] for s in header["experts"])
    dense = [t for t in entries if F.parse_expert_name(t["name"]) is None]
    assert all(t["offset"] < first_expert for t in dense)
    for s in header["experts"]:
        assert s["offset"] % 65536 == 0
        parts = [by_name[F.expert_tensor_name(s["layer"], s["expert"], p)] for p in F.EXPERT_PARTS]
        assert parts[0]["offset"] == s["offset"]
        for a, b in zip(parts, parts[1:], strict=False):
            assert b["offset"] == F.align_up(a["offset"] + a["length"], 64)
        assert parts[-1]["offset"] + parts[-1]["length"] == s["offset"] + s["length"]


def test_custom_expert_alignment(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    path = tmp_path / "m.bin"
    W.write_model(path, HP, tensors, dense="bf16", expert_alignment=4096)
    with F.read_model(path) as mf:
        assert mf.expert_alignment == 4096
        assert all(s.offset % 4096 == 0 for s in mf.experts)
        assert mf.tensors["lm_head.weight"].type == "bf16" and mf.tokenizer is None
    with pytest.raises(ValueError, match="expert_alignment"):
        W.write_model(path, HP, tensors, expert_alignment=1000)


def test_raw_and_explicit_types(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    t: dict[str, Any] = dict(tensors)
    name = F.expert_tensor_name(0, 0, "down_proj")
    blocks, scales = Q.quantize_mxfp4_blocks(tensors[name])
    t[name] = W.RawTensor("mxfp4", tensors[name].shape, Q.pack_mxfp4(blocks, scales).tobytes())
    t["lm_head.weight"] = ("f32", tensors["lm_head.weight"])
    path = tmp_path / "m.bin"
    W.write_model(path, HP, t)
    with F.read_model(path) as mf:
        got_b, got_s = Q.unpack_mxfp4(mf.tensor_bytes(name), mf.tensors[name].shape)
        np.testing.assert_array_equal(got_b.reshape(blocks.shape), blocks)
        np.testing.assert_array_equal(got_s.reshape(scales.shape), scales)
        assert mf.tensors["lm_head.weight"].type == "f32"


def test_writer_validates(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    t = dict(tensors)
    del t["model.norm.weight"]
    with pytest.raises(ModelFormatError, match="model.norm.weight"):
        W.write_model(tmp_path / "m.bin", HP, t)
    t = dict(tensors)
    t["model.norm.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ModelFormatError, match=r"shape \[3\], expected \[64\]"):
        W.write_model(tmp_path / "m.bin", HP, t)
    with pytest.raises(ModelFormatError, match="n_vocab"):
        W.write_model(tmp_path / "m.bin", HP, tensors, ({**TOKENIZER[0], "n_vocab": 97}, b"x"))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path: Path, tensors: dict[str, np.ndarray]) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"previous")
    specs = [F.TensorSpec(n, W.default_tensor_type(n), x.shape) for n, x in tensors.items()]
    meta = W.make_meta(HP, None)

    def chunks() -> Any:
        yield b"\0" * 64
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with W.ModelWriter(path, meta, specs) as w:
            w.write_tensor("model.norm.weight", tensors["model.norm.weight"])
            w.write_tensor("lm_head.weight", chunks())
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]
    with pytest.raises(ValueError, match="never written"):
        with W.ModelWriter(path, meta, specs) as w:
            w.write_tensor("model.norm.weight", tensors["model.norm.weight"])
    with pytest.raises(ValueError, match="expected 256"):
        with W.ModelWriter(path, meta, specs) as w:
            w.write_tensor("model.norm.weight", b"short")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


# ----------------------------------------------------------------------------- reader


def test_truncated_and_appended(model_path: Path) -> None:
    raw = model_path.read_bytes()
    model_path.write_bytes(raw[:-1])
    expect_error(model_path, ModelFormatError, "file_length", "truncated")
    model_path.write_bytes(raw + b"x")
    expect_error(model_path, ModelFormatError, "file_length", "appended")
    model_path.write_bytes(raw[:40])
    expect_error(model_path, ModelFormatError, "40 bytes", "preamble")


def test_wrong_magic_and_version(model_path: Path) -> None:
    raw = bytearray(model_path.read_bytes())
    raw[0:8] = b"GGUF\0\0\0\0"
    model_path.write_bytes(bytes(raw))
    expect_error(model_path, ModelFormatError, "magic")
    raw[0:8] = F.MAGIC
    raw[8:12] = struct.pack("<I", 2)
    model_path.write_bytes(bytes(raw))
    expect_error(model_path, UnsupportedVersionError, "version", "2")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("header_offset", 128, ("header_offset",)),
        ("data_offset", 10**12, ("data_offset",)),
        ("header_length", 10**9, ("header_length",)),
        ("alignment", 48, ("alignment", "power of two")),
        ("expert_alignment", 1024, ("expert_alignment",)),
    ],
)
def test_bad_preamble_fields(model_path: Path, field: str, value: int,
                             words: tuple[str, ...]) -> None:
    rewrite(model_path, **{field: value})
    expect_error(model_path, ModelFormatError, *words)


def test_header_crc_mismatch(model_path: Path) -> None:
    raw = bytearray(model_path.read_bytes())
    raw[70] ^= 0x01
    model_path.write_bytes(bytes(raw))
    expect_error(model_path, ChecksumError, "header_crc32")


def test_tensor_checksum_mismatch(model_path: Path) -> None:
    _, header = read_parts(model_path)
    t = next(t for t in header["tensors"] if t["name"] == "model.layers.1.self_attn.sinks")
    raw = bytearray(model_path.read_bytes())
    raw[t["offset"]] ^= 0x80
    model_path.write_bytes(bytes(raw))
    with F.read_model(model_path) as mf:  # the header is fine; only verify() reads tensors
        with pytest.raises(ChecksumError, match="model.layers.1.self_attn.sinks"):
            mf.verify()


def _edit_tensor(model_path: Path, name: str, **changes: Any) -> None:
    _, header = read_parts(model_path)
    t = next(t for t in header["tensors"] if t["name"] == name)
    t.update(changes)
    rewrite(model_path, header)


def test_offset_past_end(model_path: Path) -> None:
    size = model_path.stat().st_size
    _edit_tensor(model_path, "model.norm.weight", offset=F.align_up(size, 64))
    expect_error(model_path, ModelFormatError, "model.norm.weight", "outside the data section")


def test_misaligned_offset(model_path: Path) -> None:
    _, header = read_parts(model_path)
    off = next(t["offset"] for t in header["tensors"] if t["name"] == "model.norm.weight")
    _edit_tensor(model_path, "model.norm.weight", offset=off + 4)
    expect_error(model_path, ModelFormatError, "model.norm.weight", "multiple of 64")


def test_overlap(model_path: Path) -> None:
    _, header = read_parts(model_path)
    first = header["tensors"][0]
    _edit_tensor(model_path, header["tensors"][1]["name"], offset=first["offset"])
    expect_error(model_path, ModelFormatError, "overlaps")


def test_length_mismatch(model_path: Path) -> None:
    _edit_tensor(model_path, "model.norm.weight", length=64)
    expect_error(model_path, ModelFormatError, "model.norm.weight", "length")


def test_wrong_shape_and_type(model_path: Path) -> None:
    raw = model_path.read_bytes()
    _edit_tensor(model_path, "model.norm.weight", shape=[32, 2])
    expect_error(model_path, ModelFormatError, "model.norm.weight", "shape [32, 2]", "[64]")
    model_path.write_bytes(raw)
    _edit_tensor(model_path, "model.norm.weight", type="u8", shape=[256])
    expect_error(model_path, ModelFormatError, "model.norm.weight", "type u8")


def test_missing_tensor(model_path: Path) -> None:
    _, header = read_parts(model_path)
    header["tensors"] = [t for t in header["tensors"] if t["name"] != "lm_head.weight"]
    rewrite(model_path, header)
    expect_error(model_path, ModelFormatError, "missing tensor", "lm_head.weight")


def test_bad_hparams(model_path: Path) -> None:
    raw = model_path.read_bytes()
    for key, value, words in [
        ("num_key_value_heads", 3, ("num_key_value_heads",)),
        ("hidden_size", 0, ("hidden_size",)),
        ("layer_types", ["sliding_attention"], ("layer_types",)),
        ("rope", {"type": "ntk"}, ("rope.type",)),
    ]:
        model_path.write_bytes(raw)
        _, header = read_parts(model_path)
        header["hparams"][key] = value
        rewrite(model_path, header)
        expect_error(model_path, ModelFormatError, "hparams", *words)


def test_bad_json_and_architecture(model_path: Path) -> None:
    raw = model_path.read_bytes()
    _, header = read_parts(model_path)
    header["architecture"] = "llama"
    rewrite(model_path, header)
    expect_error(model_path, ModelFormatError, "architecture", "llama")
    model_path.write_bytes(raw)
    fields, _ = read_parts(model_path)
    data = bytearray(raw)
    data[64] = ord("[")
    fields[2] = zlib.crc32(data[64 : 64 + fields[4]])
    data[:64] = F.PREAMBLE.pack(*fields)
    model_path.write_bytes(bytes(data))
    expect_error(model_path, ModelFormatError, "header", "JSON")


def test_bad_expert_span(model_path: Path) -> None:
    raw = model_path.read_bytes()
    _, header = read_parts(model_path)
    header["experts"][3]["length"] -= 4
    rewrite(model_path, header)
    expect_error(model_path, ModelFormatError, "experts", "layer 0 expert 3")
    model_path.write_bytes(raw)
    _, header = read_parts(model_path)
    del header["experts"][5]
    rewrite(model_path, header)
    expect_error(model_path, ModelFormatError, "no span for layer 1 expert 1")
    model_path.write_bytes(raw)
    _, header = read_parts(model_path)
    header["experts"][0]["offset"] += 64
    rewrite(model_path, header)
    expect_error(model_path, ModelFormatError, "experts[0].offset", "expert_alignment")


def test_missing_file(tmp_path: Path) -> None:
    from edgemoe.errors import ModelIOError

    with pytest.raises(ModelIOError, match="nope.bin"):
        F.read_model(tmp_path / "nope.bin")


def test_close_with_live_view(model_path: Path) -> None:
    mf = F.read_model(model_path)
    view = mf.tensor_bytes("tokenizer.ranks")
    mf.close()  # must not raise although a view is still alive
    assert bytes(view) == TOKENIZER[1]
    del view
    with pytest.raises(ValueError, match="closed"):
        mf.tensor_bytes("tokenizer.ranks")


def test_file_is_not_world_writable(model_path: Path) -> None:
    assert os.stat(model_path).st_mode & 0o002 == 0
