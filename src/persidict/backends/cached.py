"""Read-through caches in front of a main store (typically S3 + local files).

Each wrapper is a value layer over a cache ByteStore built from main's and
the cache's byte stores (``cache_bytes.py``): one record per cached key,
main's etag and bytes together, copied byte for byte.
"""

from __future__ import annotations

from typing import Any

from ..engine.flags import ETagValue
from ..engine.keys import to_key
from ..engine.persidict import PersiDict
from ..engine.races import check_n_retries
from ..engine.results import OperationResult, ValueType
from ..engine.transform import TransformingFunction
from ..engine.values import sorted_params
from .cache_bytes import AppendOnlyCacheBytes, ValidatedCacheBytes
from .forwarding import require_persidict


def _require_compatible(main: PersiDict[Any], cache: PersiDict[Any], name: str) -> None:
    if cache.base_class_for_values != main.base_class_for_values:
        raise ValueError(
            f"{name} must have the same base_class_for_values as main_dict "
            f"({cache.base_class_for_values!r} != {main.base_class_for_values!r})"
        )


class AppendOnlyDictCached(PersiDict[ValueType]):
    """An append-only main store fronted by an append-only cache.

    ``data_cache`` holds one record per cached key: main's etag and main's
    bytes in one entry (see ``cache_bytes.py``), not values readable through
    ``data_cache`` itself. Both stores are append-only, so a cached record is
    main's forever: reads, ``in``, ``etag()`` and snapshots of a cached key
    are answered by the cache alone, and inserting a cached key fails without
    asking main. Misses go to main and are mirrored. Writes go to main first
    (an atomic insert-if-absent there: exactly one writer wins) and are then
    mirrored; a crash in between only leaves a cache miss, and a key the
    cache cannot hold is refused before main is written. Timestamps,
    iteration and length come from main. Deletion and transform_item are
    refused with MutationPolicyError.

    Parameters
    ----------
    main_dict : PersiDict
        The authoritative store; must be append-only.
    data_cache : PersiDict
        The value cache; must be append-only, with main's
        ``base_class_for_values``.

    Raises
    ------
    TypeError
        ``main_dict`` or ``data_cache`` is not a PersiDict.
    ValueError
        A store is not append-only, or their ``base_class_for_values``
        differ.

    Notes
    -----
    Atomic as main: every insert is decided by main; a key the cache holds
    is one main holds with those bytes for good, so answering it from the
    cache is answering as main would.
    """

    def __init__(
        self, *, main_dict: PersiDict[ValueType], data_cache: PersiDict[Any]
    ) -> None:
        main = require_persidict("main_dict", main_dict)
        cache = require_persidict("data_cache", data_cache)
        if not main.append_only or not cache.append_only:
            raise ValueError("main_dict and data_cache must both be append-only")
        _require_compatible(main, cache, "data_cache")
        super().__init__(
            append_only=True,
            base_class_for_values=main.base_class_for_values,
            serialization_format=main.serialization_format,
        )
        self._main: PersiDict[ValueType] = main
        self._data_cache = cache
        self._bytes = AppendOnlyCacheBytes(main.byte_store, cache.byte_store)

    def get_params(self) -> dict[str, Any]:
        """Return the parameters that rebuild this pairing.

        Returns
        -------
        dict of str to object
            ``data_cache`` and ``main_dict``, sorted by name.
        """
        return sorted_params({"data_cache": self._data_cache, "main_dict": self._main})

    def transform_item(
        self,
        key: Any,
        *,
        transformer: TransformingFunction[ValueType],
        n_retries: int | None = 6,
    ) -> OperationResult[ValueType]:
        """Refuse: values of an append-only store never change.

        Parameters
        ----------
        key : str or sequence of str
            Not used.
        transformer : callable
            Never called.
        n_retries : int or None, default 6
            Not used.

        Returns
        -------
        OperationResult
            Never returns.

        Raises
        ------
        MutationPolicyError
            Always (after ``n_retries`` is checked), before anything is read or
            written.
        ConcurrencyConflictError
            Never.

        Notes
        -----
        Atomic trivially: nothing happens.
        """
        check_n_retries(n_retries)
        raise self._policy_error()

    def get_subdict(self, prefix_key: Any) -> AppendOnlyDictCached[ValueType]:
        """Return the same pairing scoped to ``prefix_key`` in both stores.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        AppendOnlyDictCached
            Over ``main_dict.get_subdict(prefix_key)`` and the cache's.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        """
        return AppendOnlyDictCached(
            main_dict=self._main.get_subdict(prefix_key),
            data_cache=self._data_cache.get_subdict(prefix_key),
        )


