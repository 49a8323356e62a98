#!/usr/bin/env python3
"""How engines behave under a real memory limit: each run inside a memory cgroup of its own.

    sudo python bench/memlimit.py MODEL.bin [--gguf MODEL.gguf --llama-cpp LLAMA_CPP_DIR] \\
        --limits 16G,8G,4G [--budget-for-limit auto|none] [--headroom 0.6G] \\
        [-p 15] [-n 31] [-t 2] [--timeout 1800] [--json] [--drop-caches] [--no-evict] \\
        [--dry-run]

For an unlimited row and then each limit L, every engine runs once, as a child process that
is moved into a freshly made memory cgroup (limit L, no swap) before it executes, so that
every page it touches, anonymous or page cache, counts against L:

* edgemoe: ``python -m edgemoe bench MODEL -p P -n N -r 1 -t T --json`` plus, with
  ``--budget-for-limit auto`` (default), ``--memory-budget L-HEADROOM`` (the headroom, default
  0.6 GiB, is for the interpreter, the KV cache and scratch buffers); with ``none`` it runs
  plain mmap under the limit.
* llama.cpp (with ``--gguf`` and ``--llama-cpp``): ``build/bin/llama-bench -m GGUF -p P -n N
  -r 1 -t T -o json`` with mmap loading, and again with ``--repack 0`` (no repacked copy of
  the weights), whichever of those flags this llama-bench has.

Recorded per run: whether it finished, was OOM-killed (the group's ``oom_kill`` counter, or
SIGKILL), failed or timed out (``--timeout``, default 1800 s: a run that thrashes is
killed); pp and tg tokens/s from the engine's JSON; the group's peak memory (cgroup v2
``memory.peak``, v1 ``memory.max_usage_in_bytes``; page cache included); bytes read from disk
(v2 ``io.stat`` rbytes when the io controller is on, else the child's ``ru_inblock`` from
``wait4``); wall time; and for edgemoe its expert-cache counters (hit rate, bytes read per
token, prediction accuracy) and ``first_token_s``.

Page cache is charged to the cgroup that first read a page, so a model file still cached from
an earlier run (or from another process) would not count against the limit at all. Before
each run the script therefore evicts that run's model file from the page cache
(``posix_fadvise(DONTNEED)``, which cannot evict pages some other process has mapped; the
pages still cached are reported on stderr); ``--no-evict`` skips that, ``--drop-caches``
additionally empties the whole page cache (``sync; echo 3 > /proc/sys/vm/drop_caches``).

cgroups: v2 when ``/sys/fs/cgroup/cgroup.controllers`` exists (groups are made under the
root, whose ``cgroup.subtree_control`` gets ``+memory`` only if it lacks it; that is undone at
the end), else v1 under ``/sys/fs/cgroup/memory`` (in this process's own memory group when
visible, so any limit on that group still applies). ``--cgroup-parent`` picks another parent.
Groups are named ``edgemoe-memlimit-<pid>-<n>``; an existing group is never touched; every
group made is removed afterwards, also on errors and Ctrl-C. Needs root (or a delegated,
writable cgroup). ``--dry-run`` prints the commands and cgroup writes without doing them.

Output: a Markdown table on stdout (``--json``: a JSON list of the runs), a progress line on
stderr as each run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CGROUP_MOUNT = Path("/sys/fs/cgroup")
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
GROUP_PREFIX = "edgemoe-memlimit"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class CgroupError(RuntimeError):
    """cgroups are missing, read-only or not ours to write: the message says what is needed."""


# ------------------------------------------------------------------ sizes


def parse_size(text: str) -> int:
    """Bytes from ``"4G"``, ``"400M"``, ``"1.5GiB"`` or ``"123"`` (binary units: K = 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 4G or 400M")
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return n


def parse_limits(text: str) -> list[int]:
    """``"16G,8G,4G"`` as bytes, in the order given."""
    return [parse_size(s) for s in text.split(",") if s.strip()]


def fmt_size(n: float | None) -> str:
    """``n`` bytes as e.g. ``'1.50 GiB'``; ``'-'`` for None."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


# ------------------------------------------------------------------ cgroup layout


@dataclass(frozen=True)
class Cgroups:
    """Where and how to make memory groups."""

    version: int   #: 1 or 2
    parent: Path   #: the directory new groups are made in
    io_stat: bool  #: v2 with the io controller on in parent: new groups have io.stat

    def limit_writes(self, limit: int | None) -> list[tuple[str, str]]:
        """The (file, value) pairs that set a group's limit; none for an unlimited group."""
        if limit is None:
            return []
        if self.version == 2:
            return [("memory.max", str(limit)), ("memory.swap.max", "0")]
        return [("memory.limit_in_bytes", str(limit)),
                ("memory.memsw.limit_in_bytes", str(limit))]

    @property
    def peak_file(self) -> str:
        return "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"

    @property
    def oom_file(self) -> str:
        return "memory.events" if self.version == 2 else "memory.oom_control"


def own_cgroup(version: int, proc_cgroup: str) -> str:
    """This process's group path (``/a/b``) in the v2 hierarchy or the v1 memory hierarchy,
    from the text of ``/proc/self/cgroup``; ``"/"`` if not listed."""
    for line in proc_cgroup.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if version == 2 and hier == "0" and controllers == "":
            return path or "/"
        if version == 1 and "memory" in controllers.split(","):
            return path or "/"
    return "/"


def detect_cgroups(mount: Path = CGROUP_MOUNT, parent: Path | None = None,
                   proc_cgroup: str | None = None) -> Cgroups:
    """cgroup v2 if ``mount/cgroup.controllers`` exists, else v1 at ``mount/memory``. The
    parent is ``parent`` if given, else the v2 root, else this process's own v1 memory group
    (when visible in the mount; the mount's root otherwise)."""
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    if (mount / "cgroup.controllers").exists():
        version, root = 2, mount
    elif (mount / "memory" / "memory.limit_in_bytes").exists():
        version, root = 1, mount / "memory"
    elif (mount / "memory.limit_in_bytes").exists():   # --cgroup-mount at the v1 memory tree
        version, root = 1, mount
    else:
        raise CgroupError(
            f"no memory cgroup found: neither {mount}/cgroup.controllers (cgroup v2) nor "
            f"{mount}/memory/ (cgroup v1). Mount cgroupfs with the memory controller "
            "(Linux with CONFIG_MEMCG), or run on the host instead of in this container.")
    if parent is None:
        parent = root
        if version == 1:
            own = root / own_cgroup(1, proc_cgroup).lstrip("/")
            parent = own if own.is_dir() else root
    if version == 2:
        controllers = (_read(parent / "cgroup.controllers") or "").split()
        if "memory" not in controllers:
            raise CgroupError(
                f"cgroup v2 at {mount}, but the memory controller is not available in "
                f"{parent} (cgroup.controllers: {' '.join(controllers) or 'empty'}). On a "
                "hybrid system it may be bound to v1: pass --cgroup-mount to that hierarchy; "
                "else enable it in the parent's parent, or pick --cgroup-parent.")
        io_stat = "io" in (_read(parent / "cgroup.subtree_control") or "").split()
        return Cgroups(2, parent, io_stat)
    return Cgroups(1, parent, False)


def check_writable(cg: Cgroups) -> None:
    """Raise CgroupError with what is needed unless groups can be made in ``cg.parent``."""
    if not os.access(cg.parent, os.W_OK):
        who = "root" if os.geteuid() != 0 else "a writable cgroup mount"
        raise CgroupError(
            f"cannot make cgroups in {cg.parent} (cgroup v{cg.version}): this needs {who}. "
            "Run with sudo; in a container, run privileged with a writable /sys/fs/cgroup "
            "(or on the host); or pass --cgroup-parent with a group delegated to you.")


# ------------------------------------------------------------------ file helpers


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:   # one write() call, as cgroupfs wants
        f.write(value)


def parse_keyed(text: str | None) -> dict[str, int]:
    """``"key value"`` lines (memory.events, memory.oom_control, memory.stat) as a dict."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_io_rbytes(text: str | None) -> int | None:
    """Sum of ``rbytes=`` over the devices in a v2 ``io.stat``; None without the file."""
    if text is None:
        return None
    return sum(int(m) for m in re.findall(r"\brbytes=(\d+)", text))


# ------------------------------------------------------------------ one group


class Group:
    """A memory cgroup this script made: created on enter, killed empty and removed on exit."""

    def __init__(self, cg: Cgroups, limit: int | None, serial: int):
        self.cg, self.limit = cg, limit
        self.path = self._make(serial)
        self.current_max = 0  #: the largest memory.current seen (v2 without memory.peak)

    def _make(self, serial: int) -> Path:
        for n in range(serial, serial + 1000):   # never reuse a group that already exists
            path = self.cg.parent / f"{GROUP_PREFIX}-{os.getpid()}-{n}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                raise CgroupError(_mkdir_hint(path, e)) from e
            try:
                self._set_limit(path)
            except BaseException:
                _rmdir(path)
                raise
            return path
        raise CgroupError(f"no free group name under {self.cg.parent}")

    def _set_limit(self, path: Path) -> None:
        for name, value in self.cg.limit_writes(self.limit):
            f = path / name
            if not f.exists():   # no swap accounting: nothing to turn off
                if "swap" in name or "memsw" in name:
                    continue
                raise CgroupError(f"{f} does not exist: no memory controller in this group")
            _write(f, value)

    def enter_fn(self) -> Any:
        """A ``preexec_fn`` that moves the forked child into the group before it execs."""
        procs = str(self.path / "cgroup.procs")

        def enter() -> None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())   # the forked child, before exec
            finally:
                os.close(fd)
        return enter

    def pids(self) -> list[int]:
        return [int(p) for p in (_read(self.path / "cgroup.procs") or "").split()]

    def sample(self) -> None:
        """Track memory.current (for v2 kernels older than 5.19, which lack memory.peak)."""
        if self.cg.version == 2:
            cur = _read(self.path / "memory.current")
            if cur and cur.strip().isdigit():
                self.current_max = max(self.current_max, int(cur))

    def peak(self) -> int | None:
        text = _read(self.path / self.cg.peak_file)
        if text and text.strip().isdigit():
            return int(text)
        return self.current_max or None

    def oom_kills(self) -> int:
        return parse_keyed(_read(self.path / self.cg.oom_file)).get("oom_kill", 0)

    def io_read_bytes(self) -> int | None:
        return parse_io_rbytes(_read(self.path / "io.stat")) if self.cg.io_stat else None

    def kill_all(self) -> None:
        """SIGKILL every process in the group (they are ours: we started them here)."""
        kill = self.path / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(OSError):
                _write(kill, "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Kill what is left, then rmdir the group (retrying while the kernel lets go)."""
        if self.pids():
            self.kill_all()
        _rmdir(self.path)


def _rmdir(path: Path, tries: int = 50) -> None:
    for i in range(tries):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or i == tries - 1:
                print(f"warning: could not remove {path}: {e}", file=sys.stderr)
                return
            time.sleep(0.1)


def _mkdir_hint(path: Path, e: OSError) -> str:
    why = {errno.EROFS: "cgroupfs is mounted read-only (a container without write access to "
                        "/sys/fs/cgroup: run it privileged, or run on the host)",
           errno.EACCES: "permission denied (run as root, e.g. with sudo)",
           errno.EPERM: "operation not permitted (run as root, e.g. with sudo)"}
    return f"cannot create cgroup {path}: {why.get(e.errno or 0, e.strerror)}"


@contextlib.contextmanager
def memory_enabled(cg: Cgroups, dry_run: bool = False) -> Iterator[None]:
    """v2: make sure ``+memory`` is in the parent's cgroup.subtree_control while groups are
    made; if this script had to add it, it is taken out again at the end."""
    ctl = cg.parent / "cgroup.subtree_control"
    if cg.version != 2 or "memory" in (_read(ctl) or "").split():
        yield
        return
    print(f"{'would write' if dry_run else 'writing'} +memory to {ctl}",
          file=sys.stdout if dry_run else sys.stderr)
    if dry_run:
        yield
        return
    try:
        _write(ctl, "+memory")
    except OSError as e:
        raise CgroupError(
            f"cannot enable the memory controller in {ctl}: {e.strerror}. With EBUSY the "
            "parent has processes of its own (cgroup v2 allows controllers only below "
            "groups without processes): pass --cgroup-parent with an empty group.") from e
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _write(ctl, "-memory")


# ------------------------------------------------------------------ page cache


def drop_caches() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only)."""
    os.sync()
    _write(DROP_CACHES, "3\n")


def evict(path: Path) -> None:
    """Drop path's unmapped pages from the page cache (written back first: DONTNEED skips
    dirty pages and pages under writeback, e.g. of a file just converted)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_bytes(path: Path) -> int | None:
    """Bytes of path in the page cache now (mincore), or None if that cannot be read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        size, page = path.stat().st_size, os.sysconf("SC_PAGE_SIZE")
        if size == 0:
            return 0
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, 1, 1, fd, 0)   # PROT_READ, MAP_SHARED
        finally:
            os.close(fd)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
            if libc.mincore(addr, size, vec) != 0:
                return None
            return (len(vec) - bytes(vec).count(0)) * page
        finally:
            libc.munmap(addr, size)
    except (OSError, AttributeError):
        return None


# ------------------------------------------------------------------ runs


@dataclass
class Job:
    """One engine configuration under one limit."""

    engine: str
    limit: int | None
    budget: int | None
    cmd: list[str]
    file: Path
    parse: str   #: "edgemoe" or "llama.cpp": which JSON the command prints


@dataclass
class RunResult:
    """What one run did (the --json output has these keys)."""

    engine: str
    limit: int | None
    budget: int | None
    status: str                       #: finished, oom-killed, killed, timeout, failed, skipped
    exit_code: int | None = None
    oom_kills: int | None = None
    pp_tok_s: float | None = None
    tg_tok_s: float | None = None
    peak_bytes: int | None = None     #: the cgroup's peak, page cache included
    peak_rss_bytes: int | None = None
    read_bytes: int | None = None
    read_source: str | None = None    #: "io.stat" or "ru_inblock"
    cached_at_start: int | None = None  #: bytes of the model file in page cache at the start
    wall_s: float | None = None
    first_token_s: float | None = None
    cache: dict[str, float] | None = None
    cgroup: str | None = None
    cmd: list[str] = field(default_factory=list)
    error: str | None = None


def llama_flags(bench_bin: Path) -> tuple[list[str], list[str] | None]:
    """(flags for mmap loading, flags that also turn repacking off or None), from --help."""
    try:
        help_text = subprocess.run([str(bench_bin), "--help"], capture_output=True, text=True,
                                   timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        help_text = ""
    return parse_llama_help(help_text)


def parse_llama_help(help_text: str) -> tuple[list[str], list[str] | None]:
    """See llama_flags: older llama-bench has ``--mmap <0|1>``, newer ``-lm, --load-mode``;
    repacking is turned off by ``--repack 0`` or ``--no-repack``, where present."""
    if re.search(r"--mmap\b", help_text):
        mmap = ["--mmap", "1"]
    elif re.search(r"--load-mode\b", help_text):
        mmap = ["--load-mode", "mmap"]
    else:
        mmap = []
    if re.search(r"--repack\b", help_text):
        return mmap, [*mmap, "--repack", "0"]
    if re.search(r"--no-repack\b", help_text):
        return mmap, [*mmap, "--no-repack"]
    return mmap, None


def budget_for(limit: int | None, mode: str, headroom: int) -> int | None:
    """edgemoe's --memory-budget under limit (None: plain mmap); 0 if the limit is too small."""
    if limit is None or mode == "none":
        return None
    return max(0, limit - headroom)


