"""The backend contract: a small store of bytes under normalized keys.

A backend is a ``ByteStore``. It knows nothing of values, codecs or
policies: it keeps ``bytes`` under ``NonEmptySafeStrTuple`` keys, each with
an opaque etag that changes on every write (or is a function of the bytes).
It implements five atomic operations:

- ``read(key, body=, if_none_match=)`` -> ``Blob(etag, data)``: one
  consistent snapshot. Absent: ``Blob(ITEM_NOT_AVAILABLE, None)``. ``data``
  is None when ``body`` is false or the etag equals ``if_none_match`` ("not
  modified": no body is fetched);
- ``write(key, data, if_match=)`` -> the new etag (ITEM_NOT_AVAILABLE from a
  store that discards writes). ``if_match`` None writes
  unconditionally, ITEM_NOT_AVAILABLE only if the key is absent, an etag only
  if it is the current one; otherwise it raises ``PreconditionFailed`` and
  stores nothing;
- ``delete(key, if_match=)`` -> whether the key existed. With an etag it
  deletes only that version (``PreconditionFailed`` if absent or changed);
- ``timestamp(key)``: POSIX time of the last write (KeyError if absent);
- ``scan(with_timestamps=)``: stream ``(key, timestamp or None)``.

It declares ``capabilities`` rather than letting callers guess: ``subdicts``
(``child(prefix)`` gives the store of the keys under a prefix), ``locks_keys``
(``lock(key)`` is an exclusive per-key lock between threads and processes)
and ``discards_writes`` (writes succeed and vanish: the null store).
``name`` names the backend in errors; ``location(key)`` says where a key
lives, for messages. ``contains`` and ``count`` have defaults built on the
five operations; a backend overrides them only to be faster.

Everything above bytes -- codecs, ``base_class_for_values``, append-only and
write-once rules, jokers, the ``*_if`` operations, transform_item -- is the
value layer's (``values.py``, ``conditional.py``, ``persidict.py``), written
once. Every store exposes its backend as ``PersiDict.byte_store``; a wrapper
talks to what it wraps through that object and the public API only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

from .flags import ITEM_NOT_AVAILABLE, ETagValue, ItemNotAvailableFlag
from .keys import NonEmptySafeStrTuple, SafeStrTuple

__all__ = ["ABSENT", "Blob", "ByteStore", "Capabilities", "IfMatch", "Listed"]

ABSENT: ItemNotAvailableFlag = ITEM_NOT_AVAILABLE
"""``if_match=ABSENT``: write only if the key is absent; a read's etag when absent."""

IfMatch = ETagValue | ItemNotAvailableFlag | None
Listed = Iterator[tuple[NonEmptySafeStrTuple, float | None]]


class Blob(NamedTuple):
    """One consistent snapshot of a key: its etag and, if fetched, its bytes."""

    etag: ETagValue | ItemNotAvailableFlag
    data: bytes | None


@dataclass(frozen=True)
class Capabilities:
    """What a ByteStore can do beyond the five operations (declared, never probed)."""

    subdicts: bool = False
    """``child(prefix)`` returns the store of the keys under ``prefix``."""
    locks_keys: bool = False
    """``lock(key)`` holds an exclusive per-key lock across threads and processes."""
    discards_writes: bool = False
    """Writes succeed and are dropped; reads always find nothing (the null store)."""


class ByteStore(ABC):
    """The backend contract (see the module docstring)."""

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        """Snapshot of ``key``; ``data`` is None if absent, not asked for, or not modified."""

    @abstractmethod
    def write(
        self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        """Atomically store ``data`` if ``if_match`` holds; return the new etag.

        Raises PreconditionFailed (storing nothing) when it does not. A store
        that discards writes returns ITEM_NOT_AVAILABLE.
        """

    @abstractmethod
    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        """Atomically delete ``key`` (only version ``if_match`` if given); True if it was there."""

    @abstractmethod
    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        """POSIX time of the last write of ``key``; KeyError if absent."""

    @abstractmethod
    def scan(self, *, with_timestamps: bool = False) -> Listed:
        """Stream ``(key, timestamp or None)`` for every key."""

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        """Whether ``key`` is present."""
        return not isinstance(self.read(key, body=False).etag, ItemNotAvailableFlag)

    def count(self) -> int:
        """The number of keys."""
        return sum(1 for _ in self.scan())

    def location(self, key: NonEmptySafeStrTuple) -> str:
        """Where ``key`` lives (a path, a URL), for error messages."""
        return f"{self.name}:{'/'.join(key.strings)}"

    def child(self, prefix: SafeStrTuple) -> ByteStore:
        """The store of the keys under ``prefix`` (needs ``capabilities.subdicts``)."""
        raise NotImplementedError(f"{type(self).__name__} has no hierarchical key space")

    def lock(self, key: NonEmptySafeStrTuple) -> AbstractContextManager[None]:
        """An exclusive lock on ``key`` (needs ``capabilities.locks_keys``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot lock a key")
