"""LockTree: which lock file, and which name in it, guards each file of a store.

The answers follow the rule of ``marker.py`` (the deepest root above a file
holds its lock), read top-down and cached per directory.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from .locks import DEFAULT_LOCK_TIMEOUT, META_DIR, KeyLocks, lock_offset
from .marker import MARKERS_LOCK, PENDING, ROOT, settle


class _Unsettled(KeyLocks):
    """The lock of a file whose root is not settled yet: found when taken.

    Reads never lock, so they go on; a write re-resolves and raises if the
    root is still not settled, never guessing a lock file.
    """

    def __init__(self, tree: LockTree, dirs: tuple[str, ...], rel: str) -> None:
        self.lock_path = f"{tree.real_base}/{META_DIR}/lock"
        self.timeout = tree.timeout
        self._tree, self._dirs, self._rel = tree, dirs, rel

    def _settled(self) -> tuple[KeyLocks, str]:
        locks, name = self._tree.locate(self._dirs, self._rel)
        if isinstance(locks, _Unsettled):
            raise OSError(
                errno.EROFS,
                f"the lock root of {self._tree.real_base}/{self._rel} is not settled: a "
                f"{META_DIR} marker on its path is undecided (read-only, full or not ours to "
                "write) or the store could make none; writes need a writable store "
                "(reopen it then)",
            )
        return locks, name

    @contextmanager
    def hold_at(self, offset: int, key: object) -> Iterator[None]:
        locks, name = self._settled()
        with locks.hold_at(lock_offset(name), key):
            yield

    def acquire(self, offset: int, key: object) -> None:
        raise NotImplementedError("an unsettled lock is only taken by hold_at")

    def release(self, offset: int) -> None:
        raise NotImplementedError("an unsettled lock is only taken by hold_at")


class LockTree:
    """Which lock file, and which name in it, guards each file of a store.

    ``home_root`` is the root of ``real_base`` (found by open_root; None: no
    root could be made, so no write can lock). Answers for directories below
    it follow the module's rule and are cached: by the argument above they
    never change. Unsettled answers are not cached. The cache has two
    generations of at most _CACHE_MAX directories each: when the new one is
    full it becomes the old one, and an old answer used again moves back, so
    the directories in use are not settled again however many others pass.
    """

    _CACHE_MAX = 4096

    def __init__(self, real_base: str, home_root: str | None) -> None:
        self.real_base = real_base
        self.home_root = home_root
        self._timeout = DEFAULT_LOCK_TIMEOUT
        self._roots: dict[tuple[str, ...], str] = {}
        self._old_roots: dict[tuple[str, ...], str] = {}
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

    def _root_of(self, dirs: tuple[str, ...]) -> str | None:
        if not dirs:
            return self.home_root
        root = self._roots.get(dirs)
        if root is None:
            root = self._old_roots.get(dirs)
            if root is None:
                parent = self._root_of(dirs[:-1])  # read first: top-down
                if parent is None:
                    return None
                level = "/".join((self.real_base, *dirs))
                state = settle(level)
                if state == PENDING:
                    return None
                root = level if state == ROOT else parent
            if len(self._roots) >= self._CACHE_MAX:
                self._old_roots, self._roots = self._roots, {}
            self._roots[dirs] = root
        return root

    def locate(self, dirs: tuple[str, ...], rel: str) -> tuple[KeyLocks, str]:
        """(lock file, name) of the file ``rel`` (below real_base) in directory ``dirs``."""
        root = self._root_of(dirs)
        if root is None:
            return _Unsettled(self, dirs, rel), rel
        locks = self._files.get(root)
        if locks is None:
            locks = self._files[root] = KeyLocks(f"{root}/{META_DIR}/lock", self._timeout)
        return locks, f"{self.real_base}/{rel}"[len(root) + 1 :]

    def hold(self, rel: str) -> AbstractContextManager[None]:
        """Hold the lock of the file ``rel`` (a '/'-separated path below real_base)."""
        locks, name = self.locate(tuple(rel.split("/")[:-1]), rel)
        return locks.hold(name)

    def hold_markers(self, rel: str) -> AbstractContextManager[None]:
        """Hold MARKERS_LOCK of the root of ``rel`` (see marker._make_sub_marker)."""
        locks, _ = self.locate(tuple(rel.split("/")[:-1]), rel)
        return locks.hold(MARKERS_LOCK)
