"""FileBytes: the ByteStore of FileDirDict, one file per key under a directory.

Mutations of a key hold that key's lock (``concurrency/locks.py``) and
replace its file by renaming a fully written temp file, so readers take no
lock and always see a whole old or new value. Etags are content hashes.
OSErrors are mapped here, at the boundary, into ``StorageOSError`` classes
that name key, path and operation and stay the original OSError subclass.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from ..concurrency.atomic import open_no_symlinks, read_file, sync_after_commit, write_atomic
from ..concurrency.journal import Journal
from ..concurrency.lock_tree import LockTree
from ..concurrency.locks import KeyLocks, lock_offset
from ..engine.contract import ABSENT, Blob, ByteStore, Capabilities, IfMatch, Listed
from ..engine.errors import BackendError, PreconditionFailed, StorageOSError
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple
from .file_walk import count_keys, iter_keys, path_parts, planted_link, walk_keys

_PATH_CACHE_MAX = 4096


def content_etag(data: bytes) -> ETagValue:
    """The etag of stored bytes: a function of the content.

    Etags made from stat() (mtime, size, inode) let a stale etag match a
    same-size rewrite in the same clock tick, or a re-created file that got a
    recycled inode. A content hash can only match the same bytes.
    """
    return ETagValue(hashlib.sha256(data).hexdigest()[:32])


def _is_file(path: str) -> bool:
    """Whether ``path`` is a regular file itself (a symlink is not a key)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


