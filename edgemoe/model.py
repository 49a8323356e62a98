"""The Python face of the C core: :class:`Model` (weights, tokenizer) and :class:`Session`
(one KV cache). Text generation lives in :mod:`edgemoe.generate`, chat in :mod:`edgemoe.chat`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgemoe import _native
from edgemoe._native import ffi, lib
from edgemoe.errors import EdgemoeError, InvalidArgumentError, TokenizerError

if TYPE_CHECKING:
    import tiktoken

    from edgemoe.budget import ModelStats
    from edgemoe.chat import ChatResult

DEFAULT_N_CTX = 4096
_ERR_LEN = 1024

LogitsMode = Literal["all", "last", "none"]
_LOGITS_MODES = {"none": 0, "last": 1, "all": 2}


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, read from its header by the core."""

    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_expert: int
    n_expert_used: int
    sliding_window: int
    n_ctx_train: int
    file_size: int
    expert_bytes: int
    dense_bytes: int


#: How the integer (q8_0, mxfp4) kernels round activations, by name: bits per value.
ACTIVATION_BITS = {"int16": 16, "int8": 8}


def _default_threads() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # pragma: no cover - psutil missing or unsupported platform
        n = None
    return max(1, n or os.cpu_count() or 1)


class Model:
    """A model.bin opened for inference (see :func:`edgemoe.load`).

    The weights are memory-mapped read-only: experts are read from disk only when a token
    routes to them. A Model may be shared by threads; each thread should use its own
    :class:`Session` (the convenience methods ``logits``/``generate``/``chat`` serialize on
    an internal lock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
        verify: bool = False,
        memory_budget: str | int | None = None,
        policy: str = "lfu",
        prefetch: bool = True,
        io_threads: int = 2,
        activations: str = "int16",
    ) -> None:
        from edgemoe.budget import POLICIES, parse_size

        self.path = Path(path)
        budget = 0 if memory_budget is None else parse_size(memory_budget)
        if policy not in POLICIES:
            raise InvalidArgumentError(f"policy must be one of {sorted(POLICIES)}, got {policy!r}")
        if activations not in ACTIVATION_BITS:
            raise InvalidArgumentError(
                f"activations must be one of {sorted(ACTIVATION_BITS)}, got {activations!r}")
        if not 1 <= io_threads <= 64:
            raise InvalidArgumentError(f"io_threads must be in 1..64, got {io_threads}")
        if threads is not None and threads < 1:
            raise InvalidArgumentError(f"threads must be >= 1, got {threads}")
        if n_ctx is not None and n_ctx < 1:
            raise InvalidArgumentError(f"n_ctx must be >= 1, got {n_ctx}")
        self.threads = threads or _default_threads()
        self.activations = activations
        self._ptr: Any = ffi.NULL
        self._lock = threading.RLock()
        self._tokenizer: tiktoken.Encoding | None = None
        self._session: Session | None = None
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()

        err = ffi.new("char[]", _ERR_LEN)
        out = ffi.new("edgemoe_model **")
        params = ffi.new("edgemoe_model_params *", {
            "memory_budget": budget, "policy": POLICIES[policy], "io_threads": io_threads,
            "no_predict": 0 if prefetch else 1, "activation_bits": ACTIVATION_BITS[activations]})
        rv = lib.edgemoe_model_open_params(os.fsencode(self.path), params, out, err, _ERR_LEN)
        _native.check(rv, ffi.string(err).decode("utf-8", "replace"))
        self._ptr = out[0]

        from edgemoe.format import read_model

        # The Python reader re-checks the header and gives access to the tokenizer blob.
        self._file = read_model(self.path)
        if verify:
            self._file.verify()
        self.header: dict[str, Any] = self._file.header
        self.info = self._read_info()
        self.n_ctx = min(n_ctx or DEFAULT_N_CTX, self.info.n_ctx_train)
        hparams = self.header.get("hparams", {})
        self.eos_token_ids: list[int] = list(hparams.get("eos_token_ids", []))

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Free the model and every session made from it. Safe to call twice."""
        with self._lock:
            for s in list(self._sessions):
                s._free()
            if self._ptr != ffi.NULL:
                lib.edgemoe_model_free(self._ptr)
                self._ptr = ffi.NULL
            if getattr(self, "_file", None) is not None:
                self._file.close()
                self._file = None  # type: ignore[assignment]
            # A Model and its shared Session refer to each other, so the object itself may
            # wait for the cycle collector: let go of the large parts now.
            self._tokenizer = None
            self._session = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _handle(self) -> Any:
        if self._ptr == ffi.NULL:
            raise EdgemoeError(f"{self.path}: model is closed")
        return self._ptr

    def stats(self) -> ModelStats:
        """The expert cache's counters since the model was opened, and the process's peak RSS
        (see :class:`edgemoe.budget.ModelStats`)."""
        from edgemoe.budget import ModelStats, peak_rss_bytes

        st = ffi.new("edgemoe_model_stats *")
        _native.check(lib.edgemoe_model_get_stats(self._handle(), st), "stats")
        fields = {f: getattr(st, f) for f in (
            "expert_uses", "hits", "misses", "bytes_read", "evictions", "predicted",
            "predicted_used", "budget_bytes", "dense_resident_bytes", "slot_bytes", "n_slots",
            "resident_expert_bytes", "io_wait_s")}
        return ModelStats(**fields, peak_rss_bytes=peak_rss_bytes())

    def _read_info(self) -> ModelInfo:
        c = ffi.new("edgemoe_model_info *")
        _native.check(lib.edgemoe_model_get_info(self._handle(), c), "edgemoe_model_get_info")
        return ModelInfo(**{f: int(getattr(c, f)) for f in ModelInfo.__dataclass_fields__})

    # ----------------------------------------------------------------- tokenizer
    @property
    def tokenizer(self) -> tiktoken.Encoding:
        """The model's tokenizer as a ``tiktoken.Encoding``, built from the ranks stored in
        model.bin (no network, no cache files)."""
        if self._tokenizer is None:
            tok = self.header.get("tokenizer")
            if not tok:
                raise TokenizerError(f"{self.path}: model.bin has no tokenizer")
            from edgemoe.tokenizer import encoding_from_model_header

            blob = self._file.tensor_bytes(tok["ranks_tensor"])
            self._tokenizer = encoding_from_model_header(tok, blob)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Encode text; special-token text such as ``<|start|>`` becomes its special id."""
        return self.tokenizer.encode(text, allowed_special="all")

    def decode(self, tokens: Sequence[int]) -> str:
        """Decode ids to text (invalid UTF-8 is replaced)."""
        return self.tokenizer.decode(list(tokens), errors="replace")

    # ----------------------------------------------------------------- evaluation
    def session(self, n_ctx: int | None = None) -> Session:
        """A new, empty session (its own KV cache of ``n_ctx`` positions)."""
        s = Session(self, n_ctx or self.n_ctx)
        self._sessions.add(s)
        return s

    def _shared_session(self) -> Session:
        if self._session is None or self._session._ptr == ffi.NULL:
            self._session = self.session()
        return self._session

    def logits(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits of ``tokens`` evaluated from position 0: float32 ``[len(tokens), n_vocab]``.

        The same numbers as a fresh session's :meth:`Session.eval`.
        """
        with self._lock:
            s = self._shared_session()
            s.reset()
            return s.eval(tokens)

    def generate(
        self,
        prompt: str | Sequence[int],
        *,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
    ) -> str | Iterator[str]:
        """Continue ``prompt`` (text, or token ids) with up to ``max_tokens`` new tokens.

        ``temperature=0`` is greedy. Generation ends at the model's end-of-sequence tokens or
        when the text would contain one of the ``stop`` strings (the stop string itself is not
        returned). Returns the new text, or with ``stream=True`` an iterator of text pieces.
        """
        from edgemoe.generate import generate_text

        it = generate_text(
            self,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stop,
        )
        return it if stream else "".join(it)

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        reasoning_effort: Literal["low", "medium", "high"] = "low",
        tools: Sequence[dict[str, Any]] | None = None,
        max_tokens: int = 1024,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stream: bool = False,
    ) -> ChatResult | Iterator[Any]:
        """Chat in the harmony format: render ``messages`` (OpenAI-style dicts), generate the
        assistant's turn, and split it into the final answer and the reasoning.

        Returns a :class:`edgemoe.chat.ChatResult` (``content``, ``reasoning``,
        ``tool_calls``, ``usage``), or with ``stream=True`` an iterator of
        :mod:`edgemoe.chat` events.
        """
        from edgemoe.chat import chat

        return chat(
            self,
            messages,
            reasoning_effort=reasoning_effort,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stream=stream,
        )


