"""PersiDict: the dict-like API over the backend primitives."""

from __future__ import annotations

import copy
import heapq
import random
from collections.abc import Iterator, Mapping, MutableMapping
from operator import itemgetter
from typing import Any, TypeVar

from .conditional import ConditionalOps
from .flags import DELETE_CURRENT, KEEP_CURRENT
from .keys import NonEmptySafeStrTuple, SafeStrTuple, to_key, to_prefix

ValueType = TypeVar("ValueType")
_MISSING = object()


class PersiDict(ConditionalOps, MutableMapping[NonEmptySafeStrTuple, ValueType]):
    """Abstract dict-like interface for durable key-value stores.

    Keys are non-empty sequences of URL/filename-safe strings (a str is a
    one-component key). Insertion order is not preserved. Subclasses
    provide a ByteStore (``byte_store``, see ``contract.py``); every
    operation here is built on it, so it is as atomic as it is.
    """

    # -- item access ----------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        return self._load(to_key(key))

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default`` if absent."""
        try:
            return self._load(to_key(key))
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        k = to_key(key)
        if value is KEEP_CURRENT:
            return
        if value is DELETE_CURRENT:
            self.discard(k)
            return
        self._put(k, value, if_match=None)

    def __delitem__(self, key: Any) -> None:
        k = to_key(key)
        self._forbid_if_append_only()
        if not self._remove(k, if_match=None):
            raise KeyError(k)

    def __contains__(self, key: object) -> bool:
        return self._contains(to_key(key))

    def timestamp(self, key: Any) -> float:
        """POSIX time of the last write of ``key``; KeyError if absent."""
        return self._timestamp(to_key(key))

    # -- listing --------------------------------------------------------------

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        return map(itemgetter(0), self._iter_keys())

    def __len__(self) -> int:
        return self._bytes.count()

    def __bool__(self) -> bool:
        return next(iter(self._iter_keys()), None) is not None

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:  # type: ignore[override]
        """Iterate over keys (streamed, never listed in memory)."""
        return iter(self)

    def keys_and_timestamps(self) -> Iterator[tuple[NonEmptySafeStrTuple, float]]:
        """Iterate over (key, timestamp) pairs."""
        yield from self._iter_keys(with_timestamps=True)  # type: ignore[misc]

    def items(self) -> Iterator[tuple[NonEmptySafeStrTuple, Any]]:  # type: ignore[override]
        """Iterate over (key, value); keys deleted while iterating are skipped."""
        for k, _ in self._iter_keys():
            value = self._get_or_missing(k)
            if value is not _MISSING:
                yield k, value

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        """Iterate over values."""
        for _, v in self.items():
            yield v

    def values_and_timestamps(self) -> Iterator[tuple[Any, float]]:
        """Iterate over (value, timestamp) pairs; keys deleted while iterating are skipped."""
        for _, value, ts in self.items_and_timestamps():
            yield value, ts

    def items_and_timestamps(self) -> Iterator[tuple[NonEmptySafeStrTuple, Any, float]]:
        """Iterate over (key, value, timestamp) triples."""
        for k, ts in self._iter_keys(with_timestamps=True):
            value = self._get_or_missing(k)
            if value is not _MISSING:
                yield k, value, ts  # type: ignore[misc]

    def _get_or_missing(self, k: NonEmptySafeStrTuple) -> Any:
        try:
            return self._load(k)
        except KeyError:
            return _MISSING

    def clear(self) -> None:
        """Remove every item of this store's serialization format."""
        self._forbid_if_append_only()
        for k, _ in list(self._iter_keys()):
            self._remove(k, if_match=None)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set items from a mapping or iterable of pairs, then from kwargs."""
        pairs = other.items() if isinstance(other, Mapping) else other
        for k, v in pairs:
            self[k] = v
        for k, v in kwargs.items():
            self[k] = v

    def __ior__(self, other: Any) -> PersiDict[ValueType]:
        self.update(other)
        return self

    def __eq__(self, other: object) -> bool:
        """Equal to a mapping with the same content (any store, a dict...).

        Two stores of one type with the same parameters are the same store.
        Otherwise the lengths must agree and every key of ``other``, taken as
        a key, must hold an equal value here; a key or value that cannot be
        compared (KeyError, TypeError, AttributeError, ValueError) means unequal.
        """
        if self is other:
            return True
        if not isinstance(other, Mapping):
            return NotImplemented
        if type(other) is type(self):
            try:
                if other.get_params() == self.get_params():
                    return True
            except (TypeError, ValueError):
                pass
        try:
            if len(self) != len(other):
                return False
            for k in other:
                mine = self._load(to_key(k))
                theirs = other[k]
                if mine is not theirs and not mine == theirs:
                    return False
        except (KeyError, TypeError, AttributeError, ValueError):
            return False
        return True

    # A mutable mapping, like dict: equal stores may hold other content later.
    __hash__ = None  # type: ignore[assignment]

    # -- prefixes ---------------------------------------------------------------

    def get_subdict(self, prefix_key: Any) -> Any:
        """A store restricted to keys under ``prefix_key`` (empty prefix: all).

        Built on ``byte_store.child``: the same configuration over the child's bytes.
        """
        child = self._bytes.child(to_prefix(prefix_key))
        clone = copy.copy(self)  # rebuilt from get_params()
        clone._bytes = child  # noqa: SLF001  (a copy of self: this class's own attribute)
        return clone

    def subdicts(self) -> dict[str, Any]:
        """Map each first-level key component that has keys below it to its subdict."""
        firsts: dict[str, None] = {}
        for k, _ in self._iter_keys():
            if len(k) > 1:
                firsts.setdefault(k.strings[0], None)
        return {name: self.get_subdict(SafeStrTuple(name)) for name in firsts}

    # -- age and sampling -------------------------------------------------------

    def _by_age(self, max_n: int | None, newest: bool) -> list[NonEmptySafeStrTuple]:
        if max_n is not None and max_n <= 0:
            return []
        stamped = self.keys_and_timestamps()
        pick = heapq.nlargest if newest else heapq.nsmallest
        if max_n is None:
            return [k for k, _ in sorted(stamped, key=lambda p: p[1], reverse=newest)]
        return [k for k, _ in pick(max_n, stamped, key=lambda p: p[1])]

    def newest_keys(self, *, max_n: int | None = None) -> list[NonEmptySafeStrTuple]:
        """Up to ``max_n`` keys, newest first (all if None, none if <= 0)."""
        return self._by_age(max_n, newest=True)

    def oldest_keys(self, *, max_n: int | None = None) -> list[NonEmptySafeStrTuple]:
        """Up to ``max_n`` keys, oldest first (all if None, none if <= 0)."""
        return self._by_age(max_n, newest=False)

    def newest_values(self, *, max_n: int | None = None) -> list[Any]:
        """Values of newest_keys(max_n=max_n); keys deleted meanwhile are skipped."""
        return self._values_of(self.newest_keys(max_n=max_n))

    def oldest_values(self, *, max_n: int | None = None) -> list[Any]:
        """Values of oldest_keys(max_n=max_n); keys deleted meanwhile are skipped."""
        return self._values_of(self.oldest_keys(max_n=max_n))

    def _values_of(self, keys: list[NonEmptySafeStrTuple]) -> list[Any]:
        values = (self._get_or_missing(k) for k in keys)
        return [v for v in values if v is not _MISSING]

    def random_key(self) -> NonEmptySafeStrTuple | None:
        """A uniformly random key (reservoir sampling, streamed), or None if empty."""
        chosen: NonEmptySafeStrTuple | None = None
        for n, (k, _) in enumerate(self._iter_keys(), start=1):
            if random.randrange(n) == 0:
                chosen = k
        return chosen
