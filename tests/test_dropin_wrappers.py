"""Drop-in behaviours of the wrappers (issue 11, items 9, 12 and 14).

- MutableDictCached.discard_if: when main reports the key absent (deleted
  now, or missing because another process deleted it) both caches are purged;
  when the condition fails on a present key both are left alone.
- OverlappingMultiDict refuses ``__setstate__`` (and so any unpickling) with
  TypeError, as it refuses pickling.
- WriteOnceDict: it wraps only append-only persidict stores, forwards the
  public attributes it lacks to the wrapped store, has a settable
  ``p_consistency_checks``, compares values by the digest of their serialized
  form (checking the inserting write too when p is 1), and raises an error
  that is both a MutationPolicyError and a ValueError and pickles.

Caches are judged by their files, read around the stores
(``conftest.read_ground_truth``); deletions behind a wrapper's back and
errors that cross process boundaries come from real child processes.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import pathlib
import pickle
import sys
from collections.abc import Callable
from typing import Any

import pytest

from conftest import path_for_key, read_ground_truth
from persidict import (
    ANY_ETAG,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    VALUE_NOT_RETRIEVED,
    AppendOnlyDictCached,
    BackendError,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    MutationPolicyError,
    OverlappingMultiDict,
    WriteOnceDict,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawn children import workers by name
import _dropin_wrapper_workers as dw
from test_cache_records import cached_entry

JOIN_TIMEOUT = 60.0


def _in_child(target: Callable[..., None], *args: Any) -> tuple[str, Any]:
    """Run ``target(*args, queue)`` in a spawned process; return what it reported."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        status, payload = queue.get(timeout=JOIN_TIMEOUT)
    finally:
        proc.join(timeout=JOIN_TIMEOUT)
        if proc.is_alive():  # only our own child, by object
            proc.kill()
            proc.join(timeout=JOIN_TIMEOUT)
    assert status != "error", payload
    return status, payload


def _files(tmp: pathlib.Path, name: str, **kwargs: Any) -> FileDirDict:
    return FileDirDict(base_dir=str(tmp / name), durable=False, **kwargs)


# ---------------------------------------------------------------------------
# Item 9: MutableDictCached.discard_if
# ---------------------------------------------------------------------------


def _records(cache: FileDirDict) -> dict[tuple[str, ...], Any]:
    """What a cache holds: key -> (main's etag, value), from its records."""
    return {tuple(k): cached_entry(cache, k) for k in cache}


def _cached_values(cache: FileDirDict) -> dict[tuple[str, ...], Any]:
    return {k: entry[1] for k, entry in _records(cache).items()}


def _cached(tmp: pathlib.Path) -> tuple[MutableDictCached, FileDirDict, FileDirDict, FileDirDict]:
    main, data, etags = _files(tmp, "main"), _files(tmp, "data"), _files(tmp, "etags")
    return MutableDictCached(main_dict=main, data_cache=data, etag_cache=etags), main, data, etags


@pytest.mark.parametrize(
    ("condition", "expect_old_etag"),
    [
        (ANY_ETAG, False),
        (ETAG_IS_THE_SAME, True),  # the caller's etag: main answers "absent"
        (ETAG_HAS_CHANGED, True),
        (ETAG_IS_THE_SAME, False),
        (ETAG_HAS_CHANGED, False),
    ],
    ids=["any", "same-old", "changed-old", "same-absent", "changed-absent"],
)
def test_discard_if_on_a_key_deleted_elsewhere_purges_both_caches(
    tmp_path: pathlib.Path, condition: Any, expect_old_etag: bool
) -> None:
    w, main, data, etags = _cached(tmp_path)
    w["k"] = {"v": 1}
    w["other"] = 2
    old = w.etag("k")
    assert set(_records(data)) == {("k",), ("other",)} and _records(etags) == {}
    _in_child(dw.delete_key, pickle.dumps(main), "k")  # another handle, another process
    assert ("k",) not in read_ground_truth(main)

    expected = old if expect_old_etag else ITEM_NOT_AVAILABLE
    r = w.discard_if("k", condition=condition, expected_etag=expected)

    assert r.actual_etag is ITEM_NOT_AVAILABLE and r.new_value is ITEM_NOT_AVAILABLE
    assert _cached_values(data) == {("other",): 2}, "the cache kept a deleted key"
    assert _records(etags) == {}
    with pytest.raises(KeyError):
        w.etag("k")  # answered from a stale etag cache before


def test_discard_if_that_deletes_purges_both_caches(tmp_path: pathlib.Path) -> None:
    w, main, data, etags = _cached(tmp_path)
    for cond, exp in ((ETAG_IS_THE_SAME, "current"), (ANY_ETAG, ITEM_NOT_AVAILABLE)):
        w["k"] = 1
        r = w.discard_if("k", condition=cond, expected_etag=w.etag("k") if exp else exp)
        assert r.condition_was_satisfied and r.new_value is ITEM_NOT_AVAILABLE
        assert read_ground_truth(main) == _records(data) == _records(etags) == {}


