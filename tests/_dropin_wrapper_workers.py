"""Child-process workers and value classes for tests/test_dropin_wrappers.py.

At module top level so 'spawn' children import them by name (and values of
these classes pickle by reference).
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any


class Ambiguous:
    """What an array's ``==`` returns: it has no truth value."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array is ambiguous")


class Vec:
    """An array-like value: ``==`` compares elementwise, like numpy's."""

    def __init__(self, *items: float) -> None:
        self.items = list(items)

    def __eq__(self, other: object) -> Any:
        return Ambiguous()

    def __ne__(self, other: object) -> Any:
        return Ambiguous()

    __hash__ = None  # type: ignore[assignment]


def delete_key(pickled_store: bytes, key: str, queue: Any) -> None:
    """Delete ``key`` from the unpickled store (another handle, another process)."""
    try:
        store = pickle.loads(pickled_store)
        del store[key]
        queue.put(("ok", None))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


def write_and_report(pickled_store: bytes, key: str, value: Any, queue: Any) -> None:
    """Write ``key``; report ("ok", counters) or ("raised", the exception itself).

    The exception crosses the process boundary pickled, as a worker pool
    would send it.
    """
    try:
        store = pickle.loads(pickled_store)
        try:
            store[key] = value
        except Exception as exc:  # the error under test, sent back whole
            queue.put(("raised", exc))
            return
        counters = (store.consistency_checks_attempted, store.consistency_checks_passed)
        queue.put(("ok", counters))
    except BaseException:
        queue.put(("error", traceback.format_exc()))
