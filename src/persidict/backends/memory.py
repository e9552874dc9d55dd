"""LocalDict: an in-memory store, atomic across threads."""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from ..engine.contract import ABSENT, Blob, ByteStore, Capabilities, IfMatch, Listed
from ..engine.errors import PreconditionFailed
from ..engine.flags import ETagValue
from ..engine.keys import NonEmptySafeStrTuple, SafeStrTuple, to_prefix, trusted_key
from ..engine.persidict import PersiDict
from ..engine.results import ValueType
from ..engine.values import sorted_params

_Entry = tuple[bytes, ETagValue, float, NonEmptySafeStrTuple]  # (bytes, etag, ts, full key)
# Blob(...) runs a Python-level __new__; reads are the hot path of a RAM store.
_blob = functools.partial(tuple.__new__, Blob)
_ABSENT_BLOB = Blob(ABSENT, None)


class _RAMStore:
    """The shared state: per-namespace (format) maps from full key tuples to entries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        _live_stores.add(self)
        self.data: dict[str, dict[tuple[str, ...], _Entry]] = {}
        self.versions = itertools.count(1)
        self.last_ts = 0.0

    def __getstate__(self) -> dict[str, Any]:
        with self.lock:
            next_version = next(self.versions)
            return {
                "data": {f: dict(m) for f, m in self.data.items()},
                "next_version": next_version,
                "last_ts": self.last_ts,
            }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        _live_stores.add(self)
        self.data = state["data"]
        self.versions = itertools.count(state["next_version"])
        self.last_ts = state["last_ts"]


# A fork() while another thread holds a store's lock would leave the child's
# copy locked forever (only the forking thread survives). Each critical
# section leaves the maps consistent at every step, so the child simply
# starts with fresh locks.
_live_stores: weakref.WeakSet[_RAMStore] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for store in list(_live_stores):
        store.lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


class RAMBackend:
    """A view of a RAM store rooted at a key prefix; views share their store."""

    def __init__(self, store: _RAMStore | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.store = store if store is not None else _RAMStore()
        self.prefix = prefix

    def child(self, prefix: tuple[str, ...]) -> RAMBackend:
        """A view rooted ``prefix`` below this one, on the same store."""
        return RAMBackend(self.store, self.prefix + prefix)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RAMBackend)
            and other.store is self.store
            and other.prefix == self.prefix
        )

    def __hash__(self) -> int:
        return hash((id(self.store), self.prefix))

    def __repr__(self) -> str:
        return f"RAMBackend(prefix={self.prefix!r})"


def _prune_interval(value: Any) -> int | None:
    """None stays None; what int() takes is converted (<= 0: None, off); the rest is 64."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return 64
    return n if n > 0 else None


