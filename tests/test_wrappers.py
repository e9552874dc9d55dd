# ruff: noqa: SIM118  (the .keys() API itself is under test)
"""Conformance of every wrapper stack, and the specifics of each wrapper.

The stacks: MutableDictCached over each pair of (main, cache) stores,
AppendOnlyDictCached over each pair, WriteOnceDict over every registered store
(and over an AppendOnlyDictCached). Each test checks what the wrapper reports
against ground truth read *around* it: the files of a FileDirDict main (read
by ``conftest.read_ground_truth``, which follows DESIGN.md and never calls the
store) or the main store itself, and, for the caches, the cache stores.

The etag-guarded operations are checked over the whole matrix of condition x
expected etag (correct / stale / absent) x key present / absent x
retrieve_value x value (new value / KEEP_CURRENT / DELETE_CURRENT). One test
runs a whole matrix on one store and reports every failing combination at
once (a key per combination keeps them independent).
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from conftest import (
    STORE_FACTORIES,
    decode_file,
    make_store,
    path_for_key,
    read_ground_truth,
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
    AppendOnlyDictCached,
    ConcurrencyConflictError,
    ConditionalOperationResult,
    EmptyDict,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    MutationPolicyError,
    NonEmptySafeStrTuple,
    OperationResult,
    OverlappingMultiDict,
    PersiDict,
    WriteOnceDict,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawn children import workers by name
import _wrapper_workers as ww
from test_cache_records import cached_entry, plant

Key = tuple[str, ...]
_MISSING = object()

# ---------------------------------------------------------------------------
# The stacks
# ---------------------------------------------------------------------------


@dataclass
class Stack:
    """A wrapper and the stores around it."""

    wrapper: PersiDict
    root: PersiDict  # the authoritative store under every wrapper layer
    kind: str  # "mutable" (MutableDictCached), "append_cached", "write_once"
    data_cache: PersiDict | None = None
    etag_cache: PersiDict | None = None


def _files(tmp: pathlib.Path, name: str, **kwargs: Any) -> FileDirDict:
    # durable=False: fsync is orthogonal to what the wrappers do, and the
    # matrices below make thousands of writes.
    return FileDirDict(base_dir=str(tmp / name), durable=False, **kwargs)


def _ram(tmp: pathlib.Path, name: str, **kwargs: Any) -> LocalDict:
    return LocalDict(**kwargs)


_KINDS: dict[str, Callable[..., PersiDict]] = {"file": _files, "mem": _ram}


def _mdc(main: str, cache: str, main_format: str = "pkl") -> Callable[[pathlib.Path], Stack]:
    def build(tmp: pathlib.Path) -> Stack:
        root = _KINDS[main](tmp, "main", serialization_format=main_format)
        data = _KINDS[cache](tmp, "data")
        etags = _KINDS[cache](tmp, "etags")
        w = MutableDictCached(main_dict=root, data_cache=data, etag_cache=etags)
        return Stack(w, root, "mutable", data, etags)

    return build


def _aoc(main: str, cache: str) -> Callable[[pathlib.Path], Stack]:
    def build(tmp: pathlib.Path) -> Stack:
        root = _KINDS[main](tmp, "main", append_only=True)
        data = _KINDS[cache](tmp, "data", append_only=True)
        w = AppendOnlyDictCached(main_dict=root, data_cache=data)
        return Stack(w, root, "append_cached", data)

    return build


def _aoc_over_registered(name: str) -> Callable[[pathlib.Path], Stack]:
    def build(tmp: pathlib.Path) -> Stack:
        root = make_store(name, tmp, append_only=True)
        data = _ram(tmp, "data", append_only=True)
        return Stack(AppendOnlyDictCached(main_dict=root, data_cache=data), root,
                     "append_cached", data)

    return build


def _wo_registered(name: str) -> Callable[[pathlib.Path], Stack]:
    def build(tmp: pathlib.Path) -> Stack:
        root = make_store(name, tmp, append_only=True)
        return Stack(WriteOnceDict(wrapped_dict=root), root, "write_once")

    return build


def _wo_over_aoc(tmp: pathlib.Path) -> Stack:
    root = _files(tmp, "main", append_only=True)
    data = _ram(tmp, "data", append_only=True)
    inner = AppendOnlyDictCached(main_dict=root, data_cache=data)
    return Stack(WriteOnceDict(wrapped_dict=inner), root, "write_once", data)


def _mdc_over_registered(name: str) -> Callable[[pathlib.Path], Stack]:
    def build(tmp: pathlib.Path) -> Stack:
        root = make_store(name, tmp)
        data, etags = _ram(tmp, "data"), _ram(tmp, "etags")
        w = MutableDictCached(main_dict=root, data_cache=data, etag_cache=etags)
        return Stack(w, root, "mutable", data, etags)

    return build


# Every registered local store; of the (slow, network) S3 ones only the first,
# which keeps the run short while every wrapper still meets a remote main.
_S3_NAMES = [n for n in STORE_FACTORIES if n.startswith("s3")]
_REGISTERED = [n for n in STORE_FACTORIES if not n.startswith("s3")] + _S3_NAMES[:1]

MUTABLE_STACKS: dict[str, Callable[[pathlib.Path], Stack]] = {
    "mdc[file|file]": _mdc("file", "file"),
    "mdc[file|mem]": _mdc("file", "mem"),
    "mdc[mem|file]": _mdc("mem", "file"),
    "mdc[mem|mem]": _mdc("mem", "mem"),
    "mdc[json|mem]": _mdc("file", "mem", main_format="json"),
    **{f"mdc[{name}|mem]": _mdc_over_registered(name) for name in _S3_NAMES[:1]},
}
APPEND_STACKS: dict[str, Callable[[pathlib.Path], Stack]] = {
    **{f"wo[{name}]": _wo_registered(name) for name in _REGISTERED},
    "wo[aoc[file|mem]]": _wo_over_aoc,
    "aoc[file|file]": _aoc("file", "file"),
    "aoc[file|mem]": _aoc("file", "mem"),
    "aoc[mem|file]": _aoc("mem", "file"),
    "aoc[mem|mem]": _aoc("mem", "mem"),
    **{f"aoc[{name}|mem]": _aoc_over_registered(name) for name in _S3_NAMES[:1]},
}
ALL_STACKS = {**MUTABLE_STACKS, **APPEND_STACKS}
FILE_ONLY_STACKS = ["mdc[file|file]", "wo[file]", "aoc[file|file]"]


@pytest.fixture(params=list(ALL_STACKS))
def stack(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Stack:
    return ALL_STACKS[request.param](tmp_path)


@pytest.fixture(params=list(MUTABLE_STACKS))
def mstack(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Stack:
    return MUTABLE_STACKS[request.param](tmp_path)


@pytest.fixture(params=list(APPEND_STACKS))
def astack(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Stack:
    return APPEND_STACKS[request.param](tmp_path)


# ---------------------------------------------------------------------------
# Ground truth, read around the wrapper
# ---------------------------------------------------------------------------


def truth(s: Stack) -> dict[Key, Any]:
    """Everything in the authoritative store, not read through the wrapper."""
    if isinstance(s.root, FileDirDict):
        return read_ground_truth(s.root)
    return {tuple(k): v for k, v in s.root.items()}


def truth_of(s: Stack, key: Key) -> Any:
    """The authoritative value of one key, or _MISSING."""
    if isinstance(s.root, FileDirDict):
        path = path_for_key(s.root, key)
        if not path.is_file():
            return _MISSING
        return decode_file(path, s.root.serialization_format)
    return s.root.get(key, _MISSING)


def through(d: PersiDict) -> dict[Key, Any]:
    return {tuple(k): v for k, v in d.items()}


def assert_state(s: Stack, expected: dict[Key, Any]) -> None:
    """The stack holds exactly ``expected``, seen through it and around it."""
    assert truth(s) == expected
    assert through(s.wrapper) == expected
    assert len(s.wrapper) == len(expected)
    assert bool(s.wrapper) is bool(expected)
    if s.kind == "mutable":
        assert_caches_in_sync(s, [*expected])


def cache_problems(s: Stack, key: Key, strict: bool) -> list[str]:
    """How the cache of a MutableDictCached disagrees with main for ``key``.

    Never allowed: a cached etag equal to main's current one next to a
    cached value that is not main's (a reader would trust it). ``strict``
    (after a write or delete through the wrapper): the cache holds exactly
    main's value and etag, or nothing if main has no such key. The cache
    holds both in one record (``cached_entry``); the etag cache stays empty.
    """
    if s.kind != "mutable":
        return []
    assert s.data_cache is not None and s.etag_cache is not None
    problems = []
    if len(s.etag_cache):
        problems.append(f"the etag cache holds {list(s.etag_cache.keys())}")
    main_value = truth_of(s, key)
    entry = cached_entry(s.data_cache, key, s.root.serialization_format)
    cached_etag, cached_value = entry if entry is not None else (_MISSING, _MISSING)
    if main_value is _MISSING:
        if strict and entry is not None:
            problems.append(f"{key}: absent in main but cached ({cached_value!r}, {cached_etag!r})")
        return problems
    main_etag = s.root.etag(key)
    if cached_etag == main_etag and cached_value != main_value:
        problems.append(f"{key}: current etag cached with stale value {cached_value!r}")
    if strict and (cached_etag != main_etag or cached_value != main_value):
        problems.append(
            f"{key}: caches ({cached_value!r}, {cached_etag!r}) "
            f"!= main ({main_value!r}, {main_etag!r})"
        )
    return problems


def assert_caches_in_sync(s: Stack, keys: list[Key], strict: bool = True) -> None:
    problems = [p for k in keys for p in cache_problems(s, k, strict)]
    assert not problems, problems


def tick() -> None:
    """Let the clock move so consecutive writes get distinct timestamps."""
    time.sleep(0.01)


# ---------------------------------------------------------------------------
# The mapping API on every stack
# ---------------------------------------------------------------------------

VALUES: dict[Key, Any] = {
    ("a",): 1,
    ("b", "c"): "text ü",
    ("b", "d", "e"): [1, 2, {"x": 3}],
    ("f",): {"nested": [None, True, 2.5]},
}


def fill(s: Stack, values: dict[Key, Any] = VALUES) -> None:
    for k, v in values.items():
        s.wrapper[k] = v


def test_empty_stack(stack: Stack) -> None:
    w = stack.wrapper
    assert len(w) == 0
    assert not w
    assert list(w.keys()) == [] and list(w.values()) == [] and list(w.items()) == []
    assert list(w.keys_and_timestamps()) == [] and list(w.items_and_timestamps()) == []
    assert w.random_key() is None
    assert w.subdicts() == {}
    assert w.newest_keys() == [] and w.oldest_values(max_n=3) == []
    assert w.get("a") is None and w.get("a", 7) == 7
    assert "a" not in w
    with pytest.raises(KeyError):
        w["a"]
    with pytest.raises(KeyError):
        w.timestamp("a")
    with pytest.raises(KeyError):
        w.etag("a")
    assert w == {}


def test_write_read_and_views(stack: Stack) -> None:
    w = stack.wrapper
    fill(stack)
    assert_state(stack, VALUES)
    for k, v in VALUES.items():
        assert w[k] == v
        assert k in w
        assert w.get(k) == v
        assert w.etag(k) == stack.root.etag(k)
        assert w.timestamp(k) == stack.root.timestamp(k)
    assert w["a"] == w[("a",)] == w[NonEmptySafeStrTuple("a")]
    assert all(isinstance(k, NonEmptySafeStrTuple) for k in w.keys())
    assert {tuple(k) for k in w.keys()} == set(VALUES)
    assert sorted(map(repr, w.values())) == sorted(map(repr, VALUES.values()))
    stamps = {tuple(k): ts for k, ts in w.keys_and_timestamps()}
    assert stamps == {k: stack.root.timestamp(k) for k in VALUES}
    triples = {tuple(k): (v, ts) for k, v, ts in w.items_and_timestamps()}
    assert triples == {k: (VALUES[k], stamps[k]) for k in VALUES}
    assert ("b",) not in w  # a prefix is not a key


def test_overwrite(stack: Stack) -> None:
    w = stack.wrapper
    w["a"] = 1
    if stack.kind == "mutable":
        w["a"] = 2
        assert_state(stack, {("a",): 2})
    elif stack.kind == "write_once":
        w["a"] = 2  # allowed but ignored (p_consistency_checks=0)
        assert_state(stack, {("a",): 1})
    else:
        with pytest.raises(MutationPolicyError):
            w["a"] = 2
        assert_state(stack, {("a",): 1})


def test_eq(stack: Stack) -> None:
    w = stack.wrapper
    assert w == {}
    fill(stack)
    assert w == dict(VALUES)
    assert w != {**VALUES, ("a",): "other"}
    assert w != {k: v for k, v in VALUES.items() if k != ("a",)}
    assert w != {}
    clone = type(w)(**w.get_params())
    assert clone == w and w == clone


def test_update_and_ior(stack: Stack) -> None:
    w = stack.wrapper
    w.update({"a": 1}, b=2)
    w.update([(("c", "d"), 3)])
    same = w
    w |= {"e": 4}
    assert w is same
    assert_state(stack, {("a",): 1, ("b",): 2, ("c", "d"): 3, ("e",): 4})


def test_deletions(stack: Stack) -> None:
    w = stack.wrapper
    fill(stack)
    if stack.kind != "mutable":
        for op in (
            lambda: w.__delitem__("a"),
            lambda: w.discard("a"),
            lambda: w.delete_if_exists("a"),
            lambda: w.pop("a"),
            lambda: w.pop("a", None),
            lambda: w.popitem(),
            lambda: w.clear(),
        ):
            with pytest.raises(MutationPolicyError):
                op()
        assert_state(stack, VALUES)
        return
    expected = dict(VALUES)
    del w["a"]
    del expected[("a",)]
    assert_state(stack, expected)
    with pytest.raises(KeyError):
        del w["a"]
    assert w.delete_if_exists(("b", "c")) is True
    del expected[("b", "c")]
    assert w.delete_if_exists(("b", "c")) is False
    assert w.discard("nothing") is False
    assert_state(stack, expected)
    assert w.pop(("b", "d", "e")) == [1, 2, {"x": 3}]
    del expected[("b", "d", "e")]
    assert w.pop("gone", "dflt") == "dflt"
    with pytest.raises(KeyError):
        w.pop("gone")
    assert_state(stack, expected)
    k, v = w.popitem()
    assert (tuple(k), v) == (("f",), {"nested": [None, True, 2.5]})
    assert_state(stack, {})
    with pytest.raises(KeyError):
        w.popitem()
    fill(stack)
    w.clear()
    assert_state(stack, {})
    assert_caches_in_sync(stack, list(VALUES))


def test_get_params_rebuilds(stack: Stack) -> None:
    w = stack.wrapper
    params = w.get_params()
    assert list(params) == sorted(params)
    expected_names = {
        "mutable": ["data_cache", "etag_cache", "main_dict"],
        "append_cached": ["data_cache", "main_dict"],
        "write_once": ["p_consistency_checks", "wrapped_dict"],
    }[stack.kind]
    assert list(params) == expected_names
    fill(stack)
    clone = type(w)(**params)
    assert type(clone) is type(w)
    assert through(clone) == VALUES
    clone["from_clone"] = 5
    assert w["from_clone"] == 5
    assert truth_of(stack, ("from_clone",)) == 5


def test_repr(stack: Stack) -> None:
    text = repr(stack.wrapper)
    assert text.startswith(type(stack.wrapper).__name__ + "(")
    for name in stack.wrapper.get_params():
        assert name in text


def test_pickle(stack: Stack) -> None:
    w = stack.wrapper
    fill(stack)
    copy_ = pickle.loads(pickle.dumps(w))
    assert type(copy_) is type(w)
    assert through(copy_) == VALUES
    assert copy_.append_only == w.append_only
    copy_["new"] = 1  # the copy works
    assert copy_["new"] == 1
    if isinstance(stack.root, FileDirDict):  # the same data, not a copy of it
        assert w["new"] == 1
        assert truth_of(stack, ("new",)) == 1


def test_stacks_work_in_a_spawned_process(tmp_path: pathlib.Path) -> None:
    """Stores are sent pickled to a 'spawn' child and work there. File-backed
    stacks share their data with the parent; RAM ones arrive as a copy."""
    names = [*FILE_ONLY_STACKS, "mdc[mem|mem]", "aoc[mem|mem]", "wo[memory]"]
    stacks = {name: ALL_STACKS[name](tmp_path / name) for name in names}
    for s in stacks.values():
        s.wrapper["a"] = 1
        s.wrapper["counter"] = 10
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    payload = pickle.dumps([(n, s.wrapper) for n, s in stacks.items()])
    proc = ctx.Process(target=ww.exercise_pickled_stores, args=(payload, queue))
    proc.start()
    try:
        status, report = queue.get(timeout=120)
    finally:
        proc.join(timeout=120)
    assert status == "ok", report
    assert proc.exitcode == 0
    for name, s in stacks.items():
        cls_name, seen, echoed = report[name]
        assert cls_name == type(s.wrapper).__name__
        assert seen == {("a",): 1, ("counter",): 10}
        assert echoed == f"hello from {name}"
        if not isinstance(s.root, FileDirDict):
            assert through(s.wrapper) == {("a",): 1, ("counter",): 10}, name
            continue
        counter = 10 if s.wrapper.append_only else 11
        expected = {("a",): 1, ("counter",): counter, ("from_child",): f"hello from {name}"}
        assert truth(s) == expected, name
        assert through(s.wrapper) == expected, name  # the parent's caches heal
        if s.kind == "mutable":
            assert_caches_in_sync(s, list(expected), strict=False)


def test_get_subdict_and_subdicts(stack: Stack) -> None:
    w = stack.wrapper
    w["a", "x"] = 1
    w["a", "y"] = 2
    w["b", "z", "q"] = 3
    w["c"] = 4
    sub = w.get_subdict("a")
    assert type(sub) is type(w)
    assert sub.append_only == w.append_only
    assert through(sub) == {("x",): 1, ("y",): 2}
    sub["new"] = 5
    assert w["a", "new"] == 5
    assert truth_of(stack, ("a", "new")) == 5
    deep = w.get_subdict(("b", "z"))
    assert through(deep) == {("q",): 3}
    assert through(w.get_subdict("nothing")) == {}
    assert through(w.get_subdict(())) == through(w)
    if stack.kind == "mutable":
        w["a", "x"] = 10  # written through the parent, read through the child
        assert sub["x"] == 10
        sub["y"] = 20  # and the other way round
        assert w["a", "y"] == 20
        assert_caches_in_sync(stack, [("a", "x"), ("a", "y")])
    subs = w.subdicts()
    assert set(subs) == {"a", "b"}
    assert all(type(d) is type(w) for d in subs.values())
    assert through(subs["b"]) == {("z", "q"): 3}


def test_random_key(stack: Stack) -> None:
    w = stack.wrapper
    assert w.random_key() is None
    fill(stack, {("a",): 1, ("b", "c"): 2, ("d",): 3})
    seen = set()
    for _ in range(300):  # P(missing one of 3 keys in 300 draws) < 1e-50
        k = w.random_key()
        assert isinstance(k, NonEmptySafeStrTuple)
        seen.add(tuple(k))
        if len(seen) == 3:
            break
    assert seen == {("a",), ("b", "c"), ("d",)}


def _check_age_order(
    got: list[Any], stamps: dict[Key, float], newest: bool, n: int
) -> None:
    """``got`` is ``n`` keys ordered by the store's own timestamps; none better left out."""
    got_keys = [tuple(k) for k in got]
    assert len(got_keys) == n and len(set(got_keys)) == n
    ts = [stamps[k] for k in got_keys]
    assert ts == sorted(ts, reverse=newest)
    left_out = [stamps[k] for k in stamps if k not in got_keys]
    if ts and left_out:
        assert (min(ts) >= max(left_out)) if newest else (max(ts) <= min(left_out))


