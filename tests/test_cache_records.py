"""A cache entry is one record: main's etag and main's bytes, in one local store.

``cached_entry`` reads a cache store's bytes (not through the wrapper) and
parses the record by the layout documented in ``backends/cache_bytes.py``,
independently of the code under test; other test modules use it to check
what a cache holds. ``FlakyCache`` is a LocalDict whose bytes can be made to
fail on writes and deletes.
"""

from __future__ import annotations

import pathlib
import pickle
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from conftest import path_for_key
from persidict import (
    AppendOnlyDictCached,
    FileDirDict,
    LocalDict,
    MutableDictCached,
    PersiDict,
)
from persidict.engine.contract import Blob, ByteStore, IfMatch, Listed
from persidict.engine.flags import ETagValue, ItemNotAvailableFlag
from persidict.engine.keys import NonEmptySafeStrTuple, to_key

MAGIC = b"\x00persidict-cache-record-2\n"
OLD_MAGIC = b"\x00persidict-cache-record-1\n"


def header(tag: bytes, payload: bytes) -> bytes:
    """The record's header line: etag length, bytes length, CRC-32 of the bytes."""
    return b"%d %d %08x\n" % (len(tag), len(payload), zlib.crc32(payload))


def parse(raw: bytes) -> tuple[str, bytes] | None:
    """(etag, main's bytes) of a whole record, None if ``raw`` is not one."""
    if not raw.startswith(MAGIC):
        return None
    line, _, rest = raw[len(MAGIC):].partition(b"\n")
    n, size, crc = line.split(b" ")
    payload = rest[int(n):]
    if len(payload) != int(size) or int(crc, 16) != zlib.crc32(payload):
        return None
    return rest[:int(n)].decode("utf-8"), payload


def cached_entry(cache: PersiDict, key: Any, fmt: str = "pkl") -> tuple[str, Any] | None:
    """(main's etag, value) cached under ``key``, or None if nothing (or no record) is."""
    data = cache.byte_store.read(to_key(key)).data
    if data is None:
        return None
    record = parse(data)
    if record is None:
        return None
    etag, payload = record
    if fmt == "pkl":
        return etag, pickle.loads(payload)
    import jsonpickle

    return etag, jsonpickle.decode(payload.decode("utf-8"))


def record(etag: str, value: Any, fmt: str = "pkl") -> bytes:
    """The record of (etag, value encoded in ``fmt``), built by the documented layout."""
    tag = etag.encode("utf-8")
    if fmt == "pkl":
        payload = pickle.dumps(value)
    else:
        import jsonpickle

        payload = jsonpickle.encode(value).encode("utf-8")
    return MAGIC + header(tag, payload) + tag + payload


def plant(cache: PersiDict, key: Any, etag: str, value: Any, fmt: str = "pkl") -> None:
    """Write a record into a cache store behind the wrapper's back."""
    cache.byte_store.write(to_key(key), record(etag, value, fmt), if_match=None)


