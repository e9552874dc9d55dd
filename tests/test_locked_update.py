"""transform_item on FileDirDict through FileBytes.update: no etag compared under the lock.

The commit trusts that nothing changed the key since the read because every
other writer takes the key's lock; only the transformer itself (this thread,
re-entering) can. So each test makes the transformer touch the key in one
way and checks what the commit did: a nested write or delete must make the
commit lose (retry, the nested change kept, never overwritten unseen); a
nested read, or a nested transform that keeps the value, must not.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import pathlib
import threading
import uuid
from typing import Any

import pytest

from persidict import (
    DELETE_CURRENT,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    KEEP_CURRENT,
    BackendError,
    Blob,
    ByteStore,
    ByteStoreDict,
    Capabilities,
    ConcurrencyConflictError,
    FileDirDict,
    PreconditionFailed,
)
from persidict.backends import file_bytes
from persidict.backends.key_grants import held
from persidict.engine.keys import to_key


def _store(tmp_path: pathlib.Path, **kw: Any) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False, **kw)


def test_result_names_what_is_stored(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    r = d.transform_item("k", transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v + 1)
    assert (r.new_value, r.resulting_etag) == (1, d.etag("k"))
    r = d.transform_item(("a", "b"), transformer=lambda v: [v])
    assert r.new_value == [ITEM_NOT_AVAILABLE] == d["a", "b"]
    assert r.resulting_etag == d.etag(("a", "b"))
    assert held() == {}


def test_a_nested_write_makes_the_commit_lose_and_is_kept(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 0
    calls: list[Any] = []

    def nested_write(v: Any) -> Any:
        calls.append(v)
        d["k"] = 100 + len(calls)  # the transformer's own write of the key
        return -1

    with pytest.raises(ConcurrencyConflictError):
        d.transform_item("k", transformer=nested_write, n_retries=2)
    # Each attempt saw the previous attempt's nested write, and no -1 was ever committed.
    assert calls == [0, 101, 102]
    assert d["k"] == 103
    assert held() == {}


def test_a_nested_delete_makes_the_commit_lose(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 0
    calls: list[Any] = []

    def nested_delete(v: Any) -> Any:
        calls.append(v)
        if v is not ITEM_NOT_AVAILABLE:
            del d["k"]
        return "new"

    r = d.transform_item("k", transformer=nested_delete)
    assert calls == [0, ITEM_NOT_AVAILABLE]  # lost once, then committed on the absent key
    assert r.new_value == "new" == d["k"]


def test_a_nested_read_does_not_make_the_commit_lose(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 1
    calls: list[Any] = []

    def reads_too(v: Any) -> Any:
        calls.append((v, d["k"], d.get_with_etag("k").new_value, "k" in d))
        return v + 1

    r = d.transform_item("k", transformer=reads_too, n_retries=0)
    assert calls == [(1, 1, 1, True)]
    assert r.new_value == 2 == d["k"]


def test_a_nested_conditional_write_with_the_right_etag_succeeds(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 1
    etag = d.etag("k")
    outcomes: list[Any] = []

    def swaps(v: Any) -> Any:
        if not outcomes:
            res = d.set_item_if("k", value=50, condition=ETAG_IS_THE_SAME, expected_etag=etag)
            outcomes.append(res.condition_was_satisfied)
        return v + 1

    r = d.transform_item("k", transformer=swaps)
    # The nested swap won (the etag was right); the first commit lost to it, the retry saw 50.
    assert outcomes == [True]
    assert r.new_value == 51 == d["k"]


def test_a_nested_transform_that_keeps_does_not_make_the_outer_lose(
    tmp_path: pathlib.Path,
) -> None:
    d = _store(tmp_path)
    d["k"] = 1
    calls: list[Any] = []

    def outer(v: Any) -> Any:
        calls.append(v)
        inner = d.transform_item("k", transformer=lambda w: KEEP_CURRENT)
        assert inner.new_value == v and inner.resulting_etag == d.etag("k")
        return v + 1

    assert d.transform_item("k", transformer=outer, n_retries=0).new_value == 2
    assert calls == [1]


def test_a_nested_transform_that_writes_makes_the_outer_lose(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 0

    def outer(v: Any) -> Any:
        d.transform_item("k", transformer=lambda w: w + 10)
        return v + 1

    with pytest.raises(ConcurrencyConflictError):
        d.transform_item("k", transformer=outer, n_retries=1)
    assert d["k"] == 20  # both inner increments kept, no outer +1 over them


def test_keep_and_delete(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path)
    d["k"] = 7
    path = d.byte_store.location(to_key("k"))
    before = os.stat(path)
    r = d.transform_item("k", transformer=lambda v: KEEP_CURRENT)
    assert (r.new_value, r.resulting_etag) == (7, d.etag("k"))
    assert os.stat(path).st_ino == before.st_ino  # nothing was written
    r = d.transform_item("absent", transformer=lambda v: KEEP_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE is r.resulting_etag
    r = d.transform_item("k", transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE is r.resulting_etag
    assert "k" not in d
    r = d.transform_item("k", transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert held() == {}


def test_a_raising_transformer_or_bad_value_writes_nothing(tmp_path: pathlib.Path) -> None:
    d = _store(tmp_path, base_class_for_values=int)
    d["k"] = 1
    etag = d.etag("k")

    def boom(v: Any) -> Any:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        d.transform_item("k", transformer=boom)
    with pytest.raises(TypeError, match="base_class_for_values"):
        d.transform_item("k", transformer=lambda v: "not an int")
    assert d.etag("k") == etag and held() == {}
    assert d.transform_item("k", transformer=lambda v: v + 1).new_value == 2


def test_a_failed_write_is_mapped_and_leaves_no_grant(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _store(tmp_path)
    d["k"] = 1

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_bytes, "write_atomic", full)
    with pytest.raises(BackendError) as info:
        d.transform_item("k", transformer=lambda v: v + 1)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert held() == {}
    monkeypatch.undo()
    assert d["k"] == 1
    assert d.transform_item("k", transformer=lambda v: v + 1).new_value == 2


def _increment(base: str, n: int, start: Any) -> None:
    d: FileDirDict[int] = FileDirDict(base_dir=base, durable=False)
    start.wait(30)
    for _ in range(n):
        d.transform_item("c", transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v + 1)


def test_processes_lose_no_increment_with_default_arguments(tmp_path: pathlib.Path) -> None:
    base = str(tmp_path / "s")
    FileDirDict(base_dir=base, durable=False)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_increment, args=(base, 400, start)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert FileDirDict(base_dir=base, durable=False)["c"] == 1600


def test_a_reentrant_write_during_the_commit_is_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler writing the key while the commit replaces its file must
    not slip through the held grant (its write would be overwritten unseen)."""
    d = _store(tmp_path)
    d["k"] = 1
    real = file_bytes.write_atomic
    seen: list[str] = []

    def reentering(path: str, data: bytes, **kwargs: Any) -> None:
        if not seen:
            try:
                d["k"] = "from a handler"
                seen.append("written")
            except RuntimeError:
                seen.append("refused")
        real(path, data, **kwargs)

    monkeypatch.setattr(file_bytes, "write_atomic", reentering)
    assert d.transform_item("k", transformer=lambda v: v + 1).new_value == 2
    assert seen == ["refused"] and d["k"] == 2


