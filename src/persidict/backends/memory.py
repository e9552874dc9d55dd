"""LocalDict: an in-memory store, atomic across threads."""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from ..engine.contract import Version, sorted_params
from ..engine.errors import PreconditionFailed
from ..engine.flags import (
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ETagValue,
    ItemNotAvailableFlag,
)
from ..engine.keys import NonEmptySafeStrTuple, to_prefix
from ..engine.persidict import PersiDict

# (value, version number, timestamp)
_Entry = tuple[Any, int, float, NonEmptySafeStrTuple]  # (value, version, ts, full key)


class _RAMStore:
    """The shared state: per-format maps from full key tuples to entries."""

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


class LocalDict(PersiDict[Any]):
    """In-memory PersiDict with the same semantics as FileDirDict.

    Atomicity: every primitive runs under its store's lock, so every
    operation (all ``*_if`` operations, transform_item, pop, popitem,
    setdefault) is linearizable across threads. Values are kept as the
    objects themselves (not copied or serialized). Nothing survives the
    process; pickling a LocalDict copies its data. Etags are per-store
    version numbers, unique for every write.

    Parameters
    ----------
    backend : RAMBackend or None, default None
        The shared RAM store to view (stores built on one backend, and their
        subdicts, see the same items); a new one if None.
    serialization_format : str, default "pkl"
        Kept as a namespace: each format has its own items.
    append_only : bool, default False
        Items can be inserted but never changed or deleted.
    base_class_for_values : type or None, default None
        If given, every value must be an instance of it.
    prune_interval : int or None, default 64
        Accepted for compatibility with the reference; the flat layout has
        nothing to prune.
    """

    _backend_name = "memory"

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
        self._store = self._backend.store
        self._prefix = self._backend.prefix
        with self._store.lock:
            self._map = self._store.data.setdefault(serialization_format, {})

    def get_params(self) -> dict[str, Any]:
        # docstring inherited
        params = super().get_params()
        params.update(backend=self._backend, prune_interval=self.prune_interval)
        return sorted_params(params)

    def _full(self, key: NonEmptySafeStrTuple) -> tuple[str, ...]:
        return self._prefix + key.strings if self._prefix else key.strings

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        # docstring inherited
        entry = self._map.get(self._full(key))  # one dict lookup is atomic under the GIL
        if entry is None:
            return Version(ITEM_NOT_AVAILABLE, ITEM_NOT_AVAILABLE)
        etag = ETagValue(str(entry[1]))
        if not retrieve or etag == if_none_match:
            return Version(etag, VALUE_NOT_RETRIEVED)
        value = entry[0]
        base = self.base_class_for_values
        if base is not None and not isinstance(value, base):
            raise self._wrong_class(key, value)  # stored through a handle without the check
        return Version(etag, value)

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        entry = self._map.get(self._full(key))
        if entry is None:
            raise KeyError(key)
        value = entry[0]
        base = self.base_class_for_values
        if base is not None and not isinstance(value, base):
            raise self._wrong_class(key, value)
        return value

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        # docstring inherited
        if self._prefix:
            full = self._prefix + key.strings
            key = NonEmptySafeStrTuple._trusted(full)
        else:
            full = key.strings
        store = self._store
        with store.lock:
            if if_match is not None:
                entry = self._map.get(full)
                current = ITEM_NOT_AVAILABLE if entry is None else str(entry[1])
                if current != if_match:
                    raise PreconditionFailed
            # A new version and a strictly increasing timestamp, so that
            # newest_keys orders even writes within one clock tick.
            ts = time.time()
            if ts <= store.last_ts:
                ts = store.last_ts + 1e-6
            store.last_ts = ts
            version = next(store.versions)
            self._map[full] = (value, version, ts, key)
        return ETagValue(str(version)) if want_etag else None

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        # docstring inherited
        full = self._full(key)
        with self._store.lock:
            entry = self._map.get(full)
            if if_match is not None and (entry is None or str(entry[1]) != if_match):
                raise PreconditionFailed
            if entry is None:
                return False
            del self._map[full]
            return True

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        return self._full(key) in self._map

    def _timestamp(self, key: NonEmptySafeStrTuple) -> float:
        # docstring inherited
        entry = self._map.get(self._full(key))
        if entry is None:
            raise KeyError(key)
        return entry[2]

    def _iter_keys(
        self, *, with_timestamps: bool = False
    ) -> Iterator[tuple[NonEmptySafeStrTuple, float | None]]:
        # docstring inherited
        prefix, n = self._prefix, len(self._prefix)
        with self._store.lock:
            snapshot = list(self._map.items())
        for full, entry in snapshot:
            if n == 0:
                yield NonEmptySafeStrTuple._trusted(full), entry[2]
            elif len(full) > n and full[:n] == prefix:
                yield NonEmptySafeStrTuple._trusted(full[n:]), entry[2]

    def __len__(self) -> int:
        if not self._prefix:
            return len(self._map)
        return super().__len__()

    def __iter__(self) -> Iterator[NonEmptySafeStrTuple]:
        if self._prefix:
            return super().__iter__()
        # Entries hold their key objects: one pass at C speed under the lock.
        with self._store.lock:
            return iter([entry[3] for entry in self._map.values()])

    def get_subdict(self, prefix_key: Any) -> LocalDict:
        """A view of the keys under ``prefix_key``, sharing this store.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

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
        prefix = to_prefix(prefix_key)
        params = self.get_params()
        params["backend"] = self._backend.child(prefix.strings)
        return LocalDict(**params)
