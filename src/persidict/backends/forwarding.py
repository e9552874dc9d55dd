"""A store that forwards every primitive to another store (the wrapper base)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..engine.contract import Version
from ..engine.flags import ETagValue, ItemNotAvailableFlag
from ..engine.keys import NonEmptySafeStrTuple
from ..engine.persidict import PersiDict


def require_persidict(name: str, value: object) -> PersiDict[Any]:
    """Return ``value`` if it is a PersiDict, else raise TypeError naming ``name``."""
    if not isinstance(value, PersiDict):
        raise TypeError(f"{name} must be a PersiDict, got {type(value).__name__}")
    return value


class ForwardingStore(PersiDict[Any]):
    """Forwards the primitives to ``self._inner``; subclasses override what they change.

    Because the rich API is built on the primitives, a wrapper inherits the
    inner store's atomicity for everything it does not override.
    """

    _inner: PersiDict[Any]

    def _init_forwarding(self, inner: PersiDict[Any], *, append_only: bool) -> None:
        super().__init__(
            append_only=append_only,
            base_class_for_values=inner.base_class_for_values,
            serialization_format=inner.serialization_format,
        )
        self._inner = inner
        self._backend_name = inner._backend_name

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        return self._inner._get(key, retrieve=retrieve, if_none_match=if_none_match)

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        return self._inner._load(key)

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        return self._inner._put(key, value, if_match=if_match, want_etag=want_etag)

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        return self._inner._remove(key, if_match=if_match)

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        return self._inner._contains(key)

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        return self._inner._timestamp(key)

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        return self._inner._iter_keys(with_timestamps=with_timestamps)

    def __len__(self) -> int:
        return len(self._inner)
