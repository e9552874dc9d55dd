"""The crash journal: every in-flight write is a temp file that names its owner.

What a crash can leave behind, and why that is all
--------------------------------------------------
A FileDirDict mutation commits in ONE atomic step: ``rename(temp, target)``
for a write, ``unlink(target)`` for a delete, both under the key's lock and
guarded by a content-hash etag. Before that step nothing is visible; after
it the mutation is whole. The multi-step operations are sequences of such
commits: ``clear`` and ``update`` commit key by key, ``pop``/``popitem`` are
a read followed by one etag-guarded delete, ``transform_item`` a read
followed by one etag-guarded write, and the cached wrappers write the main
store first and the cache second (a MutableDictCached cache validates its
etags against the main store, so a crash between the two self-heals; an
append-only cache only ever misses). A SIGKILL between two commits leaves
exactly the state the commits so far produced - a state that the same
sequence of single-key operations produces - so there is nothing to roll
forward or back in the key space. What a crash does leave is:

1. the temp file of a write killed before its rename (never visible as a
   key: its name starts with '@', which no key component can contain);
2. empty directories: a delete killed before pruning, or a write killed
   after creating a directory. They hold no keys, so iteration and len()
   are unaffected, the next write reuses them, the next delete below them
   prunes them, and ``check(fix=True)`` removes them.

The journal is therefore the temp files themselves. Each temp file is
created in ONE directory, ``<lock root>/@persidict/tmp/``, and its name
records the intent's owner: boot id, pid namespace, pid and process start
time (``@tmp-<boot>.<pidns>.<pid>.<start>-<random>``). The start time
(field 22 of /proc/<pid>/stat) survives pid reuse: a recycled pid has a
later start time. Recovery lists that one small directory (never the
store) and removes the temps of dead owners only; a live writer's temp is
never touched. The rename from the journal directory to the key's directory
is still atomic (same filesystem); on EXDEV (a key directory on another
mount) the write falls back to a temp in the key's own directory, which
``check`` finds by walking.

Why this is the cheapest correct design: the write path performs exactly
the syscalls of a plain temp-and-rename (open, write, [fsync], close,
rename, [open dir, fsync, close]); only the temp's directory differs. A
separate intent record would cost at least one extra create+unlink per
write (plus two fsyncs in durable mode) to protect against a state that
cannot arise. benchmarks/journal_cost.py measures this against a plain
same-directory temp+rename in the same run.

Recovery runs by itself: when a store is opened (one listdir of the
journal directory) and lazily from the write path, at most once per
``LAZY_INTERVAL`` seconds per process and journal (a monotonic clock read,
no syscall, in between).

Liveness verdicts: same boot and pid namespace -> /proc decides (absent,
zombie or a different start time means dead). Another boot id means the
temp predates a reboot (FileDirDict is atomic on one machine only; its OFD
locks do not span machines either) -> dead. Another pid namespace (a
container sharing the directory) cannot be judged through our /proc, so
such temps count as dead only once untouched for ``FOREIGN_STALE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import time
from dataclasses import dataclass
from typing import Literal

TEMP_PREFIX = "@tmp-"
"""Temp files start with '@', which no key component can contain."""

JOURNAL_DIR = "tmp"
"""The journal directory's name inside ``<lock root>/@persidict/``."""

LAZY_INTERVAL = 30.0
"""Seconds between lazy recoveries of one journal by one process."""

FOREIGN_STALE_SECONDS = 3600.0
"""Age after which a temp from another pid namespace is taken for dead."""

Verdict = Literal["alive", "dead", "unknown"]


def _proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, or None.

    The command name in /proc/<pid>/stat may contain spaces and ')', so
    the fields are split after its last ')' (proc(5)).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode("ascii", "replace"), int(fields[19])
    except (IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace("-", "")[:12] or "0"
    except OSError:
        return "0"


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


@dataclass(frozen=True)
class Owner:
    """The identity of a process, unique across pid reuse and reboots."""

    boot: str
    pidns: int
    pid: int
    start: int  # clock ticks after boot; 0 when /proc is unavailable

    @property
    def tag(self) -> str:
        """The owner part of a temp file name."""
        return f"{self.boot}.{self.pidns}.{self.pid}.{self.start}"


_BOOT = _boot_id()
_PIDNS = _pid_namespace()
_me: Owner | None = None


def me() -> Owner:
    """This process's identity: computed once, recomputed after fork()."""
    global _me
    if _me is None or _me.pid != os.getpid():
        stat = _proc_stat("self")
        _me = Owner(_BOOT, _PIDNS, os.getpid(), stat[1] if stat else 0)
    return _me


def _after_fork() -> None:
    global _me, _salt, _prefix
    _me = None
    _salt = secrets.token_hex(3)
    _prefix = ("", -1)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork)


