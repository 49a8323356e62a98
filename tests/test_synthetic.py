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
    with pytest.raises(SystemExit):   # the hf checkpoint's dense tensors are always bf16
        main(["--synthetic", "gpt-oss-tiny", "--synthetic-format", "hf", "--head", "mxfp4",
              "-o", str(tmp_path / "hf")])


@pytest.mark.parametrize("dense, head", [("mxfp4", None), ("q8_0", "mxfp4")])
def test_dense_and_head_types(tmp_path: Path, dense: str, head: str | None) -> None:
    from edgemoe_quantize import main

    out = tmp_path / "t.bin"
    args = ["--synthetic", "gpt-oss-tiny", "-o", str(out), "--dense", dense, "-q"]
    assert main(args + (["--head", head] if head else [])) == 0
    with read_model(out) as mf:
        assert mf.tensors["model.layers.0.self_attn.q_proj.weight"].type == dense
        assert mf.tensors["lm_head.weight"].type == (head or dense)
        assert mf.header["source"].get("head_type") == head
    with edgemoe.load(out) as m:
        assert np.isfinite(m.logits([1, 2, 3])).all()


# ================================================================================ routing skew


def router_counts(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int,
                  tokens: int = 4096) -> np.ndarray:
    """[layer, expert] top-k picks of ``tokens`` random normalized hidden states through
    each layer's (post-attention norm weight, router weight, router bias)."""
    rng = np.random.default_rng(123)
    out = []
    for g, w, b in layers:
        h = rng.standard_normal((tokens, w.shape[1])).astype(np.float32)
        logits = h / np.sqrt((h * h).mean(1, keepdims=True)) * g @ w.T + b
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        out.append(np.bincount(top.ravel(), minlength=w.shape[0]))
    return np.array(out)


