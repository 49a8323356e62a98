"""The Python API on random models: sessions, generation, chat, errors, lifecycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgemoe
from edgemoe.chat import ChatResult, ContentDelta, Done, ReasoningDelta


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    with edgemoe.load(tiny_model_path, n_ctx=256) as m:
        yield m


@pytest.fixture(scope="module")
def chatm(chat_model_path: Path):
    with edgemoe.load(chat_model_path, n_ctx=512) as m:
        yield m


IDS = [5, 17, 400, 3, 99, 250, 7, 7, 7, 300, 42, 1, 0, 511, 128, 64, 32, 16, 8, 4]


def test_logits_shape_and_finite(tiny) -> None:
    out = tiny.logits(IDS)
    assert out.shape == (len(IDS), 512) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_chunking_gives_the_same_logits(tiny) -> None:
    full = tiny.logits(IDS)
    s = tiny.session()
    one = np.concatenate([s.eval([t]) for t in IDS])
    s.reset()
    chunks = np.concatenate([s.eval(IDS[:3]), s.eval(IDS[3:10]), s.eval(IDS[10:])])
    # a batch gives exactly the numbers of its tokens one at a time (csrc/forward.c)
    np.testing.assert_array_equal(one, full)
    np.testing.assert_array_equal(chunks, full)
    assert s.n_past == len(IDS)


def test_threads_and_batch_boundaries_do_not_change_logits(tiny_model_path: Path) -> None:
    """Rows split between threads and prompts cut into 512-token batches: same numbers."""
    ids = [int(t) for t in np.random.default_rng(1).integers(0, 512, 600)]
    logits = {}
    for threads in (1, 3):
        with edgemoe.load(tiny_model_path, n_ctx=640, threads=threads) as m:
            logits[threads] = m.logits(ids)
            s = m.session()
            pieces = [s.eval(ids[:1]), s.eval(ids[1:514]), s.eval(ids[514:515]), s.eval(ids[515:])]
            np.testing.assert_array_equal(np.concatenate(pieces), logits[threads])
    np.testing.assert_array_equal(logits[1], logits[3])


def test_logits_modes(tiny) -> None:
    s = tiny.session()
    last = s.eval(IDS[:10], logits="last")
    assert last.shape == (1, 512)
    none = s.eval(IDS[10:], logits="none")
    assert none.shape == (0, 512) and s.n_past == len(IDS)
    np.testing.assert_allclose(last[0], tiny.logits(IDS[:10])[-1], atol=1e-5)
    assert s.eval([]).shape == (0, 512)
    with pytest.raises(ValueError, match="logits"):
        s.eval([1], logits="some")


def test_truncate_then_continue_matches(tiny) -> None:
    full = tiny.logits(IDS)
    s = tiny.session()
    s.eval(IDS)
    s.truncate(12)
    assert s.n_past == 12 and s.tokens == IDS[:12]
    again = s.eval(IDS[12:])
    np.testing.assert_allclose(again, full[12:], atol=1e-5 * np.abs(full).max())
    with pytest.raises(ValueError, match="truncate|n_past"):
        s.truncate(1000)


def test_bad_token_is_named_and_session_survives(tiny) -> None:
    s = tiny.session()
    s.eval([1, 2])
    with pytest.raises(edgemoe.InvalidArgumentError, match="512"):
        s.eval([3, 512])
    with pytest.raises(edgemoe.InvalidArgumentError, match="-1"):
        s.eval([-1])
    assert s.n_past == 2
    np.testing.assert_allclose(s.eval([3])[0], tiny.logits([1, 2, 3])[-1], atol=1e-5)


def test_context_full_names_both_numbers(tiny) -> None:
    s = tiny.session(n_ctx=16)
    s.eval(list(range(10)))
    with pytest.raises(edgemoe.ContextFullError, match=r"16") as ei:
        s.eval(list(range(10)))
    assert "10" in str(ei.value)
    assert s.n_past == 10


def test_load_arguments_are_checked(tiny_model_path: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        edgemoe.load(tiny_model_path, threads=0)
    with pytest.raises(ValueError, match="n_ctx"):
        edgemoe.load(tiny_model_path, n_ctx=-5)


def test_closed_model_raises_not_crashes(tiny_model_path: Path) -> None:
    m = edgemoe.load(tiny_model_path)
    s = m.session()
    m.close()
    m.close()
    with pytest.raises(edgemoe.EdgemoeError, match="closed"):
        s.eval([1])
    with pytest.raises(edgemoe.EdgemoeError, match="closed"):
        m.logits([1])


def test_model_without_tokenizer_says_so(tiny) -> None:
    with pytest.raises(edgemoe.TokenizerError, match="no tokenizer"):
        _ = tiny.tokenizer


def test_greedy_generate_is_argmax_loop(tiny) -> None:
    prompt = [1, 2, 3, 4]
    s = tiny.session()
    logits = s.eval(prompt)[-1]
    expect = []
    for _ in range(8):
        t = int(np.argmax(logits))
        expect.append(t)
        logits = s.eval([t])[-1]
    from edgemoe.generate import generate_tokens
    from edgemoe.sampling import Sampler, SamplingParams

    got = list(
        generate_tokens(
            tiny.session(),
            prompt,
            max_tokens=8,
            sampler=Sampler(SamplingParams(temperature=0)),
            stop_tokens=set(),
        )
    )
    assert got == expect


def test_tokenizer_is_o200k_harmony(chatm) -> None:
    enc = chatm.tokenizer
    assert enc.n_vocab == 201088
    assert enc.encode("Hello, world!") == [13225, 11, 2375, 0]
    assert chatm.encode("<|start|>user<|message|>Hi<|end|>") == [
        200006,
        1428,
        200008,
        12194,
        200007,
    ]


def test_generate_text_and_stream_agree(chatm) -> None:
    kw = dict(max_tokens=12, temperature=0.8, top_p=0.95, seed=123)
    text = chatm.generate("The quick brown fox", **kw)
    pieces = list(chatm.generate("The quick brown fox", stream=True, **kw))
    assert isinstance(text, str) and text == "".join(pieces)
    assert text == chatm.generate("The quick brown fox", **kw)  # same seed, same text


def test_generate_stop_string(chatm) -> None:
    full = chatm.generate("Once", max_tokens=16, temperature=0)
    assert len(full) > 2
    stop = full[1:3]
    cut = chatm.generate("Once", max_tokens=16, temperature=0, stop=[stop])
    assert stop not in cut and full.startswith(cut)


def test_generate_from_token_ids(chatm) -> None:
    a = chatm.generate(chatm.encode("Hi there"), max_tokens=5, temperature=0)
    b = chatm.generate("Hi there", max_tokens=5, temperature=0)
    assert a == b


def test_chat_returns_parts_and_stream_matches(chatm) -> None:
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    res = chatm.chat(msgs, max_tokens=20, temperature=0)
    assert isinstance(res, ChatResult)
    assert res.usage is not None and res.usage.completion_tokens == len(res.tokens) <= 20
    assert res.usage.prompt_tokens > 10
    events = list(chatm.chat(msgs, max_tokens=20, temperature=0, stream=True))
    assert isinstance(events[-1], Done)
    streamed = "".join(e.text for e in events if isinstance(e, ContentDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert events[-1].result.content == streamed == res.content
    assert events[-1].result.reasoning == reasoning == res.reasoning
    assert events[-1].result.tokens == res.tokens


def test_chat_prompt_is_harmony(chatm) -> None:
    from edgemoe.harmony import encode_chat

    msgs = [{"role": "user", "content": "Hello"}]
    ids = encode_chat(chatm.tokenizer, msgs, reasoning_effort="low")
    text = chatm.decode(ids)
    assert text.startswith("<|start|>system<|message|>") and text.endswith("<|start|>assistant")
    assert "Reasoning: low" in text


def test_chat_turn_reuses_the_prefix_with_the_same_numbers(chat_model_path: Path) -> None:
    """A second turn keeps the KV cache of what it shares with the first (usage.reused_tokens)
    and gives exactly what a fresh model gives for the whole conversation."""
    turn1 = [{"role": "user", "content": "Name a colour."}]
    with edgemoe.load(chat_model_path, n_ctx=512) as m:
        first = m.chat(turn1, max_tokens=6, temperature=0)
        turn2 = turn1 + [{"role": "assistant", "content": first.content},
                         {"role": "user", "content": "Another one?"}]
        second = m.chat(turn2, max_tokens=6, temperature=0)
        assert second.usage is not None and first.usage is not None
        assert second.usage.reused_tokens >= first.usage.prompt_tokens
    with edgemoe.load(chat_model_path, n_ctx=512) as fresh:
        again = fresh.chat(turn2, max_tokens=6, temperature=0)
        assert again.usage is not None and again.usage.reused_tokens == 0
    assert again.tokens == second.tokens


def test_reused_prefix_logits_equal_full_evaluation(tiny) -> None:
    a, b = IDS, IDS[:12] + [9, 8, 7, 6]
    s = tiny.session()
    s.eval(a)
    keep = s.common_prefix(b)
    assert keep == 12
    s.truncate(keep)
    np.testing.assert_array_equal(s.eval(b[keep:]), tiny.logits(b)[keep:])
