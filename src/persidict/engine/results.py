"""Results of conditional and transforming operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .flags import ETagValue, ItemNotAvailableFlag, ValueNotRetrievedFlag

if TYPE_CHECKING:
    # PEP 696 default (typing only, so no runtime dependency before 3.13):
    # an unparameterized ``FileDirDict(...)`` is ``FileDirDict[Any]``.
    from typing_extensions import TypeVar as DefaultedTypeVar

    ValueType = DefaultedTypeVar("ValueType", default=Any)
else:
    ValueType = TypeVar("ValueType")
"""The type of a store's values: ``FileDirDict[int]`` holds ints."""


@dataclass(frozen=True, init=False)
class ConditionalOperationResult(Generic[ValueType]):
    """Outcome of an etag-guarded operation, as of its linearization instant.

    Attributes
    ----------
    condition_was_satisfied : bool
        Whether the etag condition held at that instant.
    actual_etag : ETagValue or ITEM_NOT_AVAILABLE
        The etag the condition was checked against (``ITEM_NOT_AVAILABLE``:
        the key was absent).
    resulting_etag : ETagValue or ITEM_NOT_AVAILABLE
        The etag right after the operation (equal to ``actual_etag`` if
        nothing changed).
    new_value : object, ITEM_NOT_AVAILABLE or VALUE_NOT_RETRIEVED
        The value after the operation, ``ITEM_NOT_AVAILABLE`` if the key is
        absent then, or ``VALUE_NOT_RETRIEVED`` if it was not fetched.
    """

    condition_was_satisfied: bool
    actual_etag: ETagValue | ItemNotAvailableFlag
    resulting_etag: ETagValue | ItemNotAvailableFlag
    new_value: ValueType | ItemNotAvailableFlag | ValueNotRetrievedFlag

    def __init__(
        self,
        condition_was_satisfied: bool,
        actual_etag: ETagValue | ItemNotAvailableFlag,
        resulting_etag: ETagValue | ItemNotAvailableFlag,
        new_value: ValueType | ItemNotAvailableFlag | ValueNotRetrievedFlag,
    ) -> None:
        # Fields filled in place: a frozen dataclass's generated __init__ calls
        # object.__setattr__ per field, which doubles the cost of a result.
        fields = self.__dict__
        fields["condition_was_satisfied"] = condition_was_satisfied
        fields["actual_etag"] = actual_etag
        fields["resulting_etag"] = resulting_etag
        fields["new_value"] = new_value

    @property
    def value_was_mutated(self) -> bool:
        """Whether the operation changed the stored value (the etag moved)."""
        return self.resulting_etag != self.actual_etag


@dataclass(frozen=True, init=False)
class OperationResult(Generic[ValueType]):
    """Outcome of an unconditional mutating operation (transform_item).

    Attributes
    ----------
    resulting_etag : ETagValue or ITEM_NOT_AVAILABLE
        The etag after the commit (``ITEM_NOT_AVAILABLE`` after a delete).
    new_value : object or ITEM_NOT_AVAILABLE
        The value after the commit.
    """

    resulting_etag: ETagValue | ItemNotAvailableFlag
    new_value: ValueType | ItemNotAvailableFlag

    def __init__(
        self,
        resulting_etag: ETagValue | ItemNotAvailableFlag,
        new_value: ValueType | ItemNotAvailableFlag,
    ) -> None:
        fields = self.__dict__  # as ConditionalOperationResult's
        fields["resulting_etag"] = resulting_etag
        fields["new_value"] = new_value
