"""Worker functions for the S3 multi-process tests (importable by spawned children)."""

from __future__ import annotations

import os
import time
from typing import Any

from persidict import ANY_ETAG, ITEM_NOT_AVAILABLE, PersiDict

BARRIER_TIMEOUT = 60.0


def insert_if_absent(store: PersiDict[Any], barrier: Any, me: int, keys: list[str]) -> list[str]:
    """Race setdefault_if on every key; return the keys this worker inserted."""
    barrier.wait(BARRIER_TIMEOUT)
    won = []
    for k in keys:
        r = store.setdefault_if(k, default_value=me, condition=ANY_ETAG,
                                expected_etag=ITEM_NOT_AVAILABLE)
        inserted = r.actual_etag is ITEM_NOT_AVAILABLE and r.condition_was_satisfied
        assert r.new_value == me if inserted else r.new_value is not None
        if inserted:
            won.append(k)
    return won


def increment(store: PersiDict[Any], barrier: Any, rounds: int, key: str) -> int:
    """transform_item(+1) ``rounds`` times; return how many transformer calls it took."""
    calls = 0

    def plus_one(v: Any) -> int:
        nonlocal calls
        calls += 1
        return 1 if v is ITEM_NOT_AVAILABLE else v + 1

    barrier.wait(BARRIER_TIMEOUT)
    deadline = time.monotonic() + 240
    for _ in range(rounds):
        assert time.monotonic() < deadline, "increment worker ran out of time"
        store.transform_item(key, transformer=plus_one, n_retries=200)
    return calls


def roundtrip(store: PersiDict[Any]) -> tuple[int, Any, list[Any]]:
    """Use an unpickled store in a child: read, write, list."""
    store["from_child", str(os.getpid())] = "hello"
    return os.getpid(), store["from_parent"], sorted(tuple(k) for k in store)