class _LockingDictBytes(ByteStore):
    """A third-party store that declares locks_keys and gives only lock(key):
    transform_item goes through the contract's default update()."""

    name = "locking-dict"
    capabilities = Capabilities(locks_keys=True)

    def __init__(self) -> None:
        self.items: dict[Any, tuple[str, bytes]] = {}
        self.guard = threading.Lock()
        self.key_locks: dict[Any, threading.RLock] = {}
        self.writes = 0

    def read(self, key: Any, *, body: bool = True, if_none_match: Any = None) -> Blob:
        etag, data = self.items.get(key, (ITEM_NOT_AVAILABLE, None))
        return Blob(etag, data if body and etag != if_none_match else None)  # type: ignore[arg-type]

    def write(self, key: Any, data: bytes, *, if_match: Any) -> Any:
        with self.guard:
            current = self.items.get(key, (ITEM_NOT_AVAILABLE,))[0]
            if if_match is not None and current != if_match:
                raise PreconditionFailed
            self.writes += 1
            etag = uuid.uuid4().hex
            self.items[key] = (etag, data)
            return etag

    def delete(self, key: Any, *, if_match: Any) -> bool:
        with self.guard:
            if if_match is not None and self.items.get(key, (None,))[0] != if_match:
                raise PreconditionFailed
            return self.items.pop(key, None) is not None

    def timestamp(self, key: Any) -> float:
        return 0.0

    def scan(self, *, with_timestamps: bool = False) -> Any:
        return iter([(k, None) for k in list(self.items)])

    def lock(self, key: Any) -> Any:
        with self.guard:
            return self.key_locks.setdefault(key, threading.RLock())


def test_the_default_update_of_a_third_party_locking_store() -> None:
    store = _LockingDictBytes()
    d: ByteStoreDict[Any] = ByteStoreDict(byte_store=store)

    def add_many() -> None:
        for _ in range(200):
            d.transform_item("n", transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v + 1)

    threads = [threading.Thread(target=add_many) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert d["n"] == 1200 and store.writes == 1200  # under the lock: no commit ever lost
    r = d.transform_item("n", transformer=lambda v: KEEP_CURRENT)
    assert (r.new_value, r.resulting_etag) == (1200, d.etag("n"))

    def nested_write(v: Any) -> Any:
        d["n"] = v + 1000
        return 0

    with pytest.raises(ConcurrencyConflictError):
        d.transform_item("n", transformer=nested_write, n_retries=1)
    assert d["n"] == 3200  # both nested writes kept, the 0 never committed
    gone = d.transform_item("n", transformer=lambda v: DELETE_CURRENT)
    assert gone.new_value is ITEM_NOT_AVAILABLE
    assert "n" not in d
