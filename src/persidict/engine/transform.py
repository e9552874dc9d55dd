"""The transform_item callback protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .flags import ItemNotAvailableFlag, Joker
from .results import ValueType


@runtime_checkable  # isinstance(f, TransformingFunction): whether f is callable
class TransformingFunction(Protocol[ValueType]):
    """Receives the current value (or ITEM_NOT_AVAILABLE) and returns the new
    value, KEEP_CURRENT or DELETE_CURRENT."""

    def __call__(self, value: ValueType | ItemNotAvailableFlag, /) -> ValueType | Joker: ...
