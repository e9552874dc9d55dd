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
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from itertools import chain, repeat
from typing import Any, overload

from ..concurrency.atomic import (
    Spare,
    open_no_symlinks,
    parent_dir,
    read_file,
    sync_after_commit,
    write_atomic,
)
from ..concurrency.journal import Journal
from ..concurrency.lock_tree import LockTree
from ..concurrency.locks import KeyLocks, lock_offset
from ..engine.contract import ABSENT, Blob, ByteStore, Capabilities, IfMatch, Listed
from ..engine.errors import BackendError, PreconditionFailed, StorageOSError
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple
from ..engine.recent import Recent
from .file_walk import count_keys, key_chunks, path_parts, planted_link, walk_keys
from .key_grants import Holding, Using, grant_of, held, note

_PATH_CACHE_MAX = 2048  # recent keys' paths and lock places, twice at most: ~1.2 MB a store

MISSING = object()
"""What FileBytes.decoded returns for an absent key."""

# Each thread's spare read buffer (atomic.Spare), None while lent out.
_spares = threading.local()

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


def _path_of(base: str, suffix: str, digest_len: int, hashed: bool, key: tuple[str, ...]) -> str:
    return f"{base}/{'/'.join(path_parts(key, digest_len, suffix, hashed))}"


def _where_of(paths: Recent[tuple[str, ...], str], lock_tree: LockTree, base: str,
              strings: tuple[str, ...]) -> tuple[str, KeyLocks, int]:
    path = paths[strings]
    rel = path[len(base) + 1 :]
    locks, name = lock_tree.locate(tuple(rel.split("/")[:-1]), rel)
    return path, locks, lock_offset(name)


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
        # The makers hold no reference to self: a cycle would keep the lock file open.
        self._paths = Recent(functools.partial(_path_of, base, suffix, digest_len, hashed),
                             _PATH_CACHE_MAX)
        self._wheres = Recent(functools.partial(_where_of, self._paths, lock_tree, base),
                              _PATH_CACHE_MAX)

    # -- paths --------------------------------------------------------------

    def path(self, key: NonEmptySafeStrTuple) -> str:
        """The absolute file path of ``key`` (ValueError if it cannot have one)."""
        return self._paths[key.strings]

    location = path  # the contract's name of it

    def where(self, key: NonEmptySafeStrTuple) -> tuple[str, KeyLocks, int]:
        """(path, lock file, lock offset) of ``key``: what a mutation needs (a read: path)."""
        return self._wheres[key.strings]

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

    def _fail(self, exc: OSError, operation: str, key: NonEmptySafeStrTuple | None = None,
              path: str | None = None) -> None:
        """Raise ``exc`` mapped (key, path, operation) if it is a builtin OSError.

        Without ``key`` it is a listing's error, of the whole store.
        """
        if type(exc).__module__ != "builtins":  # ours (lock errors): already clear
            return
        what = (f"listing of {self.base}" if key is None
                else f"key {key.strings!r}: {operation} of {path}")
        raise StorageOSError.mapping(type(exc))(
            f"{what} failed: {exc.strerror or exc} (errno {exc.errno})", backend=self.name,
            operation=operation, key=key, path=self.base if path is None else path,
            errno=exc.errno,
        ) from exc

    # -- the contract -------------------------------------------------------

    @overload
    def _read(self, key: NonEmptySafeStrTuple, path: str, spare: None = None) -> bytes | None: ...
    @overload
    def _read(
        self, key: NonEmptySafeStrTuple, path: str, spare: Spare
    ) -> bytes | memoryview | None: ...
    def _read(
        self, key: NonEmptySafeStrTuple, path: str, spare: Spare | None = None
    ) -> bytes | memoryview | None:
        """The bytes of ``key``; None if absent, a symlink, or under one.

        Below base, openat2(RESOLVE_NO_SYMLINKS) checks every directory
        in the same call as the open (an lstat per level costs more).
        ``spare``: a big file may come back as a view of it (read_file).
        """
        if not self.hashed and len(key.strings) == 1:
            return read_file(path, spare=spare)
        if open_no_symlinks is not None and self._no_links_above:
            try:
                return read_file(path, no_symlinks=True, spare=spare)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
            # A symlink on the path: find out whether it is below base.
        data = read_file(path, spare=spare)
        if data is not None and planted_link(self.base, path) is not None:
            return None
        return data

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited; a file is read whole: its etag is its content's
        path = self._paths[key.strings]
        try:
            data = self._read(key, path)
        except OSError as exc:
            self._fail(exc, "read", key, path)
            raise
        etag = ABSENT if data is None else content_etag(data)
        grants = held()
        if grants:
            _, locks, offset = self._wheres[key.strings]
            note(grants, grant_of(locks, offset), path, etag)
        if data is None:
            return Blob(ABSENT, None)
        if not body or etag == if_none_match:
            return Blob(etag, None)
        return Blob(etag, data)

    def read_data(self, key: NonEmptySafeStrTuple) -> bytes | None:
        """The bytes of ``key`` or None: a plain get needs no etag (no hash)."""
        path = self._paths[key.strings]
        try:
            return self._read(key, path)
        except OSError as exc:
            self._fail(exc, "read", key, path)
            raise

    def decoded(self, key: NonEmptySafeStrTuple, decode: Callable[[Any], Any]) -> Any:
        """``decode(bytes of key)``, or MISSING if absent; no etag is computed.

        A big file is read into this thread's spare buffer and ``decode``
        gets a memoryview of it, valid only during the call (pickle.loads
        copies what it keeps): one big allocation per read, not two. The
        buffer is lent out meanwhile, so a read inside ``decode`` uses its own.
        """
        path = self._paths[key.strings]
        spare: Spare = getattr(_spares, "spare", None) or Spare()
        _spares.spare = None
        data: bytes | memoryview | None = None
        try:
            data = self._read(key, path, spare)
            return MISSING if data is None else decode(data)
        except OSError as exc:
            self._fail(exc, "read", key, path)
            raise
        finally:
            if isinstance(data, memoryview):
                try:
                    data.release()
                except BufferError:  # decode kept a view of it: let it have the buffer
                    spare = Spare()
            _spares.spare = spare

    def _exclusive(
        self, locks: KeyLocks, offset: int, key: NonEmptySafeStrTuple, path: str,
        after: ETagValue | ItemNotAvailableFlag | None,
    ) -> AbstractContextManager[ETagValue | ItemNotAvailableFlag | None]:
        """The key's lock for one mutation leaving ``after`` (None: unknown); gives the etag known.

        Inside lock(key) there is no lock to take and the etag is known
        (``key_grants.py``); otherwise the lock is taken and nothing is known.
        """
        grants = held()
        if grants:
            grant = grant_of(locks, offset)
            if grant in grants:
                return Using(grants, grant, path, after)
        return locks.hold_at(offset, key)

    def _current(self, path: str) -> ETagValue | ItemNotAvailableFlag:
        data = read_file(path)
        return ABSENT if data is None else content_etag(data)

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch) -> ETagValue:
        # docstring inherited
        etag = content_etag(data)
        self._write(key, data, if_match, etag)
        return etag

    def put(self, key: NonEmptySafeStrTuple, data: bytes) -> None:
        """Store ``data`` unconditionally, computing no etag (a plain ``d[k] = v``).

        The etag is a hash of the content: on 1 MiB it costs as much as the
        write itself, and a plain set returns none.
        """
        self._write(key, data, None, None)

    def _write(
        self, key: NonEmptySafeStrTuple, data: bytes, if_match: IfMatch, etag: ETagValue | None
    ) -> None:
        """write() with the new etag given (None: not computed)."""
        path, locks, offset = self.where(key)
        try:
            with self._exclusive(locks, offset, key, path, etag) as known:
                link = self._linked(key, path)
                if link is not None:
                    self.refuse_link(link, f"write key {key!r}", key)
                if isinstance(if_match, ItemNotAvailableFlag):
                    if _is_file(path) if known is None else known is not ABSENT:
                        raise PreconditionFailed
                elif if_match is not None and (
                    self._current(path) if known is None else known
                ) != if_match:
                    raise PreconditionFailed
                write_atomic(path, data, durable=self.durable, tmp_dir=self.journal.directory)
        except OSError as exc:
            self._fail(exc, "write", key, path)
            raise
        self.journal.maybe_recover()

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        path, locks, offset = self.where(key)
        directory = parent_dir(path)
        try:
            with self._exclusive(locks, offset, key, path, ABSENT) as known:
                if if_match is None and not _is_file(path):
                    return False  # absent, or a symlink (not a key; `check` reports it)
                if self._linked(key, path) is not None:
                    return False  # no key lives under a symlink; never unlink through one
                if if_match is not None and (
                    self._current(path) if known is None else known
                ) != if_match:
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

    def _regular(self, key: NonEmptySafeStrTuple, operation: str) -> os.stat_result | None:
        """lstat of ``key``'s file if it is a key (a regular file under no planted link)."""
        path = self._paths[key.strings]
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # ENAMETOOLONG, EACCES...: mapped as every operation's are
            self._fail(exc, operation, key, path)
            raise
        return st if stat.S_ISREG(st.st_mode) and self._linked(key, path) is None else None

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        # docstring inherited
        return self._regular(key, "contains") is not None

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        st = self._regular(key, "timestamp")
        if st is None:
            raise KeyError(key)
        return st.st_mtime

    def _listed(self, listing: Iterator[Any]) -> Iterator[Any]:
        """``listing`` with its OSErrors mapped, as they surface while it is consumed."""
        try:
            yield from listing
        except OSError as exc:
            self._fail(exc, "list")
            raise

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited; each directory is read as one snapshot (file_walk.py)
        if not with_timestamps:  # errors mapped a chunk at a time, not a generator step a key
            return zip(self.keys(), repeat(None))
        walk = walk_keys(self.base, (), self.suffix, self.digest_len, self.hashed, True)
        return self._listed(walk)

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:
        """Every key, without timestamps: a listing's floor (chained in C, a chunk at a time)."""
        chunks = key_chunks(self.base, (), self.suffix, self.digest_len, self.hashed)
        return chain.from_iterable(self._listed(chunks))

    def count(self) -> int:
        # docstring inherited; counts valid names without building a key per file
        try:
            return count_keys(self.base, self.suffix, self.digest_len, self.hashed)
        except OSError as exc:
            self._fail(exc, "list")
            raise

    def lock(self, key: NonEmptySafeStrTuple) -> AbstractContextManager[None]:
        """Hold ``key``'s lock; this thread's writes and deletes of it then take none.

        Re-entrant per thread (a nested lock(key) holds nothing more), so
        code run under it may write the key (transform_item's commit then
        sees the etag changed); other threads and processes wait.
        """
        _, locks, offset = self.where(key)
        grants = held()
        grant = grant_of(locks, offset)
        if grant in grants:
            return nullcontext()
        return Holding(grants, grant, locks.hold_at(offset, key))
