"""EmptyDict: the null device of stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..engine.conditional import check_n_retries
from ..engine.contract import Version
from ..engine.errors import PreconditionFailed
from ..engine.flags import (
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
    RetrieveValueFlag,
    check_condition_args,
    condition_holds,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult, OperationResult


class EmptyDict(PersiDict[Any]):
    """Accepts every write and discards it; always reads as empty.

    Writes are still validated (keys, jokers, base_class_for_values), so code
    that works against EmptyDict makes the same calls a real store accepts.
    """

    _backend_name = "empty"

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        return Version(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        if isinstance(if_match, str):
            raise PreconditionFailed  # nothing is ever present to match
        return None

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        if if_match is not None:
            raise PreconditionFailed
        return False

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        raise KeyError(key)

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        return iter(())

    def _discarded(
        self, key: Any, value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag, retrieve_value: RetrieveValueFlag,
    ) -> ConditionalOperationResult[Any]:
        check_condition_args(condition, expected_etag, retrieve_value)
        k = to_key(key)
        if value is not None:
            self._check_value(k, value)
        satisfied = condition_holds(condition, expected_etag, ITEM_NOT_AVAILABLE)
        return ConditionalOperationResult(
            satisfied, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE
        )

    def set_item_if(
        self, key: Any, *, value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Key is always absent; condition evaluated, write discarded on success."""
        from ..engine.flags import Joker

        return self._discarded(
            key, None if isinstance(value, Joker) else value, condition, expected_etag,
            retrieve_value,
        )

    def setdefault_if(
        self, key: Any, *, default_value: Any, condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
        retrieve_value: RetrieveValueFlag = IF_ETAG_CHANGED,
    ) -> ConditionalOperationResult[Any]:
        """Key is always absent; condition evaluated, write discarded on success."""
        self._check_value(to_key(key), default_value)
        return self._discarded(key, default_value, condition, expected_etag, retrieve_value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Return ``default`` without storing it."""
        k = to_key(key)
        self._check_value(k, default)
        return default

    def discard(self, key: Any) -> bool:
        """Always False: no key ever exists (even when append-only)."""
        to_key(key)
        return False

    def delete_if_exists(self, key: Any) -> bool:
        """Backward-compatible alias of discard(); always False."""
        return self.discard(key)

    def transform_item(
        self, key: Any, *, transformer: Any, n_retries: int | None = 6
    ) -> OperationResult[Any]:
        """No-op: returns ITEM_NOT_AVAILABLE without calling the transformer."""
        check_n_retries(n_retries)
        to_key(key)
        return OperationResult(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)

    def get_subdict(self, prefix_key: Any) -> EmptyDict:
        """A new EmptyDict with the same configuration."""
        return EmptyDict(**self.get_params())
