"""A one-line progress report on stderr: percentage, bytes written, current tensor."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


class Progress:
    """Counts bytes written out of ``total`` and redraws a status line at most every
    ``interval`` seconds (a plain line every 10 % when the stream is not a terminal)."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None,
                 interval: float = 0.2) -> None:
        """Start reporting on ``stream`` (stderr by default) unless ``enabled`` is False."""
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._last_decile = -1
        self._start = time.monotonic()

    def advance(self, nbytes: int, tensor: str) -> None:
        """Record ``nbytes`` more written while converting ``tensor``."""
        self.done += nbytes
        if not self.enabled:
            return
        pct = 100.0 * self.done / self.total
        if self.tty:
            now = time.monotonic()
            if now - self._last >= self.interval or self.done >= self.total:
                self._last = now
                line = f"converting {pct:5.1f}% ({_gb(self.done)} / {_gb(self.total)}) {tensor}"
                self.stream.write("\r" + line[:120].ljust(120))
                self.stream.flush()
        elif int(pct // 10) > self._last_decile:
            self._last_decile = int(pct // 10)
            self.stream.write(f"converting {pct:5.1f}% ({_gb(self.done)} / {_gb(self.total)})\n")
            self.stream.flush()

    def finish(self) -> float:
        """End the status line; returns the seconds elapsed."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        return time.monotonic() - self._start
