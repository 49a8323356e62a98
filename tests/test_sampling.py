"""Sampler and text streaming: the parts of generation that need no model."""

from __future__ import annotations

import numpy as np
import pytest

from edgemoe.generate import TextStreamer
from edgemoe.sampling import Sampler, SamplingParams


def test_greedy_is_argmax_lowest_id_on_ties() -> None:
    logits = np.array([0.0, 3.0, 3.0, -1.0], np.float32)
    assert Sampler(SamplingParams(temperature=0.0)).sample(logits) == 1


def test_same_seed_same_tokens() -> None:
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    a = Sampler(SamplingParams(temperature=1.0), seed=7)
    b = Sampler(SamplingParams(temperature=1.0), seed=7)
    assert [a.sample(logits) for _ in range(50)] == [b.sample(logits) for _ in range(50)]


def test_top_k_restricts_to_k_best() -> None:
    logits = np.arange(100, dtype=np.float32)
    s = Sampler(SamplingParams(temperature=5.0, top_k=3), seed=1)
    assert {s.sample(logits) for _ in range(300)} <= {97, 98, 99}


def test_top_p_keeps_the_nucleus() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float64)).astype(np.float32)
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.7), seed=2)
    assert {s.sample(logits) for _ in range(300)} == {0, 1}


def test_sampling_follows_the_distribution() -> None:
    probs = np.array([0.6, 0.3, 0.1])
    s = Sampler(SamplingParams(temperature=1.0), seed=3)
    counts = np.bincount([s.sample(np.log(probs)) for _ in range(3000)], minlength=3) / 3000
    assert np.allclose(counts, probs, atol=0.04)


@pytest.mark.parametrize(
    "kw", [{"temperature": -1.0}, {"temperature": float("nan")}, {"top_p": 0.0}, {"top_k": -2}]
)
def test_bad_params_are_named(kw: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        SamplingParams(**kw)


def _streamer(pieces: list[bytes], stop: list[str]) -> tuple[str, bool]:
    st = TextStreamer(lambda t: pieces[t], stop)
    out = "".join(st.push(i) for i in range(len(pieces)))
    return out + st.flush(), st.stopped


def test_streamer_keeps_utf8_characters_whole() -> None:
    data = "héllo 世界".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]
    st = TextStreamer(lambda t: pieces[t])
    emitted = [st.push(i) for i in range(len(pieces))]
    assert "".join(emitted) + st.flush() == "héllo 世界"
    assert all("\ufffd" not in e for e in emitted)


def test_streamer_stops_before_stop_string_split_over_tokens() -> None:
    out, stopped = _streamer([b"Hello", b" wor", b"ld. EN", b"D more"], ["END"])
    assert (out, stopped) == ("Hello world. ", True)


def test_streamer_releases_a_false_alarm() -> None:
    out, stopped = _streamer([b"an E", b"N", b"d"], ["END"])
    assert (out, stopped) == ("an ENd", False)