def plan(args: argparse.Namespace) -> list[Job]:
    """Every run, the unlimited row first, in the order they will run."""
    jobs: list[Job] = []
    common = ["-p", str(args.n_prompt), "-n", str(args.n_gen), "-r", "1", "-t", str(args.threads)]
    llama: list[tuple[str, list[str]]] = []
    if args.gguf:
        bench_bin = args.llama_cpp / "build" / "bin" / "llama-bench"
        mmap, no_repack = llama_flags(bench_bin)
        llama.append(("llama.cpp " + " ".join(mmap or ["(default)"]), mmap))
        if no_repack:
            llama.append(("llama.cpp " + " ".join(no_repack), no_repack))
    for limit in ([] if args.no_unlimited else [None]) + list(args.limits):
        budget = budget_for(limit, args.budget_for_limit, args.headroom)
        cmd = [args.python, "-m", "edgemoe", "bench", str(args.model), *common, "--json"]
        if budget:
            cmd += ["--memory-budget", str(budget)]
        if "edgemoe" in args.engines:
            jobs.append(Job("edgemoe", limit, budget, cmd, args.model, "edgemoe"))
        for name, extra in llama if "llama.cpp" in args.engines else []:
            cmd = [str(bench_bin), "-m", str(args.gguf), *common, "-o", "json", *extra]
            jobs.append(Job(name, limit, None, cmd, args.gguf, "llama.cpp"))
    return jobs


