"""Store roots: which ``@persidict`` marker holds the lock of each file.

A *root* is a directory whose META_DIR marker is committed. A file is locked
in the lock file of the nearest root above it, under its path relative to
that root. A marker ``D/@persidict`` is in one of four states:

- absent;
- pending: made by mkdir, not decided yet (no ``state`` file);
- root or void: its ``state`` file says so. The verdict is written once,
  atomically (rename), under an OFD lock on the marker's ``root.lock``, by
  whoever meets the marker pending first. A void marker is then removed
  (renamed away whole, then emptied).

Markers of earlier versions have no ``state`` but hold a lock file, a journal
or a quarantine, which a pending marker never does (those are made only in a
root): they are roots.

Protocol:

- create: a store opened where no root is found mkdirs ``D/@persidict``
  (pending) and decides it;
- decide D: under D's root.lock, reread D; if still pending, look at every
  ancestor of D from the top (deciding pending ones): void if one is a root,
  else root;
- resolve a file: read the markers of its ancestors from the top down
  (deciding pending ones); the deepest root wins. Per-directory answers
  are cached: a directory's is its parent's unless it is a root itself.

Why every process maps a file to the same root, for the life of the store.
Verdicts never change. Say a reader answered R for a file f: it read R as a
root, and *afterwards* read each marker D between R and f as absent or void.
If absent, D was made later than that read, so after R was a root, and every
decision of D reads R then: D is void. So no marker between R and f is ever a
root, and every reader at every time answers R. Reading top-down is what
makes this hold: read bottom-up, a marker D could be absent when read, then
be made and decided a root before R is made and read. Each void verdict is
backed by a root that stays, so a marker made again at D's place is void
too (also when decided by someone still holding the removed marker's
root.lock), and a creator whose marker is voided finds the root that voided
it.
The topmost pending marker on a path sees no root above, so every pending
marker gets decided and there is no deadlock: a decision takes the
root.lock of an ancestor only while holding that of a descendant.
The argument needs a filesystem whose directory operations are seen at once
by every process (any local one; the same holds for the locks themselves).
Deciding a marker is part of locking, not a repair: any reader may do it.

The marker of a created store also records the parameters that shape its
file names (``params.json``, written once), so ``persidict check`` reads
them instead of guessing.
"""

from __future__ import annotations

import contextlib
import json
import os
from contextlib import AbstractContextManager
from typing import Any

from .atomic import fsync_dir, write_atomic
from .journal import temp_name
from .locks import DEFAULT_LOCK_TIMEOUT, META_DIR, KeyLocks

ROOT, VOID, PENDING, ABSENT = "root", "void", "pending", "absent"
STATE = "state"
PARAMS = "params.json"
_DECISION_LOCK = "root.lock"
# Names only a root ever holds (the key lock file, the journal, the quarantine).
_ROOT_ONLY = frozenset({"lock", "tmp", "quarantine"})
_MAX_ROUNDS = 8


def marker_state(directory: str) -> str:
    """The state of ``directory``'s marker, as read now (without deciding)."""
    meta = os.path.join(directory, META_DIR)
    for _ in range(3):
        try:
            names = os.listdir(meta)
        except OSError:  # absent, not a directory, or not ours to read
            return ABSENT
        if STATE not in names:
            return ROOT if _ROOT_ONLY.intersection(names) else PENDING
        try:
            with open(os.path.join(meta, STATE), "rb") as f:
                return ROOT if f.read(4) == b"root" else VOID
        except FileNotFoundError:
            continue  # a void marker being removed: look again
    return ABSENT


def decide(directory: str) -> str:
    """The verdict on ``directory``'s marker, deciding it if it is pending."""
    meta = os.path.join(directory, META_DIR)
    try:
        locks = KeyLocks(os.path.join(meta, _DECISION_LOCK), DEFAULT_LOCK_TIMEOUT)
        with locks.hold_at(0, f"the marker of {directory}"):
            state = marker_state(directory)
            if state != PENDING:
                return state
            verdict = VOID if _root_above(directory) else ROOT
            write_atomic(os.path.join(meta, STATE), verdict.encode(), durable=True)
            if verdict == VOID:
                _discard(directory)
            return verdict
    except FileNotFoundError:  # the marker was a void one and is gone
        return ABSENT