class HookedBytes(ByteStore):
    """A ByteStore forwarding to another, with one-shot hooks around its operations.

    ``before["write"] = f`` runs ``f()`` (once) just before the next write;
    ``after["read"] = f`` just after the next read. While ``broken`` is set,
    writes and deletes raise OSError (a full disk) without reaching ``inner``.
    """

    def __init__(self, inner: ByteStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.before: dict[str, Callable[[], None]] = {}
        self.after: dict[str, Callable[[], None]] = {}
        self.broken = False

    def _run(self, hooks: dict[str, Callable[[], None]], operation: str) -> None:
        hook = hooks.pop(operation, None)
        if hook is not None:
            hook()

    def _mutate(self, operation: str, call: Callable[[], Any]) -> Any:
        self._run(self.before, operation)
        if self.broken:
            raise OSError(28, "No space left on device (injected)")
        result = call()
        self._run(self.after, operation)
        return result

    def read(self, key: NonEmptySafeStrTuple, *, body: bool = True,
             if_none_match: str | None = None) -> Blob:  # fmt: skip
        self._run(self.before, "read")
        blob = self.inner.read(key, body=body, if_none_match=if_none_match)
        self._run(self.after, "read")
        return blob

    def write(self, key: NonEmptySafeStrTuple, data: bytes, *,
              if_match: IfMatch) -> ETagValue | ItemNotAvailableFlag:  # fmt: skip
        return self._mutate("write", lambda: self.inner.write(key, data, if_match=if_match))  # type: ignore[no-any-return]

    def delete(self, key: NonEmptySafeStrTuple, *, if_match: ETagValue | None) -> bool:
        return self._mutate("delete", lambda: self.inner.delete(key, if_match=if_match))  # type: ignore[no-any-return]

    def contains(self, key: NonEmptySafeStrTuple) -> bool:
        return self.inner.contains(key)

    def timestamp(self, key: NonEmptySafeStrTuple) -> float:
        return self.inner.timestamp(key)

    def scan(self, *, with_timestamps: bool = False) -> Listed:
        return self.inner.scan(with_timestamps=with_timestamps)

    def count(self) -> int:
        return self.inner.count()

    def location(self, key: NonEmptySafeStrTuple) -> str:
        return self.inner.location(key)


S = TypeVar("S", bound=PersiDict)


def hooked(store: S) -> tuple[S, HookedBytes]:
    """``store`` with its bytes behind a HookedBytes (installed in place)."""
    hooks = HookedBytes(store.byte_store)
    store._bytes = hooks  # type: ignore[attr-defined]
    return store, hooks


class FlakyCache(LocalDict):
    """A LocalDict whose writes and deletes raise while ``broken`` is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hooks = HookedBytes(self.byte_store)
        self._bytes = self.hooks

    @property
    def broken(self) -> bool:
        return self.hooks.broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self.hooks.broken = value


# -- the record on disk ---------------------------------------------------------


def test_a_cached_value_is_one_file_holding_mains_etag_and_mains_bytes(
    tmp_path: pathlib.Path,
) -> None:
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    data = FileDirDict(base_dir=str(tmp_path / "data"))
    etags = FileDirDict(base_dir=str(tmp_path / "etags"))
    d = MutableDictCached(main_dict=main, data_cache=data, etag_cache=etags)
    d["k"] = {"x": [1, 2]}
    raw = path_for_key(data, "k").read_bytes()
    stored = path_for_key(main, "k").read_bytes()
    tag = main.etag("k").encode()
    assert raw == MAGIC + header(tag, stored) + tag + stored
    assert cached_entry(data, "k") == (main.etag("k"), {"x": [1, 2]})
    assert list(etags.keys()) == []  # nothing else is written
    assert not (tmp_path / "etags").exists() or not any((tmp_path / "etags").rglob("*.pkl"))


@pytest.mark.parametrize("junk", [b"", b"\x80\x05K\x01.", MAGIC, OLD_MAGIC + b"2\nabc",
                                  MAGIC + b"99 5 00000000\nshort", MAGIC + b"x 3 0\nabc",
                                  MAGIC + b"2 1 " + b"%08x" % zlib.crc32(b"c") + b"\n\xff\xfec",
                                  MAGIC + b"1 2 00000000\nabc", MAGIC + b"1 2\nabc"])
def test_an_entry_that_is_no_record_is_a_miss_and_is_replaced(junk: bytes) -> None:
    """An older layout (a pickled value), a torn or foreign file: main answers, then the
    next mirror replaces it with a record."""
    main, data = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=data, etag_cache=LocalDict())
    main["k"] = "fresh"
    data.byte_store.write(to_key("k"), junk, if_match=None)
    assert d["k"] == "fresh"
    assert cached_entry(data, "k") == (main.etag("k"), "fresh")


def test_append_only_entry_that_is_no_record_is_a_miss_and_is_replaced() -> None:
    main, data = LocalDict(append_only=True), LocalDict(append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=data)
    main["k"] = "fresh"
    data.byte_store.write(to_key("k"), pickle.dumps("stale older layout"), if_match=None)
    assert d["k"] == "fresh"
    assert cached_entry(data, "k") == (main.etag("k"), "fresh")


def test_a_planted_record_under_mains_current_etag_is_served() -> None:
    """The record is trusted exactly when main confirms its etag (a 304 on S3)."""
    main, data = LocalDict(), LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=data, etag_cache=LocalDict())
    d["k"] = "real"
    plant(data, "k", main.etag("k"), "planted")
    assert d["k"] == "planted"
    plant(data, "k", "not-mains-etag", "planted")
    assert d["k"] == "real"
    assert cached_entry(data, "k") == (main.etag("k"), "real")


def test_caches_holding_the_same_records_are_equal() -> None:
    """A copy of a cache (a pickled LocalDict) equals it: records compare as bytes."""
    main = LocalDict()
    data = LocalDict()
    d = MutableDictCached(main_dict=main, data_cache=data, etag_cache=LocalDict())
    d["k"] = [1, 2]
    copy_ = pickle.loads(pickle.dumps(data))
    assert copy_ == data and data == copy_
    assert d.get_params() == pickle.loads(pickle.dumps(d)).get_params()
    plant(copy_, "k", "another-etag", [1, 2])
    assert copy_ != data
    other = LocalDict()
    other["k"] = [1, 2]  # a value where the cache holds a record
    assert other != data and data != other
