"""FileReads: where FileBytes keeps each key, and the reads, which take no lock.

A key's file is only ever replaced whole by a rename (``file_bytes.py``), so
a reader that opened it sees one whole version. Etags are content hashes.
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
from collections.abc import Callable
from typing import Any, overload

from ..concurrency.atomic import Spare, open_no_symlinks, read_file
from ..concurrency.journal import Journal
from ..concurrency.lock_tree import LockTree
from ..concurrency.locks import KeyLocks, lock_offset
from ..engine.contract import ABSENT, Blob, ByteStore
from ..engine.errors import BackendError, StorageOSError
from ..engine.flags import ETagValue
from ..engine.keys import NonEmptySafeStrTuple
from ..engine.recent import Recent
from .file_walk import path_parts, planted_link
from .key_grants import grant_of, held, note

_PATH_CACHE_MAX = 2048  # recent keys' paths and lock places, twice at most: ~1.2 MB a store

MISSING = object()
"""What FileBytes.decoded returns for an absent key."""

# Each thread's spare read buffer (atomic.Spare), None while lent out.
_spares = threading.local()


def is_key_file(path: str) -> bool:
    """Whether ``path`` is a regular file itself (a symlink is not a key)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def path_of(base: str, suffix: str, digest_len: int, hashed: bool, key: tuple[str, ...]) -> str:
    """The file of ``key`` (its components' strings) under ``base``."""
    return f"{base}/{'/'.join(path_parts(key, digest_len, suffix, hashed))}"


def where_of(paths: Recent[tuple[str, ...], str], lock_tree: LockTree, base: str,
             strings: tuple[str, ...]) -> tuple[str, KeyLocks, int]:
    """(path, lock file, lock offset) of a key: what a mutation of it needs."""
    path = paths[strings]
    rel = path[len(base) + 1 :]
    locks, name = lock_tree.locate(tuple(rel.split("/")[:-1]), rel)
    return path, locks, lock_offset(name)


def content_etag(data: bytes) -> ETagValue:
    """The etag of stored bytes: a function of the content.

    Etags made from stat() (mtime, size, inode) let a stale etag match a
    same-size rewrite in the same clock tick, or a re-created file that got a
    recycled inode. A content hash can only match the same bytes.
    """
    etag: ETagValue = hashlib.sha256(data).hexdigest()[:32]  # type: ignore[assignment]
    return etag  # ETagValue is a NewType: calling it costs a write 0.1 us


class FileReads(ByteStore):
    """FileBytes' lock-free half: where a key's file is, reading it, errors named."""

    name = "filesystem"

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
        self._paths = Recent(functools.partial(path_of, base, suffix, digest_len, hashed),
                             _PATH_CACHE_MAX)
        self._wheres = Recent(functools.partial(where_of, self._paths, lock_tree, base),
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
        grants = held()
        if grants:  # what the grant knew before the read (see note)
            _, locks, offset = self._wheres[key.strings]
            grant = grant_of(locks, offset)
            before = grants.get(grant)
        try:
            data = self._read(key, path)
        except OSError as exc:
            self._fail(exc, "read", key, path)
            raise
        etag = ABSENT if data is None else content_etag(data)
        if grants:
            note(grants, grant, path, etag, before)
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
