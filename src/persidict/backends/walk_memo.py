"""Checked directory listings, reused while a directory's snapshot is unchanged.

Why: the keys a directory yields are a pure function of its getdents64
records (names, types, inode numbers, offsets) and of how they are checked
(the directory, the suffix, the digest length, the layout; not the key
prefix, which a walk adds itself, so a sub-dict shares its parent's entries).
Every listing still reads a fresh snapshot from the kernel; when its bytes
equal those this process last checked for the same directory and check, the
key names found then are reused instead of checked again (a regex and an MD5
per name), and from the second such listing on, the very key objects built
by the first (keys are immutable values). Any create, delete or rename in
the directory changes its records, so no listing can be stale. Records the
kernel left untyped (DT_UNKNOWN, judged by lstat) and the records of several
calls or of the scandir fallback are never memoized (snapshot_chunks).
Neither are walks with timestamps (each key's mtime takes an lstat; touching
a file changes it, not the records) nor the hashed layout: its small bucket
directories are checked together, and a first walk over 1M of its keys is to
stay at a 1.6 MB peak, not keep megabytes of entries.

Bounds: one table per process, shared by every store, of at most ``BUDGET``
bytes (6 MiB; an entry costs its records, its names, its path and the keys
it will hold: ``_cost``; a directory of 10k keys ``key<i>`` costs about 2.7 MB). A
listing is admitted only while there is room, never by pushing others out,
so a walk over more directories than fit keeps what it admitted first
(scan-resistant); an entry goes when its directory's snapshot differs or the
directory is gone, and, when room is wanted, if no walk used it for as many
walks as lately passed between two walks of one store, at least two
(``walked``): entries of removed stores go, stores listed in turn keep what fits.

Thread- and fork-safe: an entry in the table changes only its ``used`` mark
and, once, the keys it holds (one reference, set whole); adding and removing
take a lock without waiting (a thread or signal handler that finds it taken
skips memoizing), and a forked child gets a fresh lock. ``used_bytes`` never
counts less than is held.
"""

from __future__ import annotations

import os
import threading

from ..engine.keys import NonEmptySafeStrTuple, trusted_keys
from ..engine.names import decoded

__all__ = ["BUDGET", "MEMO", "Entry", "ListingMemo"]

BUDGET = 6 << 20
_PER_NAME = 48  # a bytes object's header and its slot in the list
_PER_KEY = 168  # a key, its tuple, its str's header and its slot in the list
_PER_SLOT = 8  # each further component of a key (a prefix's) in its tuple
_PER_STR = 49  # a str's header
_ROOTS = 512  # roots whose last walk ListingMemo.walked remembers
_PER_SUBDIR = 176  # its (path, component) tuple and the two strings' headers
_PER_ENTRY = 640  # the entry, its Key, its table slot, its lists, its keys' prefix (GC headers)
Key = tuple[str, str, int, bool]
"""(directory, suffix, digest length, hashed) of a checked listing."""

_lock = threading.Lock()


def _fresh_lock() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_fresh_lock)


class Entry:
    """One directory's checked listing: what a walk needs of it."""

    __slots__ = ("cost", "depth", "found", "made", "raw", "subdirs", "used")

    def __init__(self, raw: bytes, found: list[bytes], subdirs: list[tuple[str, str]],
                 depth: int = 0, path: str = "") -> None:
        self.raw = raw  # the getdents64 records it was checked from
        self.found = found  # the key components of its files, as bytes
        self.subdirs = subdirs  # (path, component) of each key directory in it
        self.depth = depth  # the longest key prefix whose keys ``cost`` has room for
        # ``path``, the directory in its Key, is counted too: the parent entry that
        # shares the string may be gone, or never admitted.
        self.cost = _cost(raw, found, subdirs, depth) + _PER_STR + len(path)
        self.used = 0  # the last walk that used it (ListingMemo.walks)
        self.made: tuple[tuple[str, ...], list[NonEmptySafeStrTuple]] | None = None

    def keys(self, prefix: tuple[str, ...]) -> list[NonEmptySafeStrTuple]:
        """The keys of ``found`` under ``prefix``: built once, then the same objects.

        Built when an entry is first hit, not when admitted: keys kept from a
        first pass would outlive the cyclic GC's young generation and slow it.
        Room for them is in ``cost``; a sub-dict's prefix replaces its parent's.
        Keys under a longer prefix than ``depth`` are not kept: each component
        adds a slot to every key's tuple, which ``cost`` has no room for.
        """
        made = self.made
        if made is not None and made[0] == prefix:
            return made[1]
        keys = trusted_keys(prefix, decoded(self.found))
        if len(prefix) <= self.depth:
            self.made = (prefix, keys)
        return keys