def test_discard_if_failing_on_a_present_key_leaves_both_caches(tmp_path: pathlib.Path) -> None:
    w, main, data, etags = _cached(tmp_path)
    w["k"] = "first"
    stale = w.etag("k")
    w["k"] = "second"
    current = w.etag("k")
    assert stale != current
    cached = _records(data)
    assert cached == {("k",): (current, "second")} and _records(etags) == {}
    for cond, exp in (
        (ETAG_IS_THE_SAME, stale),  # the one-request path: main refuses the delete
        (ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE),
        (ETAG_HAS_CHANGED, current),
    ):
        r = w.discard_if("k", condition=cond, expected_etag=exp)
        assert not r.condition_was_satisfied and r.new_value is VALUE_NOT_RETRIEVED
        assert _records(data) == cached, (cond, exp)
    assert read_ground_truth(main) == {("k",): "second"}
    assert w["k"] == "second" and w.etag("k") == current


# ---------------------------------------------------------------------------
# Item 12: OverlappingMultiDict.__setstate__
# ---------------------------------------------------------------------------


def _multi(tmp: pathlib.Path) -> OverlappingMultiDict:
    return OverlappingMultiDict(
        dict_type=FileDirDict,
        shared_subdicts_params={"base_dir": str(tmp / "shared"), "durable": False},
        json={}, pkl={},
    )


