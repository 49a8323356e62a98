"""Write a large new file sequentially at disk speed: O_DIRECT, aligned buffers, one I/O thread.

On some machines (this project's VM among them) buffered writes cost the kernel several
seconds of CPU per GB, so a multi-GB file is bound by page-cache copying rather than by the
disk (measured here: 4.3 GB with ``dd``, 17 s buffered vs 4.5 s with ``oflag=direct``).
``DirectWriter`` bypasses the page cache where the OS and file system allow it: data is
gathered into two page-aligned buffers and each full buffer is written by a background
thread while the caller fills the other one. Where O_DIRECT is unavailable (not Linux,
tmpfs, ...) it falls back to ordinary writes with the same interface.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: O_DIRECT needs the buffer address, the length and the file offset aligned to the
#: device's logical block size; the page size covers every common device (512 / 4096).
ALIGN = mmap.PAGESIZE
BUFFER_BYTES = 16 << 20
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


class DirectWriter:
    """A new file written front to back; ``close()`` makes it durable (fsync).

    Args:
        path: the file to create (it must not exist).
        direct: try O_DIRECT (False: plain writes, e.g. to compare).
    """

    def __init__(self, path: str | os.PathLike[str], *, direct: bool = True) -> None:
        """Create ``path`` (OSError if it exists or cannot be created)."""
        self.path = Path(path)
        self.size = 0  # bytes accepted so far
        self._fd = self._open(direct and bool(_O_DIRECT))
        self._bufs = [mmap.mmap(-1, BUFFER_BYTES) for _ in range(2)]
        self._cur = 0  # index of the buffer being filled
        self._fill = 0  # bytes in it
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="direct-writer")
        self._pending: Future[None] | None = None

    def _open(self, direct: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        if direct:
            try:
                return os.open(self.path, flags | _O_DIRECT, 0o666)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: the file system refuses O_DIRECT
                    raise
        return os.open(self.path, flags, 0o666)

    @property
    def direct(self) -> bool:
        """Whether writes currently bypass the page cache."""
        return bool(fcntl.fcntl(self._fd, fcntl.F_GETFL) & _O_DIRECT) if _O_DIRECT else False

    def write(self, data: Any) -> int:
        """Append ``data`` (bytes or any contiguous buffer); returns its length in bytes."""
        view = memoryview(data).cast("B")
        done = 0
        while done < view.nbytes:
            n = min(view.nbytes - done, BUFFER_BYTES - self._fill)
            self._bufs[self._cur][self._fill : self._fill + n] = view[done : done + n]
            self._fill += n
            done += n
            if self._fill == BUFFER_BYTES:
                self._flush_buffer()
        self.size += done
        return done

    def _flush_buffer(self) -> None:
        """Hand the full buffer to the I/O thread and switch to the other one."""
        self._wait()
        buf = memoryview(self._bufs[self._cur])[: self._fill]
        self._pending = self._pool.submit(self._write_fully, buf)
        self._cur ^= 1
        self._fill = 0

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _write_fully(self, buf: memoryview) -> None:
        while buf.nbytes:
            try:
                n = os.write(self._fd, buf)
            except OSError as e:
                if e.errno != errno.EINVAL or not self.direct:
                    raise
                self._drop_direct()  # accepted at open, refused on write: write normally
                continue
            buf = buf[n:]

    def _drop_direct(self) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~_O_DIRECT)

    def close(self) -> None:
        """Write what is buffered, cut the file to its length, fsync and close."""
        if self._fd < 0:
            return
        try:
            self._wait()
            tail = self._fill
            if tail:
                padded = -(-tail // ALIGN) * ALIGN  # O_DIRECT writes whole blocks
                self._bufs[self._cur][tail:padded] = bytes(padded - tail)
                self._write_fully(memoryview(self._bufs[self._cur])[:padded])
                os.ftruncate(self._fd, self.size)
            os.fsync(self._fd)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop without flushing (after an error); the file is left as it is."""
        if self._fd < 0:
            return
        self._pool.shutdown(wait=True)
        os.close(self._fd)
        self._fd = -1
        for b in self._bufs:
            try:
                b.close()
            except BufferError:  # a view is still alive somewhere; GC frees the mapping
                pass

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