class FileBytes(ByteStore):
    """Keys as files under ``base``: ``a_<d>/b_<d><suffix>``, or hashed (see FileDirDict)."""

    name = "filesystem"
    # Subdicts are FileDirDicts opened on a subdirectory (they find the lock root above).
    capabilities = Capabilities(locks_keys=True)

    def __init__(
        self, base: str, *, suffix: str, digest_len: int, hashed: bool, durable: bool,
        journal: Journal, lock_tree: LockTree,
    ) -> None:
        self.base = base
        self.suffix = suffix
        self.digest_len = digest_len
        self.hashed = hashed
        self.durable = durable
        self.journal = journal
        self.lock_tree = lock_tree
        self._paths: dict[tuple[str, ...], tuple[str, KeyLocks, int]] = {}

    # -- paths --------------------------------------------------------------

    def signed(self, strings: tuple[str, ...], with_suffix: bool) -> list[str]:
        """The directory and file names of key components; ValueError if too long."""
        return path_parts(strings, self.digest_len, self.suffix * with_suffix, self.hashed)

    def path(self, key: NonEmptySafeStrTuple) -> str:
        """The absolute file path of ``key`` (ValueError if it cannot have one)."""
        return self.where(key)[0]

    def location(self, key: NonEmptySafeStrTuple) -> str:
        # docstring inherited
        return self.path(key)

    def where(self, key: NonEmptySafeStrTuple) -> tuple[str, KeyLocks, int]:
        """(path, lock file, lock offset) of ``key``, from a bounded cache."""
        strings = key.strings
        hit = self._paths.get(strings)
        if hit is not None:
            return hit
        signed = self.signed(strings, with_suffix=True)
        rel = "/".join(signed)
        locks, name = self.lock_tree.locate(tuple(signed[:-1]), rel)
        hit = (f"{self.base}/{rel}", locks, lock_offset(name))
        if len(self._paths) >= _PATH_CACHE_MAX:
            self._paths.clear()
        self._paths[strings] = hit
        return hit

    def _linked(self, key: NonEmptySafeStrTuple, path: str) -> str | None:
        """A symlink among ``path``'s directories (see file_walk.planted_link)."""
        return planted_link(self.base, path) if self.hashed or len(key.strings) > 1 else None

    @functools.cached_property
    def _no_links_above(self) -> bool:
        """Whether base's own path has no symlink (then openat2 can judge)."""
        return os.path.realpath(self.base) == self.base

    def refuse_link(self, link: str | None, what: str, key: Any = None) -> None:
        """Raise BackendError if ``link`` (a planted directory symlink) is set."""
        if link is not None:
            raise BackendError(
                f"refusing to {what}: {link} is a symlink inside the store "
                f"{self.base} (planted from outside; `persidict check` reports it), and "
                "writing through it would leave the store",
                backend=self.name,
                operation="write" if key is not None else "get_subdict",
                key=key,
            )

    def _fail(self, exc: OSError, operation: str, key: NonEmptySafeStrTuple, path: str) -> None:
        """Raise ``exc`` mapped (key, path, operation) if it is a builtin OSError."""
        if type(exc).__module__ != "builtins":  # ours (lock errors): already clear
            return
        raise StorageOSError.mapping(type(exc))(
            f"key {key.strings!r}: {operation} of {path} failed: "
            f"{exc.strerror or exc} (errno {exc.errno})",
            backend=self.name, operation=operation, key=key, path=path, errno=exc.errno,
        ) from exc

    # -- the contract -------------------------------------------------------

    def _read(self, key: NonEmptySafeStrTuple, path: str) -> bytes | None:
        """The bytes of ``key``; None if absent, a symlink, or under one.

        Below base, openat2(RESOLVE_NO_SYMLINKS) checks every directory
        in the same call as the open (an lstat per level costs more).
        """
        if not self.hashed and len(key.strings) == 1:
            return read_file(path)
        if open_no_symlinks is not None and self._no_links_above:
            try:
                return read_file(path, no_symlinks=True)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
            # A symlink on the path: find out whether it is below base.
        data = read_file(path)
        if data is not None and planted_link(self.base, path) is not None:
            return None
        return data

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited; a file is read whole: its etag is its content's
        path = self.where(key)[0]
        try:
            data = self._read(key, path)
        except OSError as exc:
            self._fail(exc, "read", key, path)
            raise
        if data is None:
            return Blob(ABSENT, None)
        etag = content_etag(data)
        if not body or etag == if_none_match:
            return Blob(etag, None)
        return Blob(etag, data)

    def _current(self, path: str) -> ETagValue | ItemNotAvailableFlag:
        data = read_file(path)
        return ABSENT if data is None else content_etag(data)

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch) -> ETagValue:
        # docstring inherited
        path, locks, offset = self.where(key)
        try:
            with locks.hold_at(offset, key):
                self.refuse_link(self._linked(key, path), f"write key {key!r}", key)
                if isinstance(if_match, ItemNotAvailableFlag):
                    if _is_file(path):
                        raise PreconditionFailed
                elif if_match is not None and self._current(path) != if_match:
                    raise PreconditionFailed
                write_atomic(path, data, durable=self.durable, tmp_dir=self.journal.directory)
        except OSError as exc:
            self._fail(exc, "write", key, path)
            raise
        self.journal.maybe_recover()
        return content_etag(data)

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        path, locks, offset = self.where(key)
        directory = os.path.dirname(path)
        try:
            with locks.hold_at(offset, key):
                if if_match is None and not _is_file(path):
                    return False  # absent, or a symlink (not a key; `check` reports it)
                if self._linked(key, path) is not None:
                    return False  # no key lives under a symlink; never unlink through one
                if if_match is not None and self._current(path) != if_match:
                    raise PreconditionFailed
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    return False
                # The unlink committed the delete: nothing below may raise.
                if self.durable:
                    sync_after_commit(directory)
        except OSError as exc:
            self._fail(exc, "delete", key, path)
            raise
        self._prune(directory)
        return True

    def _prune(self, directory: str) -> None:
        """Remove now-empty directories up to (not including) base.

        A writer racing with us re-creates a directory it finds gone
        (concurrency/atomic.py), and rmdir never removes a non-empty one.
        """
        while len(directory) > len(self.base) and directory.startswith(self.base + "/"):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        # docstring inherited
        path = self.where(key)[0]
        return _is_file(path) and self._linked(key, path) is None

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        path = self.where(key)[0]
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None
        except OSError as exc:
            self._fail(exc, "timestamp", key, path)
            raise
        if not stat.S_ISREG(st.st_mode) or self._linked(key, path) is not None:
            raise KeyError(key)
        return st.st_mtime

    def _listing_failed(self, exc: OSError) -> None:
        """Raise ``exc`` mapped like a key's (a listing has no key) if it is a builtin OSError."""
        if type(exc).__module__ != "builtins":
            return
        raise StorageOSError.mapping(type(exc))(
            f"listing of {self.base} failed: {exc.strerror or exc} (errno {exc.errno})",
            backend=self.name, operation="list", path=self.base, errno=exc.errno,
        ) from exc

    def _listed(self, listing: Iterator[Any]) -> Iterator[Any]:
        """``listing`` with its OSErrors mapped, as they surface while it is consumed."""
        try:
            yield from listing
        except OSError as exc:
            self._listing_failed(exc)
            raise

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited; each directory is read as one snapshot (file_walk.py)
        return self._listed(walk_keys(
            self.base, (), self.suffix, self.digest_len, self.hashed, with_timestamps
        ))

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:
        """Every key, without timestamps: a listing's floor."""
        return self._listed(iter_keys(self.base, (), self.suffix, self.digest_len, self.hashed))

    def count(self) -> int:
        # docstring inherited; counts valid names without building a key per file
        try:
            return count_keys(self.base, self.suffix, self.digest_len, self.hashed)
        except OSError as exc:
            self._listing_failed(exc)
            raise

    def lock(self, key: NonEmptySafeStrTuple) -> AbstractContextManager[None]:
        # docstring inherited
        _, locks, offset = self.where(key)
        return locks.hold_at(offset, key)