class _Forged:
    """Pickles as "make a bare OverlappingMultiDict, then set this state"."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> Any:
        return (object.__new__, (OverlappingMultiDict,), self.state)


def test_multi_setstate_raises_type_error(tmp_path: pathlib.Path) -> None:
    m = _multi(tmp_path)
    m.json["k"] = 1
    for state in (None, {}, 42, "x", (None, {}), dict(vars(m))):
        with pytest.raises(TypeError):
            m.__setstate__(state)
    assert m.subdicts_names == ["json", "pkl"] and m.json["k"] == 1  # untouched
    for dump in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            dump(m)
    # A payload built by hand cannot make one either (state applied on load).
    for state in ({"subdicts_names": ["json"]}, dict(vars(m))):
        payload = pickle.dumps(_Forged(state))
        with pytest.raises(TypeError):
            pickle.loads(payload)


# ---------------------------------------------------------------------------
# Item 14: WriteOnceDict
# ---------------------------------------------------------------------------


def test_write_once_refuses_a_mutable_store_with_value_error(tmp_path: pathlib.Path) -> None:
    mutable_cached = MutableDictCached(
        main_dict=_files(tmp_path, "m"), data_cache=LocalDict(), etag_cache=LocalDict()
    )
    for inner in (_files(tmp_path, "f"), LocalDict(), mutable_cached):
        with pytest.raises(ValueError):
            WriteOnceDict(wrapped_dict=inner)
    assert read_ground_truth(_files(tmp_path, "f")) == {}


def test_write_once_refuses_a_non_store_with_type_error(tmp_path: pathlib.Path) -> None:
    for inner in ({}, {"a": 1}, "dir", 42, FileDirDict):
        with pytest.raises(TypeError):
            WriteOnceDict(wrapped_dict=inner)  # type: ignore[arg-type]


def test_write_once_forwards_attributes_it_lacks(tmp_path: pathlib.Path) -> None:
    inner = _files(tmp_path, "wo", append_only=True, digest_len=3)
    w = WriteOnceDict(wrapped_dict=inner)
    assert w.base_dir == inner.base_dir
    assert w.digest_len == 3
    assert w.get_params()["wrapped_dict"] == inner  # its own names are its own
    with pytest.raises(AttributeError):
        w.no_such_attribute  # noqa: B018
    with pytest.raises(AttributeError):
        w._no_such_private  # noqa: B018  (private names are never forwarded)
    sub = w.get_subdict("s")
    assert sub.base_dir == inner.get_subdict("s").base_dir != inner.base_dir
    over_cache = WriteOnceDict(
        wrapped_dict=AppendOnlyDictCached(main_dict=inner, data_cache=LocalDict(append_only=True))
    )
    with pytest.raises(AttributeError):
        over_cache.base_dir  # noqa: B018  (the cache wrapper has none to forward)


def test_write_once_forwarding_never_recurses(tmp_path: pathlib.Path) -> None:
    bare = WriteOnceDict.__new__(WriteOnceDict)  # as unpickling or copy sees it
    for name in ("base_dir", "_inner", "__deepcopy__", "__setstate__"):
        with pytest.raises(AttributeError):
            getattr(bare, name)
    w = WriteOnceDict(wrapped_dict=_files(tmp_path, "wo", append_only=True),
                      p_consistency_checks=0.5)
    w["k"] = 1
    for clone in (copy.copy(w), copy.deepcopy(w), pickle.loads(pickle.dumps(w))):
        assert type(clone) is WriteOnceDict, type(clone)
        assert clone.p_consistency_checks == 0.5 and clone["k"] == 1
        assert clone.base_dir == w.base_dir


def test_write_once_p_consistency_checks_is_settable(tmp_path: pathlib.Path) -> None:
    w = WriteOnceDict(wrapped_dict=_files(tmp_path, "wo", append_only=True))
    assert w.p_consistency_checks == 0.0
    w.p_consistency_checks = 0.5
    assert w.p_consistency_checks == 0.5
    w.p_consistency_checks = KEEP_CURRENT
    assert w.p_consistency_checks == 0.5
    for bad in (1.5, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            w.p_consistency_checks = bad
    for bad_type in ("0.5", [0.5], object()):
        with pytest.raises(TypeError):
            w.p_consistency_checks = bad_type
    assert w.p_consistency_checks == 0.5  # a refused value changes nothing
    w.p_consistency_checks = None
    assert w.p_consistency_checks == 0.0
    w.p_consistency_checks = 1
    assert w.p_consistency_checks == 1.0 and w.get_params()["p_consistency_checks"] == 1.0
    w["a"] = 1
    with pytest.raises(ValueError):
        w["a"] = 2  # the new probability is in effect
    with pytest.raises(ValueError):
        WriteOnceDict(wrapped_dict=_files(tmp_path, "x", append_only=True),
                      p_consistency_checks=2)


def test_write_once_p1_checks_the_insert_too(tmp_path: pathlib.Path) -> None:
    w = WriteOnceDict(wrapped_dict=_files(tmp_path, "wo", append_only=True),
                      p_consistency_checks=1)
    w["a"] = 1
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (1, 1)
    w["a"] = 1
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (2, 2)


def test_write_once_compares_serialized_values_pkl(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "wo", append_only=True)
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=1)
    w["n"] = 1
    for other in (1.0, True):  # == 1 in Python, stored differently
        with pytest.raises(ValueError):
            w["n"] = other
    w["v"] = dw.Vec(1, 2)
    w["v"] = dw.Vec(1, 2)  # array-like: its == has no truth value
    with pytest.raises(ValueError):
        w["v"] = dw.Vec(1, 3)
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (6, 3)
    assert w.consistency_checks_failed == 3
    assert read_ground_truth(root)[("n",)] == 1
    assert type(read_ground_truth(root)[("n",)]) is int


def test_write_once_compares_serialized_values_json(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "wo", append_only=True, serialization_format="json")
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=1)
    w["n"] = 1
    with pytest.raises(ValueError):
        w["n"] = 1.0
    w["t"] = [1, 2]
    with pytest.raises(ValueError):
        w["t"] = (1, 2)
    w["t"] = [1, 2]
    w["s"] = {"b": [3], "a": {"x": None}}
    w["s"] = {"b": [3], "a": {"x": None}}
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (7, 5)
    stored = {("n",): 1, ("t",): [1, 2], ("s",): {"b": [3], "a": {"x": None}}}
    assert read_ground_truth(root) == stored


def test_write_once_counters_around_the_comparison(tmp_path: pathlib.Path) -> None:
    root = _files(tmp_path, "wo", append_only=True)
    w = WriteOnceDict(wrapped_dict=root, p_consistency_checks=1)
    w["a"] = 1
    with pytest.raises(ValueError):
        w["a"] = 2
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (2, 1)
    path_for_key(root, "a").write_bytes(b"not a pickle")  # the stored value cannot be read
    with pytest.raises(BackendError):
        w["a"] = 1
    assert (w.consistency_checks_attempted, w.consistency_checks_passed) == (3, 1)


def test_write_once_mismatch_error_is_both_and_pickles(tmp_path: pathlib.Path) -> None:
    w = WriteOnceDict(wrapped_dict=_files(tmp_path, "wo", append_only=True),
                      p_consistency_checks=1)
    w["k"] = 1
    status, exc = _in_child(dw.write_and_report, pickle.dumps(w), "k", 1.0)
    assert status == "raised", f"the child's divergent write was accepted: {exc}"
    assert isinstance(exc, MutationPolicyError) and isinstance(exc, ValueError), type(exc).__mro__
    assert isinstance(exc, TypeError)  # MutationPolicyError's builtin, as specified
    assert exc.policy == "write-once" and "'k'" in str(exc)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is type(exc) and str(again) == str(exc)
    status, counters = _in_child(dw.write_and_report, pickle.dumps(w), "k", 1)
    assert (status, counters) == ("ok", (1, 1))
    assert w["k"] == 1 and type(w["k"]) is int