class RAMBytes(ByteStore):
    """The ByteStore of a RAM store: one namespace (a serialization format) of a view.

    Every mutation runs under the store's lock; a read is one dict lookup
    (atomic under the GIL). Etags are per-store version numbers, unique for
    every write.
    """

    name = "memory"
    capabilities = Capabilities(subdicts=True)

    def __init__(self, backend: RAMBackend, namespace: str) -> None:
        self.backend = backend
        self.namespace = namespace
        self._store = backend.store
        self._prefix = backend.prefix
        with self._store.lock:
            self._map = self._store.data.setdefault(namespace, {})

    def _full(self, key: NonEmptySafeStrTuple) -> tuple[str, ...]:
        return self._prefix + key.strings if self._prefix else key.strings

    def read(
        self, key: NonEmptySafeStrTuple, *, body: bool = True, if_none_match: str | None = None
    ) -> Blob:
        # docstring inherited
        entry = self._map.get(self._prefix + key.strings if self._prefix else key.strings)
        if entry is None:
            return _ABSENT_BLOB
        if not body or entry[1] == if_none_match:
            return _blob((entry[1], None))
        return _blob((entry[1], entry[0]))

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *, if_match: IfMatch) -> ETagValue:
        # docstring inherited
        if self._prefix:
            full = self._prefix + key.strings
            key = trusted_key(full)
        else:
            full = key.strings
        store = self._store
        with store.lock:
            if if_match is not None:
                entry = self._map.get(full)
                if (ABSENT if entry is None else entry[1]) != if_match:
                    raise PreconditionFailed
            # A new version and a strictly increasing timestamp, so that
            # newest_keys orders even writes within one clock tick.
            ts = time.time()
            if ts <= store.last_ts:
                ts = store.last_ts + 1e-6
            store.last_ts = ts
            etag: ETagValue = str(next(store.versions))  # type: ignore[assignment]
            self._map[full] = (data, etag, ts, key)
        return etag

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        full = self._full(key)
        with self._store.lock:
            entry = self._map.get(full)
            if if_match is not None and (entry is None or entry[1] != if_match):
                raise PreconditionFailed
            if entry is None:
                return False
            del self._map[full]
            return True

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        # docstring inherited
        return self._full(key) in self._map

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        entry = self._map.get(self._full(key))
        if entry is None:
            raise KeyError(key)
        return entry[2]

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        # docstring inherited
        prefix, n = self._prefix, len(self._prefix)
        with self._store.lock:
            if n == 0:
                # Entries hold their key objects: one pass at C speed under the lock.
                return iter([(entry[3], entry[2]) for entry in self._map.values()])
            snapshot = list(self._map.items())
        return ((trusted_key(full[n:]), entry[2]) for full, entry in snapshot
                if len(full) > n and full[:n] == prefix)

    def keys(self) -> Iterator[NonEmptySafeStrTuple]:
        # docstring inherited
        if self._prefix:
            return super().keys()
        # Entries hold their key objects: one pass at C speed under the lock.
        with self._store.lock:
            return iter([entry[3] for entry in self._map.values()])

    def count(self) -> int:
        # docstring inherited
        if not self._prefix:
            return len(self._map)
        return super().count()

    def location(self, key: NonEmptySafeStrTuple) -> str:
        # docstring inherited
        return f"memory:{'/'.join(self._full(key))}"

    def child(self, prefix: SafeStrTuple) -> RAMBytes:
        # docstring inherited
        return RAMBytes(self.backend.child(prefix.strings), self.namespace)


class LocalDict(PersiDict[ValueType]):
    """In-memory PersiDict with the same semantics as FileDirDict.

    Atomicity: every primitive runs under its store's lock, so every
    operation (all ``*_if`` operations, transform_item, pop, popitem,
    setdefault) is linearizable across threads. Values are kept encoded in
    the store's format, so a value read or written is the caller's own: mutating
    it never changes what is stored. Nothing survives the process; pickling a
    LocalDict copies its data. Etags are per-store version numbers, unique for
    every write.

    Parameters
    ----------
    backend : RAMBackend or None, default None
        The shared RAM store to view (stores built on one backend, and their
        subdicts, see the same items); a new one if None.
    serialization_format : str, default "pkl"
        The codec values are stored with, and a namespace: each format has its
        own items.
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value must be an instance of it.
    prune_interval : int or None, default 64
        Accepted for compatibility with the reference; the flat layout has
        nothing to prune.
    """

    def __init__(
        self,
        *,
        backend: RAMBackend | None = None,
        serialization_format: str = "pkl",
        append_only: bool = False,
        base_class_for_values: type | None = None,
        prune_interval: int | None = 64,
    ) -> None:
        super().__init__(
            append_only=append_only,
            base_class_for_values=base_class_for_values,
            serialization_format=serialization_format,
        )
        if backend is not None and not isinstance(backend, RAMBackend):
            raise TypeError(f"backend must be a RAMBackend or None, got {type(backend).__name__}")
        # Accepted for compatibility; the flat layout leaves no empty nodes to prune.
        self.prune_interval = _prune_interval(prune_interval)
        self._backend = backend if backend is not None else RAMBackend()
        self._bytes = RAMBytes(self._backend, serialization_format)

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        # docstring inherited; keys without the (key, timestamp) pairs of a scan
        return self._bytes.keys()

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = super().get_params()
        params.update(backend=self._backend, prune_interval=self.prune_interval)
        return sorted_params(params)

    def get_subdict(self, prefix_key: Any) -> LocalDict[ValueType]:
        """A view of the keys under ``prefix_key``, sharing this store.

        Parameters
        ----------
        prefix_key : str, sequence of str, or an iterator of str
            The key prefix; an empty one gives the same key space. An
            iterator (a generator, say) is read once, in order.

        Returns
        -------
        LocalDict
            A store on the same RAM backend; writes through either are seen by both.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        """
        if isinstance(prefix_key, Iterator):  # the reference types it Iterable[str]
            prefix_key = tuple(prefix_key)
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        params["backend"] = self._backend.child(prefix.strings)
        return LocalDict(**params)
