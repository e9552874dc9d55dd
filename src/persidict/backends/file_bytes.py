"""FileBytes: the ByteStore of FileDirDict, one file per key under a directory.

Mutations of a key hold that key's lock (``concurrency/locks.py``) and
replace its file by renaming a fully written temp file, so readers take no
lock and always see a whole old or new value (``file_reads.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from itertools import chain, repeat
from typing import Any

from ..concurrency.atomic import parent_dir, read_file, sync_after_commit, write_atomic
from ..concurrency.locks import KeyLocks
from ..concurrency.locks_common import fork_generation
from ..engine.contract import ABSENT, Capabilities, Change, IfMatch, Listed
from ..engine.errors import PreconditionFailed
from ..engine.flags import KEEP_CURRENT, ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple
from .file_reads import MISSING, FileReads, content_etag, is_key_file
from .file_walk import count_keys, key_chunks, walk_keys
from .key_grants import Grant, Holding, Seen, Using, grant_of, held

__all__ = ["MISSING", "FileBytes", "content_etag"]


class FileBytes(FileReads):
    """Keys as files under ``base``: ``a_<d>/b_<d><suffix>``, or hashed (see FileDirDict)."""

    # Subdicts are FileDirDicts opened on a subdirectory (they find the lock root above).
    capabilities = Capabilities(locks_keys=True)

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
                if isinstance(if_match, ItemNotAvailableFlag):
                    if is_key_file(path) if known is None else known is not ABSENT:
                        raise PreconditionFailed
                elif if_match is not None and (
                    self._current(path) if known is None else known
                ) != if_match:
                    raise PreconditionFailed
                self._replace(key, path, data)
        except OSError as exc:
            self._fail(exc, "write", key, path)
            raise
        self.journal.maybe_recover()

    def _replace(self, key: NonEmptySafeStrTuple, path: str, data: bytes) -> None:
        """Replace the file of ``key`` (its lock held) unless a planted symlink is on the way."""
        link = self._linked(key, path)
        if link is not None:
            self.refuse_link(link, f"write key {key!r}", key)
        write_atomic(path, data, durable=self.durable, tmp_dir=self.journal.directory)

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        path, locks, offset = self.where(key)
        try:
            exclusive = self._exclusive(locks, offset, key, path, ABSENT)
            with exclusive as known:
                if (if_match is None and not is_key_file(path)) or (
                    self._linked(key, path) is not None  # no key lives under a symlink
                ):
                    # Absent, a symlink or under one: nothing changed, and
                    # what a held grant knew of the key still holds.
                    if isinstance(exclusive, Using):
                        exclusive.keep()
                    return False
                if if_match is not None and (
                    self._current(path) if known is None else known
                ) != if_match:
                    raise PreconditionFailed
                try:
                    self._unlink(path)
                except (FileNotFoundError, NotADirectoryError):
                    return False
        except OSError as exc:
            self._fail(exc, "delete", key, path)
            raise
        self._prune(parent_dir(path))
        return True

    def _unlink(self, path: str) -> None:
        """Unlink a key's file, its lock held: the commit of a delete; nothing after raises."""
        os.unlink(path)
        if self.durable:
            sync_after_commit(parent_dir(path))

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

        Re-entrant per thread (a nested lock(key) or update(key) holds
        nothing more), so code run under it may write the key; other threads
        and processes wait.
        """
        _, locks, offset = self.where(key)
        grants = held()
        grant = grant_of(locks, offset)
        if grant in grants:
            return nullcontext()
        return Holding(grants, grant, locks.hold_at(offset, key))

    def update(
        self, key: NonEmptySafeStrTuple, change: Change
    ) -> ETagValue | ItemNotAvailableFlag | None:
        # docstring inherited; re-entrant like lock(key)
        path, locks, offset = self.where(key)
        grants = held()
        grant = grant_of(locks, offset)
        if grant in grants:
            return self._update_held(key, path, grants, grant, change)
        with locks.hold_at(offset, key):
            try:
                return self._update_held(key, path, grants, grant, change)
            finally:
                grants.pop(grant, None)

    def _update_held(
        self, key: NonEmptySafeStrTuple, path: str, grants: dict[Grant, Seen], grant: Grant,
        change: Change,
    ) -> ETagValue | ItemNotAvailableFlag | None:
        """update() with the key's grant held: read, change, commit; no etag compared.

        The grant holds a fresh mark from before the read until the commit
        decides: if it is still there, this thread wrote nothing to the key
        meanwhile (a signal handler's write included). Each swap of the grant
        pops it first, and while it is out a re-entrant write of the key is
        refused (``hold_at``), so no write slips between a check and a commit.
        """
        prior = grants.pop(grant, None)  # absent: the lock was just taken
        mark: Seen = (path, None)
        grants[grant] = mark
        try:
            try:
                data = self._read(key, path)
            except OSError as exc:
                self._fail(exc, "read", key, path)
                raise
            new = change(data)
        except BaseException:
            seen = grants.pop(grant, None)
            grants[grant] = prior if seen is mark else seen
            raise
        # Withdrawn until the commit is done. Gone only if a handler's exception
        # the transformer swallowed cut a nested update short: then retry.
        seen = grants.pop(grant, None)
        if seen is not mark or grant[2] != fork_generation():
            # Or ``change`` forked and this is the child, which holds no lock:
            # it retries under its own (its parent's grant is not its own).
            grants[grant] = seen
            return None
        if new is KEEP_CURRENT or (new is None and data is None):
            grants[grant] = prior
            return ABSENT if data is None else content_etag(data)
        after: Seen = (path, None)  # unknown if interrupted: a fresh tuple (see Seen)
        try:
            if new is None:
                # A key file (_read found it, under no symlink), unless removed
                # from outside the store's locks: then it is gone all the same.
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    self._unlink(path)
                after = (path, ABSENT)
            else:
                assert isinstance(new, bytes)
                etag = content_etag(new)
                self._replace(key, path, new)
                after = (path, etag)
        except OSError as exc:
            self._fail(exc, "delete" if new is None else "write", key, path)
            raise
        finally:
            grants[grant] = after
        if new is None:
            self._prune(parent_dir(path))
            return ABSENT
        self.journal.maybe_recover()
        return etag
