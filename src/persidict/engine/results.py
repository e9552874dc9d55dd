"""Results of conditional and transforming operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from .flags import ETagValue, ItemNotAvailableFlag, ValueNotRetrievedFlag

ValueType = TypeVar("ValueType")


@dataclass(frozen=True)
class ConditionalOperationResult(Generic[ValueType]):
    """Outcome of an etag-guarded operation, as of its linearization instant."""

    condition_was_satisfied: bool
    actual_etag: ETagValue | ItemNotAvailableFlag
    resulting_etag: ETagValue | ItemNotAvailableFlag
    new_value: ValueType | ItemNotAvailableFlag | ValueNotRetrievedFlag

    @property
    def value_was_mutated(self) -> bool:
        """Whether the operation changed the stored value."""
        return self.resulting_etag != self.actual_etag


@dataclass(frozen=True)
class OperationResult(Generic[ValueType]):
    """Outcome of an unconditional mutating operation (transform_item)."""

    resulting_etag: ETagValue | ItemNotAvailableFlag
    new_value: ValueType | ItemNotAvailableFlag