def top_quarter_share(counts: np.ndarray) -> np.ndarray:
    """Per layer, the share of the picks taken by the most popular 25% of the experts."""
    c = -np.sort(-counts, axis=1)
    return c[:, : counts.shape[1] // 4].sum(1) / c.sum(1)


def bin_routers(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    with read_model(path) as mf:
        return [tuple(np.array(mf.tensor(f"model.layers.{n}.{t}")) for t in (
            "post_attention_layernorm.weight", "mlp.router.weight", "mlp.router.bias"))
            for n in range(mf.hparams["num_hidden_layers"])]


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgemoe_quantize.synthetic import write_synthetic

    path = tmp_path_factory.mktemp("skew") / "tiny-skew1.bin"
    write_synthetic("gpt-oss-tiny", path, seed=5, routing_skew=1.0, progress=False)
    return path


def test_routing_skew_zero_is_the_default(synth: Path, tmp_path: Path) -> None:
    from edgemoe_quantize import main
    from edgemoe_quantize.synthetic import write_synthetic

    write_synthetic("gpt-oss-tiny", tmp_path / "a.bin", seed=5, routing_skew=0, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == synth.read_bytes()
    assert main(["--synthetic", "gpt-oss-tiny", "--seed", "5", "--routing-skew", "0.0", "-q",
                 "-o", str(tmp_path / "b.bin")]) == 0
    assert (tmp_path / "b.bin").read_bytes() == synth.read_bytes()


def test_routing_skew_deterministic(synth: Path, skewed: Path, tmp_path: Path) -> None:
    """Same seed, same file; only the router biases (and the recorded skew) change."""
    from edgemoe_quantize import main

    assert main(["--synthetic", "gpt-oss-tiny", "--seed", "5", "--routing-skew", "1", "-q",
                 "-o", str(tmp_path / "a.bin")]) == 0
    assert (tmp_path / "a.bin").read_bytes() == skewed.read_bytes()
    with read_model(synth) as plain, read_model(skewed) as skew:
        assert skew.header["source"] == {**plain.header["source"], "routing_skew": 1.0}
        changed = {n for n, t in skew.tensors.items() if t.crc32 != plain.tensors[n].crc32}
        assert changed == {f"model.layers.{n}.mlp.router.bias" for n in range(4)}
    assert main(["--synthetic", "gpt-oss-tiny", "--seed", "6", "--routing-skew", "1", "-q",
                 "-o", str(tmp_path / "b.bin")]) == 0
    assert (tmp_path / "b.bin").read_bytes() != skewed.read_bytes()


def test_routing_skew_offsets(synth: Path, skewed: Path) -> None:
    """The bias grows by the offsets: one per expert rank, a different ranking per layer."""
    from edgemoe_quantize.synthetic import PRESETS, routing_skew_offsets

    offsets = routing_skew_offsets(PRESETS["gpt-oss-tiny"], 5, 1.0)
    plain, skew = bin_routers(synth), bin_routers(skewed)
    for n, off in enumerate(offsets):
        np.testing.assert_allclose(skew[n][2] - plain[n][2], off, atol=1e-6)
        assert np.allclose(np.sort(off), np.sort(offsets[0]))  # the same values ...
    assert len({int(np.argmax(off)) for off in offsets}) > 1  # ... on different experts
    assert not routing_skew_offsets(PRESETS["gpt-oss-tiny"], 5, 0.0)[0].any()


def test_routing_skew_one_skews_without_starving(synth: Path, skewed: Path) -> None:
    """tiny (E=8, k=4), 4096 tokens: the top 2 experts of a layer take 0.27-0.28 of the picks
    without skew, 0.45-0.47 with skew 1 (at most 0.5 possible); every expert is still
    picked hundreds of times (measured: at least 664)."""
    plain = top_quarter_share(router_counts(bin_routers(synth), 4))
    assert (plain < 0.33).all(), plain
    counts = router_counts(bin_routers(skewed), 4)
    share = top_quarter_share(counts)
    assert (share > 0.42).all(), share
    assert counts.min() > 200, counts
    # each layer's most picked expert is the one given the largest offset
    from edgemoe_quantize.synthetic import PRESETS, routing_skew_offsets

    offsets = routing_skew_offsets(PRESETS["gpt-oss-tiny"], 5, 1.0)
    assert [int(c.argmax()) for c in counts] == [int(o.argmax()) for o in offsets]


@pytest.mark.parametrize(("experts", "low", "high"), [(32, 0.60, 0.73), (128, 0.68, 0.80)])
def test_routing_skew_law_for_many_experts(experts: int, low: float, high: float) -> None:
    """The rank offsets on unit normal logits (the 20b / 120b expert counts, no file):
    skew 1 sends 0.67 / 0.75 of the picks to the top 25% and starves no expert."""
    from edgemoe_quantize.synthetic import skew_rank_offsets, skew_top_k_probabilities

    z = np.random.default_rng(0).standard_normal((20000, experts))
    logits = z + skew_rank_offsets(experts, 4, 1.0)
    top = np.argpartition(-logits, 3, axis=1)[:, :4]
    counts = np.bincount(top.ravel(), minlength=experts)
    assert low < top_quarter_share(counts[None])[0] < high
    assert counts.min() > 40  # target 0.0058 per token for E=128: 115 in 20000
    p = counts / len(z)
    target = skew_top_k_probabilities(experts, 4, 1.0)
    assert abs(target.sum() - 4) < 1e-9 and np.all(np.diff(target) <= 0)
    np.testing.assert_allclose(p[:4], target[:4], rtol=0.1)


@pytest.mark.parametrize("value", ["-1", "-0.5", "abc", "nan", "inf", ""])
def test_routing_skew_rejected(value: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe_quantize import main

    with pytest.raises(SystemExit):
        main(["--synthetic", "gpt-oss-tiny", f"--routing-skew={value}", "-q",
              "-o", str(tmp_path / "x.bin")])
    assert "argument --routing-skew" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_routing_skew_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe_quantize import main
    from edgemoe_quantize.synthetic import write_synthetic

    with pytest.raises(SystemExit):
        main([str(tmp_path), "--routing-skew", "1", "-o", str(tmp_path / "x.bin")])
    assert "argument --routing-skew: only applies with --synthetic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--synthetic", "gpt-oss-tiny", "--routing-skew", "-2", "-o",
              str(tmp_path / "x.bin")])  # a negative number, not an option
    assert "argument --routing-skew: must be a finite number >= 0" in capsys.readouterr().err
    for bad in (-1, float("nan"), "1", None, True):
        with pytest.raises(ValueError, match="--routing-skew must be a finite number >= 0"):
            write_synthetic("gpt-oss-tiny", tmp_path / "x.bin", routing_skew=bad,
                            progress=False)
    assert list(tmp_path.iterdir()) == []


def test_killed_conversion_leaves_no_model(tmp_path: Path) -> None:
    """kill -9 while a conversion writes (its temporary file exists), at several points:
    the destination never appears half-written (the writer renames a finished temporary file
    over it), and a run that did finish left a complete, verified model."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out.bin"
    cmd = [sys.executable, "-m", "edgemoe", "quantize", "--synthetic", "gpt-oss-tiny", "-o",
           str(out), "-q"]
    interrupted = 0
    for delay in (0.0, 0.02, 0.1, 0.3, 0.6):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".out.bin.") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "no temporary file seen"
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.bin.")]
        if out.exists():   # it finished before the kill: it must be whole
            check = subprocess.run([sys.executable, "-m", "edgemoe", "verify", str(out)],
                                   capture_output=True, text=True, timeout=300)
            assert check.returncode == 0, check.stderr
            out.unlink()
        else:
            interrupted += 1
        for p in leftovers:
            p.unlink()
    assert interrupted >= 1, "every run finished before its kill"


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    """A conversion onto a 4 MiB filesystem (a tmpfs mounted in a private mount namespace)
    fails naming the file and the cause, and leaves the directory empty."""
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not unshare or subprocess.run([unshare, "-rm", "mount", "-t", "tmpfs", "-o", "size=4m",
                                      "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs user and mount namespaces)")
    script = (f"mount -t tmpfs -o size=4m tmpfs {mnt} && "
              f"{sys.executable} -m edgemoe quantize --synthetic gpt-oss-tiny -o {mnt}/out.bin -q;"
              f" echo rc=$?; ls -A {mnt}")
    proc = subprocess.run([unshare, "-rm", "sh", "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert f"{mnt}/out.bin: cannot write: No space left on device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.split() == ["rc=1"], proc.stdout   # and nothing left in the directory
