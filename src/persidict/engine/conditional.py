"""The etag-guarded operations, written once over the backend primitives.

Each operation reads a snapshot, decides, and commits with a precondition on
the etag it read (``_put``/``_remove`` with ``if_match``). If the commit's
precondition fails, someone else won in between: re-read and decide again.
The successful commit is the linearization instant; a failed condition
linearizes at the read. Where the caller's own condition pins the
precondition (ETAG_IS_THE_SAME, insert-if-absent), the commit is tried first,
so the common path is one primitive call (one request on S3).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from .errors import ConcurrencyConflictError, OutcomeUnknownError, PreconditionFailed
from .flags import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
    check_condition_args,
    condition_holds,
)
from .keys import NonEmptySafeStrTuple, to_key
from .results import ConditionalOperationResult, OperationResult
from .values import StoreCore, Version

# Re-reads after lost commits are progress made by others, so they are not
# "retries" in the transform_item sense; this only bounds pathological cases.
_MAX_RACES = 10_000


def backoff(attempt: int) -> None:
    """Sleep a jittered, exponentially growing time after a lost race."""
    if attempt > 1:
        time.sleep(random.uniform(0, min(0.05, 0.0002 * 2**attempt)))


def _races() -> Iterator[int]:
    for attempt in range(_MAX_RACES):
        backoff(attempt)
        yield attempt


def _absent(etag: object) -> bool:
    return isinstance(etag, ItemNotAvailableFlag)


def _wants_value(
    retrieve_value: RetrieveValueFlag,
    expected: ETagValue | ItemNotAvailableFlag,
    actual: ETagValue | ItemNotAvailableFlag,
) -> bool:
    """The retrieve_value rule: whether a present value is reported."""
    if retrieve_value is ALWAYS_RETRIEVE:
        return True
    if retrieve_value is NEVER_RETRIEVE:
        return False
    return expected != actual


def _kept(etag: ETagValue | ItemNotAvailableFlag, value: Any) -> Any:
    """What a key holds after a write: ``value``, or nothing if the store discards writes."""
    return ITEM_NOT_AVAILABLE if _absent(etag) else value


def check_n_retries(n_retries: object) -> None:
    """TypeError unless ``n_retries`` is an int or None; ValueError if negative."""
    if n_retries is None:
        return
    if not isinstance(n_retries, int) or isinstance(n_retries, bool):
        raise TypeError(f"n_retries must be an int or None, got {type(n_retries).__name__}")
    if n_retries < 0:
        raise ValueError(f"n_retries must be >= 0 or None, got {n_retries}")


class ConditionalOps(StoreCore):
    """get/set/setdefault/discard ``_if``, transform_item and friends."""

    def _snapshot(
        self,
        key: NonEmptySafeStrTuple,
        retrieve_value: RetrieveValueFlag,
        expected: ETagValue | ItemNotAvailableFlag,
        need_value: bool = True,
    ) -> Version:
        """Read a key fetching only what the retrieve_value rule may report."""
        if not need_value or retrieve_value is NEVER_RETRIEVE:
            return self._get(key, retrieve=False)
        if retrieve_value is IF_ETAG_CHANGED and isinstance(expected, str):
            return self._get(key, retrieve=True, if_none_match=expected)
        return self._get(key, retrieve=True)

    @staticmethod
    def _reported(
        version: Version,
        retrieve_value: RetrieveValueFlag,
        expected: ETagValue | ItemNotAvailableFlag,
    ) -> Any:
        if _absent(version.etag):
            return ITEM_NOT_AVAILABLE
        if _wants_value(retrieve_value, expected, version.etag):
            return version.value
        return VALUE_NOT_RETRIEVED

    def get_item_if(
        self,
        key: Any,
        *,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Read a key and evaluate an etag condition against it, atomically.

        Nothing is written: the result says whether ``condition`` held at the
        instant of the read, and the etag and value seen then.

        Parameters
        ----------
        key : str or sequence of str
            The key to read.
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``: how the
            actual etag must compare with ``expected_etag``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw, or ``ITEM_NOT_AVAILABLE`` for
            "the key was absent".
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Whether ``new_value`` reports a present value: ``ALWAYS_RETRIEVE``,
            ``NEVER_RETRIEVE`` (``VALUE_NOT_RETRIEVED`` instead) or
            ``IF_ETAG_CHANGED`` (only if ``expected_etag`` differs from the
            actual etag, so an unchanged value is not transferred again).

        Returns
        -------
        ConditionalOperationResult
            ``condition_was_satisfied``; ``actual_etag`` and ``resulting_etag``
            (both the etag read, ``ITEM_NOT_AVAILABLE`` if absent); and
            ``new_value``: ``ITEM_NOT_AVAILABLE`` if the key is absent, else
            the value or ``VALUE_NOT_RETRIEVED`` as ``retrieve_value`` says.

        Raises
        ------
        TypeError
            A flag argument has the wrong type (the message names it), or
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.

        Notes
        -----
        Atomic: etag, value and condition come from one snapshot of the key
        (one request on S3; a ``GET If-None-Match`` for ``IF_ETAG_CHANGED``).
        """
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        version = self._snapshot(k, retrieve_value, expected_etag)
        return ConditionalOperationResult(
            condition_holds(condition, expected_etag, version.etag),
            version.etag,
            version.etag,
            self._reported(version, retrieve_value, expected_etag),
        )

    def get_with_etag(self, key: Any) -> ConditionalOperationResult[Any]:
        """Return the value of a key together with its etag, from one snapshot.

        Parameters
        ----------
        key : str or sequence of str
            The key to read.

        Returns
        -------
        ConditionalOperationResult
            ``condition_was_satisfied`` is True; ``actual_etag`` and
            ``resulting_etag`` are the etag read; ``new_value`` is the value
            (``ITEM_NOT_AVAILABLE`` for both if the key is absent).

        Raises
        ------
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.

        Notes
        -----
        Atomic: the etag belongs to exactly the value returned, so it can be
        passed as ``expected_etag`` to a later ``set_item_if``.
        """
        k = to_key(key)
        version = self._get(k, retrieve=True)
        return ConditionalOperationResult(True, version.etag, version.etag, version.value)

    def etag(self, key: Any) -> ETagValue:
        """Return the current etag of a key.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up.

        Returns
        -------
        ETagValue
            An opaque tag that changes with every write of the key.

        Raises
        ------
        KeyError
            The key is absent.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is empty, too long, ``.``/``..``
            or holds unsafe characters.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        """
        k = to_key(key)
        etag = self._get(k, retrieve=False).etag
        if isinstance(etag, ItemNotAvailableFlag):
            raise KeyError(k)
        return etag

    def set_item_if(
        self,
        key: Any,
        *,
        value: Any,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Store ``value`` (or apply a joker) only if the etag condition holds.

        Parameters
        ----------
        key : str or sequence of str
            The key to write.
        value : object
            The new value, or a joker: ``KEEP_CURRENT`` (write nothing) or
            ``DELETE_CURRENT`` (delete the key if the condition holds).
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``: how the
            actual etag must compare with ``expected_etag``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw, or ``ITEM_NOT_AVAILABLE`` for
            "the key was absent".
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Whether ``new_value`` reports a present value: ``ALWAYS_RETRIEVE``,
            ``NEVER_RETRIEVE`` (``VALUE_NOT_RETRIEVED`` instead) or
            ``IF_ETAG_CHANGED`` (only if ``expected_etag`` differs from the
            actual etag, so an unchanged value is not transferred again).

        Returns
        -------
        ConditionalOperationResult
            ``condition_was_satisfied``; ``actual_etag``: the etag checked;
            ``resulting_etag``: the etag after the call (the new value's
            etag on a write, ``ITEM_NOT_AVAILABLE`` after a delete, else
            ``actual_etag``); ``new_value``: the value now stored (on a
            failed condition, reported as ``retrieve_value`` says).

        Raises
        ------
        MutationPolicyError
            The store is append-only and ``value`` is ``DELETE_CURRENT``, or
            the condition holds on an existing key (an overwrite); nothing
            is written. WriteOnceDict refuses every call.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        TypeError
            A flag argument has the wrong type, ``value`` is not an instance
            of ``base_class_for_values`` or cannot be serialized, or ``key``
            is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Linearizable on every store whose primitives are atomic (all of
        them): the write is committed only against the very etag for which
        the condition was checked, so a concurrent writer can never slip in
        between check and write. With ``ETAG_IS_THE_SAME`` the common path
        is one conditional write (one ``PUT If-Match`` on S3).
        """
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        is_joker = value is KEEP_CURRENT or value is DELETE_CURRENT
        if not is_joker:
            self._check_value(k, value)
        if value is DELETE_CURRENT:
            self._forbid_if_append_only()
        overwrite_forbidden = self._append_only and not _absent(expected_etag)
        if condition is ETAG_IS_THE_SAME and not is_joker and not overwrite_forbidden:
            # The precondition is the caller's: one conditional write decides.
            try:
                etag = self._put(k, value, if_match=expected_etag)
                return ConditionalOperationResult(True, expected_etag, etag, _kept(etag, value))
            except PreconditionFailed:
                pass
        need_value = condition is not ANY_ETAG or value is KEEP_CURRENT
        for _ in _races():
            version = self._snapshot(k, retrieve_value, expected_etag, need_value)
            actual = version.etag
            if not condition_holds(condition, expected_etag, actual) or value is KEEP_CURRENT:
                reported = self._reported(version, retrieve_value, expected_etag)
                satisfied = condition_holds(condition, expected_etag, actual)
                return ConditionalOperationResult(satisfied, actual, actual, reported)
            try:
                if value is DELETE_CURRENT:
                    if not _absent(actual):
                        self._remove(k, if_match=actual)  # type: ignore[arg-type]
                    return ConditionalOperationResult(
                        True, actual, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
                    )
                etag = self._put(k, value, if_match=actual)
                return ConditionalOperationResult(True, actual, etag, _kept(etag, value))
            except PreconditionFailed:
                continue
        raise ConcurrencyConflictError(k, _MAX_RACES)

    def setdefault_if(
        self,
        key: Any,
        *,
        default_value: Any,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Insert ``default_value`` if the key is absent and the condition holds.

        A present key is never modified, whatever the condition.

        Parameters
        ----------
        key : str or sequence of str
            The key to insert.
        default_value : object
            The value to insert (jokers are refused).
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``: how the
            actual etag must compare with ``expected_etag``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw, or ``ITEM_NOT_AVAILABLE`` for
            "the key was absent".
        retrieve_value : RetrieveValueFlag, default IF_ETAG_CHANGED
            Whether ``new_value`` reports a present value: ``ALWAYS_RETRIEVE``,
            ``NEVER_RETRIEVE`` (``VALUE_NOT_RETRIEVED`` instead) or
            ``IF_ETAG_CHANGED`` (only if ``expected_etag`` differs from the
            actual etag, so an unchanged value is not transferred again).

        Returns
        -------
        ConditionalOperationResult
            After an insert: ``actual_etag`` is ``ITEM_NOT_AVAILABLE`` and
            ``new_value`` is ``default_value``. Otherwise ``actual_etag`` and
            ``resulting_etag`` are the current etag and ``new_value`` the
            present value as ``retrieve_value`` says.

        Raises
        ------
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        TypeError
            A flag argument has the wrong type, ``default_value`` is a joker,
            not an instance of ``base_class_for_values`` or cannot be
            serialized, or ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Atomic insert-if-absent: of many concurrent callers exactly one
        inserts (``PUT If-None-Match: *`` on S3); the others see its value.
        """
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        self._check_value(k, default_value)
        inserts_if_absent = condition_holds(condition, expected_etag, ITEM_NOT_AVAILABLE)
        for _ in _races():
            if inserts_if_absent:
                try:
                    etag = self._put(k, default_value, if_match=ITEM_NOT_AVAILABLE)
                    return ConditionalOperationResult(
                        True, ITEM_NOT_AVAILABLE, etag, _kept(etag, default_value)
                    )
                except PreconditionFailed:
                    pass
            version = self._snapshot(k, retrieve_value, expected_etag)
            if _absent(version.etag) and inserts_if_absent:
                continue  # deleted since our insert attempt: try again
            return ConditionalOperationResult(
                condition_holds(condition, expected_etag, version.etag),
                version.etag,
                version.etag,
                self._reported(version, retrieve_value, expected_etag),
            )
        raise ConcurrencyConflictError(k, _MAX_RACES)

    def discard_if(
        self,
        key: Any,
        *,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
    ) -> ConditionalOperationResult[Any]:
        """Delete a key only if the etag condition holds, atomically.

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``: how the
            actual etag must compare with ``expected_etag``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw, or ``ITEM_NOT_AVAILABLE`` for
            "the key was absent".

        Returns
        -------
        ConditionalOperationResult
            ``actual_etag``: the etag checked; ``resulting_etag`` and
            ``new_value`` are ``ITEM_NOT_AVAILABLE`` after a delete or for a
            missing key; ``new_value`` is ``VALUE_NOT_RETRIEVED`` when the
            condition fails on a present key.

        Raises
        ------
        MutationPolicyError
            The store is append-only: nothing is ever deleted.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to concurrent
            writers (each loss is another writer's progress).
        TypeError
            A flag argument has the wrong type (the message names it), or
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            The storage failed (an I/O or S3 error); the store is unchanged.
        OutcomeUnknownError
            S3 only: the reply to the committing request was lost and the
            server's state cannot prove whether it was applied.

        Notes
        -----
        Linearizable: the delete is committed only against the etag the
        condition was checked on (``DELETE If-Match`` on S3).
        """
        check_condition_args(condition, expected_etag)
        k = to_key(key)
        self._forbid_if_append_only()
        if condition is ETAG_IS_THE_SAME and isinstance(expected_etag, str):
            try:
                self._remove(k, if_match=expected_etag)
                return ConditionalOperationResult(
                    True, expected_etag, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
                )
            except PreconditionFailed:
                pass
        for _ in _races():
            actual = self._get(k, retrieve=False).etag
            if _absent(actual):
                satisfied = condition_holds(condition, expected_etag, actual)
                return ConditionalOperationResult(
                    satisfied, actual, actual, ITEM_NOT_AVAILABLE
                )
            if not condition_holds(condition, expected_etag, actual):
                return ConditionalOperationResult(False, actual, actual, VALUE_NOT_RETRIEVED)
            try:
                self._remove(k, if_match=actual)  # type: ignore[arg-type]
                return ConditionalOperationResult(
                    True, actual, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
                )
            except PreconditionFailed:
                continue
        raise ConcurrencyConflictError(k, _MAX_RACES)

    def transform_item(
        self, key: Any, *, transformer: Any, n_retries: int | None = 6
    ) -> OperationResult[Any]:
        """Apply ``transformer(current)`` and commit its result with compare-and-swap.

        Parameters
        ----------
        key : str or sequence of str
            The key to transform.
        transformer : callable
            Called with the current value (``ITEM_NOT_AVAILABLE`` for an
            absent key); returns the new value, ``KEEP_CURRENT`` (write
            nothing) or ``DELETE_CURRENT`` (delete the key). It runs outside
            any lock and may be called again after a lost race, so it must
            have no side effects.
        n_retries : int or None, default 6
            How many lost races to retry before giving up; ``None`` retries
            without limit.

        Returns
        -------
        OperationResult
            ``resulting_etag`` and ``new_value`` after the commit
            (``ITEM_NOT_AVAILABLE`` for both after a delete).

        Raises
        ------
        ConcurrencyConflictError
            ``n_retries`` commits in a row lost to concurrent writers.
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
        """
        check_n_retries(n_retries)
        if not callable(transformer):
            raise TypeError(f"transformer must be callable, got {transformer!r}")
        k = to_key(key)
        if self._bytes.capabilities.discards_writes:
            return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)  # nothing to transform
        attempt = 0
        while True:
            version = self._get(k, retrieve=True)
            new_value = transformer(version.value)
            if new_value is KEEP_CURRENT:
                return OperationResult(version.etag, version.value)
            try:
                if new_value is DELETE_CURRENT:
                    if _absent(version.etag):
                        return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
                    self._remove(k, if_match=version.etag)  # type: ignore[arg-type]
                    return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
                etag = self._put(k, new_value, if_match=version.etag)
                return OperationResult(etag, _kept(etag, new_value))
            except PreconditionFailed:
                attempt += 1
                if n_retries is not None and attempt > n_retries:
                    raise ConcurrencyConflictError(k, attempt) from None
                backoff(attempt + 1)

    def setdefault(self, key: Any, default: Any = None) -> Any:
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
            if _absent(version.etag):
                raise
            return version.value
        for _ in _races():
            try:
                self._put(k, default, if_match=ITEM_NOT_AVAILABLE)
                return default
            except PreconditionFailed:
                pass
            version = self._get(k, retrieve=True)
            if not _absent(version.etag):
                return version.value
        raise ConcurrencyConflictError(k, _MAX_RACES)

    def _pop_version(self, k: NonEmptySafeStrTuple) -> Version:
        """Atomically remove ``k``; return the removed snapshot (etag absent if none)."""
        self._forbid_if_append_only()
        for _ in _races():
            version = self._get(k, retrieve=True)
            if _absent(version.etag):
                return version
            try:
                self._remove(k, if_match=version.etag)  # type: ignore[arg-type]
                return version
            except PreconditionFailed:
                continue
            except OutcomeUnknownError as exc:
                exc.value = version.value  # what was being removed reaches the caller
                raise
        raise ConcurrencyConflictError(k, _MAX_RACES)

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
        if _absent(version.etag):
            if args:
                return args[0]
            raise KeyError(k)
        return version.value

    def popitem(self) -> tuple[NonEmptySafeStrTuple, Any]:
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
        for _ in _races():
            listed_any = False
            for k, _ in self._iter_keys():
                listed_any = True
                version = self._pop_version(k)
                if not _absent(version.etag):
                    return k, version.value
            # Every key listed was popped by others first: list again. Only a
            # listing that finds no key at all shows the store empty.
            if not listed_any:
                raise KeyError("popitem(): dictionary is empty")
        raise ConcurrencyConflictError("popitem()", _MAX_RACES)

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
