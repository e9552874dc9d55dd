"""Jokers, etag conditions, retrieve strategies and status sentinels.

Every flag is a process-wide singleton that keeps its identity through
pickling, so ``result.new_value is ITEM_NOT_AVAILABLE`` holds even for a
result computed in another process.
"""

from __future__ import annotations

from typing import Any, NewType

ETagValue = NewType("ETagValue", str)
"""An opaque version tag of a stored value."""


class SingletonMixin:
    """Base for classes with exactly one instance per (sub)class."""

    _instances: dict[type, Any] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = SingletonMixin._instances.get(cls)
        if instance is None:
            instance = super().__new__(cls)
            SingletonMixin._instances[cls] = instance
        return instance

    def __reduce__(self) -> tuple[type, tuple[()]]:
        # Unpickling calls cls(), which returns the existing singleton.
        return (type(self), ())

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self

    def __repr__(self) -> str:
        return _NAMES.get(type(self), type(self).__name__ + "()")


class Joker(SingletonMixin):
    """Base class for value-less commands that can be assigned to a key."""


class KeepCurrentFlag(Joker):
    """Assigning this to a key leaves its current value unchanged."""


class DeleteCurrentFlag(Joker):
    """Assigning this to a key deletes it (a no-op if it is absent)."""


class ETagConditionFlag(SingletonMixin):
    """Base class for etag conditions of the ``*_if`` operations."""


class AnyETagFlag(ETagConditionFlag):
    """Condition that is always satisfied."""


class ETagIsTheSameFlag(ETagConditionFlag):
    """Condition satisfied when the actual etag equals the expected one."""


class ETagHasChangedFlag(ETagConditionFlag):
    """Condition satisfied when the actual etag differs from the expected one."""


class RetrieveValueFlag(SingletonMixin):
    """Base class for value retrieval strategies of the ``*_if`` operations."""


class AlwaysRetrieveFlag(RetrieveValueFlag):
    """Always fetch the value."""


class NeverRetrieveFlag(RetrieveValueFlag):
    """Never fetch the value; report VALUE_NOT_RETRIEVED instead."""


class IfETagChangedRetrieveFlag(RetrieveValueFlag):
    """Fetch the value only if the actual etag differs from the expected one."""


class ItemNotAvailableFlag(SingletonMixin):
    """Sentinel for an absent key (as etag, value or transformer input)."""


class ValueNotRetrievedFlag(SingletonMixin):
    """Sentinel for a value that exists but was not fetched."""


ETagIfExists = ETagValue | ItemNotAvailableFlag
"""An etag, or ITEM_NOT_AVAILABLE for an absent key."""


KEEP_CURRENT = KeepCurrentFlag()
"""Joker: assigning it leaves the key unchanged."""
DELETE_CURRENT = DeleteCurrentFlag()
"""Joker: assigning it deletes the key (a no-op if absent)."""
ANY_ETAG = AnyETagFlag()
"""Condition that always holds."""
ETAG_IS_THE_SAME = ETagIsTheSameFlag()
"""Condition: the actual etag equals ``expected_etag`` (compare-and-swap)."""
ETAG_HAS_CHANGED = ETagHasChangedFlag()
"""Condition: the actual etag differs from ``expected_etag``."""
ALWAYS_RETRIEVE = AlwaysRetrieveFlag()
"""Retrieve strategy: always report the value."""
NEVER_RETRIEVE = NeverRetrieveFlag()
"""Retrieve strategy: report ``VALUE_NOT_RETRIEVED`` instead of a value."""
IF_ETAG_CHANGED = IfETagChangedRetrieveFlag()
"""Retrieve strategy: report the value only if the etag differs from ``expected_etag``."""
ITEM_NOT_AVAILABLE = ItemNotAvailableFlag()
"""The key is absent: as an etag, a value or a transformer's input."""
VALUE_NOT_RETRIEVED = ValueNotRetrievedFlag()
"""A value exists but was not fetched."""

_NAMES: dict[type, str] = {
    KeepCurrentFlag: "KEEP_CURRENT",
    DeleteCurrentFlag: "DELETE_CURRENT",
    AnyETagFlag: "ANY_ETAG",
    ETagIsTheSameFlag: "ETAG_IS_THE_SAME",
    ETagHasChangedFlag: "ETAG_HAS_CHANGED",
    AlwaysRetrieveFlag: "ALWAYS_RETRIEVE",
    NeverRetrieveFlag: "NEVER_RETRIEVE",
    IfETagChangedRetrieveFlag: "IF_ETAG_CHANGED",
    ItemNotAvailableFlag: "ITEM_NOT_AVAILABLE",
    ValueNotRetrievedFlag: "VALUE_NOT_RETRIEVED",
}


def condition_holds(
    condition: ETagConditionFlag,
    expected: ETagValue | ItemNotAvailableFlag,
    actual: ETagValue | ItemNotAvailableFlag,
) -> bool:
    """Evaluate an etag condition; ITEM_NOT_AVAILABLE equals only itself."""
    if condition is ETAG_IS_THE_SAME:
        return expected == actual
    if condition is ETAG_HAS_CHANGED:
        return expected != actual
    return True


def check_condition_args(
    condition: object, expected_etag: object, retrieve_value: object = IF_ETAG_CHANGED
) -> None:
    """Raise TypeError naming the argument when a flag has the wrong type."""
    if not isinstance(condition, ETagConditionFlag):
        raise TypeError(
            f"condition must be ANY_ETAG, ETAG_IS_THE_SAME or ETAG_HAS_CHANGED, "
            f"got {condition!r}"
        )
    if not isinstance(expected_etag, (str, ItemNotAvailableFlag)):
        raise TypeError(
            f"expected_etag must be an etag string or ITEM_NOT_AVAILABLE, got {expected_etag!r}"
        )
    if not isinstance(retrieve_value, RetrieveValueFlag):
        raise TypeError(
            f"retrieve_value must be ALWAYS_RETRIEVE, NEVER_RETRIEVE or IF_ETAG_CHANGED, "
            f"got {retrieve_value!r}"
        )
