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
(``lock(key)`` is an exclusive per-key lock between threads and processes,
and ``update(key, change)`` a read-modify-write under it)
and ``discards_writes`` (writes succeed and vanish: the null store).
``name`` names the backend in errors; ``location(key)`` says where a key
lives, for messages. ``contains``, ``count`` and ``keys`` have defaults built
on the five operations, and ``put`` (a write whose etag nobody needs) on
``write``; a backend overrides them only to be faster.

Everything above bytes -- codecs, ``base_class_for_values``, append-only and
write-once rules, jokers, the ``*_if`` operations, transform_item -- is the
value layer's (``values.py`` and the engine modules built on it, up to
``persidict.py``), written once. Every store exposes its backend as
``PersiDict.byte_store``; a wrapper talks to what it wraps through that
object and the public API only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

from .errors import PreconditionFailed
from .flags import (
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    ETagValue,
    ItemNotAvailableFlag,
    KeepCurrentFlag,
)
from .keys import NonEmptySafeStrTuple, SafeStrTuple

__all__ = ["ABSENT", "Blob", "ByteStore", "Capabilities", "Change", "IfMatch", "Listed"]

ABSENT: ItemNotAvailableFlag = ITEM_NOT_AVAILABLE
"""``if_match=ABSENT``: write only if the key is absent; a read's etag when absent."""

IfMatch = ETagValue | ItemNotAvailableFlag | None
Listed = Iterator[tuple[NonEmptySafeStrTuple, float | None]]
Change = Callable[[bytes | None], "bytes | KeepCurrentFlag | None"]
"""``update``'s step: current bytes (None: absent) -> new bytes, KEEP_CURRENT or None (delete)."""


class Blob(NamedTuple):
    """One consistent snapshot of a key: its etag and, if fetched, its bytes."""

    etag: ETagValue | ItemNotAvailableFlag
    data: bytes | None


@dataclass(frozen=True)
class Capabilities:
    """What a ByteStore can do beyond the five operations (declared, never probed).

    Parameters
    ----------
    subdicts : bool, default False
        ``child(prefix)`` returns the store of the keys under ``prefix``.
    locks_keys : bool, default False
        ``lock(key)`` holds an exclusive per-key lock across threads and
        processes, and ``update(key, change)`` changes a key under it.
    discards_writes : bool, default False
        Writes succeed and are dropped; reads find nothing (the null store).
    """

    subdicts: bool = False
    """``child(prefix)`` returns the store of the keys under ``prefix``."""
    locks_keys: bool = False
    """``lock(key)`` holds an exclusive per-key lock across threads and processes."""
    discards_writes: bool = False
    """Writes succeed and are dropped; reads always find nothing (the null store)."""