class MutableDictCached(PersiDict[ValueType]):
    """A mutable main store fronted by a local cache validated by etags.

    ``data_cache`` holds one record per cached key: main's etag and main's
    bytes in one entry (see ``cache_bytes.py``), not values readable through
    ``data_cache`` itself. ``etag_cache`` is kept for the signature,
    ``get_params`` and ``get_subdict``; nothing is written to it any more
    (the etag lives in the record, so the two can never drift apart).

    Every read with a value (``d[k]``, ``get``, ``items``, the snapshots of
    conditional operations and transform_item) asks main with the cached
    etag as If-None-Match (on S3: a GET answered 304 without a body) and
    serves the cached bytes only then; otherwise main's fresh bytes are
    returned and mirrored (self-healing). Reads without a value, writes and
    deletes go to main first, atomically as main provides; the cache
    follows. ``etag()`` answers from the record when there is one (it may be
    stale if main was changed behind this wrapper's back); a key whose record
    this wrapper could not bring up to its own last write or delete (a
    failing cache, a reader's older mirror overtaking the write) is asked of
    main until a write of it is mirrored again.

    Atomic as main: every answer and every decision is main's; the cache
    only saves bodies. A record is mirrored by one compare-and-swap on the
    cache against the entry seen *before* main was read or written, so a
    writer overtaken by a newer mirror leaves that one. A failing cache
    never fails a call (logged); a process killed between main and the
    cache leaves an older record, which main's etag refuses on the next
    read: a miss, never a wrong value.

    Parameters
    ----------
    main_dict : PersiDict
        The authoritative store.
    data_cache : PersiDict
        The value cache: mutable, with main's ``base_class_for_values``.
    etag_cache : PersiDict
        Mutable; kept for the signature, ``get_params`` and ``get_subdict``
        (nothing is written to it: the etag lives in the record).

    Raises
    ------
    TypeError
        An argument is not a PersiDict.
    ValueError
        A cache is append-only, or ``data_cache``'s
        ``base_class_for_values`` differs from main's.
    """

    def __init__(
        self,
        *,
        main_dict: PersiDict[ValueType],
        data_cache: PersiDict[Any],
        etag_cache: PersiDict[Any],
    ) -> None:
        main = require_persidict("main_dict", main_dict)
        cache = require_persidict("data_cache", data_cache)
        etags = require_persidict("etag_cache", etag_cache)
        if cache.append_only or etags.append_only:
            raise ValueError("data_cache and etag_cache must be mutable (append_only=False)")
        _require_compatible(main, cache, "data_cache")
        super().__init__(
            append_only=main.append_only,
            base_class_for_values=main.base_class_for_values,
            serialization_format=main.serialization_format,
        )
        self._main: PersiDict[ValueType] = main
        self._data_cache = cache
        self._etag_cache = etags
        self._cache = ValidatedCacheBytes(main.byte_store, cache.byte_store)
        self._bytes = self._cache

    def get_params(self) -> dict[str, Any]:
        """Return the parameters that rebuild this triple.

        Returns
        -------
        dict of str to object
            ``data_cache``, ``etag_cache`` and ``main_dict``, sorted by name.
        """
        params = {"data_cache": self._data_cache, "etag_cache": self._etag_cache}
        return sorted_params({**params, "main_dict": self._main})

    def etag(self, key: Any) -> ETagValue:
        """Return main's etag as cached with the value if cached, else main's.

        Parameters
        ----------
        key : str or sequence of str
            The key.

        Returns
        -------
        ETagValue
            The etag (it may be stale if main was changed behind this
            wrapper's back, never after this wrapper's own write or delete).

        Raises
        ------
        KeyError
            The key is absent in main.
        """
        k = to_key(key)
        cached = self._cache.cached_etag(k)
        if cached is not None:
            return cached
        etag = self._cache.read(k).etag  # one read of main; its bytes fill the cache
        if not isinstance(etag, str):
            raise KeyError(k)
        return etag

    def get_subdict(self, prefix_key: Any) -> MutableDictCached[ValueType]:
        """Return the same triple scoped to ``prefix_key`` in all three stores.

        Parameters
        ----------
        prefix_key : str or sequence of str
            The key prefix; an empty one gives the same key space.

        Returns
        -------
        MutableDictCached
            Over the three stores' subdicts.

        Raises
        ------
        TypeError
            ``prefix_key`` is not a str or a sequence of str.
        ValueError
            A component of ``prefix_key`` is invalid.
        """
        return MutableDictCached(
            main_dict=self._main.get_subdict(prefix_key),
            data_cache=self._data_cache.get_subdict(prefix_key),
            etag_cache=self._etag_cache.get_subdict(prefix_key),
        )