def parse_output(kind: str, out: str) -> dict[str, Any]:
    """pp/tg tokens/s (and edgemoe's cache counters, first_token_s) from an engine's JSON."""
    if kind == "edgemoe":
        line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), "")
        r = json.loads(line)
        return {"pp_tok_s": r.get("pp_tok_s"), "tg_tok_s": r.get("tg_tok_s"),
                "first_token_s": r.get("first_token_s"), "cache": r.get("cache")}
    results = json.loads(out[out.index("["):])
    pp = next((r for r in results if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), {})
    tg = next((r for r in results if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), {})
    return {"pp_tok_s": pp.get("avg_ts"), "tg_tok_s": tg.get("avg_ts")}


def wait(pid: int, group: Group, deadline: float) -> tuple[int | None, Any]:
    """wait4 the child until it exits or the deadline passes (status None: timed out)."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        group.sample()
        if time.monotonic() > deadline:
            return None, None
        time.sleep(0.1)


def classify(status: int | None, oom_kills: int) -> tuple[str, int | None]:
    """(status word, exit code) from a wait status; None means the timeout hit."""
    if status is None:
        return "timeout", None
    code = os.waitstatus_to_exitcode(status)
    if oom_kills or code == -signal.SIGKILL:
        return ("oom-killed" if oom_kills else "killed"), code
    return ("finished" if code == 0 else "failed"), code


def prepare_cache(job: Job, args: argparse.Namespace) -> int | None:
    """Drop caches / evict the run's file as asked; the bytes of it still cached."""
    if args.drop_caches:
        drop_caches()
    if args.evict:
        evict(job.file)
    left = cached_bytes(job.file)
    if args.evict and left and left > 0.05 * job.file.stat().st_size:
        print(f"warning: {fmt_size(left)} of {job.file} still in page cache (mapped by another "
              "process?): those pages are not charged to the run's cgroup", file=sys.stderr)
    return left


