"""Read-through caches in front of a main store (typically S3 + local files)."""

from __future__ import annotations

import contextlib
from typing import Any

from ..engine.contract import Version, sorted_params
from ..engine.errors import PreconditionFailed
from ..engine.flags import (
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ETagValue,
    ItemNotAvailableFlag,
)
from ..engine.keys import NonEmptySafeStrTuple, to_key
from ..engine.persidict import PersiDict
from ..engine.results import OperationResult
from .forwarding import ForwardingStore, require_persidict


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
        """Parameters: ``data_cache`` and ``main_dict``, sorted."""
        return sorted_params({"data_cache": self._cache, "main_dict": self._inner})

    def _mirror(self, key: NonEmptySafeStrTuple, value: Any) -> None:
        with contextlib.suppress(PreconditionFailed):  # already cached: same value
            self._cache._put(key, value, if_match=ITEM_NOT_AVAILABLE, want_etag=False)

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
        """Refused: values of an append-only store never change."""
        raise self._policy_error()

    def get_subdict(self, prefix_key: Any) -> AppendOnlyDictCached:
        """The same pairing scoped to ``prefix_key`` in both stores."""
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
    itself, never from the caches, so no cache state can make it commit
    against a value it did not see. Not atomic: the pair of cache entries.
    Writers racing through different wrappers that share caches mirror
    value-first and then verify, so a plain read can trust an older value
    under a newer etag only if a writer dies between its cache writes; the
    next write of that key heals it.
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
        """Parameters: ``data_cache``, ``etag_cache`` and ``main_dict``, sorted."""
        return sorted_params(
            {"data_cache": self._cache, "etag_cache": self._etags, "main_dict": self._inner}
        )

    def _remember(self, key: NonEmptySafeStrTuple, etag: Any, value: Any) -> None:
        """Mirror main's (value, etag) into the caches.

        The etag goes last, and is withdrawn if another writer replaced the
        value meanwhile, so no reader trusts our etag with their value.
        """
        if not isinstance(etag, str):
            self._forget(key)
            return
        self._etags._remove(key, if_match=None)
        value_tag = self._cache._put(key, value, if_match=None)
        self._etags._put(key, etag, if_match=None, want_etag=False)
        if self._cache._get(key, retrieve=False).etag != value_tag:
            self._etags._remove(key, if_match=None)

    def _forget(self, key: NonEmptySafeStrTuple) -> None:
        self._etags._remove(key, if_match=None)
        self._cache._remove(key, if_match=None)

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
        version = self._inner._get(key, retrieve=retrieve, if_none_match=if_none_match)
        if version.etag is ITEM_NOT_AVAILABLE:
            if self._cached_etag(key) is not None:
                self._forget(key)
        elif version.value is not VALUE_NOT_RETRIEVED:
            self._remember(key, version.etag, version.value)
        return version

    def _load(self, key: NonEmptySafeStrTuple) -> Any:
        cached = self._cached_etag(key)
        version = self._inner._get(key, retrieve=True, if_none_match=cached)
        if version.etag is ITEM_NOT_AVAILABLE:
            if cached is not None:
                self._forget(key)
            raise KeyError(key)
        if version.value is VALUE_NOT_RETRIEVED:  # main confirmed the cached etag
            try:
                return self._cache._load(key)
            except KeyError:  # the value cache lost it: fetch it
                version = self._inner._get(key, retrieve=True)
                if version.etag is ITEM_NOT_AVAILABLE:
                    raise
        self._remember(key, version.etag, version.value)
        return version.value

    def _put(
        self,
        key: NonEmptySafeStrTuple,
        value: Any,
        *,
        if_match: ETagValue | ItemNotAvailableFlag | None,
        want_etag: bool = True,
    ) -> ETagValue | None:
        etag = self._inner._put(key, value, if_match=if_match, want_etag=True)
        self._remember(key, etag, value)
        return etag

    def _remove(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        try:
            return self._inner._remove(key, if_match=if_match)
        finally:
            self._forget(key)

    def etag(self, key: Any) -> ETagValue:
        """The etag from the etag cache if present, else from main (then cached)."""
        k = to_key(key)
        cached = self._cached_etag(k)
        if cached is not None:
            return ETagValue(cached)
        etag = self._inner.etag(k)
        self._etags._put(k, etag, if_match=None, want_etag=False)
        return etag

    def get_subdict(self, prefix_key: Any) -> MutableDictCached:
        """The same triple scoped to ``prefix_key`` in all three stores."""
        return MutableDictCached(
            main_dict=self._inner.get_subdict(prefix_key),
            data_cache=self._cache.get_subdict(prefix_key),
            etag_cache=self._etags.get_subdict(prefix_key),
        )