def test_newest_and_oldest(stack: Stack) -> None:
    w = stack.wrapper
    order = [("k0",), ("k1", "x"), ("k2",), ("k3",)]
    for i, k in enumerate(order):
        w[k] = i
        tick()
    # Judge by the timestamps the authoritative store reports (some backends,
    # e.g. S3, have a coarse clock, so ties are allowed and then any order).
    stamps = {k: stack.root.timestamp(k) for k in order}
    value_key = {i: k for i, k in enumerate(order)}
    for newest in (True, False):
        keys_of = w.newest_keys if newest else w.oldest_keys
        values_of = w.newest_values if newest else w.oldest_values
        for max_n, n in ((None, 4), (1, 1), (2, 2), (99, 4)):
            _check_age_order(keys_of(max_n=max_n), stamps, newest, n)
            _check_age_order([value_key[v] for v in values_of(max_n=max_n)], stamps, newest, n)
        for max_n in (0, -1):
            assert keys_of(max_n=max_n) == [] and values_of(max_n=max_n) == []
    if len(set(stamps.values())) == len(order):  # a fine clock: the order is exact
        assert [tuple(k) for k in w.newest_keys()] == order[::-1]
        assert w.oldest_values() == [0, 1, 2, 3]


def test_setdefault(stack: Stack) -> None:
    w = stack.wrapper
    assert w.setdefault("a", 1) == 1
    assert w.setdefault("a", 2) == 1
    assert w.setdefault(("b", "c")) is None
    assert_state(stack, {("a",): 1, ("b", "c"): None})


