"""transform_item with default arguments on one hot key of a FileDirDict.

Four real processes (and four threads) increment one counter with the
default ``n_retries``: under the key's lock no worker ever gives up with
ConcurrencyConflictError and the count is exact. Also what a transformer
that writes the key it transforms gets: a lost commit, never a deadlock.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest

from persidict import ITEM_NOT_AVAILABLE, ConcurrencyConflictError, FileDirDict

PROCS = 4
INCREMENTS = 400


def _inc(value: Any) -> int:
    return 1 if value is ITEM_NOT_AVAILABLE else value + 1


def _worker(root: str, barrier: Any, queue: Any) -> None:
    d = FileDirDict(base_dir=root, durable=False)
    try:
        barrier.wait(timeout=30)
        for _ in range(INCREMENTS):
            d.transform_item("counter", transformer=_inc)
        queue.put("ok")
    except BaseException as exc:  # reported to the parent, never hangs it
        queue.put(f"{type(exc).__name__}: {exc}")


def test_four_processes_default_args_never_give_up(tmp_path: Any) -> None:
    root = str(tmp_path / "store")
    FileDirDict(base_dir=root, durable=False)["counter"] = 0
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(PROCS), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(root, barrier, queue)) for _ in range(PROCS)]
    for w in workers:
        w.start()
    outcomes = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert outcomes == ["ok"] * PROCS
    assert FileDirDict(base_dir=root, durable=False)["counter"] == PROCS * INCREMENTS


def test_four_threads_default_args_never_give_up(tmp_path: Any) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    errors: list[BaseException] = []
    barrier = threading.Barrier(PROCS)

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(INCREMENTS // 2):
                d.transform_item("counter", transformer=_inc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(PROCS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert d["counter"] == PROCS * (INCREMENTS // 2)


def test_transformer_runs_under_the_key_lock(tmp_path: Any) -> None:
    """While a transformer runs, another process's write of the key waits for it."""
    root = str(tmp_path)
    d = FileDirDict(base_dir=root, durable=False)
    d["k"] = 0
    ctx = multiprocessing.get_context("fork")
    started, wrote = ctx.Event(), ctx.Event()

    def writer() -> None:
        started.wait(timeout=30)
        FileDirDict(base_dir=root, durable=False)["k"] = 100
        wrote.set()

    child = ctx.Process(target=writer)
    child.start()
    seen: list[bool] = []

    def slow(value: int) -> int:
        started.set()
        # The writer is blocked on our lock: it cannot finish while we hold it.
        seen.append(wrote.wait(timeout=0.5))
        return value + 1

    d.transform_item("k", transformer=slow)
    child.join(timeout=30)
    assert seen == [False]
    assert wrote.is_set() and d["k"] == 100


@pytest.mark.parametrize("how", ["write", "other handle", "delete", "nested transform"])
def test_transformer_writing_its_own_key_loses_without_deadlock(tmp_path: Any, how: str) -> None:
    """The commit after the transformer's own change of the key sees it (no second read)."""
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    other = FileDirDict(base_dir=str(tmp_path), durable=False)
    d["k"] = 0
    calls = []

    def rogue(value: Any) -> int:
        calls.append(value)
        # Re-entrant: no deadlock, no RuntimeError; the outer commit must lose.
        if how == "write":
            d["k"] = 10 + len(calls)  # new bytes each time (etags hash content)
        elif how == "other handle":
            other["k"] = 10 + len(calls)
        elif how == "delete":
            del other["k"]
            other["k"] = 10 + len(calls)
        else:
            other.transform_item("k", transformer=lambda v: 10 + len(calls))
        return 1

    with pytest.raises(ConcurrencyConflictError):
        d.transform_item("k", transformer=rogue, n_retries=2)
    assert len(calls) == 3
    assert d["k"] == 13
    d["k"] = 5  # the lock was released
    assert d.transform_item("k", transformer=_inc).new_value == 6


def test_nested_transform_of_another_key(tmp_path: Any) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)

    def outer(value: Any) -> int:
        d.transform_item("other", transformer=_inc)
        return _inc(value)

    for _ in range(3):
        d.transform_item("k", transformer=outer)
    assert (d["k"], d["other"]) == (3, 3)


def test_child_forked_inside_a_transformer_waits_for_the_lock(tmp_path: Any) -> None:
    """A forked child holds none of its parent's locks: its write of the key waits."""
    root = str(tmp_path)
    d = FileDirDict(base_dir=root, durable=False)
    d["k"] = 0
    ctx = multiprocessing.get_context("fork")
    wrote = ctx.Event()

    def child_write() -> None:
        FileDirDict(base_dir=root, durable=False)["k"] = 100
        wrote.set()

    child = ctx.Process(target=child_write)

    def transformer(value: int) -> int:
        child.start()
        # Had the child inherited the grant, it would write at once and this
        # commit would then overwrite it.
        wrote.wait(timeout=2)
        return value + 1

    d.transform_item("k", transformer=transformer)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert d["k"] == 100  # written after our commit, not lost under it
