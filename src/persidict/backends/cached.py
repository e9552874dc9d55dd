"""Read-through caches in front of a main store (typically S3 + local files)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..engine.contract import Version, sorted_params
from ..engine.errors import OutcomeUnknownError, PreconditionFailed
from ..engine.flags import (
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ETagConditionFlag,
    ETagValue,
    ItemNotAvailableFlag,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult, OperationResult
from .forwarding import ForwardingStore, require_persidict

_log = logging.getLogger("persidict")


def _cache_failed(what: str, key: NonEmptySafeStrTuple, exc: Exception) -> None:
    """Log a cache failure that must not fail the call: main already answered or committed."""
    _log.warning("persidict cache: %s of key %r failed: %r", what, key.strings, exc)


def _require_compatible(main: PersiDict[Any], cache: PersiDict[Any], name: str) -> None:
    if cache.base_class_for_values != main.base_class_for_values:
        raise ValueError(
            f"{name} must have the same base_class_for_values as main_dict "
            f"({cache.base_class_for_values!r} != {main.base_class_for_values!r})"
        )


class AppendOnlyDictCached(ForwardingStore):
    """An append-only main store fronted by an append-only value cache.

    Both stores are append-only, so a cached value can never be stale: plain
    reads and ``in`` are answered from the cache when possible, otherwise
    from main (filling the cache). Writes go to main first (an atomic
    insert-if-absent there: exactly one writer wins) and are then mirrored
    into the cache; a crash in between only leaves a cache miss. Etags,
    timestamps, iteration and length come from main. Deletion and
    transform_item are refused with MutationPolicyError.

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
    Atomic as main: every insert and conditional operation is decided by
    main alone.
    """

    def __init__(self, *, main_dict: PersiDict[Any], data_cache: PersiDict[Any]) -> None:
        main = require_persidict("main_dict", main_dict)
        cache = require_persidict("data_cache", data_cache)
        if not main.append_only or not cache.append_only:
            raise ValueError("main_dict and data_cache must both be append-only")
        _require_compatible(main, cache, "data_cache")
        self._cache = cache
        self._init_forwarding(main, append_only=True)

    def get_params(self) -> dict[str, Any]:
        """Return the parameters that rebuild this pairing.

        Returns
        -------
        dict of str to object
            ``data_cache`` and ``main_dict``, sorted by name.
        """
        return sorted_params({"data_cache": self._cache, "main_dict": self._inner})

    def _mirror(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        """Copy a value main holds into the cache; a failure only leaves a cache miss."""
        try:
            with contextlib.suppress(PreconditionFailed):  # already cached: same value
                self._cache._put(key, value, if_match=ITEM_NOT_AVAILABLE, want_etag=False)
        except Exception as exc:  # whatever the cache raises, main has the value
            _cache_failed("mirror", key, exc)

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        try:
            return self._cache._load(key)
        except KeyError:
            value = self._inner._load(key)
        self._mirror(key, value)
        return value

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        version = self._inner._get(key, retrieve=retrieve, if_none_match=if_none_match)
        if version.value is not VALUE_NOT_RETRIEVED and version.value is not ITEM_NOT_AVAILABLE:
            self._mirror(key, version.value)
        return version

    def _contains(self, key: NonEmptySafeStrTuple) -> bool:
        return self._cache._contains(key) or self._inner._contains(key)

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        etag = self._inner._put(key, value, if_match=if_match, want_etag=want_etag)
        self._mirror(key, value)
        return etag

    def transform_item(
        self, key: Any, *, transformer: Any, n_retries: int | None = 6
    ) -> OperationResult[Any]:
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
            Always, before anything is read or written.
        ConcurrencyConflictError
            Never.

        Notes
        -----
        Atomic trivially: nothing happens.
        """
        raise self._policy_error()

    def get_subdict(self, prefix_key: Any) -> AppendOnlyDictCached:
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
            main_dict=self._inner.get_subdict(prefix_key),
            data_cache=self._cache.get_subdict(prefix_key),
        )