def test_jokers_in_setitem_and_update(stack: Stack) -> None:
    w = stack.wrapper
    w["a"] = 1
    e = w.etag("a")
    w["a"] = KEEP_CURRENT
    w["missing"] = KEEP_CURRENT
    w.update({"a": KEEP_CURRENT, "missing2": KEEP_CURRENT})
    assert w.etag("a") == e
    assert_state(stack, {("a",): 1})
    if stack.kind == "mutable":
        w["a"] = DELETE_CURRENT
        assert_state(stack, {})
        w["a"] = DELETE_CURRENT  # absent: a no-op
        w["b"] = 2
        w.update({"b": DELETE_CURRENT, "c": 3})
        assert_state(stack, {("c",): 3})
    else:
        with pytest.raises(MutationPolicyError):
            w["a"] = DELETE_CURRENT
        with pytest.raises(MutationPolicyError):
            w.update({"a": DELETE_CURRENT})
        assert_state(stack, {("a",): 1})


def test_jokers_rejected_by_setdefault(stack: Stack) -> None:
    w = stack.wrapper
    w["a"] = 1
    for joker in (KEEP_CURRENT, DELETE_CURRENT):
        for key in ("a", "absent"):
            with pytest.raises(TypeError):
                w.setdefault(key, joker)
            for cond, exp in ((ANY_ETAG, ITEM_NOT_AVAILABLE), (ETAG_HAS_CHANGED, "x")):
                with pytest.raises(TypeError):
                    w.setdefault_if(key, default_value=joker, condition=cond, expected_etag=exp)
    assert_state(stack, {("a",): 1})