def execute(job: Job, cg: Cgroups, serial: int, args: argparse.Namespace) -> RunResult:
    """Run one job in a new group; the group is removed whatever happens."""
    res = RunResult(job.engine, job.limit, job.budget, "failed", cmd=job.cmd)
    if job.parse == "edgemoe" and job.budget == 0:
        res.status = "skipped"
        res.error = f"limit is not above --headroom {fmt_size(args.headroom)}"
        return res
    res.cached_at_start = prepare_cache(job, args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        group = Group(cg, job.limit, serial)
        res.cgroup = str(group.path)
        proc: subprocess.Popen[bytes] | None = None
        try:
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(job.cmd, stdout=out,
                                        stderr=None if args.verbose else err,
                                        preexec_fn=group.enter_fn(), start_new_session=True)
            except subprocess.SubprocessError as e:   # the write to cgroup.procs failed
                raise CgroupError(f"cannot move a process into {group.path}: {e}") from e
            status, usage = wait(proc.pid, group, t0 + args.timeout)
            res.wall_s = time.monotonic() - t0
            if status is None:
                group.kill_all()
                _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0   # reaped by wait4 above; keep Popen from waiting again
            collect(res, group, status, usage)
        finally:
            if proc is not None and proc.returncode is None:   # interrupted: kill, then reap
                group.kill_all()
                with contextlib.suppress(ChildProcessError):
                    os.wait4(proc.pid, 0)
                proc.returncode = -9
            group.remove()
        read_outputs(res, job, out, err)
    return res


def collect(res: RunResult, group: Group, status: int | None, usage: Any) -> None:
    """Counters from the group (before it is removed) and from the child's rusage."""
    res.oom_kills = group.oom_kills()
    res.status, res.exit_code = classify(status, res.oom_kills)
    res.peak_bytes = group.peak()
    res.peak_rss_bytes = usage.ru_maxrss * 1024 if usage else None
    io = group.io_read_bytes()
    if io is not None:
        res.read_bytes, res.read_source = io, "io.stat"
    elif usage is not None:
        res.read_bytes, res.read_source = usage.ru_inblock * 512, "ru_inblock"


def read_outputs(res: RunResult, job: Job, out: Any, err: Any) -> None:
    """Parse the engine's JSON if it finished; keep the tail of stderr if it did not."""
    out.seek(0)
    text = out.read().decode(errors="replace")
    if res.status == "finished":
        try:
            for k, v in parse_output(job.parse, text).items():
                setattr(res, k, v)
        except (ValueError, KeyError, StopIteration) as e:
            res.status, res.error = "failed", f"unreadable JSON output: {e}"
    else:
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
        res.error = " | ".join(tail) or None


def dry_run(jobs: list[Job], cg: Cgroups | None, args: argparse.Namespace) -> None:
    """Print what each run would do, touching nothing."""
    for i, job in enumerate(jobs, 1):
        print(f"# run {i}/{len(jobs)}: {job.engine}, limit {_limit(job.limit)}, "
              f"budget {_budget(job)}")
        if job.parse == "edgemoe" and job.budget == 0:
            print("skip: limit is not above --headroom")
            continue
        if args.drop_caches:
            print(f"sync; echo 3 > {DROP_CACHES}")
        if args.evict:
            print(f"posix_fadvise({job.file}, DONTNEED)")
        group = (cg.parent / f"{GROUP_PREFIX}-{os.getpid()}-{i}") if cg else Path("<no cgroup>")
        print(f"mkdir {group}")
        for name, value in cg.limit_writes(job.limit) if cg else []:
            print(f"echo {value} > {group / name}    (if present)" if "swap" in name
                  or "memsw" in name else f"echo {value} > {group / name}")
        print(f"fork; child: echo $PID > {group / 'cgroup.procs'}; exec " + " ".join(job.cmd))
        if cg:
            reads = [cg.peak_file, cg.oom_file] + (["io.stat"] if cg.io_stat else [])
            print(f"after exit (wait4 rusage): read {', '.join(reads)} in {group.name}")
        print(f"rmdir {group}\n")


# ------------------------------------------------------------------ report


def table(results: list[RunResult]) -> str:
    lines = ["| engine | limit | budget | finished | pp tok/s | tg tok/s | peak memory "
             "| read from disk | hit rate | first token s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        hit = r.cache.get("hit_rate") if r.cache else None
        lines.append(
            f"| {r.engine} | {_limit(r.limit)} | {_budget(r)} "
            f"| {'yes' if r.status == 'finished' else r.status} | {_num(r.pp_tok_s)} "
            f"| {_num(r.tg_tok_s)} | {fmt_size(r.peak_bytes)} | {fmt_size(r.read_bytes)} "
            f"| {f'{hit:.1%}' if hit is not None else '-'} | {_num(r.first_token_s)} |")
    return "\n".join(lines)


def _limit(limit: int | None) -> str:
    return fmt_size(limit) if limit else "none"


def _budget(r: Job | RunResult) -> str:
    """edgemoe's budget, 'none' (plain mmap), 'too small' or '-' (not an edgemoe row)."""
    if r.engine != "edgemoe":
        return "-"
    return {None: "none", 0: "too small"}.get(r.budget, fmt_size(r.budget))


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def progress(i: int, n: int, r: RunResult) -> None:
    wall = f"{r.wall_s:.1f} s" if r.wall_s is not None else "-"
    print(f"[{i}/{n}] {r.engine}, limit {_limit(r.limit)}, budget {_budget(r)}: {r.status}"
          f"{f' (exit {r.exit_code})' if r.exit_code else ''}, pp {_num(r.pp_tok_s)}, "
          f"tg {_num(r.tg_tok_s)} tok/s, peak {fmt_size(r.peak_bytes)}, read "
          f"{fmt_size(r.read_bytes)}, {wall}{f' -- {r.error}' if r.error else ''}",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="edgemoe model file (.bin)")
    ap.add_argument("--gguf", type=Path, help="the same model as GGUF, for llama.cpp rows")
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp tree with build/bin/llama-bench")
    ap.add_argument("--limits", type=parse_limits, required=True,
                    help="memory limits, comma-separated, e.g. 16G,8G,4G (binary units)")
    ap.add_argument("--budget-for-limit", choices=("auto", "none"), default="auto",
                    help="auto: edgemoe --memory-budget = limit - headroom; none: plain mmap")
    ap.add_argument("--headroom", type=parse_size, default=parse_size("0.6G"),
                    help="limit minus budget, for interpreter, KV cache, scratch (default 0.6G)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with edgemoe installed (default: this one, %(default)s)")
    ap.add_argument("-p", "--n-prompt", type=int, default=15)
    ap.add_argument("-n", "--n-gen", type=int, default=31)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds before a run is killed as 'timeout' (default 1800)")
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    ap.add_argument("--engines", type=lambda v: v.split(","), default=["edgemoe", "llama.cpp"],
                    help="comma-separated engines to run (default edgemoe,llama.cpp)")
    ap.add_argument("--no-unlimited", action="store_true", help="skip the unlimited row")
    ap.add_argument("--drop-caches", action="store_true",
                    help="sync; echo 3 > /proc/sys/vm/drop_caches before each run")
    ap.add_argument("--no-evict", dest="evict", action="store_false",
                    help="do not evict the run's model file from the page cache first")
    ap.add_argument("--cgroup-mount", type=Path, default=CGROUP_MOUNT,
                    help="where cgroupfs is mounted (default %(default)s)")
    ap.add_argument("--cgroup-parent", type=Path,
                    help="make groups here instead (v2 default: the root; v1: own memory group)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the commands and cgroup writes, run nothing")
    ap.add_argument("-v", "--verbose", action="store_true", help="pass the engines' stderr on")
    args = ap.parse_args(argv)
    if args.gguf and not args.llama_cpp:
        ap.error("--gguf needs --llama-cpp")
    if not args.dry_run:
        for p in [args.model, *([args.gguf] if args.gguf else [])]:
            if not p.is_file():
                ap.error(f"{p} not found")
        if args.gguf and not (args.llama_cpp / "build" / "bin" / "llama-bench").exists():
            ap.error(f"{args.llama_cpp}/build/bin/llama-bench not found (build llama.cpp)")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)   # unwinds through the finally blocks: groups are removed


def run_all(jobs: list[Job], cg: Cgroups, args: argparse.Namespace) -> list[RunResult]:
    """Every job in turn; on Ctrl-C the runs so far (the group of the one running is
    removed first) and KeyboardInterrupt again."""
    results: list[RunResult] = []
    try:
        with memory_enabled(cg):
            for i, job in enumerate(jobs, 1):
                results.append(execute(job, cg, i, args))
                progress(i, len(jobs), results[-1])
    except (KeyboardInterrupt, SystemExit):   # Ctrl-C, or SIGTERM via _on_sigterm
        print(f"interrupted after {len(results)} of {len(jobs)} runs", file=sys.stderr)
        report(results, args)
        raise
    return results


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    print(json.dumps([asdict(r) for r in results], indent=1) if args.json else table(results),
          flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = plan(args)
    try:
        cg = detect_cgroups(args.cgroup_mount, args.cgroup_parent)
    except CgroupError as e:
        if not args.dry_run:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"# {e}\n", file=sys.stderr)
        cg = None
    if args.dry_run:
        if cg:
            print(f"# cgroup v{cg.version}, groups under {cg.parent}\n")
            with memory_enabled(cg, dry_run=True):
                pass
        dry_run(jobs, cg, args)
        return 0
    assert cg is not None
    try:
        check_writable(cg)
        if args.drop_caches and not os.access(DROP_CACHES, os.W_OK):
            raise CgroupError(f"--drop-caches needs root ({DROP_CACHES} is not writable)")
    except CgroupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"cgroup v{cg.version}, groups under {cg.parent}", file=sys.stderr)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        results = run_all(jobs, cg, args)
    except CgroupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    report(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
