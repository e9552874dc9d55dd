"""FileDirDict: one file per key under a base directory."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import stat
from collections.abc import Iterator
from typing import Any

from ..concurrency.atomic import open_no_symlinks, read_file, sync_after_commit, write_atomic
from ..concurrency.journal import Journal
from ..concurrency.lock_tree import LockTree
from ..concurrency.locks import META_DIR, KeyLocks, lock_offset, require_file_locks
from ..concurrency.marker import open_root
from ..concurrency.repair import CheckReport, check_tree
from ..engine.contract import Version, sorted_params
from ..engine.errors import BackendError, PreconditionFailed
from ..engine.flags import (
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ETagValue,
    ItemNotAvailableFlag,
)
from ..engine.keys import (
    LAYOUTS,
    MAX_DIGEST_LEN,
    NonEmptySafeStrTuple,
    to_prefix,
)
from ..engine.persidict import PersiDict
from .file_walk import count_keys, iter_keys, path_parts, planted_link, walk_keys

# META_DIR ("@persidict"): our own files live there; '@' is not a safe key
# character, so no key can.

_ENOENT_TEXT = os.strerror(errno.ENOENT)  # once: strerror costs more than the exception
_PATH_CACHE_MAX = 4096


def content_etag(data: bytes) -> ETagValue:
    """The etag of stored bytes: a function of the content.

    Etags made from stat() (mtime, size, inode) let a stale etag match a
    same-size rewrite in the same clock tick, or a re-created file that got a
    recycled inode. A content hash can only match the same bytes.
    """
    return ETagValue(hashlib.sha256(data).hexdigest()[:32])


class FileDirDict(PersiDict[Any]):
    """A persistent dict storing each value in its own file.

    Key ``("a", "b")`` lives in ``base_dir/a_<d>/b_<d>.<format>`` where
    ``<d>`` is the first ``digest_len`` characters of the lower-cased base32
    MD5 of the component (no suffix when ``digest_len=0``), so keys that differ
    only by case coexist on case-insensitive filesystems.

    That is ``layout="direct"``, the default (the reference's). With
    ``layout="hashed"`` each component sits in a bucket directory ``+xy``
    (2 base32 MD5 characters): ``base_dir/+xy/a_<d>/+zw/b_<d>.<format>``, so
    a million keys spread over 1024 directories and lookups stay as fast as
    in a small store. A store records its layout (``@persidict/params.json``);
    opening it with the other one raises ValueError.

    Atomicity: every operation, including each ``*_if`` operation,
    transform_item, pop, popitem and setdefault, is linearizable across
    threads and processes of one machine. Mutations of a key hold that key's
    lock (see ``concurrency/locks.py``) and replace its file by renaming a
    fully written temp file, so readers take no lock and always see a whole
    old or new value. Etags are content hashes. With ``durable=True`` (the
    default) the temp file is fsynced before the rename and the directory
    after it; ``durable=False`` skips both (faster; a power loss may then
    lose recent writes, never tear them).

    Crashes: temp files are made in ``@persidict/tmp/`` and named after their
    writer (see ``concurrency/journal.py``); opening a store, and writers
    every ``LAZY_INTERVAL`` seconds, reclaim those of dead writers. A SIGKILL
    at any point leaves only states that single-key operations produce.
    ``check(fix=...)`` reports and repairs what crashes or outside hands left.

    Symlinks inside base_dir (planted from outside) are never keys, and
    every API agrees: listings skip them, reads, ``in``, ``timestamp`` and
    deletes take a key at or below one for absent (a delete leaves the link),
    a write replaces a link at the key's own path (rename replaces the link,
    not its target) and refuses with BackendError a key below a directory
    symlink, so no write leaves the store.
    """

    _backend_name = "filesystem"

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] = "__file_dir_dict__",
        serialization_format: str = "pkl",
        append_only: bool = False,
        digest_len: int = 4,
        base_class_for_values: type | None = None,
        durable: bool = True,
        layout: str = "direct",
    ) -> None:
        require_file_locks()  # Windows, or a bad PERSIDICT_LOCKS: refuse before any file is made
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        if not isinstance(digest_len, int) or isinstance(digest_len, bool):
            raise TypeError(f"digest_len must be an int, got {digest_len!r}")
        if not 0 <= digest_len <= MAX_DIGEST_LEN:
            raise ValueError(
                f"digest_len must be within [0, {MAX_DIGEST_LEN}] (the length of a base32 "
                f"MD5), got {digest_len}"
            )
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be a bool, got {durable!r}")
        if not isinstance(base_dir, (str, os.PathLike)):
            raise TypeError(f"base_dir must be a path, got {type(base_dir).__name__}")
        self.digest_len = digest_len
        self.durable = durable
        self.layout = layout
        self._hashed = layout == "hashed"
        self._base = os.path.abspath(os.fspath(base_dir))
        for attempt in range(8):
            try:
                os.makedirs(self._base, exist_ok=True)
                break
            except FileNotFoundError:  # a parent just moved or pruned (check --fix): again
                if attempt == 7:
                    raise
            except (FileExistsError, NotADirectoryError) as exc:
                raise ValueError(f"base_dir {self._base} exists and is not a directory") from exc
        self._suffix = "." + serialization_format
        self._names = (self._suffix, digest_len, self._hashed)  # what shapes the file names
        # Keys are locked in the lock file of the nearest root above them (see
        # concurrency/marker.py, lock_tree.py); a store opened where there is none makes one,
        # recording the parameters that shape its file names.
        self._real_base = os.path.realpath(self._base)
        # The layout is recorded when not the default: older markers read as direct.
        params = {"digest_len": digest_len, **({"layout": layout} if self._hashed else {})}
        # None: no settled root and none can be made now (read-only): the
        # store stays readable, and its writes raise instead of guessing a lock
        home = open_root(self._real_base, params, durable=durable)
        self._home_root = home or self._real_base
        self._journal = Journal(os.path.join(self._home_root, META_DIR))
        self._lock_tree = LockTree(self._real_base, home)
        self._paths: dict[tuple[str, ...], tuple[str, KeyLocks, int]] = {}
        # Recovery on open: reclaim temp files of dead writers (one listdir).
        # A read-only store is still readable, so failures are not fatal.
        with contextlib.suppress(OSError):
            self._journal.recover()

    @property
    def lock_timeout(self) -> float:
        """Seconds a write waits for a key's lock before LockTimeoutError (60)."""
        return self._lock_tree.timeout

    @lock_timeout.setter
    def lock_timeout(self, seconds: float) -> None:
        self._lock_tree.timeout = seconds

    @property
    def base_dir(self) -> str:
        """Absolute path of this store's directory."""
        return self._base

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = super().get_params()
        params.update(base_dir=self._base, digest_len=self.digest_len, durable=self.durable,
                      layout=self.layout)
        return sorted_params(params)

    # -- paths --------------------------------------------------------------

    def _signed(self, strings: tuple[str, ...], with_suffix: bool) -> list[str]:
        return path_parts(strings, self.digest_len, self._suffix * with_suffix, self._hashed)

    def _path(self, key: NonEmptySafeStrTuple) -> str:
        """The absolute file path of ``key``."""
        return self._where(key)[0]

    def _where(self, key: NonEmptySafeStrTuple) -> tuple[str, KeyLocks, int]:
        """(path, lock file, lock offset), from a bounded per-store cache."""
        strings = key.strings
        hit = self._paths.get(strings)
        if hit is not None:
            return hit
        signed = self._signed(strings, with_suffix=True)
        rel = "/".join(signed)
        locks, name = self._lock_tree.locate(tuple(signed[:-1]), rel)
        hit = (f"{self._base}/{rel}", locks, lock_offset(name))
        if len(self._paths) >= _PATH_CACHE_MAX:
            self._paths.clear()
        self._paths[strings] = hit
        return hit

    def _current_etag(self, path: str) -> ETagValue | ItemNotAvailableFlag:
        data = read_file(path)
        return ITEM_NOT_AVAILABLE if data is None else content_etag(data)

    def _linked(self, key: NonEmptySafeStrTuple, path: str) -> str | None:
        """A symlink among ``path``'s directories (see file_walk.planted_link)."""
        return planted_link(self._base, path) if self._hashed or len(key.strings) > 1 else None

    @functools.cached_property
    def _no_links_above(self) -> bool:
        """Whether base_dir's own path has no symlink (then openat2 can judge)."""
        return os.path.realpath(self._base) == self._base

    def _read(self, key: NonEmptySafeStrTuple, path: str) -> bytes | None:
        """The bytes of ``key``; None if absent, a symlink, or under one.

        Below base_dir, openat2(RESOLVE_NO_SYMLINKS) checks every directory
        in the same call as the open (an lstat per level costs more).
        """
        if not self._hashed and len(key.strings) == 1:
            return read_file(path)
        if open_no_symlinks is not None and self._no_links_above:
            try:
                return read_file(path, no_symlinks=True)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
            # A symlink on the path: find out whether it is below base_dir.
        data = read_file(path)
        if data is not None and planted_link(self._base, path) is not None:
            return None
        return data

    def _refuse_links(self, key: NonEmptySafeStrTuple, path: str) -> None:
        self._refuse_link(self._linked(key, path), f"write key {key!r}", key)

    def _refuse_link(self, link: str | None, what: str, key: Any = None) -> None:
        """Raise BackendError if ``link`` (a planted directory symlink) is set."""
        if link is not None:
            raise BackendError(
                f"refusing to {what}: {link} is a symlink inside the store "
                f"{self._base} (planted from outside; `persidict check` reports it), and "
                "writing through it would leave the store",
                backend=self._backend_name,
                operation="write" if key is not None else "get_subdict",
                key=key,
            )

    # -- primitives ---------------------------------------------------------

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        # docstring inherited
        path = self._path(key)
        data = self._read(key, path)
        if data is None:
            return Version(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
        etag = content_etag(data)
        if not retrieve or etag == if_none_match:
            return Version(etag, VALUE_NOT_RETRIEVED)
        return Version(etag, self._decode(key, data, path))

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        path = self._path(key)
        data = self._read(key, path)
        if data is None:
            # Built only on a miss, so a hit pays nothing for it.
            raise KeyError(key) from FileNotFoundError(errno.ENOENT, _ENOENT_TEXT, path)
        return self._decode(key, data, path)

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        # docstring inherited
        data = self._encode(key, value)  # before the lock: pickling can be slow
        path, locks, offset = self._where(key)
        with locks.hold_at(offset, key):
            self._refuse_links(key, path)
            if isinstance(if_match, ItemNotAvailableFlag):
                if self._is_file(path):
                    raise PreconditionFailed
            elif if_match is not None and self._current_etag(path) != if_match:
                raise PreconditionFailed
            write_atomic(path, data, durable=self.durable, tmp_dir=self._journal.directory)
        self._journal.maybe_recover()
        return content_etag(data) if want_etag else None

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        path, locks, offset = self._where(key)
        directory = os.path.dirname(path)
        with locks.hold_at(offset, key):
            if if_match is None and not self._is_file(path):
                return False  # absent, or a symlink (not a key; `check` reports it)
            if self._linked(key, path) is not None:
                return False  # no key lives under a symlink; never unlink through one
            if if_match is not None and self._current_etag(path) != if_match:
                raise PreconditionFailed
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            # The unlink committed the delete: nothing below may raise.
            if self.durable:
                sync_after_commit(directory)
        self._prune(directory)
        return True

    def _prune(self, directory: str) -> None:
        """Remove now-empty directories up to (not including) base_dir.

        A writer racing with us re-creates a directory it finds gone
        (concurrency/atomic.py), and rmdir never removes a non-empty one.
        """
        while len(directory) > len(self._base) and directory.startswith(self._base + "/"):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    @staticmethod
    def _is_file(path: str) -> bool:
        """Whether ``path`` is a regular file itself (a symlink is not a key)."""
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        path = self._path(key)
        return self._is_file(path) and self._linked(key, path) is None

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        path = self._path(key)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None
        if not stat.S_ISREG(st.st_mode) or self._linked(key, path) is not None:
            raise KeyError(key)
        return st.st_mtime

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        # docstring inherited; each directory is read as one snapshot (file_walk.py)
        return walk_keys(self._base, (), *self._names, with_timestamps)

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        # Keys without the (key, timestamp) pairs of _iter_keys: a listing's floor.
        return iter_keys(self._base, (), *self._names)

    def __len__(self) -> int:
        # Counts valid names without building a key object per file.
        return count_keys(self._base, *self._names)

    def check(self, fix: bool = False) -> CheckReport:
        """Report what crashes or outside hands left in this store's directory.

        Finds ``dead_intent``/``orphan_temp`` temp files of dead writers,
        ``unreadable`` values, ``stray`` files no key maps to (in this store's
        layout) and ``empty_dir`` trees; ``fix=True`` repairs them without
        losing data (see ``concurrency/repair.py``). Live writers are left alone.
        """
        return check_tree(
            self._base,
            meta_dir=os.path.join(self._home_root, META_DIR),
            digest_len=self.digest_len,
            layout=self.layout,
            lock_for=self._lock_tree.hold,
            markers_lock_for=self._lock_tree.hold_markers,
            fix=fix,
        )

    def get_subdict(self, prefix_key: Any) -> FileDirDict:
        """A FileDirDict rooted at the subdirectory of ``prefix_key``.

        It shares this store's locks, so both stay atomic against each other.
        """
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        rel = "/".join(self._signed(prefix.strings, with_suffix=False)) if prefix else ""
        if rel:
            params["base_dir"] = f"{self._base}/{rel}"
            link = planted_link(self._base, params["base_dir"] + "/")
            self._refuse_link(link, f"open the subdict {prefix.strings!r}")
        return FileDirDict(**params)