class MutableDictCached(ForwardingStore):
    """A mutable main store fronted by a value cache validated by etags.

    Plain reads (``d[k]``, ``get``, ``items``...) ask main whether the cached
    etag is still current (a conditional read: on S3 a GET with
    If-None-Match, answered 304 without a body) and return the cached value
    only then; otherwise they fetch the fresh value and refresh both caches
    (self-healing). Every write and delete goes to main first, atomically as
    main provides, and is then mirrored into both caches. ``etag()`` answers
    from the etag cache when it can (it may be stale if main was changed
    behind this wrapper's back).

    Atomic as main: every conditional operation (``*_if``, transform_item,
    pop, popitem, setdefault, get_with_etag) reads its snapshot from main
    itself, never from the caches. The caches are kept so that a cached value
    is never older than the cached etag, even with many readers and writers
    sharing them and crashing at any point: a value is mirrored only by a
    compare-and-swap on the value cache against the version seen *before*
    main was read or written, so the value cache only moves forward in time;
    the etag is dropped before it and written after it, and dropped again if
    another mirror overtook ours, so no value sits next to another value's
    etag. (With a value cache whose etags are content hashes, a value that
    returns to an earlier content can let an older reader's mirror through;
    the next read of main's etag corrects it.)

    Parameters
    ----------
    main_dict : PersiDict
        The authoritative store.
    data_cache : PersiDict
        The value cache: mutable, with main's ``base_class_for_values``.
    etag_cache : PersiDict
        The etag cache: mutable, holding str values.

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
        main_dict: PersiDict[Any],
        data_cache: PersiDict[Any],
        etag_cache: PersiDict[Any],
    ) -> None:
        main = require_persidict("main_dict", main_dict)
        cache = require_persidict("data_cache", data_cache)
        etags = require_persidict("etag_cache", etag_cache)
        if cache.append_only or etags.append_only:
            raise ValueError("data_cache and etag_cache must be mutable (append_only=False)")
        _require_compatible(main, cache, "data_cache")
        self._cache = cache
        self._etags = etags
        self._init_forwarding(main, append_only=main.append_only)

    def get_params(self) -> dict[str, Any]:
        """Return the parameters that rebuild this triple.

        Returns
        -------
        dict of str to object
            ``data_cache``, ``etag_cache`` and ``main_dict``, sorted by name.
        """
        return sorted_params(
            {"data_cache": self._cache, "etag_cache": self._etags, "main_dict": self._inner}
        )

    def _cached_value(self, key: NonEmptySafeStrTuple) -> Version:
        """The value cache's own snapshot of ``key``: (its version, the value)."""
        return self._cache._get(key, retrieve=True)

    def _mirror(self, key: NonEmptySafeStrTuple, seen: Version, etag: Any, value: Any) -> None:
        """Cache main's (value, etag), unless the value cache moved since ``seen``.

        ``seen`` was taken before main was read or written, so a value cache
        that moved since holds a value at least as new as ours: leave it.
        No value is ever paired with another value's etag (with content-hash
        etags it would be served once main's content returns to that one):
        the etag is dropped while the value is written, and kept only if the
        value cache still holds our value once the etag is stored.
        """
        if not isinstance(etag, str):
            self._forget(key)
            return
        try:
            # No etag while the value changes: a crash between the two puts
            # must not leave the old etag next to the new value.
            self._etags._remove(key, if_match=None)
            try:
                ours = self._cache._put(key, value, if_match=seen.etag, want_etag=True)
            except PreconditionFailed:
                return
            self._etags._put(key, etag, if_match=None, want_etag=False)
            if self._cache._get(key, retrieve=False).etag != ours:
                # A newer mirror overtook ours between the two puts: our etag
                # may now sit next to its value. Drop it (a miss, not a lie).
                self._etags._remove(key, if_match=None)
        except Exception as exc:  # main already answered or committed: never fail the call
            _cache_failed("mirror", key, exc)
            # A new value under a stale cached etag would be served once main's
            # content (and so its etag) returns to the old one: drop the etag.
            self._forget(key)

    def _forget(self, key: NonEmptySafeStrTuple) -> None:
        """Drop both cache entries of ``key``; a failure is logged, not raised.

        Each is tried on its own: either one gone is enough for ``_load`` to
        ask main for the value instead of serving the cached one.
        """
        for cache in (self._etags, self._cache):
            try:
                cache._remove(key, if_match=None)
            except Exception as exc:
                _cache_failed("forget", key, exc)

    def _cached_etag(self, key: NonEmptySafeStrTuple) -> str | None:
        try:
            etag = self._etags._load(key)
        except KeyError:
            return None
        return etag if isinstance(etag, str) else None

    def _get(
        self, key: NonEmptySafeStrTuple, *, retrieve: bool, if_none_match: str | None = None
    ) -> Version:
        # Snapshots for conditional operations come from main only.
        if not retrieve:
            return self._inner._get(key, retrieve=False)
        seen = self._cache._get(key, retrieve=False)
        version = self._inner._get(key, retrieve=True, if_none_match=if_none_match)
        if version.etag is ITEM_NOT_AVAILABLE:
            if self._cached_etag(key) is not None:
                self._forget(key)
        elif version.value is not VALUE_NOT_RETRIEVED:
            self._mirror(key, seen, version.etag, version.value)
        return version

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        cached = self._cached_etag(key)
        seen = self._cached_value(key)
        if not isinstance(seen.etag, str):
            cached = None  # no value to serve: fetch it
        version = self._inner._get(key, retrieve=True, if_none_match=cached)
        if version.etag is ITEM_NOT_AVAILABLE:
            if cached is not None:
                self._forget(key)
            raise KeyError(key)
        if version.value is VALUE_NOT_RETRIEVED:  # main confirmed the cached etag
            return seen.value
        self._mirror(key, seen, version.etag, version.value)
        return version.value

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        seen = self._cache._get(key, retrieve=False)
        try:
            etag = self._inner._put(key, value, if_match=if_match, want_etag=True)
        except OutcomeUnknownError:
            self._forget(key)  # main may hold the new value: the cache speaks for the old
            raise
        self._mirror(key, seen, etag, value)
        return etag

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        try:
            existed = self._inner._remove(key, if_match=if_match)
        except PreconditionFailed:
            raise  # main did not change: neither do the caches
        except BaseException:
            self._forget(key)  # main may have deleted it; never raises, masks nothing
            raise
        self._forget(key)
        return existed

    def discard_if(
        self,
        key: Any,
        *,
        condition: ETagConditionFlag,
        expected_etag: ETagValue | ItemNotAvailableFlag,
    ) -> ConditionalOperationResult[Any]:
        """Delete on main if the condition holds (atomic as main).

        When main reports the key absent (deleted now, or missing: perhaps
        deleted by another handle) both cache entries are dropped; when the
        condition fails on a present key they are left as they are.

        Parameters
        ----------
        key : str or sequence of str
            The key to delete.
        condition : ETagConditionFlag
            ``ANY_ETAG``, ``ETAG_IS_THE_SAME`` or ``ETAG_HAS_CHANGED``.
        expected_etag : ETagValue or ITEM_NOT_AVAILABLE
            The etag the caller last saw.

        Returns
        -------
        ConditionalOperationResult
            As [`PersiDict.discard_if`][persidict.PersiDict.discard_if].

        Raises
        ------
        MutationPolicyError
            Main is append-only.
        ConcurrencyConflictError
            Only after thousands of commits in a row lost to other writers.
        TypeError
            A flag argument has the wrong type, or ``key`` is invalid.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            Main failed.
        """
        result = super().discard_if(key, condition=condition, expected_etag=expected_etag)
        if result.actual_etag is ITEM_NOT_AVAILABLE:  # deleted ones were forgotten by _remove
            self._forget(to_key(key))
        return result

    def etag(self, key: Any) -> ETagValue:
        """Return the etag from the etag cache if present, else from main (then cached).

        The cached etag may be stale if main was changed behind this
        wrapper's back; conditional operations never use it.

        Parameters
        ----------
        key : str or sequence of str
            The key to look up.

        Returns
        -------
        ETagValue
            The etag.

        Raises
        ------
        KeyError
            Not cached and absent from main.
        TypeError
            ``key`` is not a str or a sequence of str.
        ValueError
            ``key`` is empty or a component is invalid.
        BackendError
            Main failed.
        """
        k = to_key(key)
        cached = self._cached_etag(k)
        if cached is not None:
            return ETagValue(cached)
        etag = self._inner.etag(k)
        try:
            self._etags._put(k, etag, if_match=None, want_etag=False)
        except Exception as exc:
            _cache_failed("etag mirror", k, exc)
        return etag

    def get_subdict(self, prefix_key: Any) -> MutableDictCached:
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
            main_dict=self._inner.get_subdict(prefix_key),
            data_cache=self._cache.get_subdict(prefix_key),
            etag_cache=self._etags.get_subdict(prefix_key),
        )
