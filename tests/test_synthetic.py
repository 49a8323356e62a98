"""Synthetic models (``edgemoe quantize --synthetic``): real shapes, random weights that run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgemoe
from edgemoe.format import read_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgemoe_quantize.synthetic import write_synthetic

    path = tmp_path_factory.mktemp("synth") / "tiny.bin"
    write_synthetic("gpt-oss-tiny", path, seed=5, progress=False)
    return path


def test_shapes_and_checksums(synth: Path) -> None:
    from edgemoe_quantize.synthetic import PRESETS

    with read_model(synth) as mf:
        mf.verify()
        assert mf.hparams == PRESETS["gpt-oss-tiny"]
        assert mf.tensors["model.layers.0.mlp.experts.7.gate_up_proj"].type == "mxfp4"
        assert mf.tensors["lm_head.weight"].shape == (201088, 64)
        assert mf.header["tokenizer"]["name"] == "o200k_harmony"


def test_same_seed_same_file(synth: Path, tmp_path: Path) -> None:
    from edgemoe_quantize.synthetic import write_synthetic

    write_synthetic("gpt-oss-tiny", tmp_path / "a.bin", seed=5, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == synth.read_bytes()
    write_synthetic("gpt-oss-tiny", tmp_path / "b.bin", seed=6, progress=False)
    assert (tmp_path / "b.bin").read_bytes() != synth.read_bytes()


def test_runs_finite_and_routing_spreads(synth: Path) -> None:
    with edgemoe.load(synth) as m:
        ids = np.random.default_rng(0).integers(0, 200000, 64)
        logits = m.logits(ids)
        assert np.isfinite(logits).all()
        # random weights: the logits are spread out, not collapsed onto one token
        assert len(set(logits.argmax(-1).tolist())) > 16
        text = m.chat([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0)
        assert text.usage is not None and text.usage.completion_tokens >= 1


def test_cli_errors(tmp_path: Path) -> None:
    from edgemoe_quantize import main

    assert main(["--synthetic", "gpt-oss-999b", "-o", str(tmp_path / "x.bin"), "-q"]) == 1
    assert not (tmp_path / "x.bin").exists()
    with pytest.raises(SystemExit):
        main(["-o", str(tmp_path / "x.bin")])  # neither a checkpoint nor --synthetic
