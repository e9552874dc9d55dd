# ruff: noqa: SIM118  (the .keys() API itself is under test)
"""Conformance suite: every registered store must pass all of these.

Written black-box from the API reference and DESIGN.md. For FileDirDict the
results are also checked against ground truth read around the store
(``conftest.read_ground_truth``).
"""

from __future__ import annotations

import collections
import copy
import multiprocessing
import pathlib
import pickle
import tempfile
import time
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from conftest import (
    assert_state,
    decode_file,
    is_file_store,
    make_store,
    path_for_key,
    read_ground_truth,
    snapshot,
    store_layout,
)
from persidict import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    DELETE_CURRENT,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    IF_ETAG_CHANGED,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    NEVER_RETRIEVE,
    VALUE_NOT_RETRIEVED,
    AlwaysRetrieveFlag,
    AnyETagFlag,
    BackendError,
    ConcurrencyConflictError,
    ConditionalOperationResult,
    DeleteCurrentFlag,
    EmptyDict,
    ETagHasChangedFlag,
    ETagIsTheSameFlag,
    FileDirDict,
    IfETagChangedRetrieveFlag,
    ItemNotAvailableFlag,
    KeepCurrentFlag,
    MutationPolicyError,
    NeverRetrieveFlag,
    NonEmptySafeStrTuple,
    OperationResult,
    PersiDict,
    SafeStrTuple,
    ValueNotRetrievedFlag,
    get_safe_chars,
)

FLAGS = {
    "KEEP_CURRENT": (KEEP_CURRENT, KeepCurrentFlag),
    "DELETE_CURRENT": (DELETE_CURRENT, DeleteCurrentFlag),
    "ANY_ETAG": (ANY_ETAG, AnyETagFlag),
    "ETAG_IS_THE_SAME": (ETAG_IS_THE_SAME, ETagIsTheSameFlag),
    "ETAG_HAS_CHANGED": (ETAG_HAS_CHANGED, ETagHasChangedFlag),
    "ITEM_NOT_AVAILABLE": (ITEM_NOT_AVAILABLE, ItemNotAvailableFlag),
    "VALUE_NOT_RETRIEVED": (VALUE_NOT_RETRIEVED, ValueNotRetrievedFlag),
    "ALWAYS_RETRIEVE": (ALWAYS_RETRIEVE, AlwaysRetrieveFlag),
    "NEVER_RETRIEVE": (NEVER_RETRIEVE, NeverRetrieveFlag),
    "IF_ETAG_CHANGED": (IF_ETAG_CHANGED, IfETagChangedRetrieveFlag),
}

SENTINELS = (ITEM_NOT_AVAILABLE, VALUE_NOT_RETRIEVED)


def same(actual: Any, expected: Any) -> bool:
    """Identity for sentinels, equality for everything else."""
    if any(expected is s for s in SENTINELS):
        return actual is expected
    if any(actual is s for s in SENTINELS):
        return False
    return actual == expected


def keyset(d: PersiDict) -> set[tuple[str, ...]]:
    return {tuple(k) for k in d.keys()}


def write_after(store: PersiDict, key: Any, value: Any, previous_ts: float | None) -> float:
    """Write ``key`` so that its timestamp is strictly later than ``previous_ts``.

    Stores have clocks of different resolution (ns for local files, 1 s for
    S3): rewrite until the store's clock has moved on, within a generous bound.
    """
    deadline = time.monotonic() + 10
    while True:
        store[key] = value
        ts = store.timestamp(key)
        if previous_ts is None or ts > previous_ts:
            return ts
        assert time.monotonic() < deadline, f"timestamp of {key} never advanced past {ts}"
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# Basic mapping API
# ---------------------------------------------------------------------------


def test_empty_store(store: PersiDict) -> None:
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


def test_setitem_getitem_contains_len(store: PersiDict) -> None:
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
    assert_state(store, {("a",): 1, ("b", "c"): "two"})


def test_overwrite(store: PersiDict) -> None:
    store["a"] = 1
    store["a"] = 2
    assert store["a"] == 2
    assert len(store) == 1
    assert_state(store, {("a",): 2})


def test_missing_key_raises_keyerror(store: PersiDict) -> None:
    store["a"] = 1
    with pytest.raises(KeyError):
        store["zz"]
    with pytest.raises(KeyError):
        del store["zz"]
    with pytest.raises(KeyError):
        store.timestamp("zz")
    with pytest.raises(KeyError):
        store.etag("zz")
    assert_state(store, {("a",): 1})


def test_delitem(store: PersiDict) -> None:
    store["a"] = 1
    store["x", "y"] = 2
    del store["a"]
    assert "a" not in store
    del store["x", "y"]
    assert len(store) == 0
    assert_state(store, {})