class ByteStore(ABC):
    """The backend contract (see the module docstring).

    A subclass implements ``read``, ``write``, ``delete``, ``timestamp`` and
    ``scan``, each atomic on its own, and declares ``capabilities``; the
    value layer builds the whole PersiDict API on them (``ByteStoreDict``
    wraps any ByteStore).

    Notes
    -----
    Atomicity is the implementation's: every ``*_if`` operation of a store
    over it is linearizable if its conditional ``write`` and ``delete`` are.
    """

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        """Return one consistent snapshot of ``key``.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.
        body : bool, default True
            Whether to fetch the bytes (False: the etag only).
        if_none_match : str or None, default None
            An etag: if it is the current one, no bytes are fetched.

        Returns
        -------
        Blob
            ``(etag, data)``; ``(ITEM_NOT_AVAILABLE, None)`` if absent;
            ``data`` is None when not asked for or not modified.

        Raises
        ------
        BackendError
            The storage failed.
        """

    @abstractmethod
    def write(
        self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch
    ) -> ETagValue | ItemNotAvailableFlag:
        """Atomically store ``data`` under ``key`` if ``if_match`` holds.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.
        data : bytes
            The encoded value.
        if_match : ETagValue, ITEM_NOT_AVAILABLE or None
            None: unconditionally; ITEM_NOT_AVAILABLE: only if absent; an
            etag: only if it is the current one.

        Returns
        -------
        ETagValue or ITEM_NOT_AVAILABLE
            The new etag (ITEM_NOT_AVAILABLE from a store that discards writes).

        Raises
        ------
        PreconditionFailed
            ``if_match`` does not hold; nothing was stored.
        BackendError
            The storage failed; nothing was stored unless OutcomeUnknownError.
        """

    @abstractmethod
    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        """Atomically delete ``key`` (only version ``if_match`` if given).

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.
        if_match : ETagValue or None
            Delete only this version; None: whatever is there.

        Returns
        -------
        bool
            Whether the key was there.

        Raises
        ------
        PreconditionFailed
            ``if_match`` given and the key is absent or has another etag.
        BackendError
            The storage failed.
        """

    @abstractmethod
    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        """Return the POSIX time of the last write of ``key``.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.

        Returns
        -------
        float
            Seconds since the epoch.

        Raises
        ------
        KeyError
            The key is absent.
        """

    @abstractmethod
    def scan(self, *, with_timestamps: bool = False) -> Listed:
        """Stream every key (not atomic: a moving store may be seen moving).

        Parameters
        ----------
        with_timestamps : bool, default False
            Whether to report each key's timestamp (else None).

        Returns
        -------
        iterator of (NonEmptySafeStrTuple, float or None)
            Each key once, with its timestamp or None.
        """

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:
        """Stream every key, without timestamps (``scan`` unless overridden).

        Returns
        -------
        iterator of NonEmptySafeStrTuple
            Each key once.
        """
        return (k for k, _ in self.scan())

    def put(self, key: NonEmptySafeStrTuple, data: bytes) -> None:
        """Store ``data`` unconditionally when nobody needs the new etag.

        A plain ``d[k] = v``. The default is ``write(key, data,
        if_match=None)``; a backend whose etag is costly (a content hash)
        overrides it to skip computing one.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.
        data : bytes
            The encoded value.

        Raises
        ------
        BackendError
            The storage failed.
        """
        self.write(key, data, if_match=None)

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        """Return whether ``key`` is present.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.

        Returns
        -------
        bool
            Whether a read would find it.

        Raises
        ------
        BackendError
            The storage failed.
        """
        return not isinstance(self.read(key, body=False).etag, ItemNotAvailableFlag)

    def count(self) -> int:
        """Return the number of keys (a full listing unless overridden).

        Returns
        -------
        int
            The number of keys ``scan`` yields.
        """
        return sum(1 for _ in self.scan())

    def location(self, key: NonEmptySafeStrTuple) -> str:
        """Return where ``key`` lives (a path, a URL), for error messages.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.

        Returns
        -------
        str
            A path or URL.

        Raises
        ------
        ValueError
            The key cannot be stored here (too long for a file or object name).
        """
        return f"{self.name}:{'/'.join(key.strings)}"

    def child(self, prefix: SafeStrTuple) -> ByteStore:
        """Return the store of the keys under ``prefix``.

        Parameters
        ----------
        prefix : SafeStrTuple
            The key prefix (empty: this store's key space).

        Returns
        -------
        ByteStore
            Keys without the prefix; needs ``capabilities.subdicts``.

        Raises
        ------
        NotImplementedError
            The store declares no subdicts.
        """
        raise NotImplementedError(f"{type(self).__name__} has no hierarchical key space")

    def lock(self, key: NonEmptySafeStrTuple) -> AbstractContextManager[None]:
        """Return an exclusive lock on ``key``, across threads and processes.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.

        Returns
        -------
        context manager
            Held while the ``with`` block runs.

        Raises
        ------
        NotImplementedError
            The store declares no ``locks_keys``.
        LockTimeoutError
            The lock was not acquired in time.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot lock a key")

    def update(
        self, key: NonEmptySafeStrTuple, change: Change
    ) -> ETagValue | ItemNotAvailableFlag | None:
        """Under ``key``'s lock, replace its bytes by ``change(current bytes)``.

        Every other writer takes the lock, so only ``change`` can change the
        key meanwhile: this default commits on the etag it read; FileBytes
        compares none.

        Parameters
        ----------
        key : NonEmptySafeStrTuple
            A normalized key.
        change : Change
            Called once, under the lock, with the current bytes (None if
            absent); returns the new bytes, None to delete the key, or
            KEEP_CURRENT to leave it. What it raises propagates, nothing
            stored. It may read any key; a write of ``key`` makes it lose.

        Returns
        -------
        ETagValue or ITEM_NOT_AVAILABLE or None
            The etag the key is left with (ITEM_NOT_AVAILABLE: absent), or
            None if ``change`` itself wrote or deleted the key: nothing is
            committed then (a caller retries, as after a lost compare-and-swap).

        Raises
        ------
        NotImplementedError
            The store declares no ``locks_keys`` (``lock`` raises it).
        LockTimeoutError
            The lock was not acquired in time.
        """
        with self.lock(key):
            etag, data = self.read(key)
            new = change(data)
            if new is KEEP_CURRENT:
                return etag
            try:
                if new is None:
                    if etag is not ABSENT:
                        self.delete(key, if_match=etag)  # type: ignore[arg-type]
                    return ABSENT
                assert isinstance(new, bytes)
                return self.write(key, new, if_match=etag)
            except PreconditionFailed:
                return None
