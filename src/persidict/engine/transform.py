"""transform_item: an atomic read-modify-write, and its callback protocol.

Where the backend locks keys it is one ``ByteStore.update`` under the key's
lock; elsewhere a loop of snapshot and compare-and-swap on the etag.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .conditional import ConditionalOps
from .errors import ConcurrencyConflictError, PreconditionFailed
from .flags import DELETE_CURRENT, ITEM_NOT_AVAILABLE, KEEP_CURRENT, ItemNotAvailableFlag, Joker
from .keys import NonEmptySafeStrTuple, to_key
from .races import absent, backoff, check_n_retries, kept
from .results import OperationResult, ValueType


@runtime_checkable  # isinstance(f, TransformingFunction): whether f is callable
class TransformingFunction(Protocol[ValueType]):
    """Receives the current value (or ITEM_NOT_AVAILABLE) and returns the new
    value, KEEP_CURRENT or DELETE_CURRENT."""

    def __call__(self, value: ValueType | ItemNotAvailableFlag, /) -> ValueType | Joker: ...


class TransformOps(ConditionalOps[ValueType]):
    """transform_item."""

    def transform_item(
        self,
        key: Any,
        *,
        transformer: TransformingFunction[ValueType],
        n_retries: int | None = 6,
    ) -> OperationResult[ValueType]:
        """Apply ``transformer(current)`` and commit its result atomically.

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
        MutationPolicyError, decided on the bytes read under the lock.
        """
        old: Any = None
        new: Any = None

        def change(data: bytes | None) -> Any:
            nonlocal old, new
            old = ITEM_NOT_AVAILABLE if data is None else self._decode(k, data)
            new = transformer(old)
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
        if new is KEEP_CURRENT:
            return OperationResult(etag, old)
        if new is DELETE_CURRENT:
            return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
        return OperationResult(etag, new)  # a store that discards writes returned earlier

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
