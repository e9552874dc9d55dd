"""What one warm cached operation costs: encodes, local writes, fsyncs, locks, hashes, requests.

The cache wrappers over BasicS3Dict (the real test server) are measured per
operation on a key that is already written and read through the wrapper, so
its cache entry is warm. Everything is counted from outside the code under
test: the codec functions stores are built with (``codec_for``), ``os.replace``
(the commit of every local atomic write), ``os.unlink``, ``os.fsync``, the file
lock backend's ``acquire_on``, ``hashlib.sha256`` called from persidict, and S3
requests by operation and HTTP status (a botocore ``after-call`` hook on an
injected client). ``python tests/test_cache_counts.py`` prints the table.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _s3_plugin import BUCKET, fresh_prefix
from persidict import (
    ALWAYS_RETRIEVE,
    ANY_ETAG,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    AppendOnlyDictCached,
    BasicS3Dict,
    FileDirDict,
    MutableDictCached,
    PersiDict,
    S3Dict_FileDirCached,
)
from persidict.concurrency import locks
from s3_server import REGION, S3Server, get_server, stop_server

COLUMNS = ("encode", "decode", "write", "unlink", "fsync", "lock", "sha256", "requests")


class Counts:
    """Counters patched into the process for the duration of ``counting()``."""

    def __init__(self) -> None:
        self.n: collections.Counter[str] = collections.Counter()
        self.requests: list[str] = []
        self.on = False

    def hit(self, what: str) -> None:
        if self.on:
            self.n[what] += 1

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        if self.on:
            self.requests.append(f"{model.name} {http_response.status_code}")

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {c: self.n[c] for c in COLUMNS[:-1]}
        row["requests"] = sorted(self.requests)
        return row

    def reset(self) -> None:
        self.n.clear()
        self.requests.clear()


def _wrap(counts: Counts, what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        counts.hit(what)
        return fn(*args, **kwargs)

    return counted


def _ours_sha256(counts: Counts, fn: Callable[..., Any]) -> Callable[..., Any]:
    """hashlib.sha256 counted only when persidict calls it (botocore signs with it too)."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__", "").startswith("persidict"):
            counts.hit("sha256")
        return fn(*args, **kwargs)

    return counted


def _counted_codecs(counts: Counts, codec_for: Callable[[str], Any]) -> Callable[[str], Any]:
    """``codec_for`` handing out counted (encode, decode) functions."""

    def counted(serialization_format: str) -> Any:
        encode, decode = codec_for(serialization_format)
        return _wrap(counts, "encode", encode), _wrap(counts, "decode", decode)

    return counted


def _codec_users() -> list[Any]:
    modules = []
    for name in ("persidict.engine.values", "persidict.engine.contract"):
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(name))
    return modules


