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

        new_value follows the retrieve_value rule: ITEM_NOT_AVAILABLE if the key
        is absent; else the value for ALWAYS_RETRIEVE, VALUE_NOT_RETRIEVED for
        NEVER_RETRIEVE, and for IF_ETAG_CHANGED the value only if
        expected_etag differs from the actual etag.
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
        """Return the value and its etag from one snapshot."""
        k = to_key(key)
        version = self._get(k, retrieve=True)
        return ConditionalOperationResult(True, version.etag, version.etag, version.value)

    def etag(self, key: Any) -> ETagValue:
        """Return the etag of a key; KeyError if absent."""
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

        Linearizable on every backend whose primitives are atomic.
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

        A present key is never modified. Atomic insert-if-absent.
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

        new_value is ITEM_NOT_AVAILABLE after a delete or for a missing key,
        VALUE_NOT_RETRIEVED when the condition fails on a present key.
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
        """Apply ``transformer(current)`` and commit it with compare-and-swap.

        ``current`` is ITEM_NOT_AVAILABLE for an absent key. The transformer
        runs outside any lock and may be called again after a lost race;
        after ``n_retries`` lost races ConcurrencyConflictError is raised
        (``None`` retries without limit).
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
        """Insert ``default`` if the key is absent; return the current value."""
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
        """Remove a key and return its value (or the default), atomically."""
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
        """Remove and return some (key, value); each item goes to exactly one caller."""
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
        """Delete a key if present; return whether it was there."""
        k = to_key(key)
        self._forbid_if_append_only()
        return self._remove(k, if_match=None)

    def delete_if_exists(self, key: Any) -> bool:
        """Backward-compatible alias of discard()."""
        return self.discard(key)