def is_root(directory: str) -> bool:
    """True if ``directory`` is a root (deciding its marker if pending)."""
    state = marker_state(directory)
    if state == PENDING:
        state = decide(directory)
    return state == ROOT


def _top_down(directory: str) -> list[str]:
    """``directory`` and its ancestors, the filesystem root first."""
    levels = [directory]
    while (parent := os.path.dirname(levels[-1])) != levels[-1]:
        levels.append(parent)
    return levels[::-1]


def _root_above(directory: str) -> bool:
    return any(is_root(level) for level in _top_down(directory)[:-1])


def find_root(directory: str) -> str | None:
    """The nearest root at or above ``directory`` (a real path), if any."""
    found = None
    for level in _top_down(directory):
        if is_root(level):
            found = level
    return found


def open_root(directory: str, params: dict[str, Any], durable: bool = True) -> str | None:
    """The root of a store opened at ``directory``, made there if none is found.

    ``params`` are recorded in a marker this call creates. None when there
    is no root and none can be made (a read-only directory).
    """
    meta = os.path.join(directory, META_DIR)
    for _ in range(_MAX_ROUNDS):
        root = find_root(directory)
        if root is not None:
            return root
        try:
            os.mkdir(meta)
        except FileExistsError:
            if not os.path.isdir(meta):
                raise NotADirectoryError(f"{meta} exists and is not a directory") from None
            continue  # pending, made by a racing opener: the next round decides it
        except OSError:
            return None
        with contextlib.suppress(OSError):  # a store without params still works
            write_atomic(os.path.join(meta, PARAMS), json.dumps(params).encode(), durable=True)
            if durable:
                fsync_dir(directory)
    raise RuntimeError(f"no lock root settled for {directory} in {_MAX_ROUNDS} rounds")


def read_params(root: str) -> dict[str, Any] | None:
    """The parameters recorded in ``root``'s marker (None: an older store)."""
    try:
        with open(os.path.join(root, META_DIR, PARAMS), "rb") as f:
            params = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def _discard(directory: str) -> None:
    """Remove a void marker: renamed away whole first, so nobody sees it half gone."""
    trash = os.path.join(directory, temp_name())
    try:
        os.rename(os.path.join(directory, META_DIR), trash)
        for name in os.listdir(trash):
            os.unlink(os.path.join(trash, name))
        os.rmdir(trash)
    except OSError:
        return  # a leftover is reported by ``check`` as a stray


class LockTree:
    """Which lock file, and which name in it, guards each file of a store.

    ``home_root`` is the root of ``real_base`` (found by open_root). Answers
    for directories below it follow the module's rule and are cached: by the
    argument above they never change.
    """

    _CACHE_MAX = 4096

    def __init__(self, real_base: str, home_root: str) -> None:
        self.real_base = real_base
        self.home_root = home_root
        self._timeout = DEFAULT_LOCK_TIMEOUT
        self._roots: dict[tuple[str, ...], str] = {}
        self._files: dict[str, KeyLocks] = {}

    @property
    def timeout(self) -> float:
        """Seconds a lock wait may last before LockTimeoutError."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = seconds
        for locks in self._files.values():
            locks.timeout = seconds

    def _root_of(self, dirs: tuple[str, ...]) -> str:
        if not dirs:
            return self.home_root
        root = self._roots.get(dirs)
        if root is None:
            parent = self._root_of(dirs[:-1])  # read first: top-down
            level = "/".join((self.real_base, *dirs))
            root = level if is_root(level) else parent
            if len(self._roots) >= self._CACHE_MAX:
                self._roots.clear()
            self._roots[dirs] = root
        return root

    def locate(self, dirs: tuple[str, ...], rel: str) -> tuple[KeyLocks, str]:
        """(lock file, name) of the file ``rel`` (below real_base) in directory ``dirs``."""
        root = self._root_of(dirs)
        locks = self._files.get(root)
        if locks is None:
            locks = self._files[root] = KeyLocks(f"{root}/{META_DIR}/lock", self._timeout)
        return locks, f"{self.real_base}/{rel}"[len(root) + 1 :]

    def hold(self, rel: str) -> AbstractContextManager[None]:
        """Hold the lock of the file ``rel`` (a '/'-separated path below real_base)."""
        locks, name = self.locate(tuple(rel.split("/")[:-1]), rel)
        return locks.hold(name)