_CODEC_USERS = _codec_users()


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Patch the counters in; stores must be built inside (codecs are bound at construction)."""
    counts = Counts()
    patch = pytest.MonkeyPatch()
    try:
        for module in _CODEC_USERS:  # where stores look their codecs up
            if hasattr(module, "codec_for"):
                patch.setattr(module, "codec_for", _counted_codecs(counts, module.codec_for))
        patch.setattr(os, "replace", _wrap(counts, "write", os.replace))
        patch.setattr(os, "unlink", _wrap(counts, "unlink", os.unlink))
        patch.setattr(os, "fsync", _wrap(counts, "fsync", os.fsync))
        acquire_on = locks.KeyLocks.acquire_on
        patch.setattr(locks.KeyLocks, "acquire_on", _wrap(counts, "lock", acquire_on))
        patch.setattr(hashlib, "sha256", _ours_sha256(counts, hashlib.sha256))
        yield counts
    finally:
        patch.undo()


# -- the stores ---------------------------------------------------------------


def _client(server: S3Server, counts: Counts) -> Any:
    client = server.client()
    client.meta.events.register("after-call.s3", counts.after_call)
    return client


def _basic(server: S3Server, counts: Counts, append_only: bool) -> BasicS3Dict:
    return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                       endpoint_url=server.endpoint_url, client=_client(server, counts),
                       append_only=append_only)  # fmt: skip


def mutable(durable: bool) -> Callable[[S3Server, Counts, pathlib.Path], PersiDict[Any]]:
    def build(server: S3Server, counts: Counts, tmp: pathlib.Path) -> PersiDict[Any]:
        return MutableDictCached(
            main_dict=_basic(server, counts, False),
            data_cache=FileDirDict(base_dir=str(tmp / "data"), durable=durable),
            etag_cache=FileDirDict(base_dir=str(tmp / "etags"), durable=durable),
        )

    return build


def append_only(durable: bool) -> Callable[[S3Server, Counts, pathlib.Path], PersiDict[Any]]:
    def build(server: S3Server, counts: Counts, tmp: pathlib.Path) -> PersiDict[Any]:
        cache = FileDirDict(base_dir=str(tmp / "data"), durable=durable, append_only=True)
        return AppendOnlyDictCached(main_dict=_basic(server, counts, True), data_cache=cache)

    return build


def s3dict(append: bool) -> Callable[[S3Server, Counts, pathlib.Path], PersiDict[Any]]:
    def build(server: S3Server, counts: Counts, tmp: pathlib.Path) -> PersiDict[Any]:
        return S3Dict_FileDirCached(bucket_name=BUCKET, region=REGION,
                                    root_prefix=fresh_prefix(), base_dir=str(tmp),
                                    endpoint_url=server.endpoint_url, append_only=append,
                                    client=_client(server, counts))  # fmt: skip

    return build


STORES = {
    "MutableDictCached durable": mutable(True),
    "MutableDictCached non-durable": mutable(False),
    "AppendOnlyDictCached durable": append_only(True),
    "AppendOnlyDictCached non-durable": append_only(False),
    "S3Dict mutable": s3dict(False),
    "S3Dict append-only": s3dict(True),
}

# -- the operations: each gets a store whose key "k" holds 1, cached -----------


def op_get(d: PersiDict[Any]) -> None:
    assert d["k"] == 1


def op_in(d: PersiDict[Any]) -> None:
    assert "k" in d


def op_get_item_if(d: PersiDict[Any]) -> None:
    r = d.get_item_if("k", condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE,
                      retrieve_value=ALWAYS_RETRIEVE)  # fmt: skip
    assert r.new_value == 1


def op_set(d: PersiDict[Any]) -> None:
    d["k" if not d.append_only else "new"] = 2


def op_set_item_if(d: PersiDict[Any], etag: Any) -> None:
    key, expected = ("k", etag) if not d.append_only else ("new", ITEM_NOT_AVAILABLE)
    condition = ETAG_IS_THE_SAME if not d.append_only else ANY_ETAG
    r = d.set_item_if(key, value=2, condition=condition, expected_etag=expected)
    assert r.condition_was_satisfied


def op_transform_item(d: PersiDict[Any]) -> None:
    assert d.transform_item("k", transformer=lambda v: v + 1).new_value == 2


def op_discard(d: PersiDict[Any]) -> None:
    assert d.discard("k") is True


OPS: dict[str, Callable[..., None]] = {
    "get": op_get,
    "in": op_in,
    "get_item_if": op_get_item_if,
    "set": op_set,
    "set_item_if": op_set_item_if,
    "transform_item": op_transform_item,
    "discard": op_discard,
}
MUTATING_ONLY = ("transform_item", "discard")


def measure(store: str, op: str, server: S3Server, tmp: pathlib.Path) -> dict[str, Any]:
    """The counts of one warm ``op`` on a fresh store of kind ``store``."""
    with counting() as counts:
        d = STORES[store](server, counts, tmp)
        counts.on = True
        d["k"] = 1
        assert d["k"] == 1  # warm: written and read through the wrapper
        etag = d.etag("k")
        assert d["k"] == 1
        counts.reset()
        if op == "set_item_if":
            OPS[op](d, etag)
        else:
            OPS[op](d)
        counts.on = False
        return counts.row()


def _is_append_only(store: str) -> bool:
    return "AppendOnly" in store or "append-only" in store


def table(server: S3Server) -> Iterator[str]:
    """Rows of the measured table, store by store."""
    yield "| store | op | " + " | ".join(COLUMNS) + " |"
    yield "|---" * (len(COLUMNS) + 2) + "|"
    for store in STORES:
        for op in OPS:
            if _is_append_only(store) and op in MUTATING_ONLY:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                row = measure(store, op, server, pathlib.Path(tmp))
            cells = [str(row[c]) for c in COLUMNS[:-1]]
            cells.append(", ".join(row["requests"]))
            yield f"| {store} | {op} | " + " | ".join(cells) + " |"


# -- what is asserted ------------------------------------------------------------

# (encode, local write, unlink, requests) of each warm operation of a mutable
# cached store: a body only when main has a new one, one byte copy per write.
MUTABLE_COSTS: dict[str, tuple[int, int, int, list[str]]] = {
    "get": (0, 0, 0, ["GetObject 304"]),
    "in": (0, 0, 0, ["HeadObject 200"]),
    "get_item_if": (0, 0, 0, ["GetObject 304"]),
    "set": (1, 1, 0, ["PutObject 200"]),
    "set_item_if": (1, 1, 0, ["PutObject 200"]),
    "transform_item": (1, 1, 0, ["GetObject 304", "PutObject 200"]),
    "discard": (0, 0, 1, ["DeleteObject 204"]),
}
# Append-only: a cached key is main's for good, so reading it asks nobody.
APPEND_ONLY_COSTS: dict[str, tuple[int, int, int, list[str]]] = {
    "get": (0, 0, 0, []),
    "in": (0, 0, 0, []),
    "get_item_if": (0, 0, 0, []),
    "set": (1, 1, 0, ["PutObject 200"]),
}
MUTABLE_STORES = ["MutableDictCached durable", "MutableDictCached non-durable", "S3Dict mutable"]
APPEND_ONLY_STORES = [
    "AppendOnlyDictCached durable", "AppendOnlyDictCached non-durable", "S3Dict append-only",
]


def _costs(row: dict[str, Any]) -> tuple[int, int, int, list[str]]:
    return row["encode"], row["write"], row["unlink"], row["requests"]


@pytest.mark.parametrize("store", MUTABLE_STORES)
def test_warm_transform_item_is_one_encode_one_304_one_put_one_local_write(
    s3_server: S3Server, tmp_path: pathlib.Path, store: str
) -> None:
    """The target of issue 10.3: 1 encode, 1 GET (304: unchanged), 1 PUT, <= 1 local write."""
    row = measure(store, "transform_item", s3_server, tmp_path)
    assert row["encode"] == 1
    assert row["requests"] == ["GetObject 304", "PutObject 200"]
    assert row["write"] <= 1 and row["unlink"] == 0
    assert row["fsync"] == (2 if "durable" in store and "non-" not in store else 0)


@pytest.mark.parametrize("store", MUTABLE_STORES)
@pytest.mark.parametrize("op", list(MUTABLE_COSTS))
def test_warm_mutable_operation_costs(
    s3_server: S3Server, tmp_path: pathlib.Path, store: str, op: str
) -> None:
    row = measure(store, op, s3_server, tmp_path)
    assert _costs(row) == MUTABLE_COSTS[op], row
    assert row["lock"] == row["write"] + row["unlink"]  # one per local mutation, none to read


@pytest.mark.parametrize("store", APPEND_ONLY_STORES)
@pytest.mark.parametrize("op", list(APPEND_ONLY_COSTS))
def test_warm_append_only_operation_costs(
    s3_server: S3Server, tmp_path: pathlib.Path, store: str, op: str
) -> None:
    row = measure(store, op, s3_server, tmp_path)
    assert _costs(row) == APPEND_ONLY_COSTS[op], row


if __name__ == "__main__":
    try:
        for line in table(get_server()):
            print(line, flush=True)
    finally:
        stop_server()