def _cost(raw: bytes, found: list[bytes], subdirs: list[tuple[str, str]], depth: int = 0
          ) -> int:
    """The bytes an entry holds, about (a little more), its keys under ``depth`` components."""
    per_name = _PER_NAME + _PER_KEY + _PER_SLOT * depth
    names = 2 * sum(map(len, found)) + per_name * len(found)
    dirs = sum(len(p) + len(c) + _PER_SUBDIR for p, c in subdirs)
    return len(raw) + names + dirs + _PER_ENTRY


def _guess(raw: bytes) -> int:
    """What an entry checked from ``raw`` likely costs: its records, and names about
    as long, each with a header and a key (put then admits by the exact cost)."""
    return 7 * len(raw) + _PER_ENTRY


class ListingMemo:
    """The table: checked listings by Key, within ``budget`` bytes."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self.entries: dict[Key, Entry] = {}
        self.used_bytes = 0
        self.walks = 0  # walks completed (``walked``)
        self.turn = 2  # walks an unused entry may still be wanted in (``walked``)
        self._roots: dict[str, int] = {}  # the last walk from each root (``walked``)
        self._swept = -1  # the walk count at the last sweep

    def get(self, key: Key, raw: bytes) -> Entry | None:
        """The entry of ``key`` if it was checked from exactly ``raw``; a differing one goes."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.raw == raw:
            entry.used = self.walks
            return entry
        self.forget(key)
        return None

    def room(self, raw: bytes) -> bool:
        """Whether a listing checked from ``raw`` may be admitted (so: worth keeping)."""
        want = _guess(raw)
        if want > self.budget:
            return False
        if self.used_bytes + want <= self.budget:
            return True
        if self._swept != self.walks:
            self._sweep()
        return self.used_bytes + want <= self.budget

    def put(self, key: Key, entry: Entry) -> None:
        """Admit ``entry`` if it fits (replacing the one of ``key``)."""
        if not _lock.acquire(blocking=False):
            return
        try:
            old = self.entries.pop(key, None)
            if old is not None:
                self.used_bytes -= old.cost
            if self.used_bytes + entry.cost <= self.budget:
                entry.used = self.walks
                self.used_bytes += entry.cost  # counted before it is in
                self.entries[key] = entry
        finally:
            _lock.release()

    def forget(self, key: Key) -> None:
        """Drop the entry of ``key`` (its directory changed or is gone)."""
        if key not in self.entries or not _lock.acquire(blocking=False):
            return
        try:
            old = self.entries.pop(key, None)
            if old is not None:
                self.used_bytes -= old.cost  # uncounted after it is out
        finally:
            _lock.release()

    def walked(self, root: str = "") -> None:
        """Note a completed walk from ``root``, and how many walks passed since its last.

        ``turn`` is the longest such gap lately (shrinking by one a walk): as
        long as stores listed in turn may leave an entry unused before they
        come back to it. A turn takes at most two walks a root (a store may
        be listed between any two others), so one store listed again after
        a long pause does not make it long. At most _ROOTS roots are remembered.
        """
        walks, roots = self.walks, self._roots
        last = roots.get(root)
        if last is None and len(roots) >= _ROOTS:
            roots.clear()
        roots[root] = walks
        turn = max(self.turn - 1, 0 if last is None else walks - last)
        self.turn = max(2, min(turn, 2 * len(roots) + 2))
        self.walks = walks + 1

    def _sweep(self) -> None:
        """Drop the entries no walk used for ``turn`` walks.

        Not all that the last two walks did not use: stores listed in turn,
        more than fit, then swept the entries of the stores next in turn, so
        none ever hit; with ``turn`` they keep hitting what fits.
        """
        if not _lock.acquire(blocking=False):
            return
        try:
            self._swept = self.walks
            old = self.walks - self.turn
            for key, entry in list(self.entries.items()):
                if entry.used < old:
                    del self.entries[key]
                    self.used_bytes -= entry.cost
        finally:
            _lock.release()

    def clear(self) -> None:
        """Drop every entry."""
        with _lock:
            self.entries.clear()
            self.used_bytes = 0


MEMO = ListingMemo()
"""The table every FileDirDict walk of this process uses."""
