"""Operations built on the etag-guarded ones: transform_item, setdefault, pop, clear.

Each is a loop of snapshot and conditional commit (see ``conditional.py``),
so it is linearizable wherever the backend's primitives are atomic.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from .conditional import ConditionalOps
from .errors import ConcurrencyConflictError, OutcomeUnknownError, PreconditionFailed
from .flags import DELETE_CURRENT, ITEM_NOT_AVAILABLE, KEEP_CURRENT
from .keys import NonEmptySafeStrTuple, to_key
from .races import MAX_RACES, absent, backoff, check_n_retries, kept, races
from .results import OperationResult, ValueType
from .transform import TransformingFunction
from .values import Version

_Default = TypeVar("_Default")


class CompoundOps(ConditionalOps[ValueType]):
    """transform_item, setdefault, pop, popitem, discard, delete_if_exists, clear."""

    def transform_item(
        self,
        key: Any,
        *,
        transformer: TransformingFunction[ValueType],
        n_retries: int | None = 6,
    ) -> OperationResult[ValueType]:
        """Apply ``transformer(current)`` and commit its result with compare-and-swap.

        Parameters
        ----------
        key : str or sequence of str
            The key to transform.
        transformer : TransformingFunction[ValueType]
            Called with the current value (``ITEM_NOT_AVAILABLE`` for an
            absent key); returns the new value, ``KEEP_CURRENT`` (write
            nothing) or ``DELETE_CURRENT`` (delete the key). Where the
            backend locks keys (FileDirDict) it runs under the key's lock,
            so concurrent transforms of one key queue instead of racing;
            elsewhere (S3, LocalDict) it runs outside any lock and may be
            called again after a lost race. It must have no side effects.
        n_retries : int or None, default 6
            How many lost commits to retry before giving up; ``None`` retries
            without limit. Under a key lock a commit loses only to a write
            that bypasses the lock (the transformer's own write of the key).

        Returns
        -------
        OperationResult
            ``resulting_etag`` and ``new_value`` after the commit
            (``ITEM_NOT_AVAILABLE`` for both after a delete).

        Raises
        ------
        ConcurrencyConflictError
            ``n_retries`` commits in a row lost to concurrent writers (never
            to other transforms of the key where the backend locks keys).
        LockTimeoutError
            FileDirDict: the key's lock was not acquired within
            ``lock_timeout`` (another holder's transformer ran that long).
        MutationPolicyError
            The store is append-only and the result would change or delete
            an existing value.
        TypeError
            ``transformer`` is not callable, ``n_retries`` is not an int or
            None, the new value is not an instance of
            ``base_class_for_values`` or cannot be serialized, or ``key`` is
            not a str or a sequence of str.
        ValueError
            ``n_retries`` is negative, or ``key`` is empty or invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic read-modify-write: the result is committed only if the key
        still holds the version the transformer saw, so no concurrent
        update is ever lost. Whatever ``transformer`` raises propagates and
        nothing is written.

        Under a key lock (FileDirDict) other writers of the key wait while
        the transformer runs: keep it short. It may read any key. Writing
        the key it transforms (directly or by a nested transform_item of
        it) does not deadlock (the lock is re-entrant within a thread) but
        makes this commit lose, as on every store. Writing *other* keys
        takes their locks while this one is held: two such transformers
        taking two keys' locks in opposite orders wait on each other until
        ``lock_timeout`` raises LockTimeoutError; write other keys after
        transform_item returns instead.
        """
        check_n_retries(n_retries)
        if not callable(transformer):
            raise TypeError(f"transformer must be callable, got {transformer!r}")
        k = to_key(key)
        capabilities = self._bytes.capabilities
        if capabilities.discards_writes:
            return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)  # nothing to transform
        attempt = 0
        while True:
            if capabilities.locks_keys:
                result = self._transform_locked(k, transformer)
            else:
                result = self._transform_once(k, transformer)
            if result is not None:
                return result
            attempt += 1
            if n_retries is not None and attempt > n_retries:
                raise ConcurrencyConflictError(k, attempt)
            backoff(attempt + 1)

    def _transform_locked(
        self, k: NonEmptySafeStrTuple, transformer: Any
    ) -> OperationResult[Any] | None:
        """One transform through the backend's ``update`` (under the key's lock).

        No other writer can commit meanwhile, so no etag is read or compared;
        None if the transformer itself wrote the key (the caller retries).
        Append-only: changing or deleting a present value raises
        MutationPolicyError, decided on the bytes read under the lock (an
        etag noted by a read could be stale: a signal handler may insert
        between the read and its note).
        """
        seen: list[Any] = []

        def change(data: bytes | None) -> Any:
            old = ITEM_NOT_AVAILABLE if data is None else self._decode(k, data)
            new = transformer(old)
            seen[:] = old, new
            if new is KEEP_CURRENT:
                return KEEP_CURRENT
            if new is not DELETE_CURRENT:
                self._check_value(k, new)
            if self._append_only and data is not None:
                raise self._policy_error()
            if new is DELETE_CURRENT:
                return None
            return self._encode(k, new)

        etag = self._bytes.update(k, change)
        if etag is None:
            return None
        old, new = seen
        if new is KEEP_CURRENT:
            return OperationResult(etag, old)
        if new is DELETE_CURRENT:
            return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
        return OperationResult(etag, kept(etag, new))

    def _transform_once(
        self, k: NonEmptySafeStrTuple, transformer: Any
    ) -> OperationResult[Any] | None:
        """Snapshot, transform, commit on the snapshot's etag; None if the commit lost."""
        version = self._get(k, retrieve=True)
        new_value = transformer(version.value)
        if new_value is KEEP_CURRENT:
            return OperationResult(version.etag, version.value)
        try:
            if new_value is DELETE_CURRENT:
                if not absent(version.etag):
                    self._remove(k, if_match=version.etag)  # type: ignore[arg-type]
                return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
            etag = self._put(k, new_value, if_match=version.etag)
            return OperationResult(etag, kept(etag, new_value))
        except PreconditionFailed:
            return None

    @overload
    def setdefault(self, key: Any, default: None = None) -> ValueType | None: ...
    @overload
    def setdefault(self, key: Any, default: ValueType) -> ValueType: ...
    def setdefault(self, key: Any, default: ValueType | None = None) -> ValueType | None:
        """Insert ``default`` if the key is absent; return the value now stored.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up or insert.
        default : object, default None
            The value to insert if the key is absent.

        Returns
        -------
        object
            ``default`` if this call inserted it, else the present value.

        Raises
        ------
        TypeError
            ``default`` is a joker, or it would be inserted and is not an
            instance of ``base_class_for_values`` or cannot be serialized;
            or ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        MutationPolicyError
            Never: inserting into an append-only store is allowed.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic insert-if-absent: of many concurrent callers exactly one
        inserts, and every caller returns that one value.
        """
        k = to_key(key)
        if default is KEEP_CURRENT or default is DELETE_CURRENT:
            raise TypeError(f"key {k.strings!r}: {default!r} cannot be a default value")
        try:
            self._check_value(k, default)
        except TypeError:
            # An invalid default is only an error if it would be inserted.
            version = self._get(k, retrieve=True)
            if absent(version.etag):
                raise
            present: ValueType = version.value
            return present
        for _ in races():
            try:
                self._put(k, default, if_match=ITEM_NOT_AVAILABLE)
                return default
            except PreconditionFailed:
                pass
            version = self._get(k, retrieve=True)
            if not absent(version.etag):
                present = version.value
                return present
        raise ConcurrencyConflictError(k, MAX_RACES)

    def _pop_version(self, k: NonEmptySafeStrTuple) -> Version:
        """Atomically remove ``k``; return the removed snapshot (etag absent if none)."""
        self._forbid_if_append_only()
        for _ in races():
            version = self._get(k, retrieve=True)
            if absent(version.etag):
                return version
            try:
                self._remove(k, if_match=version.etag)  # type: ignore[arg-type]
                return version
            except PreconditionFailed:
                continue
            except OutcomeUnknownError as exc:
                exc.value = version.value  # what was being removed reaches the caller
                raise
        raise ConcurrencyConflictError(k, MAX_RACES)

    @overload
    def pop(self, key: Any) -> ValueType: ...
    @overload
    def pop(self, key: Any, default: ValueType, /) -> ValueType: ...
    @overload
    def pop(self, key: Any, default: _Default, /) -> ValueType | _Default: ...
    def pop(self, key: Any, *args: Any) -> Any:
        """Remove a key and return its value, or ``default`` if it is absent.

        Parameters
        ----------
        key : str or sequence of str
            The key to remove.
        *args : object
            At most one: ``default``, returned when the key is absent
            (without it, an absent key raises KeyError).

        Returns
        -------
        object
            The value removed, or ``default``.

        Raises
        ------
        KeyError
            The key is absent and no ``default`` was given.
        MutationPolicyError
            The store is append-only.
        TypeError
            More than two arguments, or ``key`` is not a str or a sequence
            of str.
        ValueError
            ``key`` is empty or a component is invalid.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the delete's reply was lost; ``exc.value`` holds the
            value being removed.

        Notes
        -----
        Atomic: the value returned is exactly the one deleted (a
        conditional delete on its etag), so of concurrent callers popping
        one key only one gets its value.
        """
        if len(args) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(args)}")
        k = to_key(key)
        version = self._pop_version(k)
        if absent(version.etag):
            if args:
                return args[0]
            raise KeyError(k)
        return version.value

    def popitem(self) -> tuple[NonEmptySafeStrTuple, ValueType]:
        """Remove and return some ``(key, value)`` pair.

        Returns
        -------
        tuple of (NonEmptySafeStrTuple, object)
            The key removed and its value.

        Raises
        ------
        KeyError
            The store is empty.
        MutationPolicyError
            The store is append-only.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic per item: each item goes to exactly one caller, and KeyError
        is raised only when a listing finds no key at all. Which item is
        taken is unspecified.
        """
        self._forbid_if_append_only()
        for _ in races():
            listed_any = False
            for k, _ in self._iter_keys():
                listed_any = True
                version = self._pop_version(k)
                if not absent(version.etag):
                    return k, version.value
            # Every key listed was popped by others first: list again. Only a
            # listing that finds no key at all shows the store empty.
            if not listed_any:
                raise KeyError("popitem(): dictionary is empty")
        raise ConcurrencyConflictError("popitem()", MAX_RACES)

    def discard(self, key: Any) -> bool:
        """Delete a key if it is present.

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.

        Returns
        -------
        bool
            Whether the key was present (and so deleted by this call).

        Raises
        ------
        MutationPolicyError
            The store is append-only.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic: of concurrent callers deleting one key, exactly one gets
        True.
        """
        k = to_key(key)
        self._forbid_if_append_only()
        return self._remove(k, if_match=None)

    def delete_if_exists(self, key: Any) -> bool:
        """Delete a key if present; kept for backward compatibility.

        The same as [`discard`][persidict.PersiDict.discard].

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.

        Returns
        -------
        bool
            Whether the key was present.

        Raises
        ------
        MutationPolicyError
            The store is append-only.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        """
        return self.discard(key)
