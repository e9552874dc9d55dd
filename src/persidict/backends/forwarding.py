"""A store over another store's bytes (the wrapper base)."""

from __future__ import annotations

from typing import Any

from ..engine.persidict import PersiDict
from ..engine.results import ValueType


def require_persidict(name: str, value: object) -> PersiDict[Any]:
    """Return ``value`` if it is a PersiDict, else raise TypeError naming ``name``."""
    if not isinstance(value, PersiDict):
        raise TypeError(f"{name} must be a PersiDict, got {type(value).__name__}")
    return value


class ForwardingStore(PersiDict[ValueType]):
    """A value layer of its own over the wrapped store's ``byte_store``.

    The wrapper has the wrapped store's format and ``base_class_for_values``
    and its own policy (``append_only``, write-once); everything reaches the
    bytes through the wrapped store's public ByteStore, so the wrapper is
    exactly as atomic as it. Subclasses override only what they change.
    """

    _inner: PersiDict[ValueType]

    def _init_forwarding(self, inner: PersiDict[ValueType], *, append_only: bool) -> None:
        super().__init__(
            append_only=append_only,
            base_class_for_values=inner.base_class_for_values,
            serialization_format=inner.serialization_format,
        )
        self._inner = inner
        self._bytes = inner.byte_store
