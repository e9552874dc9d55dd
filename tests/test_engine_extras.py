"""Key ordering, copy semantics and bounded lock waits."""

from __future__ import annotations

import copy
import os
import pathlib
import threading

import pytest

from persidict import FileDirDict, LocalDict, NonEmptySafeStrTuple, SafeStrTuple
from persidict.concurrency.locks import META_DIR, KeyLocks
from persidict.engine.errors import LockTimeoutError


def test_keys_sort_like_tuples(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    for k in [("b",), ("a", "z"), ("a",)]:
        d[k] = 1
    assert [k.strings for k in sorted(d.keys())] == [("a",), ("a", "z"), ("b",)]
    assert SafeStrTuple("a") < ("b",)
    assert NonEmptySafeStrTuple("a", "b") >= SafeStrTuple("a")


def test_copy_is_another_handle_on_the_same_store(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["a"] = 1
    c = copy.copy(d)
    c["b"] = 2
    assert dict(d.items()) == {("a",): 1, ("b",): 2}
    assert c == d


def test_localdict_copy_shares_and_deepcopy_copies() -> None:
    d = LocalDict()
    d["a"] = 1
    shallow = copy.copy(d)
    shallow["b"] = 2
    assert len(d) == 2
    deep = copy.deepcopy(d)
    deep["c"] = 3
    assert len(d) == 2 and len(deep) == 3


def test_lock_wait_is_bounded_and_names_the_key(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = "old"
    lock_path = os.path.join(str(tmp_path / "s"), META_DIR, "lock")
    holder = KeyLocks(lock_path)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.hold("k_" + _digest("k") + ".pkl"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        d._locks.timeout = 0.2
        with pytest.raises(TimeoutError) as ei:
            d["k"] = "new"
        assert isinstance(ei.value, LockTimeoutError)
        assert "k" in str(ei.value) and lock_path in str(ei.value)
        assert d["k"] == "old"  # reads take no lock; the failed write changed nothing
    finally:
        release.set()
        t.join(10)
    d["k"] = "new"  # released: writes proceed
    assert d["k"] == "new"


def _digest(component: str) -> str:
    from persidict.engine.keys import component_digest

    return component_digest(component, 4)