VALUES_ANY_FORMAT = [
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


def test_value_roundtrip(store: PersiDict) -> None:
    for i, v in enumerate(VALUES_ANY_FORMAT):
        store[f"k{i}"] = v
    for i, v in enumerate(VALUES_ANY_FORMAT):
        got = store[f"k{i}"]
        assert got == v and type(got) is type(v), (i, v, got)
    assert_state(store, {(f"k{i}",): v for i, v in enumerate(VALUES_ANY_FORMAT)})


def test_pickle_only_values_roundtrip(store: PersiDict) -> None:
    if store.serialization_format != "pkl":
        pytest.skip("pickle-specific value types")
    values = [(1, 2), {1, 2}, frozenset({3}), b"\x00\xff", 1 + 2j, {(1, 2): "t"}]
    for i, v in enumerate(values):
        store[f"k{i}"] = v
    for i, v in enumerate(values):
        got = store[f"k{i}"]
        assert got == v and type(got) is type(v)


def test_get(store: PersiDict) -> None:
    store["a"] = 1
    assert store.get("a") == 1
    assert store.get("b") is None
    assert store.get("b", 5) == 5
    assert store.get(("a",), 5) == 1


def test_setdefault(store: PersiDict) -> None:
    assert store.setdefault("a", 1) == 1
    assert store["a"] == 1
    assert store.setdefault("a", 2) == 1
    assert store["a"] == 1
    assert store.setdefault("n") is None
    assert "n" in store and store["n"] is None
    assert_state(store, {("a",): 1, ("n",): None})


def test_pop(store: PersiDict) -> None:
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
        store.pop("b", 1, 2)
    assert_state(store, {})


def test_popitem(store: PersiDict) -> None:
    data = {("a",): 1, ("b", "c"): 2, ("d",): 3}
    for k, v in data.items():
        store[k] = v
    seen = {}
    while store:
        k, v = store.popitem()
        assert isinstance(k, SafeStrTuple)
        assert tuple(k) in data and tuple(k) not in seen
        assert tuple(k) not in keyset(store)
        seen[tuple(k)] = v
    assert seen == data
    with pytest.raises(KeyError):
        store.popitem()
    assert_state(store, {})


def test_discard_and_delete_if_exists(store: PersiDict) -> None:
    store["a"] = 1
    store["b"] = 2
    assert store.discard("a") is True
    assert store.discard("a") is False
    assert store.delete_if_exists("b") is True
    assert store.delete_if_exists("b") is False
    assert store.discard(("x", "y")) is False
    assert_state(store, {})


def test_clear(store: PersiDict) -> None:
    for i in range(5):
        store["lvl1", f"k{i}"] = i
        store[f"top{i}"] = i
    store.clear()
    assert len(store) == 0
    assert list(store.keys()) == []
    assert_state(store, {})
    store["again"] = 1  # usable after clear
    assert_state(store, {("again",): 1})


def test_update(store: PersiDict) -> None:
    store.update({"a": 1, ("b", "c"): 2})
    store.update([("d", 3), (("e", "f"), 4)])
    store.update(g=5)
    store.update({"a": 10})
    assert_state(store, {("a",): 10, ("b", "c"): 2, ("d",): 3, ("e", "f"): 4, ("g",): 5})


def test_iteration_views(store: PersiDict) -> None:
    data = {("a",): 1, ("b", "c"): 2, ("b", "d", "e"): 3}
    for k, v in data.items():
        store[k] = v
    keys = list(store)
    assert all(isinstance(k, NonEmptySafeStrTuple) for k in keys)
    assert {tuple(k) for k in keys} == set(data)
    assert len(keys) == len(data)
    assert sorted(store.values()) == sorted(data.values())
    assert {tuple(k): v for k, v in store.items()} == data
    for k in store.keys():  # keys returned by the store are usable as keys
        assert store[k] == data[tuple(k)]
        assert k in store


def _refill(store: PersiDict) -> None:
    for i in range(4):
        store["a", f"k{i}"] = i
        store[f"t{i}"] = i


def test_mutation_during_iteration(store: PersiDict) -> None:
    """Keys vanishing mid-iteration (as other processes do) never break an iteration."""
    _refill(store)
    for k in store.keys():
        del store[k]
    assert len(store) == 0
    iterations = {
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


def test_and_timestamps_views(store: PersiDict) -> None:
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


def test_timestamp_advances_on_write(store: PersiDict) -> None:
    store["a"] = 1
    ts1 = store.timestamp("a")
    ts2 = write_after(store, "a", 2, ts1)
    assert store.timestamp("a") == ts2 > ts1
    assert store["a"] == 2


def test_eq_and_bool(store: PersiDict, store_maker: Any) -> None:
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


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def test_key_forms_are_equivalent(store: PersiDict) -> None:
    store["a"] = 1
    for k in ("a", ("a",), ["a"], SafeStrTuple("a"), NonEmptySafeStrTuple("a")):
        assert store[k] == 1
        assert k in store
    store[["x", "y"]] = 2
    for k in (("x", "y"), ["x", "y"], SafeStrTuple("x", "y"), NonEmptySafeStrTuple("x", "y")):
        assert store[k] == 2
        assert k in store
    store[NonEmptySafeStrTuple("x", "y")] = 3
    store[SafeStrTuple("p", "q", "r")] = 4
    assert keyset(store) == {("a",), ("x", "y"), ("p", "q", "r")}
    assert store["x", "y"] == 3
    del store[SafeStrTuple("x", "y")]
    assert keyset(store) == {("a",), ("p", "q", "r")}


def test_safe_character_keys(store: PersiDict) -> None:
    comps = ["ABC", "abc", "a.b", "a-b_c", "(x)", "~t", "a=b", "...", "0123456789", "A" * 200]
    for i, c in enumerate(comps):
        store[c] = i
        store["dir", c] = -i
    for i, c in enumerate(comps):
        assert store[c] == i
        assert store["dir", c] == -i
    assert len(store) == 2 * len(comps)
    assert keyset(store) == {(c,) for c in comps} | {("dir", c) for c in comps}


def test_case_sensitive_keys(store: PersiDict) -> None:
    store["Key"] = 1
    store["key"] = 2
    store["KEY"] = 3
    assert (store["Key"], store["key"], store["KEY"]) == (1, 2, 3)
    assert len(store) == 3


def test_leaf_and_prefix_coexist(store: PersiDict) -> None:
    store["a"] = "leaf"
    store["a", "b"] = "inner"
    store["a", "b", "c"] = "deep"
    assert store["a"] == "leaf"
    assert store["a", "b"] == "inner"
    assert store["a", "b", "c"] == "deep"
    assert len(store) == 3
    del store["a", "b"]
    assert store["a", "b", "c"] == "deep"
    assert_state(store, {("a",): "leaf", ("a", "b", "c"): "deep"})


def test_deep_keys(store: PersiDict) -> None:
    key = tuple(f"l{i}" for i in range(12))
    store[key] = "deep"
    assert store[key] == "deep"
    assert keyset(store) == {key}
    del store[key]
    assert len(store) == 0
    assert_state(store, {})


_SAFE_ALPHABET = "".join(sorted(get_safe_chars()))
_components = st.text(alphabet=_SAFE_ALPHABET, min_size=1, max_size=24).filter(
    lambda c: c not in (".", "..")
)
_keys = st.lists(_components, min_size=1, max_size=3).map(tuple)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(keys=st.lists(_keys, min_size=1, max_size=6, unique=True))
def test_any_safe_keys_roundtrip(store_name: str, keys: list[tuple[str, ...]]) -> None:
    """Arbitrary safe components (dots, '=', '_xxxx' digest look-alikes...) round-trip."""
    with tempfile.TemporaryDirectory() as tmp:
        d = make_store(store_name, pathlib.Path(tmp))
        expected = {k: i for i, k in enumerate(keys)}
        for k, v in expected.items():
            d[k] = v
        assert_state(d, expected)
        for k, v in expected.items():
            assert d[k] == v
        for k in keys:
            del d[k]
        assert_state(d, {})


# ---------------------------------------------------------------------------
# Sub-dictionaries
# ---------------------------------------------------------------------------


def test_get_subdict(store: PersiDict) -> None:
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
    assert_state(
        store, {("a", "y", "z"): 2, ("b", "x"): 3, ("a",): 4, ("a", "new"): 5, ("a", "later"): 6}
    )


def test_subdict_shares_params(store: PersiDict) -> None:
    sub = store.get_subdict(("p", "q"))
    assert sub.serialization_format == store.serialization_format
    assert sub.append_only == store.append_only
    assert sub.base_class_for_values == store.base_class_for_values


def test_subdicts(store: PersiDict) -> None:
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


def test_prefix_is_not_a_key(store: PersiDict) -> None:
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
    assert_state(store, {("p", "q"): 1, ("p", "r", "s"): 2})


def test_subdict_clear_only_clears_prefix(store: PersiDict) -> None:
    store["a", "x"] = 1
    store["a", "y", "z"] = 2
    store["a"] = 3
    store["ab", "x"] = 4
    store["b"] = 5
    store.get_subdict("a").clear()
    assert_state(store, {("a",): 3, ("ab", "x"): 4, ("b",): 5})


def test_subdicts_follow_deletions(store: PersiDict) -> None:
    store["a", "x"] = 1
    store["c", "d"] = 2
    del store["a", "x"]
    assert set(store.subdicts()) == {"c"}


def test_subdict_rebuild_and_pickle(store: PersiDict) -> None:
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


def test_transform_item_n_retries(store: PersiDict) -> None:
    store["c"] = 1
    assert store.transform_item("c", transformer=lambda v: v + 1, n_retries=0).new_value == 2
    assert store.transform_item("c", transformer=lambda v: v + 1, n_retries=None).new_value == 3
    assert store["c"] == 3


# ---------------------------------------------------------------------------
# Time ordering and random keys
# ---------------------------------------------------------------------------


def _fill_in_order(store: PersiDict, n: int = 5) -> list[tuple[str, ...]]:
    keys = [("k", f"{i}") if i % 2 else (f"k{i}",) for i in range(n)]
    ts = None
    for i, k in enumerate(keys):
        ts = write_after(store, k, i, ts)
    return keys


def test_newest_oldest_keys(store: PersiDict) -> None:
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


def test_newest_oldest_values(store: PersiDict) -> None:
    keys = _fill_in_order(store)
    vals = list(range(len(keys)))
    assert store.oldest_values() == vals
    assert store.newest_values() == vals[::-1]
    assert store.newest_values(max_n=2) == vals[::-1][:2]
    assert store.oldest_values(max_n=2) == vals[:2]
    assert store.newest_values(max_n=0) == []
    assert store.oldest_values(max_n=-3) == []
    assert store.newest_values(max_n=99) == vals[::-1]


def test_random_key(store: PersiDict) -> None:
    assert store.random_key() is None
    keys = {("a",), ("b", "c"), ("d",), ("e", "f", "g"), ("h",)}
    for k in keys:
        store[k] = 0
    counts: collections.Counter[tuple[str, ...]] = collections.Counter()
    draws = 500
    for _ in range(draws):
        k = store.random_key()
        assert isinstance(k, NonEmptySafeStrTuple)
        counts[tuple(k)] += 1
    assert set(counts) == keys
    # expected 100 each, sd ~9: these bounds are > 5 sd wide
    for k in keys:
        assert 50 <= counts[k] <= 160, counts
    store.clear()
    assert store.random_key() is None


# ---------------------------------------------------------------------------
# ETags
# ---------------------------------------------------------------------------


def test_etag_basics(store: PersiDict) -> None:
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


def test_etag_changes_on_same_size_rewrites(store: PersiDict) -> None:
    """DESIGN pitfall: rewrites within one clock tick must still change the etag."""
    seen = []
    for i in range(20):
        store["a"] = f"v{i:02d}"  # same serialized size every time
        seen.append(store.etag("a"))
    assert len(set(seen)) == len(seen), seen


def test_etag_changes_on_delete_and_recreate(store: PersiDict) -> None:
    seen = []
    for i in range(10):
        store["a"] = f"v{i}"
        seen.append(store.etag("a"))
        del store["a"]
        store["filler"] = i  # encourage inode reuse
    assert len(set(seen)) == len(seen), seen


def test_get_with_etag(store: PersiDict) -> None:
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


# ---------------------------------------------------------------------------
# Conditional operations: the full matrix
# ---------------------------------------------------------------------------

BYSTANDER = ("bystander",)
OLD_VALUE = "old"
CURRENT_VALUE = "current value, longer"
NEW_VALUE = "a brand new value"

CONDITIONS = {"ANY": ANY_ETAG, "SAME": ETAG_IS_THE_SAME, "CHANGED": ETAG_HAS_CHANGED}
RETRIEVES = {"ALWAYS": ALWAYS_RETRIEVE, "NEVER": NEVER_RETRIEVE, "IFCHANGED": IF_ETAG_CHANGED}
EXPECTED_KINDS = ["correct", "stale", "absent"]
PRESENCE = ["present", "absent"]

# Every combination of condition x expected etag x presence is its own test;
# retrieve_value (and the kind of value written) vary inside it, each on its
# own key, so a failure message names the whole combination.
cond_params = pytest.mark.parametrize("cond_name", list(CONDITIONS))
exp_params = pytest.mark.parametrize("expected_kind", EXPECTED_KINDS)
presence_params = pytest.mark.parametrize("presence", PRESENCE)


def _prepare(
    store: PersiDict, key: tuple[str, ...], presence: str, expected_kind: str
) -> tuple[Any, Any, dict]:
    """Set up ``key``; return (actual_etag, expected_etag, state_before)."""
    store[BYSTANDER] = "bystander"
    store[key] = OLD_VALUE
    stale = store.etag(key)
    if presence == "present":
        store[key] = CURRENT_VALUE  # different size: even a stat-based etag differs
        actual = store.etag(key)
        assert actual != stale, "etag did not change on rewrite"
    else:
        del store[key]
        actual = ITEM_NOT_AVAILABLE
    expected = {"correct": actual, "stale": stale, "absent": ITEM_NOT_AVAILABLE}[expected_kind]
    return actual, expected, snapshot(store)


def _satisfied(condition: Any, expected: Any, actual: Any) -> bool:
    if condition is ANY_ETAG:
        return True
    if condition is ETAG_IS_THE_SAME:
        return same(actual, expected)
    return not same(actual, expected)


def _retrieved(retrieve: Any, presence: str, expected: Any, actual: Any) -> Any:
    if presence == "absent":
        return ITEM_NOT_AVAILABLE
    if retrieve is NEVER_RETRIEVE:
        return VALUE_NOT_RETRIEVED
    if retrieve is ALWAYS_RETRIEVE:
        return CURRENT_VALUE
    return CURRENT_VALUE if not same(actual, expected) else VALUE_NOT_RETRIEVED


def _check_result_type(r: Any) -> None:
    assert isinstance(r, ConditionalOperationResult)
    assert isinstance(r.condition_was_satisfied, bool)
    assert isinstance(r.value_was_mutated, bool)


@cond_params
@exp_params
@presence_params
def test_get_item_if(store: PersiDict, cond_name: str, expected_kind: str, presence: str) -> None:
    cond = CONDITIONS[cond_name]
    for retrieve_name, retrieve in RETRIEVES.items():
        key = ("cond", f"get_{retrieve_name}")
        actual, expected, before = _prepare(store, key, presence, expected_kind)
        r = store.get_item_if(key, condition=cond, expected_etag=expected, retrieve_value=retrieve)
        ctx = (retrieve_name, r)
        _check_result_type(r)
        assert r.condition_was_satisfied is _satisfied(cond, expected, actual), ctx
        assert same(r.actual_etag, actual), ctx
        assert same(r.resulting_etag, actual), ctx
        assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
        assert r.value_was_mutated is False, ctx
        assert_state(store, before)


def test_get_item_if_default_retrieve_is_if_etag_changed(store: PersiDict) -> None:
    store["a"] = 1
    e = store.etag("a")
    r = store.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=e)
    assert r.condition_was_satisfied is True and r.new_value is VALUE_NOT_RETRIEVED
    r = store.get_item_if("a", condition=ETAG_HAS_CHANGED, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied is True and r.new_value == 1


@pytest.mark.parametrize("value_kind", ["value", "keep", "delete"])
@cond_params
@exp_params
@presence_params
def test_set_item_if(
    store: PersiDict, cond_name: str, expected_kind: str, presence: str, value_kind: str
) -> None:
    cond = CONDITIONS[cond_name]
    value = {"value": NEW_VALUE, "keep": KEEP_CURRENT, "delete": DELETE_CURRENT}[value_kind]
    for retrieve_name, retrieve in RETRIEVES.items():
        key = ("cond", f"set_{retrieve_name}")
        actual, expected, before = _prepare(store, key, presence, expected_kind)
        sat = _satisfied(cond, expected, actual)
        r = store.set_item_if(
            key, value=value, condition=cond, expected_etag=expected, retrieve_value=retrieve
        )
        ctx = (retrieve_name, r)
        _check_result_type(r)
        assert r.condition_was_satisfied is sat, ctx
        assert same(r.actual_etag, actual), ctx
        after = dict(before)
        if sat and value_kind == "value":
            after[key] = NEW_VALUE
            assert r.new_value == NEW_VALUE, ctx
            assert r.resulting_etag == store.etag(key), ctx
            assert r.resulting_etag != actual, ctx
            assert r.value_was_mutated is True, ctx
        elif sat and value_kind == "delete":
            after.pop(key, None)
            assert r.new_value is ITEM_NOT_AVAILABLE, ctx
            assert r.resulting_etag is ITEM_NOT_AVAILABLE, ctx
            assert r.value_was_mutated is (presence == "present"), ctx
        else:  # condition failed, or KEEP_CURRENT
            assert same(r.resulting_etag, actual), ctx
            assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
            assert r.value_was_mutated is False, ctx
        assert_state(store, after)
        if key in after:
            assert store.etag(key) == r.resulting_etag, ctx


@cond_params
@exp_params
@presence_params
def test_setdefault_if(
    store: PersiDict, cond_name: str, expected_kind: str, presence: str
) -> None:
    cond = CONDITIONS[cond_name]
    for retrieve_name, retrieve in RETRIEVES.items():
        key = ("cond", f"setdefault_{retrieve_name}")
        actual, expected, before = _prepare(store, key, presence, expected_kind)
        sat = _satisfied(cond, expected, actual)
        r = store.setdefault_if(
            key, default_value=NEW_VALUE, condition=cond, expected_etag=expected,
            retrieve_value=retrieve,
        )
        ctx = (retrieve_name, r)
        _check_result_type(r)
        assert r.condition_was_satisfied is sat, ctx
        assert same(r.actual_etag, actual), ctx
        after = dict(before)
        if presence == "absent" and sat:
            after[key] = NEW_VALUE
            assert r.new_value == NEW_VALUE, ctx
            assert r.resulting_etag == store.etag(key), ctx
            assert r.value_was_mutated is True, ctx
        elif presence == "absent":
            assert r.new_value is ITEM_NOT_AVAILABLE, ctx
            assert r.resulting_etag is ITEM_NOT_AVAILABLE, ctx
            assert r.value_was_mutated is False, ctx
        else:  # present: never mutated
            assert same(r.resulting_etag, actual), ctx
            assert same(r.new_value, _retrieved(retrieve, presence, expected, actual)), ctx
            assert r.value_was_mutated is False, ctx
        assert_state(store, after)


@cond_params
@exp_params
@presence_params
def test_discard_if(store: PersiDict, cond_name: str, expected_kind: str, presence: str) -> None:
    key = ("cond", "discard")
    actual, expected, before = _prepare(store, key, presence, expected_kind)
    cond = CONDITIONS[cond_name]
    sat = _satisfied(cond, expected, actual)
    r = store.discard_if(key, condition=cond, expected_etag=expected)
    _check_result_type(r)
    assert r.condition_was_satisfied is sat
    assert same(r.actual_etag, actual)
    after = dict(before)
    if presence == "present" and sat:
        del after[key]
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        assert r.value_was_mutated is True
    elif presence == "absent":
        assert r.new_value is ITEM_NOT_AVAILABLE
        assert r.resulting_etag is ITEM_NOT_AVAILABLE
        assert r.value_was_mutated is False
    else:
        assert r.new_value is VALUE_NOT_RETRIEVED
        assert same(r.resulting_etag, actual)
        assert r.value_was_mutated is False
    assert_state(store, after)


def test_compare_and_swap_loop(store: PersiDict) -> None:
    """The typical optimistic-concurrency pattern works end to end."""
    store["n"] = 0
    for _ in range(10):
        r = store.get_with_etag("n")
        w = store.set_item_if(
            "n", value=r.new_value + 1, condition=ETAG_IS_THE_SAME, expected_etag=r.actual_etag
        )
        assert w.condition_was_satisfied
        # the old etag is now stale
        w2 = store.set_item_if(
            "n", value=-1, condition=ETAG_IS_THE_SAME, expected_etag=r.actual_etag
        )
        assert not w2.condition_was_satisfied
    assert store["n"] == 10


def test_two_handles_on_one_store(store: PersiDict) -> None:
    """A second handle (rebuilt from get_params) sees writes and invalidates etags."""
    other = type(store)(**store.get_params())
    store["k"] = "v1"
    seen = store.get_with_etag("k")
    other["k"] = "v2"  # same size, different content
    assert store["k"] == "v2"
    assert store.etag("k") != seen.actual_etag
    r = store.set_item_if("k", value="v3", condition=ETAG_IS_THE_SAME,
                          expected_etag=seen.actual_etag, retrieve_value=ALWAYS_RETRIEVE)
    assert not r.condition_was_satisfied
    assert r.new_value == "v2"
    r = store.get_item_if("k", condition=ETAG_HAS_CHANGED, expected_etag=seen.actual_etag)
    assert r.condition_was_satisfied and r.new_value == "v2"
    del other["k"]
    assert "k" not in store
    r = store.discard_if("k", condition=ETAG_IS_THE_SAME, expected_etag=seen.actual_etag)
    assert not r.condition_was_satisfied
    assert r.actual_etag is ITEM_NOT_AVAILABLE


# ---------------------------------------------------------------------------
# Jokers
# ---------------------------------------------------------------------------


def test_jokers_via_setitem(store: PersiDict) -> None:
    store["a"] = 1
    e = store.etag("a")
    store["a"] = KEEP_CURRENT
    assert store["a"] == 1
    assert store.etag("a") == e
    store["missing"] = KEEP_CURRENT
    assert "missing" not in store
    store["a"] = DELETE_CURRENT
    assert "a" not in store
    store["a"] = DELETE_CURRENT  # absent: no-op, no error
    assert_state(store, {})


def test_jokers_rejected_by_setdefault(store: PersiDict) -> None:
    store["a"] = 1
    for joker in (KEEP_CURRENT, DELETE_CURRENT):
        for key in ("a", "absent"):
            with pytest.raises(TypeError):
                store.setdefault(key, joker)
            with pytest.raises(TypeError):
                store.setdefault_if(
                    key, default_value=joker, condition=ANY_ETAG,
                    expected_etag=ITEM_NOT_AVAILABLE,
                )
    assert_state(store, {("a",): 1})


# ---------------------------------------------------------------------------
# transform_item
# ---------------------------------------------------------------------------


def test_transform_increment(store: PersiDict) -> None:
    store["c"] = 1
    r = store.transform_item("c", transformer=lambda v: v + 1)
    assert isinstance(r, OperationResult)
    assert r.new_value == 2
    assert r.resulting_etag == store.etag("c")
    assert store["c"] == 2


def test_transform_creates_from_absent(store: PersiDict) -> None:
    seen = []

    def create(v: Any) -> Any:
        seen.append(v)
        return 0 if v is ITEM_NOT_AVAILABLE else v + 1

    r = store.transform_item(("x", "c"), transformer=create)
    assert seen and seen[-1] is ITEM_NOT_AVAILABLE
    assert r.new_value == 0
    assert r.resulting_etag == store.etag(("x", "c"))
    r = store.transform_item(("x", "c"), transformer=create)
    assert r.new_value == 1
    assert_state(store, {("x", "c"): 1})


def test_transform_delete_current(store: PersiDict) -> None:
    store["c"] = 5
    r = store.transform_item("c", transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert r.resulting_etag is ITEM_NOT_AVAILABLE
    assert "c" not in store
    r = store.transform_item("c", transformer=lambda v: DELETE_CURRENT)  # absent: no-op
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert r.resulting_etag is ITEM_NOT_AVAILABLE
    assert_state(store, {})


def test_transform_keep_current(store: PersiDict) -> None:
    store["c"] = 5
    e = store.etag("c")
    r = store.transform_item("c", transformer=lambda v: KEEP_CURRENT)
    assert r.new_value == 5
    assert r.resulting_etag == e
    assert store.etag("c") == e
    r = store.transform_item("absent", transformer=lambda v: KEEP_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert r.resulting_etag is ITEM_NOT_AVAILABLE
    assert_state(store, {("c",): 5})


def test_transform_exception_leaves_value(store: PersiDict) -> None:
    store["c"] = 5

    def boom(v: Any) -> Any:
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        store.transform_item("c", transformer=boom)
    assert_state(store, {("c",): 5})


# ---------------------------------------------------------------------------
# append_only
# ---------------------------------------------------------------------------


def test_append_only(store_maker: Any) -> None:
    d = store_maker(append_only=True)
    assert d.append_only is True
    d["a"] = 1
    d["b", "c"] = 2
    e = d.etag("a")
    attempts = {
        "overwrite": lambda: d.__setitem__("a", 2),
        "delitem": lambda: d.__delitem__("a"),
        "delete_joker": lambda: d.__setitem__("a", DELETE_CURRENT),
        "pop": lambda: d.pop("a"),
        "pop_default": lambda: d.pop("a", None),
        "popitem": lambda: d.popitem(),
        "clear": lambda: d.clear(),
        "discard": lambda: d.discard("a"),
        "delete_if_exists": lambda: d.delete_if_exists("a"),
        "set_item_if": lambda: d.set_item_if(
            "a", value=3, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
        ),
        "discard_if": lambda: d.discard_if("a", condition=ANY_ETAG, expected_etag=e),
        "transform": lambda: d.transform_item("a", transformer=lambda v: v + 1),
        "update": lambda: d.update({"a": 9}),
    }
    for name, attempt in attempts.items():
        with pytest.raises(MutationPolicyError) as ei:
            attempt()
        assert isinstance(ei.value, TypeError), name
        assert "append" in str(ei.value).lower(), (name, str(ei.value))
        assert d["a"] == 1, name
        assert d.etag("a") == e, name
    assert_state(d, {("a",): 1, ("b", "c"): 2})
    # reads and non-mutating operations still work
    assert d.setdefault("a", 7) == 1
    d["a"] = KEEP_CURRENT
    d["new"] = 3
    assert d.get_item_if("a", condition=ANY_ETAG, expected_etag=e).condition_was_satisfied
    assert_state(d, {("a",): 1, ("b", "c"): 2, ("new",): 3})


def test_append_only_inserts_through_every_api(store_maker: Any) -> None:
    d = store_maker(append_only=True)
    r = d.set_item_if("a", value=1, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied and r.value_was_mutated
    r = d.setdefault_if("b", default_value=2, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied and r.value_was_mutated
    try:
        r2 = d.transform_item("c", transformer=lambda v: 3 if v is ITEM_NOT_AVAILABLE else v + 1)
        assert r2.new_value == 3
    except MutationPolicyError:
        # The reference documents transform_item as unsupported on AppendOnlyDictCached
        # (what S3Dict(append_only=True) is built on); then it must store nothing.
        assert "c" not in d
        d["c"] = 3
    assert d.setdefault("e", 5) == 5
    d.update({"f": 6})
    # a failed condition on an existing key is not a mutation attempt
    r = d.set_item_if("a", value=9, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE)
    assert not r.condition_was_satisfied and not r.value_was_mutated
    assert_state(d, {("a",): 1, ("b",): 2, ("c",): 3, ("e",): 5, ("f",): 6})


def test_append_only_subdict_stays_append_only(store_maker: Any) -> None:
    d = store_maker(append_only=True)
    sub = d.get_subdict("s")
    assert sub.append_only is True
    sub["x"] = 1
    with pytest.raises(MutationPolicyError):
        sub["x"] = 2
    assert d["s", "x"] == 1


# ---------------------------------------------------------------------------
# base_class_for_values
# ---------------------------------------------------------------------------


def test_base_class_for_values(store_maker: Any) -> None:
    d = store_maker(base_class_for_values=int)
    assert d.base_class_for_values is int
    d["a"] = 1
    d["b"] = True  # bool is an int
    with pytest.raises(TypeError):
        d["a"] = "not an int"
    with pytest.raises(TypeError):
        d["c"] = 1.5
    with pytest.raises(TypeError):
        d.setdefault("c", "x")
    with pytest.raises(TypeError):
        d.set_item_if("a", value="x", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    with pytest.raises(TypeError):
        d.transform_item("a", transformer=lambda v: str(v))
    assert_state(d, {("a",): 1, ("b",): True})
    assert d.get_subdict("p").base_class_for_values is int


# ---------------------------------------------------------------------------
# Parameters, pickling, child processes
# ---------------------------------------------------------------------------


def test_get_params(store: PersiDict) -> None:
    params = store.get_params()
    assert isinstance(params, dict)
    assert list(params) == sorted(params)
    assert params["serialization_format"] == store.serialization_format
    assert params["append_only"] == store.append_only
    assert params["base_class_for_values"] == store.base_class_for_values
    store["a", "b"] = 1
    clone = type(store)(**params)
    assert clone.get_params() == params
    assert snapshot(clone) == {("a", "b"): 1}
    clone["c"] = 2
    assert store["c"] == 2


def test_pickle_store(store: PersiDict) -> None:
    store["a"] = 1
    store["b", "c"] = [1, 2]
    copy_ = pickle.loads(pickle.dumps(store))
    assert type(copy_) is type(store)
    assert snapshot(copy_) == {("a",): 1, ("b", "c"): [1, 2]}
    copy_["d"] = 3  # it works
    assert copy_["d"] == 3
    if is_file_store(store):  # the same data, not a copy of it
        assert store["d"] == 3
        assert copy_.get_params() == store.get_params()


def test_pickle_keeps_policy(store_maker: Any) -> None:
    d = store_maker(append_only=True, base_class_for_values=int)
    d["a"] = 1
    c = pickle.loads(pickle.dumps(d))
    assert c.append_only is True
    assert c.base_class_for_values is int
    assert c["a"] == 1
    with pytest.raises(MutationPolicyError):
        c["a"] = 2
    with pytest.raises(TypeError):
        c["b"] = "x"


def test_safe_str_tuple() -> None:
    t = SafeStrTuple("a", "b")
    assert t.strings == ("a", "b") == t.str_chain
    assert len(t) == 2 and t[0] == "a" and list(t) == ["a", "b"]
    assert tuple(t) == ("a", "b")
    assert t == SafeStrTuple("a", "b") and hash(t) == hash(SafeStrTuple("a", "b"))
    assert t != SafeStrTuple("b", "a")
    assert SafeStrTuple(["a", "b"]) == t
    assert SafeStrTuple(t) == t
    assert len(SafeStrTuple()) == 0
    n = NonEmptySafeStrTuple("a", "b")
    assert isinstance(n, SafeStrTuple) and tuple(n) == ("a", "b")
    assert {t: 1}[SafeStrTuple("a", "b")] == 1
    for bad in (("a/b",), ("",), ("a", 1), ("..",)):
        with pytest.raises((ValueError, TypeError)):
            SafeStrTuple(*bad)


def _child_main(pickled: bytes, queue: Any) -> None:
    try:
        d = pickle.loads(pickled)
        seen = {tuple(k): v for k, v in d.items()}
        d["from_child"] = "hello"
        d.transform_item("counter", transformer=lambda v: v + 1)
        queue.put(("ok", seen))
    except BaseException as exc:  # report anything to the parent
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("name", ["file", "file_json"])
def test_file_store_in_spawned_child(name: str, tmp_path: Any) -> None:
    d = make_store(name, tmp_path)
    d["a"] = 1
    d["counter"] = 10
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(pickle.dumps(d), queue))
    proc.start()
    try:
        status, payload = queue.get(timeout=120)
    finally:
        proc.join(timeout=120)
    assert status == "ok", payload
    assert payload == {("a",): 1, ("counter",): 10}
    assert proc.exitcode == 0
    assert_state(d, {("a",): 1, ("counter",): 11, ("from_child",): "hello"})


# ---------------------------------------------------------------------------
# Flags, results and exceptions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FLAGS))
def test_flags_are_singletons(name: str) -> None:
    flag, cls = FLAGS[name]
    assert isinstance(flag, cls)
    assert cls() is flag
    assert pickle.loads(pickle.dumps(flag)) is flag
    assert copy.copy(flag) is flag
    assert copy.deepcopy(flag) is flag
    assert flag == flag
    hash(flag)
    others = [f for n, (f, _) in FLAGS.items() if n != name]
    assert all(flag is not o and flag != o for o in others)


def test_condition_and_retrieve_flag_hierarchy() -> None:
    from persidict import ETagConditionFlag, Joker, RetrieveValueFlag

    for f in (ANY_ETAG, ETAG_IS_THE_SAME, ETAG_HAS_CHANGED):
        assert isinstance(f, ETagConditionFlag)
        assert not isinstance(f, RetrieveValueFlag)
    for f in (ALWAYS_RETRIEVE, NEVER_RETRIEVE, IF_ETAG_CHANGED):
        assert isinstance(f, RetrieveValueFlag)
        assert not isinstance(f, ETagConditionFlag)
    for f in (KEEP_CURRENT, DELETE_CURRENT):
        assert isinstance(f, Joker)
    assert not isinstance(ITEM_NOT_AVAILABLE, Joker)


def test_results_value_was_mutated() -> None:
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e2", new_value=1
    )
    assert r.value_was_mutated is True
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag="e1", resulting_etag="e1",
        new_value=VALUE_NOT_RETRIEVED,
    )
    assert r.value_was_mutated is False
    r = ConditionalOperationResult(
        condition_was_satisfied=True, actual_etag=ITEM_NOT_AVAILABLE,
        resulting_etag=ITEM_NOT_AVAILABLE, new_value=ITEM_NOT_AVAILABLE,
    )
    assert r.value_was_mutated is False
    o = OperationResult(resulting_etag="e", new_value=3)
    assert (o.resulting_etag, o.new_value) == ("e", 3)
    assert pickle.loads(pickle.dumps(r)) == r


def test_exceptions_carry_attributes_and_pickle() -> None:
    cause = OSError(28, "No space left on device")
    try:
        try:
            raise cause
        except OSError as exc:
            raise BackendError(
                "disk full while writing", backend="filesystem", operation="put", key=("a", "b")
            ) from exc
    except BackendError as be:
        err = be
    assert isinstance(err, RuntimeError)
    assert err.__cause__ is cause
    assert (err.backend, err.operation, err.key) == ("filesystem", "put", ("a", "b"))
    assert "disk full" in str(err)
    err2 = pickle.loads(pickle.dumps(err))
    assert type(err2) is BackendError
    assert (err2.backend, err2.operation, err2.key) == ("filesystem", "put", ("a", "b"))
    assert str(err2) == str(err)
    assert BackendError("m", backend="s3", operation="init").key is None

    cc = ConcurrencyConflictError(("k",), 7)
    assert isinstance(cc, RuntimeError)
    assert (cc.key, cc.attempts) == (("k",), 7)
    assert "k" in str(cc)
    cc2 = pickle.loads(pickle.dumps(cc))
    assert type(cc2) is ConcurrencyConflictError
    assert (cc2.key, cc2.attempts) == (("k",), 7)
    assert str(cc2) == str(cc)

    mp = MutationPolicyError("append-only")
    assert isinstance(mp, TypeError)
    assert mp.policy == "append-only"
    assert "append-only" in str(mp)
    mp2 = pickle.loads(pickle.dumps(mp))
    assert type(mp2) is MutationPolicyError
    assert mp2.policy == "append-only"
    assert str(mp2) == str(mp)


# ---------------------------------------------------------------------------
# FileDirDict: on-disk layout, read around the store
# ---------------------------------------------------------------------------


def test_file_layout_matches_design(file_store: FileDirDict) -> None:
    d = file_store
    data = {("a",): 1, ("b", "c"): [2], ("b", "d", "e"): {"x": "y"}, ("Up",): "up"}
    for k, v in data.items():
        d[k] = v
    base, fmt, _ = store_layout(d)
    for k, v in data.items():
        p = path_for_key(d, k)
        assert p.is_file(), p
        assert decode_file(p, fmt) == v
    assert read_ground_truth(d) == data
    assert d.base_dir == str(base.resolve()) or d.base_dir == str(base)
    for k in data:  # "POSIX timestamp of the underlying file"
        assert d.timestamp(k) == pytest.approx(path_for_key(d, k).stat().st_mtime, abs=0.01)


def test_file_written_around_the_store_is_read(file_store: FileDirDict) -> None:
    """Interchangeable with directories written by other tools (design: 0.309 layout)."""
    import jsonpickle

    d = file_store
    _, fmt, _ = store_layout(d)
    key = ("outside", "written")
    p = path_for_key(d, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    value = {"made": "by hand", "n": [1, 2, 3]}
    if fmt == "pkl":
        p.write_bytes(pickle.dumps(value))
    else:
        p.write_text(jsonpickle.encode(value))
    assert keyset(d) == {key}
    assert d[key] == value
    assert d.get_subdict("outside")["written"] == value


def test_file_clear_removes_files(file_store: FileDirDict) -> None:
    d = file_store
    for i in range(4):
        d["x", "y", f"k{i}"] = i
    d.clear()
    assert read_ground_truth(d) == {}


# ---------------------------------------------------------------------------
# EmptyDict
# ---------------------------------------------------------------------------


def test_empty_dict() -> None:
    d = EmptyDict()
    d["a"] = 1
    assert len(d) == 0
    assert "a" not in d
    assert list(d.keys()) == []
    assert d.get("a", 5) == 5
    assert d.setdefault("a", 3) == 3
    assert "a" not in d
    assert d.discard("a") is False
    assert d.delete_if_exists("a") is False
    assert d.random_key() is None
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        d.timestamp("a")
    assert isinstance(d.get_subdict("x"), EmptyDict)
    r = d.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied is True
    assert r.actual_etag is ITEM_NOT_AVAILABLE and r.new_value is ITEM_NOT_AVAILABLE
    r = d.set_item_if("a", value=1, condition=ETAG_HAS_CHANGED, expected_etag="e")
    assert r.condition_was_satisfied is True
    assert "a" not in d
    r = d.discard_if("a", condition=ETAG_IS_THE_SAME, expected_etag="e")
    assert r.condition_was_satisfied is False
    assert r.new_value is ITEM_NOT_AVAILABLE
    called = []
    r = d.transform_item("a", transformer=lambda v: called.append(v) or 1)
    assert called == []
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert pickle.loads(pickle.dumps(d)).get_params() == d.get_params()


# ---------------------------------------------------------------------------
# Several serialization formats in one location
# ---------------------------------------------------------------------------


def _sibling(store: PersiDict, fmt: str) -> PersiDict:
    params = dict(store.get_params())
    params["serialization_format"] = fmt
    return type(store)(**params)


@pytest.mark.parametrize("name", ["file", "file_nodigest", "memory"])
def test_formats_share_a_location_without_interference(name: str, tmp_path: Any) -> None:
    """pkl and json views of one location are separate namespaces (OverlappingMultiDict)."""
    pkl = make_store(name, tmp_path)
    js = _sibling(pkl, "json")
    pkl["a"] = "from pkl"
    pkl["p", "q"] = 1
    js["a"] = "from json"
    assert pkl["a"] == "from pkl" and js["a"] == "from json"
    assert keyset(pkl) == {("a",), ("p", "q")}
    assert keyset(js) == {("a",)}
    assert len(js) == 1
    js.clear()
    assert keyset(pkl) == {("a",), ("p", "q")}
    assert pkl["a"] == "from pkl"
    assert len(js) == 0
    del pkl["a"]
    js["b"] = 2
    pkl.clear()
    assert keyset(js) == {("b",)}


def test_text_format(tmp_path: Any) -> None:
    """Other formats store str values as plain text files (interchangeable layout)."""
    d = FileDirDict(base_dir=str(tmp_path / "t"), serialization_format="txt",
                    base_class_for_values=str)
    d["a"] = "hello\nworld ✓"
    d["x", "y"] = ""
    p = path_for_key(d, ("a",))
    assert p.suffix == ".txt"
    assert p.read_text(encoding="utf-8") == "hello\nworld ✓"
    assert read_ground_truth(d) == {("a",): "hello\nworld ✓", ("x", "y"): ""}
    with pytest.raises(TypeError):
        d["b"] = 5
    q = path_for_key(d, ("by", "hand"))
    q.parent.mkdir(parents=True)
    q.write_text("plain", encoding="utf-8")
    assert d["by", "hand"] == "plain"
    assert len(d) == 3


def test_text_format_requires_str_values(tmp_path: Any) -> None:
    try:
        d = FileDirDict(base_dir=str(tmp_path / "t"), serialization_format="txt")
    except (ValueError, TypeError):
        return  # rejecting the configuration up front is fine
    with pytest.raises(TypeError):
        d["a"] = 5
    assert len(d) == 0
