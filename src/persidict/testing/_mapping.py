# ruff: noqa: SIM118  (the .keys() API itself is under test)
"""Conformance: the mapping API, values and keys."""

from __future__ import annotations

import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from ..engine.keys import (
    SAFE_STRING_MAX_LENGTH,
    NonEmptySafeStrTuple,
    SafeStrTuple,
    get_safe_chars,
)
from ..engine.persidict import PersiDict
from ._base import ConformanceBase, StoreMaker
from ._support import hypothesis_settings, keyset, policy_of, write_after

VALUES_ANY_FORMAT: list[Any] = [
    None,
    True,
    False,
    0,
    -17,
    2**70,
    3.25,
    "",
    "text",
    "ünïcödé ✓",
    [1, "a", None],
    {"k": [1, 2, {"n": None}]},
    [[]],
]


def _refill(store: PersiDict[Any]) -> None:
    for i in range(4):
        store["a", f"k{i}"] = i
        store[f"t{i}"] = i


_SAFE_ALPHABET = "".join(sorted(get_safe_chars()))
_components = st.text(alphabet=_SAFE_ALPHABET, min_size=1, max_size=24).filter(
    lambda c: c not in (".", "..")
)
_keys = st.lists(_components, min_size=1, max_size=3).map(tuple)


class MappingTests(ConformanceBase):
    """Mapping operations checked against a plain dict of what was written."""

    def test_empty_store(self, store: PersiDict[Any]) -> None:
        assert len(store) == 0
        assert not store
        assert bool(store) is False
        assert list(store) == []
        assert list(store.keys()) == []
        assert list(store.values()) == []
        assert list(store.items()) == []
        assert "a" not in store
        assert store.get("a") is None
        assert store.random_key() is None
        assert store.newest_keys() == []
        assert store.oldest_values() == []
        with pytest.raises(KeyError):
            store["a"]

    def test_setitem_getitem_contains_len(self, store: PersiDict[Any]) -> None:
        store["a"] = 1
        store[("b", "c")] = "two"
        assert store["a"] == 1
        assert store["b", "c"] == "two"
        assert "a" in store
        assert ("b", "c") in store
        assert "b" not in store  # a prefix is not a key
        assert ("b", "c", "d") not in store
        assert len(store) == 2
        assert store
        assert keyset(store) == {("a",), ("b", "c")}
        self.assert_state(store, {("a",): 1, ("b", "c"): "two"})

    def test_overwrite(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        store["a"] = 2
        assert store["a"] == 2
        assert len(store) == 1
        self.assert_state(store, {("a",): 2})

    def test_missing_key_raises_keyerror(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        with pytest.raises(KeyError):
            store["zz"]
        with pytest.raises(KeyError):
            del store["zz"]
        with pytest.raises(KeyError):
            store.timestamp("zz")
        with pytest.raises(KeyError):
            store.etag("zz")
        self.assert_state(store, {("a",): 1})

    def test_delitem(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        store["x", "y"] = 2
        del store["a"]
        assert "a" not in store
        del store["x", "y"]
        assert len(store) == 0
        self.assert_state(store, {})

    def test_value_roundtrip(self, store: PersiDict[Any]) -> None:
        for i, v in enumerate(VALUES_ANY_FORMAT):
            store[f"k{i}"] = v
        for i, v in enumerate(VALUES_ANY_FORMAT):
            got = store[f"k{i}"]
            assert got == v and type(got) is type(v), (i, v, got)
        self.assert_state(store, {(f"k{i}",): v for i, v in enumerate(VALUES_ANY_FORMAT)})

    def test_pickle_only_values_roundtrip(self, store: PersiDict[Any]) -> None:
        if store.serialization_format != "pkl":
            pytest.skip("pickle-specific value types")
        values = [(1, 2), {1, 2}, frozenset({3}), b"\x00\xff", 1 + 2j, {(1, 2): "t"}]
        for i, v in enumerate(values):
            store[f"k{i}"] = v
        for i, v in enumerate(values):
            got = store[f"k{i}"]
            assert got == v and type(got) is type(v)

    def test_get(self, store: PersiDict[Any]) -> None:
        store["a"] = 1
        assert store.get("a") == 1
        assert store.get("b") is None
        assert store.get("b", 5) == 5
        assert store.get(("a",), 5) == 1

    def test_setdefault(self, store: PersiDict[Any]) -> None:
        assert store.setdefault("a", 1) == 1
        assert store["a"] == 1
        assert store.setdefault("a", 2) == 1
        assert store["a"] == 1
        assert store.setdefault("n") is None
        assert "n" in store and store["n"] is None
        self.assert_state(store, {("a",): 1, ("n",): None})

    def test_pop(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        store["b"] = 2
        assert store.pop("a") == 1
        assert "a" not in store
        with pytest.raises(KeyError):
            store.pop("a")
        assert store.pop("a", "dflt") == "dflt"
        assert store.pop("a", None) is None
        assert store.pop("b", "dflt") == 2
        with pytest.raises(TypeError):
            store.pop("b", 1, 2)  # type: ignore[call-overload]
        self.assert_state(store, {})

    def test_popitem(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        data = {("a",): 1, ("b", "c"): 2, ("d",): 3}
        for k, v in data.items():
            store[k] = v
        seen: dict[tuple[str, ...], Any] = {}
        while store:
            popped, v = store.popitem()
            assert isinstance(popped, SafeStrTuple)
            assert tuple(popped) in data and tuple(popped) not in seen
            assert tuple(popped) not in keyset(store)
            seen[tuple(popped)] = v
        assert seen == data
        with pytest.raises(KeyError):
            store.popitem()
        self.assert_state(store, {})

    def test_discard_and_delete_if_exists(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        store["b"] = 2
        assert store.discard("a") is True
        assert store.discard("a") is False
        assert store.delete_if_exists("b") is True
        assert store.delete_if_exists("b") is False
        assert store.discard(("x", "y")) is False
        self.assert_state(store, {})

    def test_clear(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        for i in range(5):
            store["lvl1", f"k{i}"] = i
            store[f"top{i}"] = i
        store.clear()
        assert len(store) == 0
        assert list(store.keys()) == []
        self.assert_state(store, {})
        store["again"] = 1  # usable after clear
        self.assert_state(store, {("again",): 1})

    def test_update(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store.update({"a": 1, ("b", "c"): 2})
        store.update([("d", 3), (("e", "f"), 4)])
        store.update(g=5)
        store.update({"a": 10})
        self.assert_state(store, {("a",): 10, ("b", "c"): 2, ("d",): 3, ("e", "f"): 4, ("g",): 5})

    def test_iteration_views(self, store: PersiDict[Any]) -> None:
        data = {("a",): 1, ("b", "c"): 2, ("b", "d", "e"): 3}
        for k, v in data.items():
            store[k] = v
        keys = list(store)
        assert all(isinstance(k, NonEmptySafeStrTuple) for k in keys)
        assert {tuple(k) for k in keys} == set(data)
        assert len(keys) == len(data)
        assert sorted(store.values()) == sorted(data.values())
        assert {tuple(k): v for k, v in store.items()} == data
        for sk in store.keys():  # keys returned by the store are usable as keys
            assert store[sk] == data[tuple(sk)]
            assert sk in store

    def test_mutation_during_iteration(self, store: PersiDict[Any]) -> None:
        """Keys vanishing mid-iteration (as other processes do) never break an iteration."""
        self.require_mutable(store)
        _refill(store)
        for k in store.keys():
            del store[k]
        assert len(store) == 0
        iterations: dict[str, Callable[[], Iterator[tuple[Any, Any]]]] = {
            "items": lambda: ((k, v) for k, v in store.items()),
            "values": lambda: ((None, v) for v in store.values()),
            "items_and_timestamps": lambda: ((k, v) for k, v, _ in store.items_and_timestamps()),
        }
        for name, it in iterations.items():
            _refill(store)
            n = 0
            for _k, v in it():
                n += 1
                assert isinstance(v, int), name
                for k2 in list(store.keys()):
                    store.discard(k2)
            assert n >= 1, name
            assert len(store) == 0, name

    def test_and_timestamps_views(self, store: PersiDict[Any]) -> None:
        t0 = time.time()
        data = {("a",): 1, ("b", "c"): 2}
        for k, v in data.items():
            store[k] = v
        t1 = time.time()
        kt = {tuple(k): ts for k, ts in store.keys_and_timestamps()}
        assert set(kt) == set(data)
        ikt = {tuple(k): (v, ts) for k, v, ts in store.items_and_timestamps()}
        assert set(ikt) == set(data)
        for k in data:
            ts = store.timestamp(k)
            assert isinstance(ts, float)
            # generous bounds: clocks of file systems are coarse
            assert t0 - 2 <= ts <= t1 + 2
            assert kt[k] == pytest.approx(ts)
            assert ikt[k][0] == data[k]
            assert ikt[k][1] == pytest.approx(ts)

    def test_timestamp_advances_on_write(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        ts1 = store.timestamp("a")
        ts2 = write_after(store, "a", 2, ts1)
        assert store.timestamp("a") == ts2 > ts1
        assert store["a"] == 2

    def test_eq_and_bool(self, store: PersiDict[Any], store_maker: StoreMaker) -> None:
        self.require_mutable(store)
        assert store == store
        store["a"] = 1
        clone = type(store)(**store.get_params())
        assert store == clone
        other = store_maker()
        assert store != other  # other is empty
        other["a"] = 1
        # Mapping semantics: equal contents -> equal stores
        assert store == other
        other["a"] = 2
        assert store != other
        assert bool(store) and not bool(store_maker())
        assert (store == 5) is False

    def test_key_forms_are_equivalent(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = 1
        for k in ("a", ("a",), ["a"], SafeStrTuple("a"), NonEmptySafeStrTuple("a")):
            assert store[k] == 1
            assert k in store
        store[["x", "y"]] = 2
        for k2 in (("x", "y"), ["x", "y"], SafeStrTuple("x", "y"), NonEmptySafeStrTuple("x", "y")):
            assert store[k2] == 2
            assert k2 in store
        store[NonEmptySafeStrTuple("x", "y")] = 3
        store[SafeStrTuple("p", "q", "r")] = 4
        assert keyset(store) == {("a",), ("x", "y"), ("p", "q", "r")}
        assert store["x", "y"] == 3
        del store[SafeStrTuple("x", "y")]
        assert keyset(store) == {("a",), ("p", "q", "r")}

    def test_safe_character_keys(self, store: PersiDict[Any]) -> None:
        comps = ["ABC", "abc", "a.b", "a-b_c", "(x)", "~t", "a=b", "...", "0123456789", "A" * 200]
        for i, c in enumerate(comps):
            store[c] = i
            store["dir", c] = -i
        for i, c in enumerate(comps):
            assert store[c] == i
            assert store["dir", c] == -i
        assert len(store) == 2 * len(comps)
        assert keyset(store) == {(c,) for c in comps} | {("dir", c) for c in comps}

    def test_case_sensitive_keys(self, store: PersiDict[Any]) -> None:
        store["Key"] = 1
        store["key"] = 2
        store["KEY"] = 3
        assert (store["Key"], store["key"], store["KEY"]) == (1, 2, 3)
        assert len(store) == 3

    def test_leaf_and_prefix_coexist(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        store["a"] = "leaf"
        store["a", "b"] = "inner"
        store["a", "b", "c"] = "deep"
        assert store["a"] == "leaf"
        assert store["a", "b"] == "inner"
        assert store["a", "b", "c"] == "deep"
        assert len(store) == 3
        del store["a", "b"]
        assert store["a", "b", "c"] == "deep"
        self.assert_state(store, {("a",): "leaf", ("a", "b", "c"): "deep"})

    def test_deep_keys(self, store: PersiDict[Any]) -> None:
        self.require_mutable(store)
        key = tuple(f"l{i}" for i in range(12))
        store[key] = "deep"
        assert store[key] == "deep"
        assert keyset(store) == {key}
        del store[key]
        assert len(store) == 0
        self.assert_state(store, {})

    @hypothesis_settings(max_examples=25)
    @given(keys=st.lists(_keys, min_size=1, max_size=6, unique=True))
    def test_any_safe_keys_roundtrip(self, keys: list[tuple[str, ...]]) -> None:
        """Arbitrary safe components (dots, '=', '_xxxx' digest look-alikes...) round-trip."""
        with tempfile.TemporaryDirectory() as tmp:
            d = self.new_store(pathlib.Path(tmp))
            expected = {k: i for i, k in enumerate(keys)}
            for k, v in expected.items():
                d[k] = v
            self.assert_state(d, expected)
            for k, v in expected.items():
                assert d[k] == v
            if policy_of(d) != "mutable":
                return
            for k in keys:
                del d[k]
            self.assert_state(d, {})

    def test_long_keys_are_stored_or_refused_whole(self, store: PersiDict[Any]) -> None:
        """A key near the length limits is either stored and readable, or refused
        (ValueError) leaving the store as it was: never half-written."""
        store["before"] = 0
        expected: dict[tuple[str, ...], Any] = {("before",): 0}
        for n in (200, 230, 240, 250, SAFE_STRING_MAX_LENGTH):
            key = ("L" * n,)
            try:
                store[key] = n
            except ValueError:
                self.assert_state(store, expected)
                continue
            expected[key] = n
            assert store[key] == n, n
            assert key in store
            self.assert_state(store, expected)