class Session:
    """One conversation's state: a KV cache of up to ``n_ctx`` positions.

    ``eval`` appends tokens at the next positions and returns their logits; any chunking of
    the same tokens gives the same numbers. Use one Session per thread.
    """

    def __init__(self, model: Model, n_ctx: int) -> None:
        self.model = model
        self._ptr: Any = ffi.NULL
        self._lock = threading.Lock()
        self.tokens: list[int] = []
        err = ffi.new("char[]", _ERR_LEN)
        out = ffi.new("edgemoe_context **")
        rv = lib.edgemoe_context_new(model._handle(), n_ctx, model.threads, out, err, _ERR_LEN)
        _native.check(rv, ffi.string(err).decode("utf-8", "replace"))
        self._ptr = out[0]
        self.n_ctx = int(lib.edgemoe_context_n_ctx(self._ptr))

    def _free(self) -> None:
        if self._ptr != ffi.NULL:
            lib.edgemoe_context_free(self._ptr)
            self._ptr = ffi.NULL

    def close(self) -> None:
        """Free the KV cache now (it is also freed with the model)."""
        with self._lock:
            self._free()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:
            pass

    def _handle(self) -> Any:
        if self._ptr == ffi.NULL:
            raise EdgemoeError("session is closed")
        return self._ptr

    @property
    def n_past(self) -> int:
        """Number of positions in the KV cache."""
        return int(lib.edgemoe_context_n_past(self._handle()))

    def eval(self, tokens: Sequence[int] | np.ndarray, *, logits: LogitsMode = "all") -> np.ndarray:
        """Append ``tokens`` and return their logits.

        Args:
            tokens: token ids (each in ``[0, n_vocab)``).
            logits: ``"all"`` → float32 ``[len(tokens), n_vocab]``; ``"last"`` → ``[1, n_vocab]``
                (only the last token's row is computed; ``[0, n_vocab]`` for no tokens);
                ``"none"`` → ``[0, n_vocab]`` (fill the cache only).

        Raises:
            InvalidArgumentError: a token id is out of range (the session is unchanged).
            ContextFullError: the tokens do not fit in ``n_ctx`` (the session is unchanged).
        """
        if logits not in _LOGITS_MODES:
            raise InvalidArgumentError(f"logits must be 'all', 'last' or 'none', got {logits!r}")
        arr = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64).reshape(-1))
        n_vocab = self.model.info.n_vocab
        n = int(arr.size)
        if n and (arr.min() < 0 or arr.max() >= n_vocab):
            bad = int(np.flatnonzero((arr < 0) | (arr >= n_vocab))[0])
            raise InvalidArgumentError(
                f"token id {int(arr[bad])} at index {bad} is out of range [0, {n_vocab})"
            )
        ids = arr.astype(np.int32)
        rows = {"all": n, "last": min(n, 1), "none": 0}[logits]
        out = np.empty((rows, n_vocab), dtype=np.float32)
        if n == 0:
            return out
        with self._lock:
            ptr = self._handle()
            rv = lib.edgemoe_context_eval(
                ptr,
                ffi.cast("const int32_t *", ffi.from_buffer(ids)),
                n,
                ffi.cast("float *", ffi.from_buffer(out)) if rows else ffi.NULL,
                _LOGITS_MODES[logits],
            )
            _native.check(rv, ffi.string(lib.edgemoe_context_error(ptr)).decode("utf-8", "replace"))
            self.tokens.extend(int(t) for t in ids)
        return out

    def truncate(self, n: int) -> None:
        """Forget every position ``>= n`` (``0 <= n <= n_past``)."""
        with self._lock:
            ptr = self._handle()
            rv = lib.edgemoe_context_truncate(ptr, int(n))
            _native.check(rv, ffi.string(lib.edgemoe_context_error(ptr)).decode("utf-8", "replace"))
            del self.tokens[int(n) :]

    def reset(self) -> None:
        """Empty the KV cache."""
        self.truncate(0)

    def stats(self) -> ModelStats:
        """The expert cache's counters: one cache serves all of a model's sessions, so these are
        :meth:`Model.stats` (take differences around a call to see one session's share)."""
        return self.model.stats()

    def common_prefix(self, tokens: Sequence[int]) -> int:
        """Length of the longest prefix shared by the cached tokens and ``tokens``."""
        n = 0
        for a, b in zip(self.tokens, tokens, strict=False):
            if a != b:
                break
            n += 1
        return n
