"""Token sampling from a row of logits: greedy, temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token.

    ``temperature == 0`` is greedy (argmax; ties go to the lowest id). ``top_k <= 0`` and
    ``top_p >= 1`` disable those filters.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


class Sampler:
    """Draws tokens with a private, seeded random generator (same seed, same tokens)."""

    def __init__(self, params: SamplingParams, seed: int | None = None) -> None:
        self.params = params
        self._rng = np.random.default_rng(seed)

    def sample(self, logits: np.ndarray) -> int:
        """Return the next token id for one row of logits (shape ``[n_vocab]``)."""
        p = self.params
        if p.temperature == 0.0:
            return int(np.argmax(logits))
        x = logits.astype(np.float64) / p.temperature
        if 0 < p.top_k < x.size:
            kth = np.partition(x, -p.top_k)[-p.top_k]
            x = np.where(x >= kth, x, -np.inf)
        x = x - np.max(x)
        probs = np.exp(x)
        probs /= probs.sum()
        if p.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cum, p.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self._rng.choice(probs.size, p=probs))