_seq = itertools.count()
_salt = secrets.token_hex(3)
_prefix = ("", -1)  # (the name up to the counter, the pid it was made for)


def temp_name() -> str:
    """A unique temp file name that records its owner (the journal entry).

    The owner tag is unique per process incarnation; a per-process salt and
    a counter (atomic under the GIL) make the name unique within it without
    a getrandom() system call per write. The prefix is formatted once per
    process: the pid check still catches a fork that ran no at-fork hooks.
    """
    global _prefix
    prefix, pid = _prefix
    if pid != os.getpid():
        prefix = f"{TEMP_PREFIX}{me().tag}-{_salt}"
        _prefix = (prefix, os.getpid())
    return f"{prefix}{next(_seq):x}"


def parse_temp_name(name: str) -> Owner | None:
    """The owner recorded in a temp file name, or None if it is not ours."""
    if not name.startswith(TEMP_PREFIX):
        return None
    tag, sep, _ = name[len(TEMP_PREFIX) :].partition("-")
    parts = tag.split(".")
    if not sep or len(parts) != 4:
        return None
    try:
        return Owner(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def verdict(owner: Owner, age: float = 0.0) -> Verdict:
    """Whether ``owner`` may still be writing ('unknown' is treated as alive)."""
    if owner.boot != _BOOT:
        return "dead"  # written before a reboot
    if owner.pidns != _PIDNS:
        return "dead" if age > FOREIGN_STALE_SECONDS else "unknown"
    if owner.start == 0:
        # No /proc when it was written: fall back to "does the pid exist".
        try:
            os.kill(owner.pid, 0)
        except ProcessLookupError:
            return "dead"
        except PermissionError:
            return "alive"
        return "alive"
    stat = _proc_stat(owner.pid)
    if stat is None or stat[1] != owner.start or stat[0] in ("Z", "X"):
        return "dead"  # gone, a recycled pid, or killed and not yet reaped
    return "alive"


def temp_verdict(path: str, name: str) -> Verdict | None:
    """Verdict for the temp file ``name`` at ``path``; None if not a temp."""
    owner = parse_temp_name(name)
    if owner is None:
        return None
    age = 0.0
    if owner.pidns != _PIDNS and owner.boot == _BOOT:
        try:
            age = time.time() - os.lstat(path).st_mtime
        except FileNotFoundError:
            return "dead"
    return verdict(owner, age)


class Journal:
    """The journal directory of one lock root: where temp files are made."""

    def __init__(self, meta_dir: str) -> None:
        self.directory = os.path.join(meta_dir, JOURNAL_DIR)
        self._next_lazy = time.monotonic() + LAZY_INTERVAL

    def entries(self) -> list[tuple[str, Verdict | None]]:
        """(path, verdict) of every entry; the verdict is None for non-temps."""
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out: list[tuple[str, Verdict | None]] = []
        for name in names:
            path = os.path.join(self.directory, name)
            out.append((path, temp_verdict(path, name)))
        return out

    def recover(self) -> list[str]:
        """Remove the temp files of dead owners; return their paths.

        Never creates anything and never touches a live or unjudgeable
        owner's file, so it is safe to run at any time from any process.
        """
        removed = []
        for path, state in self.entries():
            if state == "dead":
                # Gone already, or not a file (a directory given such a name):
                # either way the next entries are still recovered.
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
        return removed

    def maybe_recover(self) -> None:
        """Recover if ``LAZY_INTERVAL`` has passed since this object last did."""
        now = time.monotonic()
        if now >= self._next_lazy:
            self._next_lazy = now + LAZY_INTERVAL
            # A lazy pass must never fail the write that triggered it.
            with contextlib.suppress(OSError):
                self.recover()