def test_transform_item(stack: Stack) -> None:
    w = stack.wrapper
    if stack.kind == "append_cached":  # spec: not supported for append-only
        w["a"] = 1
        for f in (lambda v: v + 1, lambda v: KEEP_CURRENT, lambda v: 5):
            for key in ("a", "absent"):
                with pytest.raises(MutationPolicyError):
                    w.transform_item(key, transformer=f)
        assert_state(stack, {("a",): 1})
        return

    seen: list[Any] = []

    def create(v: Any) -> Any:
        seen.append(v)
        return 1

    r = w.transform_item("a", transformer=create)
    assert seen == [ITEM_NOT_AVAILABLE]
    assert isinstance(r, OperationResult)
    assert r.new_value == 1 and r.resulting_etag == stack.root.etag("a")
    assert_state(stack, {("a",): 1})

    r = w.transform_item("a", transformer=lambda v: KEEP_CURRENT)
    assert r.new_value == 1 and r.resulting_etag == stack.root.etag("a")
    r = w.transform_item("absent", transformer=lambda v: KEEP_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE and r.resulting_etag is ITEM_NOT_AVAILABLE
    r = w.transform_item("absent", transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE and r.resulting_etag is ITEM_NOT_AVAILABLE
    assert_state(stack, {("a",): 1})

    def boom(v: Any) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        w.transform_item("a", transformer=boom)
    assert_state(stack, {("a",): 1})

    if stack.kind == "write_once":
        with pytest.raises(MutationPolicyError):
            w.transform_item("a", transformer=lambda v: v + 1)
        with pytest.raises(MutationPolicyError):
            w.transform_item("a", transformer=lambda v: DELETE_CURRENT)
        assert_state(stack, {("a",): 1})
        return

    r = w.transform_item("a", transformer=lambda v: v + 41)
    assert r.new_value == 42 and r.resulting_etag == stack.root.etag("a")
    assert_state(stack, {("a",): 42})
    r = w.transform_item("a", transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE and r.resulting_etag is ITEM_NOT_AVAILABLE
    assert_state(stack, {})


# ---------------------------------------------------------------------------
# The etag-guarded operations: every combination
# ---------------------------------------------------------------------------

CONDITIONS = {"ANY_ETAG": ANY_ETAG, "IS_THE_SAME": ETAG_IS_THE_SAME,
              "HAS_CHANGED": ETAG_HAS_CHANGED}
RETRIEVES = {"ALWAYS": ALWAYS_RETRIEVE, "NEVER": NEVER_RETRIEVE,
             "IF_CHANGED": IF_ETAG_CHANGED}
EXPECTED_KINDS = ["correct", "stale", "absent"]
PRESENCE = ["present", "absent"]
SENTINELS = (ITEM_NOT_AVAILABLE, VALUE_NOT_RETRIEVED)
OLD, CURRENT, NEW = "old value", ["current", "value"], {"new": "value!"}
BYSTANDER: Key = ("bystander",)
STALE_SOURCE: Key = ("stale-source",)


def same(actual: Any, expected: Any) -> bool:
    """Identity for sentinels, equality for everything else."""
    if any(expected is s for s in SENTINELS):
        return actual is expected
    if any(actual is s for s in SENTINELS):
        return False
    return bool(actual == expected)


def satisfied(condition: Any, expected: Any, actual: Any) -> bool:
    if condition is ANY_ETAG:
        return True
    if condition is ETAG_IS_THE_SAME:
        return same(actual, expected)
    return not same(actual, expected)


def reported(retrieve: Any, presence: str, expected: Any, actual: Any) -> Any:
    """What new_value must be when the operation leaves a key as it was."""
    if presence == "absent":
        return ITEM_NOT_AVAILABLE
    if retrieve is NEVER_RETRIEVE:
        return VALUE_NOT_RETRIEVED
    if retrieve is ALWAYS_RETRIEVE:
        return CURRENT
    return CURRENT if not same(actual, expected) else VALUE_NOT_RETRIEVED


@dataclass
class Case:
    key: Key
    label: str
    cond: Any
    retrieve: Any
    presence: str
    actual: Any
    expected: Any

    @property
    def sat(self) -> bool:
        return satisfied(self.cond, self.expected, self.actual)


def prepare(s: Stack, key: Key, presence: str, expected_kind: str) -> tuple[Any, Any]:
    """Bring ``key`` to ``presence``; return (actual etag, expected etag)."""
    w = s.wrapper
    if s.kind == "mutable":
        w[key] = OLD
        stale = w.etag(key)
        if presence == "present":
            w[key] = CURRENT
            actual = w.etag(key)
            assert actual != stale, "etag did not change on rewrite"
        else:
            del w[key]
            actual = ITEM_NOT_AVAILABLE
    else:  # append-only: a stale etag is the real etag of another value
        stale = w.etag(STALE_SOURCE)
        if presence == "present":
            w[key] = CURRENT
            actual = w.etag(key)
        else:
            actual = ITEM_NOT_AVAILABLE
    if presence == "present":
        assert actual == s.root.etag(key), "the wrapper's etag is not main's"
    expected = {"correct": actual, "stale": stale, "absent": ITEM_NOT_AVAILABLE}[expected_kind]
    return actual, expected


def cases(
    s: Stack, *, with_retrieve: bool = True, fresh: Callable[[str], bool] = lambda p: True
) -> list[Case]:
    """Every combination; a key of its own where ``fresh(presence)`` (the
    operation may change it), else one shared, prepared key per presence."""
    s.wrapper[BYSTANDER] = "bystander"
    if s.kind != "mutable":
        s.wrapper[STALE_SOURCE] = OLD
    shared: dict[str, tuple[Key, Any, Any]] = {}
    for presence in PRESENCE:
        if not fresh(presence):
            key = ("shared", presence)
            actual, stale = prepare(s, key, presence, "stale")
            shared[presence] = (key, actual, stale)
    out = []
    retrieves = RETRIEVES if with_retrieve else {"-": IF_ETAG_CHANGED}
    for cname, cond in CONDITIONS.items():
        for ekind in EXPECTED_KINDS:
            for presence in PRESENCE:
                for rname, retrieve in retrieves.items():
                    label = f"{cname}-{ekind}-{presence}-{rname}"
                    if presence in shared:
                        key, actual, stale = shared[presence]
                        expected = {"correct": actual, "stale": stale,
                                    "absent": ITEM_NOT_AVAILABLE}[ekind]
                    else:
                        key = ("m", label)
                        actual, expected = prepare(s, key, presence, ekind)
                    out.append(Case(key, label, cond, retrieve, presence, actual, expected))
    return out


def model_of(s: Stack) -> dict[Key, Any]:
    return truth(s)


def check_result_shape(r: Any) -> None:
    assert isinstance(r, ConditionalOperationResult)
    assert isinstance(r.condition_was_satisfied, bool)
    assert isinstance(r.value_was_mutated, bool)


class Failures:
    """Collect the failing combinations of a matrix; report them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, case: Case, what: str) -> None:
        if not ok:
            self.items.append(f"{case.label}: {what}")

    def assert_none(self) -> None:
        assert not self.items, f"{len(self.items)} failures:\n" + "\n".join(self.items)


def check_unchanged(f: Failures, s: Stack, c: Case, r: Any) -> None:
    """The operation left the key alone: result and stored state agree."""
    f.check(same(r.resulting_etag, c.actual), c, f"resulting_etag {r.resulting_etag!r}")
    want = reported(c.retrieve, c.presence, c.expected, c.actual)
    f.check(same(r.new_value, want), c, f"new_value {r.new_value!r}, want {want!r}")
    f.check(r.value_was_mutated is False, c, "value_was_mutated")
    stored = truth_of(s, c.key)
    f.check(stored == (CURRENT if c.presence == "present" else _MISSING), c, f"stored {stored!r}")


def test_get_item_if_matrix(stack: Stack) -> None:
    f = Failures()
    all_cases = cases(stack, fresh=lambda p: False)
    before = model_of(stack)
    for c in all_cases:
        r = stack.wrapper.get_item_if(
            c.key, condition=c.cond, expected_etag=c.expected, retrieve_value=c.retrieve
        )
        check_result_shape(r)
        f.check(r.condition_was_satisfied is c.sat, c, "condition_was_satisfied")
        f.check(same(r.actual_etag, c.actual), c, f"actual_etag {r.actual_etag!r}")
        check_unchanged(f, stack, c, r)
        for p in cache_problems(stack, c.key, strict=False):
            f.check(False, c, p)
    f.assert_none()
    assert model_of(stack) == before
    assert through(stack.wrapper) == before


def test_get_item_if_default_retrieve(stack: Stack) -> None:
    w = stack.wrapper
    w["a"] = 1
    r = w.get_item_if("a", condition=ETAG_IS_THE_SAME, expected_etag=w.etag("a"))
    assert r.condition_was_satisfied is True and r.new_value is VALUE_NOT_RETRIEVED
    r = w.get_item_if("a", condition=ETAG_HAS_CHANGED, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied is True and r.new_value == 1
    r = w.get_with_etag("a")
    assert r.new_value == 1 and r.actual_etag == stack.root.etag("a")
    assert r.condition_was_satisfied is True
    r = w.get_with_etag("absent")
    assert r.new_value is ITEM_NOT_AVAILABLE and r.actual_etag is ITEM_NOT_AVAILABLE
    assert r.condition_was_satisfied is True


VALUE_KINDS = {"value": NEW, "keep": KEEP_CURRENT, "delete": DELETE_CURRENT}


@pytest.mark.parametrize("value_kind", list(VALUE_KINDS))
def test_set_item_if_matrix(stack: Stack, value_kind: str) -> None:
    f = Failures()
    w = stack.wrapper
    value = VALUE_KINDS[value_kind]
    expected_state = None
    never_mutates = (
        value_kind == "keep"
        or stack.kind == "write_once"
        or (stack.kind == "append_cached" and value_kind == "delete")
    )
    for c in cases(stack, fresh=lambda p: not never_mutates):
        before = truth(stack) if expected_state is None else expected_state
        overwrite = value_kind == "value" and c.sat and c.presence == "present"
        refused = stack.kind == "write_once" or (
            stack.kind == "append_cached" and (value_kind == "delete" or overwrite)
        )
        after = dict(before)
        try:
            r = w.set_item_if(
                c.key, value=value, condition=c.cond, expected_etag=c.expected,
                retrieve_value=c.retrieve,
            )
        except MutationPolicyError:
            f.check(refused, c, "raised MutationPolicyError")
            stored = truth_of(stack, c.key)
            want = CURRENT if c.presence == "present" else _MISSING
            f.check(stored == want, c, f"refused but stored {stored!r}")
            expected_state = after
            continue
        f.check(not refused, c, "was not refused with MutationPolicyError")
        check_result_shape(r)
        f.check(r.condition_was_satisfied is c.sat, c, "condition_was_satisfied")
        f.check(same(r.actual_etag, c.actual), c, f"actual_etag {r.actual_etag!r}")
        if c.sat and value_kind == "value":
            after[c.key] = NEW
            f.check(r.new_value == NEW, c, f"new_value {r.new_value!r}")
            f.check(r.value_was_mutated is True, c, "value_was_mutated")
            stored = truth_of(stack, c.key)
            f.check(stored == NEW, c, f"stored {stored!r}")
            if stored is not _MISSING:
                main_etag = stack.root.etag(c.key)
                f.check(r.resulting_etag == main_etag, c, "resulting_etag is not main's etag")
                f.check(w.etag(c.key) == main_etag, c, "wrapper etag after write")
        elif c.sat and value_kind == "delete":
            after.pop(c.key, None)
            f.check(r.new_value is ITEM_NOT_AVAILABLE, c, f"new_value {r.new_value!r}")
            f.check(r.resulting_etag is ITEM_NOT_AVAILABLE, c, "resulting_etag")
            f.check(r.value_was_mutated is (c.presence == "present"), c, "value_was_mutated")
            f.check(truth_of(stack, c.key) is _MISSING, c, "still stored")
        else:
            check_unchanged(f, stack, c, r)
        for p in cache_problems(stack, c.key, strict=r.value_was_mutated):
            f.check(False, c, p)
        expected_state = after
    f.assert_none()
    assert truth(stack) == expected_state
    assert through(w) == expected_state


def test_setdefault_if_matrix(stack: Stack) -> None:
    f = Failures()
    w = stack.wrapper
    for c in cases(stack, fresh=lambda p: p == "absent"):
        r = w.setdefault_if(
            c.key, default_value=NEW, condition=c.cond, expected_etag=c.expected,
            retrieve_value=c.retrieve,
        )
        check_result_shape(r)
        f.check(r.condition_was_satisfied is c.sat, c, "condition_was_satisfied")
        f.check(same(r.actual_etag, c.actual), c, f"actual_etag {r.actual_etag!r}")
        stored = truth_of(stack, c.key)
        if c.presence == "absent" and c.sat:
            f.check(r.new_value == NEW, c, f"new_value {r.new_value!r}")
            f.check(r.value_was_mutated is True, c, "value_was_mutated")
            f.check(stored == NEW, c, f"stored {stored!r}")
            if stored is not _MISSING:
                f.check(r.resulting_etag == stack.root.etag(c.key), c, "resulting_etag")
        elif c.presence == "absent":
            f.check(r.new_value is ITEM_NOT_AVAILABLE, c, f"new_value {r.new_value!r}")
            f.check(r.resulting_etag is ITEM_NOT_AVAILABLE, c, "resulting_etag")
            f.check(r.value_was_mutated is False, c, "value_was_mutated")
            f.check(stored is _MISSING, c, f"stored {stored!r}")
        else:
            check_unchanged(f, stack, c, r)
        for p in cache_problems(stack, c.key, strict=r.value_was_mutated):
            f.check(False, c, p)
    f.assert_none()


def test_discard_if_matrix(stack: Stack) -> None:
    f = Failures()
    w = stack.wrapper
    for c in cases(stack, with_retrieve=False, fresh=lambda p: stack.kind == "mutable"):
        if stack.kind != "mutable":
            try:
                w.discard_if(c.key, condition=c.cond, expected_etag=c.expected)
                f.check(False, c, "append-only discard_if was not refused")
            except MutationPolicyError:
                pass
            want = CURRENT if c.presence == "present" else _MISSING
            f.check(truth_of(stack, c.key) == want, c, "state changed")
            continue
        r = w.discard_if(c.key, condition=c.cond, expected_etag=c.expected)
        check_result_shape(r)
        f.check(r.condition_was_satisfied is c.sat, c, "condition_was_satisfied")
        f.check(same(r.actual_etag, c.actual), c, f"actual_etag {r.actual_etag!r}")
        stored = truth_of(stack, c.key)
        if c.presence == "present" and c.sat:
            f.check(r.new_value is ITEM_NOT_AVAILABLE, c, f"new_value {r.new_value!r}")
            f.check(r.resulting_etag is ITEM_NOT_AVAILABLE, c, "resulting_etag")
            f.check(r.value_was_mutated is True, c, "value_was_mutated")
            f.check(stored is _MISSING, c, "still stored")
        elif c.presence == "absent":
            f.check(r.new_value is ITEM_NOT_AVAILABLE, c, f"new_value {r.new_value!r}")
            f.check(r.resulting_etag is ITEM_NOT_AVAILABLE, c, "resulting_etag")
            f.check(r.value_was_mutated is False, c, "value_was_mutated")
        else:
            f.check(r.new_value is VALUE_NOT_RETRIEVED, c, f"new_value {r.new_value!r}")
            f.check(same(r.resulting_etag, c.actual), c, "resulting_etag")
            f.check(r.value_was_mutated is False, c, "value_was_mutated")
            f.check(stored == CURRENT, c, f"stored {stored!r}")
        for p in cache_problems(stack, c.key, strict=r.value_was_mutated):
            f.check(False, c, p)
    f.assert_none()


def test_compare_and_swap_loop(mstack: Stack) -> None:
    w = mstack.wrapper
    w["n"] = 0
    for _ in range(5):
        r = w.get_with_etag("n")
        ok = w.set_item_if("n", value=r.new_value + 1, condition=ETAG_IS_THE_SAME,
                           expected_etag=r.actual_etag)
        assert ok.condition_was_satisfied and ok.value_was_mutated
        stale = w.set_item_if("n", value=-1, condition=ETAG_IS_THE_SAME,
                              expected_etag=r.actual_etag)
        assert not stale.condition_was_satisfied and not stale.value_was_mutated
    assert_state(mstack, {("n",): 5})


def test_transform_item_conflicts_with_writes_behind_the_back(mstack: Stack) -> None:
    """Every attempt loses to a write made to main directly: after n_retries
    retries (n_retries + 1 calls) ConcurrencyConflictError; nothing of ours lands."""
    w, main = mstack.wrapper, mstack.root
    w["c"] = 0
    calls: list[Any] = []

    def interfering(v: Any) -> Any:
        calls.append(v)
        main["c"] = 100 + len(calls)  # a competing writer wins the race
        return v + 1

    with pytest.raises(ConcurrencyConflictError) as info:
        w.transform_item("c", transformer=interfering, n_retries=2)
    assert len(calls) == 3
    assert calls == [0, 101, 102]
    assert info.value.attempts == 3 and tuple(info.value.key) == ("c",)
    assert truth_of(mstack, ("c",)) == 103
    assert w["c"] == 103
    assert_caches_in_sync(mstack, [("c",)])

    calls.clear()

    def interferes_three_times(v: Any) -> Any:
        calls.append(v)
        if len(calls) <= 3:
            main["c"] = 200 + len(calls)
        return v + 1

    r = w.transform_item("c", transformer=interferes_three_times, n_retries=None)
    assert calls == [103, 201, 202, 203]
    assert r.new_value == 204 and r.resulting_etag == main.etag("c")
    assert_state(mstack, {("c",): 204})


# ---------------------------------------------------------------------------
# MutableDictCached specifics
# ---------------------------------------------------------------------------


def test_mdc_read_through_heals_after_main_changed_behind_its_back(mstack: Stack) -> None:
    w, main = mstack.wrapper, mstack.root
    w["k"] = "v1"
    w["gone"] = "here"
    assert w["k"] == "v1"  # caches are warm
    main["k"] = "v2 changed behind the wrapper's back"
    del main["gone"]
    main["new"] = "written to main only"
    assert w["k"] == "v2 changed behind the wrapper's back"
    assert w.get("k") == "v2 changed behind the wrapper's back"
    assert_caches_in_sync(mstack, [("k",)])  # healed by the read
    assert w.etag("k") == main.etag("k")
    assert "gone" not in w
    with pytest.raises(KeyError):
        w["gone"]
    assert w.get("gone", "dflt") == "dflt"
    assert_caches_in_sync(mstack, [("gone",)])  # the read found it gone: nothing cached
    assert w["new"] == "written to main only"
    assert_state(mstack, {("k",): "v2 changed behind the wrapper's back",
                          ("new",): "written to main only"})


def test_mdc_conditional_ops_check_main_not_the_etag_cache(mstack: Stack) -> None:
    w, main = mstack.wrapper, mstack.root
    w["k"] = 1
    old = w.etag("k")
    main["k"] = 2  # behind the back: the cached etag is now stale
    r = w.set_item_if("k", value=3, condition=ETAG_IS_THE_SAME, expected_etag=old)
    assert r.condition_was_satisfied is False
    assert r.actual_etag == main.etag("k")
    assert truth_of(mstack, ("k",)) == 2
    r = w.get_item_if("k", condition=ETAG_IS_THE_SAME, expected_etag=old,
                      retrieve_value=ALWAYS_RETRIEVE)
    assert r.condition_was_satisfied is False and r.new_value == 2
    assert_caches_in_sync(mstack, [("k",)])  # a fetched value refreshes the caches
    assert w["k"] == 2


def test_mdc_serves_value_from_cache_when_etag_is_current(mstack: Stack) -> None:
    """Spec: if the etag has not changed in main, the cached value is returned."""
    w = mstack.wrapper
    assert mstack.data_cache is not None
    w["k"] = "real"
    assert w["k"] == "real"
    # main's current etag, another value: what a reader trusts is the etag
    plant(mstack.data_cache, "k", mstack.root.etag("k"), "planted in the cache",
          mstack.root.serialization_format)
    assert w["k"] == "planted in the cache"
    mstack.root["k"] = "newer"  # main changes: the cache is no longer trusted
    assert w["k"] == "newer"
    assert_caches_in_sync(mstack, [("k",)])


def test_mdc_caches_in_sync_after_every_write(mstack: Stack) -> None:
    w = mstack.wrapper
    keys = [("a",), ("b", "c"), ("d",)]
    w["a"] = 1
    w["b", "c"] = 2
    assert_caches_in_sync(mstack, keys)
    w["a"] = 10
    assert_caches_in_sync(mstack, keys)
    w.update({"d": 4})
    assert_caches_in_sync(mstack, keys)
    w.transform_item("a", transformer=lambda v: v + 1)
    assert_caches_in_sync(mstack, keys)
    assert w.pop(("b", "c")) == 2
    assert_caches_in_sync(mstack, keys)
    w.setdefault("b", 5)
    w.setdefault_if(("b", "c"), default_value=7, condition=ANY_ETAG,
                    expected_etag=ITEM_NOT_AVAILABLE)
    assert_caches_in_sync(mstack, [*keys, ("b",)])
    w.set_item_if("d", value=40, condition=ETAG_IS_THE_SAME, expected_etag=w.etag("d"))
    assert_caches_in_sync(mstack, keys)
    w.discard_if("d", condition=ETAG_IS_THE_SAME, expected_etag=w.etag("d"))
    assert_caches_in_sync(mstack, keys)
    w.transform_item("a", transformer=lambda v: DELETE_CURRENT)
    assert_caches_in_sync(mstack, keys)
    w.popitem()
    w.popitem()
    assert_caches_in_sync(mstack, [*keys, ("b",)])
    assert_state(mstack, {})


def test_mdc_inherits_settings_from_main_and_its_append_only_rule() -> None:
    main = LocalDict(append_only=True, serialization_format="json", base_class_for_values=dict)
    w = MutableDictCached(
        main_dict=main,
        data_cache=LocalDict(base_class_for_values=dict),
        etag_cache=LocalDict(),
    )
    assert w.serialization_format == "json"
    assert w.base_class_for_values is dict
    assert w.append_only is True
    w["a"] = {"x": 1}
    with pytest.raises(TypeError):
        w["b"] = "not a dict"
    with pytest.raises(MutationPolicyError):
        w["a"] = {"x": 2}
    with pytest.raises(MutationPolicyError):
        del w["a"]
    assert dict(main.items()) == {("a",): {"x": 1}}
    assert w["a"] == {"x": 1}


def test_mdc_constructor_validation(tmp_path: pathlib.Path) -> None:
    main = LocalDict()
    with pytest.raises(TypeError):
        MutableDictCached(main_dict={}, data_cache=LocalDict(), etag_cache=LocalDict())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MutableDictCached(main_dict=main, data_cache={}, etag_cache=LocalDict())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MutableDictCached(main_dict=main, data_cache=LocalDict(), etag_cache={})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MutableDictCached(main_dict=main, data_cache=LocalDict(append_only=True),
                          etag_cache=LocalDict())
    with pytest.raises(ValueError):
        MutableDictCached(main_dict=main, data_cache=LocalDict(),
                          etag_cache=LocalDict(append_only=True))


# ---------------------------------------------------------------------------
# AppendOnlyDictCached specifics
# ---------------------------------------------------------------------------


def _aoc_files(tmp: pathlib.Path) -> Stack:
    return _aoc("file", "file")(tmp)


def test_aoc_reads_are_served_from_the_cache(tmp_path: pathlib.Path) -> None:
    """Remove main's file behind the wrapper's back: the cached value still answers."""
    s = _aoc_files(tmp_path)
    w = s.wrapper
    w["k"] = "value"
    w["x", "y"] = [1, 2]
    for key in (("k",), ("x", "y")):
        path_for_key(s.root, key).unlink()
    assert truth(s) == {}
    assert w["k"] == "value"
    assert w["x", "y"] == [1, 2]
    assert "k" in w
    assert w.get("k") == "value"
    # iteration and length come from main, which no longer has them
    assert len(w) == 0 and list(w.keys()) == []


def test_aoc_miss_falls_back_to_main_and_fills_the_cache(tmp_path: pathlib.Path) -> None:
    s = _aoc_files(tmp_path)
    assert s.data_cache is not None
    s.root["k"] = "only in main"
    assert "k" not in s.data_cache
    assert "k" in s.wrapper
    assert s.wrapper["k"] == "only in main"
    assert cached_entry(s.data_cache, "k") == (s.root.etag("k"), "only in main")
    assert through(s.wrapper) == {("k",): "only in main"}
    assert s.wrapper.etag("k") == s.root.etag("k")
    assert s.wrapper.timestamp("k") == s.root.timestamp("k")


def test_aoc_conditional_reads_fill_the_cache(tmp_path: pathlib.Path) -> None:
    s = _aoc_files(tmp_path)
    assert s.data_cache is not None
    s.root["k"] = "only in main"
    r = s.wrapper.get_item_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE,
                              retrieve_value=ALWAYS_RETRIEVE)
    assert r.new_value == "only in main"
    assert cached_entry(s.data_cache, "k") == (s.root.etag("k"), "only in main")


def test_aoc_writes_go_to_main_and_the_cache(tmp_path: pathlib.Path) -> None:
    s = _aoc_files(tmp_path)
    assert s.data_cache is not None
    w = s.wrapper
    w["a"] = 1
    r = w.set_item_if("b", value=2, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    assert r.value_was_mutated
    w.setdefault_if("c", default_value=3, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
    expected = {("a",): 1, ("b",): 2, ("c",): 3}
    assert truth(s) == expected
    assert len(s.data_cache) == len(expected)
    assert {k: cached_entry(s.data_cache, k) for k in expected} == {
        k: (s.root.etag(k), v) for k, v in expected.items()
    }


def test_aoc_constructor_validation() -> None:
    ao = LocalDict(append_only=True)
    with pytest.raises(TypeError):
        AppendOnlyDictCached(main_dict={}, data_cache=ao)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AppendOnlyDictCached(main_dict=ao, data_cache={})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AppendOnlyDictCached(main_dict=LocalDict(), data_cache=ao)
    with pytest.raises(ValueError):
        AppendOnlyDictCached(main_dict=ao, data_cache=LocalDict())
    with pytest.raises(ValueError):
        AppendOnlyDictCached(
            main_dict=LocalDict(append_only=True, base_class_for_values=int),
            data_cache=LocalDict(append_only=True, base_class_for_values=str),
        )
    with pytest.raises(ValueError):
        AppendOnlyDictCached(
            main_dict=LocalDict(append_only=True, base_class_for_values=int),
            data_cache=LocalDict(append_only=True),
        )
    w = AppendOnlyDictCached(
        main_dict=LocalDict(append_only=True, base_class_for_values=int),
        data_cache=LocalDict(append_only=True, base_class_for_values=int),
    )
    assert w.append_only is True and w.base_class_for_values is int
    with pytest.raises(TypeError):
        w["a"] = "not an int"
    assert len(w) == 0
    w["a"] = 1
    assert w.setdefault("a", "not an int") == 1  # present: the default is not inserted
    with pytest.raises(TypeError):
        w.setdefault("b", "not an int")
    assert dict(w.items()) == {("a",): 1}


# ---------------------------------------------------------------------------
# WriteOnceDict specifics
# ---------------------------------------------------------------------------


def test_write_once_p0_never_checks(tmp_path: pathlib.Path) -> None:
    w = WriteOnceDict(wrapped_dict=_files(tmp_path, "m", append_only=True),
                      p_consistency_checks=0)
    assert w.p_consistency_checks == 0
    w["a"] = 1
    for _ in range(20):
        w["a"] = 1
        w["a"] = 2  # divergent, but never checked
    assert w["a"] == 1
    assert (w.consistency_checks_attempted, w.consistency_checks_passed,
            w.consistency_checks_failed) == (0, 0, 0)


def test_write_once_p1_checks_every_repeated_write(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "m", append_only=True)
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=1)
    assert w.p_consistency_checks == 1
    w["a"] = {"x": [1, 2]}  # with p=1 the inserting write is checked too
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (1, 1)
    for i in range(2, 5):
        w["a"] = {"x": [1, 2]}
        assert w.consistency_checks_attempted == i
        assert w.consistency_checks_passed == i
        assert w.consistency_checks_failed == 0
    with pytest.raises(ValueError):
        w["a"] = {"x": [1, 3]}
    assert w.consistency_checks_attempted == 5
    assert w.consistency_checks_passed == 4
    assert w.consistency_checks_failed == 1
    assert w["a"] == {"x": [1, 2]}
    assert read_ground_truth(root) == {("a",): {"x": [1, 2]}}


def test_write_once_refuses_set_item_if_and_deletion(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "m", append_only=True)
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=1)
    assert w.append_only is True
    w["a"] = 1
    for key in ("a", "absent"):
        for cond, exp in ((ANY_ETAG, ITEM_NOT_AVAILABLE), (ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE)):
            with pytest.raises(MutationPolicyError):
                w.set_item_if(key, value=2, condition=cond, expected_etag=exp)
    with pytest.raises(MutationPolicyError):
        w.set_item_if("a", value=2, condition=ETAG_IS_THE_SAME, expected_etag=w.etag("a"))
    for op in (
        lambda: w.__delitem__("a"), lambda: w.discard("a"), lambda: w.pop("a"),
        lambda: w.popitem(), lambda: w.clear(), lambda: w.delete_if_exists("a"),
        lambda: w.discard_if("a", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE),
    ):
        with pytest.raises(MutationPolicyError):
            op()
    assert isinstance(MutationPolicyError("write-once"), TypeError)
    assert read_ground_truth(root) == {("a",): 1}


def test_write_once_get_params_and_subdict(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "m", append_only=True)
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=0.25)
    params = w.get_params()
    assert list(params) == ["p_consistency_checks", "wrapped_dict"]
    assert params["p_consistency_checks"] == 0.25
    assert params["wrapped_dict"] == root
    sub = w.get_subdict("s")
    assert isinstance(sub, WriteOnceDict) and sub.p_consistency_checks == 0.25
    sub["k"] = 1
    sub["k"] = 1  # a repeated write (the same value: p is 0.25, a check may run)
    assert w["s", "k"] == 1
    copy_ = pickle.loads(pickle.dumps(w))
    assert copy_.p_consistency_checks == 0.25 and copy_["s", "k"] == 1


def test_write_once_default_wraps_append_only_files(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    w = WriteOnceDict()
    inner = w.get_params()["wrapped_dict"]
    assert isinstance(inner, FileDirDict) and inner.append_only is True
    w["a"] = 1
    w["a"] = 2
    assert read_ground_truth(inner) == {("a",): 1}


def test_write_once_first_value_wins_between_instances(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "m", append_only=True)
    w1 = WriteOnceDict(wrapped_dict=root)
    w2 = WriteOnceDict(wrapped_dict=FileDirDict(**root.get_params()))
    w1["k"] = "first"
    w2["k"] = "second"
    assert w1["k"] == w2["k"] == "first"
    assert read_ground_truth(root) == {("k",): "first"}


# ---------------------------------------------------------------------------
# OverlappingMultiDict
# ---------------------------------------------------------------------------


def _multi(tmp: pathlib.Path, **kwargs: Any) -> OverlappingMultiDict:
    return OverlappingMultiDict(
        dict_type=FileDirDict,
        shared_subdicts_params={"base_dir": str(tmp / "shared"), "durable": False},
        json={}, pkl={}, txt={"base_class_for_values": str}, **kwargs,
    )


def test_multi_subdicts_share_one_directory(tmp_path: pathlib.Path) -> None:
    m = _multi(tmp_path)
    assert list(m.subdicts_names) == ["json", "pkl", "txt"]
    base = str(tmp_path / "shared")
    for fmt in ("json", "pkl", "txt"):
        d = getattr(m, fmt)
        assert isinstance(d, FileDirDict)
        assert d.serialization_format == fmt
        assert os.path.samefile(d.base_dir, base)
    m.json["k"] = {"j": 1}
    m.pkl["k"] = ("p", 2)
    m.txt["k"] = "plain text"
    m.pkl["only", "pkl"] = 3
    assert m.json["k"] == {"j": 1} and m.pkl["k"] == ("p", 2) and m.txt["k"] == "plain text"
    assert len(m.json) == 1 and len(m.pkl) == 2 and len(m.txt) == 1
    assert read_ground_truth(m.json) == {("k",): {"j": 1}}
    assert read_ground_truth(m.pkl) == {("k",): ("p", 2), ("only", "pkl"): 3}
    assert read_ground_truth(m.txt) == {("k",): "plain text"}
    m.json.clear()  # format-scoped: the pkl and txt files stay
    assert read_ground_truth(m.json) == {}
    assert read_ground_truth(m.pkl) == {("k",): ("p", 2), ("only", "pkl"): 3}
    assert m.txt["k"] == "plain text"


def test_multi_individual_params_override_shared(tmp_path: pathlib.Path) -> None:
    m = OverlappingMultiDict(
        dict_type=FileDirDict,
        shared_subdicts_params={"base_dir": str(tmp_path / "s"), "digest_len": 4},
        json={"digest_len": 0}, pkl={},
    )
    assert m.json.digest_len == 0 and m.pkl.digest_len == 4
    m.json["k"] = 1
    assert (tmp_path / "s" / "k.json").is_file()


def test_multi_item_access_and_pickling_raise_type_error(tmp_path: pathlib.Path) -> None:
    m = _multi(tmp_path)
    with pytest.raises(TypeError):
        m["k"]
    with pytest.raises(TypeError):
        m["k"] = 1
    with pytest.raises(TypeError):
        del m["k"]
    with pytest.raises(TypeError):
        pickle.dumps(m)
    assert "OverlappingMultiDict" in repr(m)
    assert read_ground_truth(m.pkl) == {}


# ---------------------------------------------------------------------------
# Format-scoped clear
# ---------------------------------------------------------------------------


def test_clear_is_format_scoped_for_files(tmp_path: pathlib.Path) -> None:
    base = str(tmp_path / "d")
    as_json = FileDirDict(base_dir=base, serialization_format="json")
    as_pkl = FileDirDict(base_dir=base, serialization_format="pkl")
    as_json["a"] = 1
    as_json["x", "y"] = 2
    as_pkl["a"] = "p"
    as_pkl["x", "z"] = "q"
    as_json.clear()
    assert read_ground_truth(as_json) == {}
    assert read_ground_truth(as_pkl) == {("a",): "p", ("x", "z"): "q"}
    assert through(as_pkl) == {("a",): "p", ("x", "z"): "q"}


def test_clear_is_format_scoped_for_ram() -> None:
    as_pkl = LocalDict()
    as_json = LocalDict(**{**as_pkl.get_params(), "serialization_format": "json"})
    as_pkl["a"] = "p"
    as_json["a"] = "j"
    as_json["b"] = "j"
    assert through(as_pkl) == {("a",): "p"}
    as_json.clear()
    assert through(as_json) == {}
    assert through(as_pkl) == {("a",): "p"}


def test_clear_through_a_cached_wrapper_is_format_scoped(tmp_path: pathlib.Path) -> None:
    base = str(tmp_path / "d")
    main = FileDirDict(base_dir=base, serialization_format="json", durable=False)
    neighbour = FileDirDict(base_dir=base, serialization_format="pkl", durable=False)
    w = MutableDictCached(main_dict=main, data_cache=LocalDict(), etag_cache=LocalDict())
    w["a"] = 1
    neighbour["a"] = 2
    neighbour["b", "c"] = 3
    w.clear()
    assert read_ground_truth(main) == {}
    assert read_ground_truth(neighbour) == {("a",): 2, ("b", "c"): 3}


# ---------------------------------------------------------------------------
# get_subdict on every store (the wrappers are covered above)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STORE_FACTORIES))
def test_get_subdict_on_every_registered_store(name: str, tmp_path: pathlib.Path) -> None:
    d = make_store(name, tmp_path)
    d["p", "q"] = "1"
    d["p", "r", "s"] = "2"
    sub = d.get_subdict("p")
    assert type(sub) is type(d)
    assert sub.serialization_format == d.serialization_format
    assert through(sub) == {("q",): "1", ("r", "s"): "2"}
    sub["t"] = "3"
    assert d["p", "t"] == "3"
    assert through(d.get_subdict(("p", "r"))) == {("s",): "2"}
    assert through(d.get_subdict("nothing")) == {}
    assert through(d.get_subdict(())) == through(d)


# ---------------------------------------------------------------------------
# EmptyDict
# ---------------------------------------------------------------------------


def test_empty_dict_reads_as_empty_and_discards_writes() -> None:
    d = EmptyDict()
    d["a"] = 1
    d["b", "c"] = 2
    d.update({"e": 3})
    d |= {"f": 4}
    assert len(d) == 0 and not d
    assert list(d) == [] and list(d.keys()) == [] and list(d.values()) == []
    assert list(d.items()) == [] and list(d.keys_and_timestamps()) == []
    assert list(d.items_and_timestamps()) == []
    assert "a" not in d
    assert d == {} and d != {("a",): 1}
    assert d.get("a") is None and d.get("a", 5) == 5
    assert d.setdefault("a", 3) == 3 and "a" not in d
    assert d.discard("a") is False and d.delete_if_exists("a") is False
    assert d.random_key() is None
    assert d.subdicts() == {}
    assert d.newest_keys() == [] and d.oldest_values() == [] and d.newest_values(max_n=2) == []
    for op in (lambda: d["a"], lambda: d.timestamp("a"), lambda: d.etag("a"),
               lambda: d.pop("a"), lambda: d.popitem(), lambda: d.__delitem__("a")):
        with pytest.raises(KeyError):
            op()
    assert d.pop("a", "dflt") == "dflt"
    d.clear()
    r = d.get_with_etag("a")
    assert r.new_value is ITEM_NOT_AVAILABLE and r.actual_etag is ITEM_NOT_AVAILABLE


def test_empty_dict_validates_writes() -> None:
    d = EmptyDict(base_class_for_values=int)
    d["a"] = 1
    with pytest.raises(TypeError):
        d["a"] = "not an int"
    for joker in (KEEP_CURRENT, DELETE_CURRENT):
        with pytest.raises(TypeError):
            d.setdefault("a", joker)
        with pytest.raises(TypeError):
            d.setdefault_if("a", default_value=joker, condition=ANY_ETAG,
                            expected_etag=ITEM_NOT_AVAILABLE)
    d["a"] = KEEP_CURRENT
    d["a"] = DELETE_CURRENT
    assert len(d) == 0


def test_empty_dict_conditional_matrix() -> None:
    d = EmptyDict()
    for cname, cond in CONDITIONS.items():
        for exp in (ITEM_NOT_AVAILABLE, "some-etag"):
            want = satisfied(cond, exp, ITEM_NOT_AVAILABLE)
            for rname, retrieve in RETRIEVES.items():
                label = f"{cname}-{exp}-{rname}"
                common = {"condition": cond, "expected_etag": exp}
                ops = {
                    "get_item_if": partial(d.get_item_if, "a", retrieve_value=retrieve, **common),
                    "set_item_if": partial(
                        d.set_item_if, "a", value=1, retrieve_value=retrieve, **common),
                    "set_item_if keep": partial(
                        d.set_item_if, "a", value=KEEP_CURRENT, retrieve_value=retrieve, **common),
                    "set_item_if delete": partial(
                        d.set_item_if, "a", value=DELETE_CURRENT, retrieve_value=retrieve,
                        **common),
                    "setdefault_if": partial(
                        d.setdefault_if, "a", default_value=1, retrieve_value=retrieve, **common),
                    "discard_if": partial(d.discard_if, "a", **common),
                }
                for opname, op in ops.items():
                    r = op()
                    where = f"{opname} {label}"
                    assert isinstance(r, ConditionalOperationResult), where
                    assert r.condition_was_satisfied is want, where
                    assert r.actual_etag is ITEM_NOT_AVAILABLE, where
                    assert r.resulting_etag is ITEM_NOT_AVAILABLE, where
                    assert r.new_value is ITEM_NOT_AVAILABLE, where
                    assert r.value_was_mutated is False, where
                    assert len(d) == 0, where


def test_empty_dict_transform_subdict_params_pickle() -> None:
    d = EmptyDict(serialization_format="json", base_class_for_values=dict)
    called: list[Any] = []
    r = d.transform_item("a", transformer=lambda v: called.append(v) or {"x": 1})
    assert called == []
    assert isinstance(r, OperationResult)
    assert r.new_value is ITEM_NOT_AVAILABLE and r.resulting_etag is ITEM_NOT_AVAILABLE
    sub = d.get_subdict("x")
    assert isinstance(sub, EmptyDict) and sub.get_params() == d.get_params()
    params = d.get_params()
    assert list(params) == sorted(params)
    assert params["serialization_format"] == "json" and params["base_class_for_values"] is dict
    clone = EmptyDict(**params)
    assert clone.get_params() == params
    copy_ = pickle.loads(pickle.dumps(d))
    assert isinstance(copy_, EmptyDict) and copy_.get_params() == params
    assert repr(d).startswith("EmptyDict(")
    a = EmptyDict(append_only=True)
    assert a.append_only is True
    a["k"] = 1
    assert len(a) == 0
