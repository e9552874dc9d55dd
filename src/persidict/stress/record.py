"""Worker side of the history check: log every store call with its times.

A call that may change the store logs ``{"hs": id, ns, k, f, a, t}`` before
it starts (so a worker killed mid-call leaves its intent behind); every call
logs ``{"he": id, ns, k, f, a, t, t1, r | x}`` when it ends: its result, or
the class name of what it raised. ``t``/``t1`` are ``time.monotonic_ns()``:
CLOCK_MONOTONIC, shared by all processes of one machine on Linux. Values are
logged as given (ints, tokens); ITEM_NOT_AVAILABLE as null, VALUE_NOT_RETRIEVED
as model.NR and a blob as the token inside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from persidict import (
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    ConditionalOperationResult,
    PersiDict,
)

from .model import NR, READS
from .oracle import check_blob

T = TypeVar("T")


def enc(value: Any) -> Any:
    """A value as the history logs it."""
    if value is ITEM_NOT_AVAILABLE or value is None:
        return None
    if value is VALUE_NOT_RETRIEVED:
        return NR
    if isinstance(value, bytes):
        tok, reason = check_blob(value)
        return tok if tok is not None else f"<torn: {reason}>"
    return value


def etag(value: Any) -> str | None:
    """An etag as the history logs it (None for ITEM_NOT_AVAILABLE)."""
    return None if value is ITEM_NOT_AVAILABLE else str(value)


def ok(_: Any) -> dict[str, Any]:
    """The logged result of a call that returns nothing."""
    return {"ok": True}


def cond(result: ConditionalOperationResult[Any]) -> dict[str, Any]:
    """The logged form of a conditional op's result."""
    return {
        "s": bool(result.condition_was_satisfied),
        "a": etag(result.actual_etag),
        "re": etag(result.resulting_etag),
        "nv": enc(result.new_value),
    }


class Recorder:
    """Wraps store calls: logs start, end, arguments and outcome of each."""

    def __init__(
        self, write: Callable[[dict[str, Any]], None], stores: Mapping[str, PersiDict[Any]]
    ) -> None:
        self.write = write
        self.stores = stores
        self.n = 0
        self.enabled = True
        # (ns, key) of the latest call: the one an exception escaping an op came from.
        self.current: tuple[str, str | None] = ("", None)

    def call(
        self,
        ns: str,
        key: str | None,
        f: str,
        args: dict[str, Any],
        fn: Callable[[], T],
        result: Callable[[T], dict[str, Any]],
    ) -> T:
        """Run ``fn()`` (one store call) and log it."""
        self.current = (ns, key)
        if not self.enabled:
            return fn()
        self.n += 1
        rec: dict[str, Any] = {"ns": ns, "k": key, "f": f, "a": args}
        t = time.monotonic_ns()
        if f not in READS and f != "keys":
            self.write({"hs": self.n, **rec, "t": t})
        try:
            out = fn()
        except BaseException as exc:
            t1 = time.monotonic_ns()
            self.write({"he": self.n, **rec, "t": t, "t1": t1, "x": type(exc).__name__})
            raise
        t1 = time.monotonic_ns()
        self.write({"he": self.n, **rec, "t": t, "t1": t1, "r": result(out)})
        return out

    def set(self, ns: str, key: str, value: Any, logged: Any = None) -> None:
        """``store[key] = value``, logged (``logged`` stands in for a large value)."""
        store = self.stores[ns]

        def put() -> None:
            store[key] = value

        self.call(ns, key, "set", {"v": value if logged is None else logged}, put, ok)

    def get(self, ns: str, key: str, fn: Any) -> Any:
        """A plain read (``fn`` is ``store[key]`` or ``store.get(key)``), logged."""
        return self.call(ns, key, "get", {}, fn, lambda r: {"v": enc(r)})

    def get_with_etag(self, ns: str, key: str) -> Any:
        store = self.stores[ns]
        return self.call(ns, key, "gwe", {}, lambda: store.get_with_etag(key),
                             lambda r: {"v": enc(r.new_value), "e": etag(r.actual_etag)})

    def insert_if_absent(self, ns: str, key: str, tok: str) -> Any:
        store = self.stores[ns]
        return self.call(
            ns, key, "sif", {"v": tok, "c": "same", "x": None},
            lambda: store.set_item_if(key, value=tok, condition=ETAG_IS_THE_SAME,
                                      expected_etag=ITEM_NOT_AVAILABLE),
            cond,
        )  # fmt: skip

    def delete(self, ns: str, key: str) -> bool:
        """``del store[key]``, logged; KeyError (absent) propagates."""
        store = self.stores[ns]

        def remove() -> bool:
            del store[key]
            return True

        return bool(self.call(ns, key, "del", {}, remove, ok))
