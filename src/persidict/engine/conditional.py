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

from typing import Any

from .errors import ConcurrencyConflictError, PreconditionFailed
from .flags import (
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    VALUE_NOT_RETRIEVED,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    Joker,
    RetrieveValueFlag,
    check_condition_args,
    condition_holds,
)
from .keys import to_key
from .races import MAX_RACES, absent, kept, races
from .reads import ReadOps
from .results import ConditionalOperationResult, ValueType


class ConditionalOps(ReadOps[ValueType]):
    """set_item_if, setdefault_if and discard_if."""

    def set_item_if(
        self,
        key: Any,
        *,
        value: ValueType | Joker,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[ValueType]:
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
        overwrite_forbidden = self._append_only and not absent(expected_etag)
        if condition is ETAG_IS_THE_SAME and not is_joker and not overwrite_forbidden:
            # The precondition is the caller's: one conditional write decides.
            try:
                etag = self._put(k, value, if_match=expected_etag)
                return ConditionalOperationResult(True, expected_etag, etag, kept(etag, value))
            except PreconditionFailed:
                pass
        need_value = condition is not ANY_ETAG or value is KEEP_CURRENT
        for _ in races():
            version = self._snapshot(k, retrieve_value, expected_etag, need_value)
            actual = version.etag
            if not condition_holds(condition, expected_etag, actual) or value is KEEP_CURRENT:
                return self._as_read(version, condition, expected_etag, retrieve_value)
            try:
                if value is DELETE_CURRENT:
                    if not absent(actual):
                        self._remove(k, if_match=actual)  # type: ignore[arg-type]
                    return ConditionalOperationResult(
                        True, actual, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
                    )
                etag = self._put(k, value, if_match=actual)
                return ConditionalOperationResult(True, actual, etag, kept(etag, value))
            except PreconditionFailed:
                continue
        raise ConcurrencyConflictError(k, MAX_RACES)

    def setdefault_if(
        self,
        key: Any,
        *,
        default_value: ValueType,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[ValueType]:
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
        for _ in races():
            if inserts_if_absent:
                try:
                    etag = self._put(k, default_value, if_match=ITEM_NOT_AVAILABLE)
                    return ConditionalOperationResult(
                        True, ITEM_NOT_AVAILABLE, etag, kept(etag, default_value)
                    )
                except PreconditionFailed:
                    pass
            version = self._snapshot(k, retrieve_value, expected_etag)
            if absent(version.etag) and inserts_if_absent:
                continue  # deleted since our insert attempt: try again
            return self._as_read(version, condition, expected_etag, retrieve_value)
        raise ConcurrencyConflictError(k, MAX_RACES)

    def discard_if(
        self,
        key: Any,
        *,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
    ) -> ConditionalOperationResult[ValueType]:
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
        for _ in races():
            actual = self._get(k, retrieve=False).etag
            if absent(actual):
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
        raise ConcurrencyConflictError(k, MAX_RACES)

