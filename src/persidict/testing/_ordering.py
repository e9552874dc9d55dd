"""Conformance: sub-dictionaries, time order, random keys and etags."""

from __future__ import annotations

import collections
import pickle
from typing import Any

import pytest

from ..engine.flags import ITEM_NOT_AVAILABLE
from ..engine.keys import NonEmptySafeStrTuple
from ..engine.persidict import PersiDict
from ..engine.results import ConditionalOperationResult
from ._base import ConformanceBase
from ._support import keyset, policy_of, snapshot, write_after


def _fill_in_order(store: PersiDict[Any], n: int = 5) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [("k", f"{i}") if i % 2 else (f"k{i}",) for i in range(n)]
    ts: float | None = None
    for i, k in enumerate(keys):
        ts = write_after(store, k, i, ts)
    return keys


class OrderingTests(ConformanceBase):
    """Prefix views, age order and etags, checked against what was written."""

    def test_get_subdict(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        self.require_subdicts(store)
        store["a", "x"] = 1
        store["a", "y", "z"] = 2
        store["b", "x"] = 3
        store["a"] = 4
        sub = store.get_subdict("a")
        assert isinstance(sub, PersiDict)
        assert keyset(sub) == {("x",), ("y", "z")}
        assert sub["x"] == 1 and sub["y", "z"] == 2
        assert len(sub) == 2
        sub["new"] = 5
        assert store["a", "new"] == 5
        del sub["x"]
        assert ("a", "x") not in store
        store["a", "later"] = 6
        assert sub["later"] == 6
        assert keyset(store.get_subdict(("a", "y"))) == {("z",)}
        assert keyset(store.get_subdict(["a", "y"])) == {("z",)}
        assert len(store.get_subdict("nothing_here")) == 0
        assert keyset(store.get_subdict([])) == keyset(store)
        self.assert_state(store, {
            ("a", "y", "z"): 2, ("b", "x"): 3, ("a",): 4, ("a", "new"): 5, ("a", "later"): 6
        })

    def test_subdict_shares_params(self, store: PersiDict[Any]) -> None:
        self.require_subdicts(store)
        sub = store.get_subdict(("p", "q"))
        assert sub.serialization_format == store.serialization_format
        assert sub.append_only == store.append_only
        assert sub.base_class_for_values == store.base_class_for_values

    def test_subdicts(self, store: PersiDict[Any]) -> None:
        self.require_subdicts(store)
        store["a", "x"] = 1
        store["a", "y"] = 2
        store["b", "c", "d"] = 3
        store["leaf"] = 4
        subs = store.subdicts()
        assert isinstance(subs, dict)
        assert {"a", "b"} <= set(subs) <= {"a", "b", "leaf"}
        assert keyset(subs["a"]) == {("x",), ("y",)}
        assert keyset(subs["b"]) == {("c", "d")}
        if "leaf" in subs:
            assert len(subs["leaf"]) == 0

    def test_prefix_is_not_a_key(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["p", "q"] = 1
        store["p", "r", "s"] = 2
        assert store.discard("p") is False
        assert store.discard(("p", "r")) is False
        with pytest.raises(KeyError):
            del store["p"]
        with pytest.raises(KeyError):
            store.pop("p")
        assert store.pop("p", "dflt") == "dflt"
        store["p"] = "leaf"
        del store["p"]  # deleting the leaf keeps everything under the prefix
        self.assert_state(store, {("p", "q"): 1, ("p", "r", "s"): 2})

    def test_subdict_clear_only_clears_prefix(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        self.require_subdicts(store)
        store["a", "x"] = 1
        store["a", "y", "z"] = 2
        store["a"] = 3
        store["ab", "x"] = 4
        store["b"] = 5
        store.get_subdict("a").clear()
        self.assert_state(store, {("a",): 3, ("ab", "x"): 4, ("b",): 5})

    def test_subdicts_follow_deletions(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        self.require_subdicts(store)
        store["a", "x"] = 1
        store["c", "d"] = 2
        del store["a", "x"]
        assert set(store.subdicts()) == {"c"}

    def test_subdict_rebuild_and_pickle(self, store: PersiDict[Any]) -> None:
        self.require_subdicts(store)
        self.require_pickling()
        store["s", "t", "u"] = 1
        sub = store.get_subdict("s")
        params = sub.get_params()
        assert list(params) == sorted(params)
        rebuilt = type(sub)(**params)
        assert snapshot(rebuilt) == {("t", "u"): 1}
        copy_ = pickle.loads(pickle.dumps(sub))
        assert snapshot(copy_) == {("t", "u"): 1}
        rebuilt["v"] = 2
        assert store["s", "v"] == 2

    def test_transform_item_n_retries(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["c"] = 1
        assert store.transform_item("c", transformer=lambda v: v + 1, n_retries=0).new_value == 2
        assert store.transform_item("c", transformer=lambda v: v + 1, n_retries=None).new_value == 3
        assert store["c"] == 3

    def test_newest_oldest_keys(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        keys = _fill_in_order(store)
        assert all(isinstance(k, NonEmptySafeStrTuple) for k in store.newest_keys())
        assert all(isinstance(k, NonEmptySafeStrTuple) for k in store.oldest_keys(max_n=2))
        newest = [tuple(k) for k in store.newest_keys()]
        oldest = [tuple(k) for k in store.oldest_keys()]
        assert oldest == keys
        assert newest == keys[::-1]
        assert [tuple(k) for k in store.newest_keys(max_n=None)] == keys[::-1]
        assert [tuple(k) for k in store.newest_keys(max_n=2)] == keys[::-1][:2]
        assert [tuple(k) for k in store.oldest_keys(max_n=3)] == keys[:3]
        assert [tuple(k) for k in store.oldest_keys(max_n=1)] == keys[:1]
        assert store.newest_keys(max_n=0) == []
        assert store.oldest_keys(max_n=0) == []
        assert store.newest_keys(max_n=-1) == []
        assert store.oldest_keys(max_n=-5) == []
        assert [tuple(k) for k in store.newest_keys(max_n=100)] == keys[::-1]
        assert [tuple(k) for k in store.oldest_keys(max_n=len(keys))] == keys
        # rewriting the oldest key makes it the newest
        write_after(store, keys[0], "rewritten", store.timestamp(keys[-1]))
        assert tuple(store.newest_keys(max_n=1)[0]) == keys[0]
        assert [tuple(k) for k in store.oldest_keys(max_n=1)] == [keys[1]]

    def test_newest_oldest_values(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        keys = _fill_in_order(store)
        vals = list(range(len(keys)))
        assert store.oldest_values() == vals
        assert store.newest_values() == vals[::-1]
        assert store.newest_values(max_n=2) == vals[::-1][:2]
        assert store.oldest_values(max_n=2) == vals[:2]
        assert store.newest_values(max_n=0) == []
        assert store.oldest_values(max_n=-3) == []
        assert store.newest_values(max_n=99) == vals[::-1]

    def test_random_key(self, store: PersiDict[Any]) -> None:
        assert store.random_key() is None
        keys = {("a",), ("b", "c"), ("d",), ("e", "f", "g"), ("h",)}
        for k in keys:
            store[k] = 0
        counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        draws = 500
        for _ in range(draws):
            drawn = store.random_key()
            assert isinstance(drawn, NonEmptySafeStrTuple)
            counts[tuple(drawn)] += 1
        assert set(counts) == keys
        # expected 100 each, sd ~9: these bounds are > 5 sd wide
        for k in keys:
            assert 50 <= counts[k] <= 160, counts
        if policy_of(store) != "mutable":
            return
        store.clear()
        assert store.random_key() is None

    def test_etag_basics(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        e1 = store.etag("a")
        assert isinstance(e1, str) and e1
        assert store.etag("a") == e1  # stable
        _ = store["a"]
        assert store.etag(("a",)) == e1  # reading does not change it
        store["b"] = 1
        assert store.etag("a") == e1  # other keys do not change it
        store["a"] = 2
        assert store.etag("a") != e1

    def test_etag_changes_on_same_size_rewrites(self, store: PersiDict[Any]) -> None:
        """DESIGN pitfall: rewrites within one clock tick must still change the etag."""
        self.require_mutable(store)
        seen = []
        for i in range(20):
            store["a"] = f"v{i:02d}"  # same serialized size every time
            seen.append(store.etag("a"))
        assert len(set(seen)) == len(seen), seen

    def test_etag_changes_on_delete_and_recreate(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        seen = []
        for i in range(10):
            store["a"] = f"v{i}"
            seen.append(store.etag("a"))
            del store["a"]
            store["filler"] = i  # encourage inode reuse
        assert len(set(seen)) == len(seen), seen

    def test_get_with_etag(self, store: PersiDict[Any]) -> None:
        store["a"] = {"x": 1}
        r = store.get_with_etag("a")
        assert isinstance(r, ConditionalOperationResult)
        assert r.condition_was_satisfied is True
        assert r.new_value == {"x": 1}
        assert r.actual_etag == store.etag("a")
        assert r.resulting_etag == r.actual_etag
        assert r.value_was_mutated is False
        r = store.get_with_etag(("no", "such"))
        assert r.condition_was_satisfied is True
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.actual_etag is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        assert r.value_was_mutated is False
