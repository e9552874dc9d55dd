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
        d.lock_timeout = 0.2
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
    from persidict.engine.names import component_digest

    return component_digest(component, 4)


def test_opening_a_parent_later_does_not_move_a_stores_locks(tmp_path: pathlib.Path) -> None:
    """Catches: lock files chosen by the topmost marker, which a parent store
    opened later changes for new openers only (found by review: 1077 of 3000
    increments lost). Two handles opened before and after the parent must
    exclude each other."""
    import sys

    from persidict import ITEM_NOT_AVAILABLE

    child = tmp_path / "parent" / "child"
    before = FileDirDict(base_dir=child, durable=False)
    FileDirDict(base_dir=tmp_path / "parent", durable=False)
    after = FileDirDict(base_dir=child, durable=False)
    rounds = 300

    def bump(d: FileDirDict, key: object) -> None:
        for _ in range(rounds):
            d.transform_item(
                key, transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v + 1, n_retries=None
            )

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [
            threading.Thread(target=bump, args=(before, "n")),
            threading.Thread(target=bump, args=(after, "n")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert before["n"] == 2 * rounds
    n = NonEmptySafeStrTuple("n")
    assert before.byte_store.where(n)[1].lock_path == after.byte_store.where(n)[1].lock_path


def test_cached_reads_never_go_back_in_time(tmp_path: pathlib.Path) -> None:
    """Catches: a reader mirroring a value it fetched before a writer's newer
    write, leaving an older value under main's current etag (found by review:
    2677 stale reads). A read that starts after write n returned sees >= n."""
    import sys
    import time

    from persidict import MutableDictCached

    def wrapper() -> MutableDictCached:
        return MutableDictCached(
            main_dict=FileDirDict(base_dir=tmp_path / "main", durable=False),
            data_cache=FileDirDict(base_dir=tmp_path / "data", durable=False),
            etag_cache=FileDirDict(base_dir=tmp_path / "etags", durable=False),
        )

    writer = wrapper()
    writer["n"] = 0
    published = [0]
    stop = threading.Event()
    stale: list[tuple[int, int]] = []

    def write() -> None:
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline and i < 3000:
            i += 1
            writer["n"] = i
            published[0] = i
        stop.set()

    def read() -> None:
        d = wrapper()
        while not stop.is_set():
            floor = published[0]
            got = d["n"]
            if got < floor:
                stale.append((floor, got))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=write)] + [
            threading.Thread(target=read) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(old)
    assert not stale, stale[:5]
