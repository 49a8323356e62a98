"""Memory budgets: parsing sizes such as ``"6G"``, and the expert cache's counters
(:class:`ModelStats`, from :meth:`edgemoe.Model.stats`). Design: docs/MEMORY.md."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgemoe.bench import peak_rss_bytes as peak_rss_bytes
from edgemoe.errors import InvalidArgumentError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
POLICIES = {"lfu": 0, "lru": 1}


def parse_size(value: str | int, what: str = "memory_budget") -> int:
    """Bytes from an int or a string like ``"6G"``, ``"512MiB"``, ``"1.5GB"`` (binary units:
    K = 1024). Raises InvalidArgumentError naming ``what`` otherwise."""
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be a size such as '6G', got {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise InvalidArgumentError(
                f"{what} {value!r} is not a size: use bytes or a number with K, M, G or T "
                "(binary units), e.g. '6G' or '512M'")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise InvalidArgumentError(f"{what} must be positive, got {value!r}")
    return n


def format_size(n: float) -> str:
    """``n`` bytes as e.g. ``'1.50 GiB'``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class ModelStats:
    """What a model's expert cache did since it was opened (counts are cumulative).

    Without a memory budget only ``expert_uses`` is counted (the page cache decides what
    stays resident) and the cache fields are 0. ``hits + misses == expert_uses`` under a
    budget: a use is one (layer, expert) chosen for a token in generation, or for a whole batch
    of prompt tokens.
    """

    expert_uses: int
    hits: int
    misses: int
    bytes_read: int            #: read from the model file by the cache (experts and dense weights)
    evictions: int
    predicted: int             #: experts read ahead by next-layer prediction
    predicted_used: int        #: ... of which that layer's router did choose
    budget_bytes: int          #: 0: no budget
    dense_resident_bytes: int  #: non-expert weights held in memory under the budget
    slot_bytes: int
    n_slots: int               #: experts held at once
    resident_expert_bytes: int
    io_wait_s: float           #: time the forward pass waited for expert reads
    peak_rss_bytes: int        #: the process's peak resident set (VmHWM)

    @property
    def hit_rate(self) -> float:
        """hits / expert uses (0 when nothing was counted)."""
        return self.hits / self.expert_uses if self.expert_uses else 0.0

    @property
    def resident_hit_rate(self) -> float:
        """Uses found resident without the prediction's help: (hits - predicted_used) / uses."""
        return (self.hits - self.predicted_used) / self.expert_uses if self.expert_uses else 0.0

    @property
    def prediction_accuracy(self) -> float:
        """Share of predicted experts the next layer did use."""
        return self.predicted_used / self.predicted if self.predicted else 0.0

    def summary(self) -> str:
        """One line for ``--stats``."""
        if not self.budget_bytes:
            return (f"experts: {self.expert_uses} uses (no budget: plain mmap); "
                    f"peak RSS {format_size(self.peak_rss_bytes)}")
        return (f"budget {format_size(self.budget_bytes)}: {self.n_slots} expert slots + "
                f"{format_size(self.dense_resident_bytes)} dense; experts {self.expert_uses} uses, "
                f"hit rate {self.hit_rate:.1%} ({self.resident_hit_rate:.1%} without prediction), "
                f"{self.evictions} evictions, "
                f"read {format_size(self.bytes_read)}, waited {self.io_wait_s:.2f} s; prediction "
                f"{self.predicted_used}/{self.predicted} used; "
                f"peak RSS {format_size(self.peak_rss_bytes)}")
