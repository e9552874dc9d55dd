"""The key locks a thread holds through ``FileBytes.lock``, and what it saw there.

Inside ``lock(key)`` or ``update(key)`` (transform_item's read, transformer
and commit) this thread's writes and deletes of the key take no second lock:
the key locks are not re-entrant, and a second take would raise. And the
etag this thread last read or wrote there is the file's: every writer of the
key takes its lock, so nobody else can change the file meanwhile, and a
conditional commit compares with that etag instead of reading the file again.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from ..concurrency.locks import KeyLocks
from ..concurrency.locks_common import fork_generation
from ..engine.errors import PreconditionFailed
from ..engine.flags import ETagValue, ItemNotAvailableFlag

__all__ = ["Grant", "Holding", "Seen", "Using", "grant_of", "held", "note"]

Grant = tuple[str, int, int]
"""(lock file, lock offset, fork generation): a forked child holds no parent lock."""
Seen = tuple[str, ETagValue | ItemNotAvailableFlag | None] | None
"""(path, etag) this thread last read or wrote under the grant; None: not known.

``(path, None)``: FileBytes.update read the key and computed no etag; that
tuple's identity tells it whether this thread has written the key since. A
write whose etag is unknown leaves a fresh such tuple, never None: a read
begun before it (interrupted by a signal handler's write) compares the
entry by identity, and None is always None.
"""

_local = threading.local()
_OUT: Any = object()  # what note() pops when the grant is not held


def held() -> dict[Grant, Seen]:
    """This thread's grants (empty when it holds no lock through lock())."""
    grants: dict[Grant, Seen] | None = getattr(_local, "grants", None)
    if grants is None:
        grants = _local.grants = {}
    return grants


def grant_of(locks: KeyLocks, offset: int) -> Grant:
    """The grant that stands for the lock at ``offset`` of ``locks``."""
    return (locks.lock_path, offset, fork_generation())


def note(grants: dict[Grant, Seen], grant: Grant, path: str,
         etag: ETagValue | ItemNotAvailableFlag, before: Seen) -> None:
    """Record what a read under ``grant`` found at ``path`` (nothing if not held).

    ``before``: the grant's entry when the read began. If it changed since,
    this thread wrote the key meanwhile (a signal handler), so what was read
    may be stale: the entry stays. An update's mark stays too (a read changes
    nothing it must know of). The entry is out while it is judged, so a
    handler's write then is refused, not overwritten by a stale etag.
    """
    seen = grants.pop(grant, _OUT)
    if seen is _OUT:
        return
    if seen is before and (seen is None or seen[1] is not None):
        seen = (path, etag)
    grants[grant] = seen


class Using:
    """One write or delete under a held grant: no lock to take.

    ``with`` gives the etag known for ``path`` (None: read it). While the
    mutation runs the grant is withdrawn, so a re-entry then (a signal
    handler's write) goes to ``hold_at``, which refuses it as before. On
    success the grant records ``after`` (if None: unknown, a fresh
    ``(path, None)``); after ``keep()`` or PreconditionFailed (raised before
    anything changed) what it had; on any other failure unknown: an
    exception from a signal handler may land after the rename or unlink
    took effect, so nothing is known (and an update's mark is gone: its
    commit retries instead of going over it).
    """

    __slots__ = ("after", "grant", "grants", "kept", "path", "seen")

    def __init__(self, grants: dict[Grant, Seen], grant: Grant, path: str,
                 after: ETagValue | ItemNotAvailableFlag | None) -> None:
        self.grants, self.grant, self.path, self.after = grants, grant, path, after
        self.seen: Seen = None
        self.kept = False

    def keep(self) -> None:
        """The mutation changed nothing: the grant gets back what it had (an update's mark)."""
        self.kept = True

    def __enter__(self) -> ETagValue | ItemNotAvailableFlag | None:
        self.seen = self.grants.pop(self.grant)
        if self.seen is not None and self.seen[0] == self.path:
            return self.seen[1]
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.kept or (exc_type is not None and issubclass(exc_type, PreconditionFailed)):
            self.grants[self.grant] = self.seen
        elif exc_type is not None or self.after is None:
            # Unknown, as a fresh tuple: not None, which a read that began
            # before this write (a handler's) took for "unchanged" (note).
            self.grants[self.grant] = (self.path, None)
        else:
            self.grants[self.grant] = (self.path, self.after)


class Holding:
    """``lock(key)``: the key's lock (``hold``, a hold_at context) and its grant."""

    __slots__ = ("grant", "grants", "hold")

    def __init__(self, grants: dict[Grant, Seen], grant: Grant,
                 hold: AbstractContextManager[None]) -> None:
        self.grants, self.grant, self.hold = grants, grant, hold

    def __enter__(self) -> None:
        self.hold.__enter__()
        self.grants[self.grant] = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        self.grants.pop(self.grant, None)
        return self.hold.__exit__(exc_type, exc, tb)
