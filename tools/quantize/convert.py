"""Convert a gpt-oss checkpoint directory to one model.bin (``convert``)."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe import __version__
from edgemoe.errors import ConversionError, ModelFormatError
from edgemoe.format import BLOCK_TYPES, DENSE_TYPES, TensorSpec
from edgemoe.quant import QK
from edgemoe.writer import (
    RANKS_TENSOR,
    ModelWriter,
    default_tensor_type,
    make_meta,
    tokenizer_header,
)

from .encode import tensor_chunks
from .hf import ModelConfig, load_config
from .progress import Progress
from .safetensors_io import Checkpoint
from .sources import DenseExpertSource, Mxfp4Source, Source, plan_sources
from .tokenizer_source import find_tokenizer

CONVERTER = f"edgemoe {__version__}"


@dataclass
class ConvertReport:
    """What ``convert`` wrote."""

    out_path: Path
    file_length: int
    n_tensors: int
    n_experts: int
    dense_type: str
    experts: str  # "mxfp4 (copied)", "dense -> mxfp4" or "mixed"
    layout: str  # "hf" or "original"
    tokenizer: str | None
    seconds: float
    warnings: list[str] = field(default_factory=list)
    head_type: str | None = None  # lm_head's type when it differs from dense_type's rule


def _experts_kind(sources: dict[str, Source]) -> str:
    kinds = {type(s) for s in sources.values()} & {Mxfp4Source, DenseExpertSource}
    if kinds == {Mxfp4Source}:
        return "mxfp4 (copied)"
    if kinds == {DenseExpertSource}:
        return "dense -> mxfp4"
    return "mixed"


def _warn(msg: str, report: list[str]) -> None:
    report.append(msg)
    warnings.warn(msg, stacklevel=3)


def _tokenizer(hf_dir: Path, tokenizer: str | os.PathLike[str] | bool | None,
               mc: ModelConfig, notes: list[str]) -> tuple[dict[str, Any] | None, bytes | None]:
    if tokenizer is False:
        return None, None
    override = None if tokenizer in (None, True) else Path(tokenizer)  # type: ignore[arg-type]
    spec = find_tokenizer(hf_dir, override)
    if spec is None:
        _warn(f"{hf_dir}: no tokenizer found (no tokenizer.json or .tiktoken file); the model.bin "
              "will have none (use --tokenizer to add one)", notes)
        return None, None
    vocab = mc.hparams["vocab_size"]
    if spec.n_vocab > vocab:
        raise ConversionError(f"{override or hf_dir / 'tokenizer.json'}: tokenizer n_vocab "
                              f"{spec.n_vocab} > the model's vocab_size {vocab}")
    return tokenizer_header(spec), bytes(spec.ranks_blob())


def convert(
    hf_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    dense: str = "q8_0",
    head: str | None = None,
    tokenizer: str | os.PathLike[str] | bool | None = None,
    progress: bool = True,
) -> ConvertReport:
    """Convert the gpt-oss checkpoint in ``hf_dir`` to ``out_path`` (written atomically).

    Args:
        hf_dir: directory with config.json and model.safetensors (or shards + index).
        out_path: the model.bin to write; left untouched if conversion fails.
        dense: type of the embedding, attention and lm_head matrices: q8_0, bf16, f32 or
            mxfp4.
        head: type of lm_head alone, overriding ``dense`` (None: ``dense``); e.g. mxfp4,
            which halves the bytes the output head reads per token against q8_0.
        tokenizer: a tokenizer.json / .tiktoken[.gz] path overriding the checkpoint's;
            False to embed none; None to use ``hf_dir/tokenizer.json`` if present.
        progress: print a progress line on stderr.

    Raises:
        ConversionError: missing/foreign/corrupt input (the message names file and field).
    """
    for what, typ in (("dense", dense), ("head", head)):
        if typ is not None and typ not in DENSE_TYPES:
            raise ConversionError(f"{what} type {typ!r} is not one of {', '.join(DENSE_TYPES)}")
    src_dir, out = Path(hf_dir), Path(out_path)
    if not out.parent.is_dir():
        raise ConversionError(f"{out}: output directory {out.parent} does not exist")
    if out.is_dir():
        raise ConversionError(f"{out}: is a directory; give the model.bin file to write")
    notes: list[str] = []
    mc = load_config(src_dir)
    tok_header, ranks = _tokenizer(src_dir, tokenizer, mc, notes)
    with Checkpoint(src_dir) as ckpt:
        sources, unused = plan_sources(ckpt, mc)
        if unused:
            _warn(f"{src_dir}: ignored {len(unused)} unknown tensor(s): "
                  f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}", notes)
        specs = [_spec(name, src, dense, head) for name, src in sources.items()]
        if ranks is not None:
            specs.append(TensorSpec(RANKS_TENSOR, "u8", (len(ranks),)))
        source_info = {"converter": CONVERTER, "dense_type": dense,
                       **({"head_type": head} if head is not None else {}),
                       "experts": _experts_kind(sources), "layout": mc.layout,
                       "checkpoint": src_dir.resolve().name}
        meta = make_meta(mc.hparams, tok_header, source_info)
        try:
            writer = ModelWriter(out, meta, specs)
        except ModelFormatError as e:
            raise ConversionError(str(e)) from e
        bar = Progress(sum(t.length for t in writer.tensors.values()), enabled=progress)
        try:
            with writer:
                for info in sorted(writer.tensors.values(), key=lambda t: t.offset):
                    if info.name == RANKS_TENSOR:
                        chunks: Any = [ranks]
                    else:
                        chunks = tensor_chunks(ckpt, info.name, sources[info.name], info.type)
                    writer.write_tensor(info.name, _counted(chunks, bar, info.name))
        finally:
            seconds = bar.finish()
    return ConvertReport(out, writer.file_length, len(writer.tensors), len(writer.spans),
                         dense, source_info["experts"], mc.layout,
                         tok_header["name"] if tok_header else None, seconds, notes, head)


def _spec(name: str, src: Source, dense: str, head: str | None) -> TensorSpec:
    typ, shape = default_tensor_type(name, dense, head), _out_shape(src)
    if typ in BLOCK_TYPES and shape[-1] % QK:
        entry = src.blocks if isinstance(src, Mxfp4Source) else src.entry
        raise ConversionError(
            f"{entry.path}: tensor {entry.name!r}: dimension {shape[-1]} of {name} is not a "
            f"multiple of {QK}, which {typ} needs (try --dense bf16)"
        )
    return TensorSpec(name, typ, shape)


def _out_shape(src: Source) -> tuple[int, ...]:
    if isinstance(src, Mxfp4Source):
        _, rows, groups, _ = src.blocks.shape
        return (rows, groups * 32)
    if isinstance(src, DenseExpertSource):
        _, n_in, n_out = src.entry.shape
        return (n_out, n_in)
    return src.shape


def _counted(chunks: Any, bar: Progress, name: str) -> Any:
    for c in chunks:
        yield c
        bar.advance(c.nbytes if isinstance(c, np.ndarray) else len(c), name)


def print_report(r: ConvertReport, stream: Any = None) -> None:
    """One-paragraph summary of a conversion."""
    s = stream or sys.stderr
    print(f"wrote {r.out_path}: {r.file_length / 1e9:.3f} GB, {r.n_tensors} tensors, "
          f"{r.n_experts} expert spans, dense {r.dense_type}"
          f"{f', head {r.head_type}' if r.head_type else ''}, experts {r.experts}, "
          f"tokenizer {r.tokenizer or 'none'}, {r.seconds:.1f} s", file=s)
