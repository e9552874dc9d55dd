"""LocalDict against a plain dict guarded by a threading.Lock.

The floor does the same thing each operation means, with the least code:
``with lock: d[k] = v``, ``with lock: d[k]``, a check-then-set under the
lock for set_item_if, ``setdefault`` under the lock, ``d[k] += 1`` under the
lock, a check-then-pop under the lock for discard_if.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from persidict import ANY_ETAG, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, LocalDict

from .common import SMALL_VALUE, Config
from .files import _inc, _loop
from .harness import Body, Case, Results, Row, interleave

OPS = ("set new", "overwrite", "get", "in", "etag", "set_item_if", "setdefault_if insert",
       "transform_item +1", "discard_if", "len", "iterate keys")


def _ours(d: LocalDict, op: str, n: int) -> Callable[[int], Body]:
    v = SMALL_VALUE
    base = [f"k{i}" for i in range(n)]
    setitem = d.__setitem__

    def prepare(rep: int) -> Body:
        if op == "set new":
            return _loop([f"new{rep}-{i}" for i in range(n)], lambda k: setitem(k, v))
        if op == "overwrite":
            return _loop(base, lambda k: setitem(k, v))
        if op == "get":
            return _loop(base, d.__getitem__)
        if op == "in":
            return _loop(base, d.__contains__)
        if op == "etag":
            return _loop(base, d.etag)
        if op == "set_item_if":
            tags = [(k, d.etag(k)) for k in base]

            def cas() -> None:
                for k, e in tags:
                    d.set_item_if(k, value=v, condition=ETAG_IS_THE_SAME, expected_etag=e)

            return cas
        if op == "setdefault_if insert":
            return _loop([f"ins{rep}-{i}" for i in range(n)], lambda k: d.setdefault_if(
                k, default_value=v, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE))
        if op == "transform_item +1":
            return _loop([f"c{i}" for i in range(n)],
                         lambda k: d.transform_item(k, transformer=_inc))
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                d[k] = v
            tags = [(k, d.etag(k)) for k in keys]

            def discard() -> None:
                for k, e in tags:
                    d.discard_if(k, condition=ETAG_IS_THE_SAME, expected_etag=e)

            return discard
        if op == "len":
            return lambda: [len(d) for _ in range(n)]
        if op == "iterate keys":
            return lambda: list(iter(d))
        raise ValueError(op)

    return prepare


def _floor(d: dict[str, object], lock: threading.Lock, op: str, n: int) -> Callable[[int], Body]:
    v = SMALL_VALUE
    base = [f"k{i}" for i in range(n)]

    def put(k: str) -> None:
        with lock:
            d[k] = v

    def get(k: str) -> object:
        with lock:
            return d[k]

    def contains(k: str) -> bool:
        with lock:
            return k in d

    def cas(k: str) -> None:
        with lock:
            if d.get(k) is v:
                d[k] = v

    def setdefault(k: str) -> None:
        with lock:
            d.setdefault(k, v)

    def inc(k: str) -> None:
        with lock:
            d[k] += 1  # type: ignore[operator]

    def discard(k: str) -> None:
        with lock:
            if d.get(k) is v:
                del d[k]

    def prepare(rep: int) -> Body:
        if op == "set new":
            return _loop([f"new{rep}-{i}" for i in range(n)], put)
        if op == "overwrite":
            return _loop(base, put)
        if op in ("get", "etag"):
            return _loop(base, get)
        if op == "in":
            return _loop(base, contains)
        if op == "set_item_if":
            return _loop(base, cas)
        if op == "setdefault_if insert":
            return _loop([f"ins{rep}-{i}" for i in range(n)], setdefault)
        if op == "transform_item +1":
            return _loop([f"c{i}" for i in range(n)], inc)
        if op == "discard_if":
            keys = [f"del{rep}-{i}" for i in range(n)]
            for k in keys:
                d[k] = v
            return _loop(keys, discard)
        if op == "len":
            def length() -> None:
                for _ in range(n):
                    with lock:
                        len(d)
            return length
        if op == "iterate keys":
            def keys() -> list[str]:
                with lock:
                    return list(d)
            return keys
        raise ValueError(op)

    return prepare


def run_memory(cfg: Config, results: Results, log: Callable[[str], None]) -> None:
    """Time every operation on LocalDict and on the dict+Lock floor."""
    n = cfg.memory_ops
    log("memory: LocalDict vs dict+Lock")
    ours = LocalDict()
    plain: dict[str, object] = {}
    lock = threading.Lock()
    for i in range(n):
        ours[f"k{i}"] = SMALL_VALUE
        ours[f"c{i}"] = 0
        plain[f"k{i}"] = SMALL_VALUE
        plain[f"c{i}"] = 0
    # len and iteration run on stores holding exactly n keys: per-key figures
    listed = LocalDict()
    listed_plain: dict[str, object] = {}
    for i in range(n):
        listed[f"k{i}"] = SMALL_VALUE
        listed_plain[f"k{i}"] = SMALL_VALUE
    for op in OPS:
        a, b = (listed, listed_plain) if op in ("len", "iterate keys") else (ours, plain)
        cases = [Case("ours", _ours(a, op, n), n), Case("floor", _floor(b, lock, op, n), n)]
        note = {"len": "per len() call",
                "iterate keys": "per key; list(iter(store)) vs list(dict) under the lock"}
        results.add(Row("memory/LocalDict", op, interleave(cases, cfg.reps), note.get(op, "")))
