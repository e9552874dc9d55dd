"""Adversary: a cache record damaged on disk must never be served as main's value.

The record holds main's etag and main's bytes; main's "not modified" only
vouches for the etag, so bytes cut short, extended or flipped on disk (a
partial copy, a full disk under a non-atomic tool, bit rot) must be found
by the record itself and treated as a miss.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from conftest import path_for_key
from persidict import AppendOnlyDictCached, FileDirDict, LocalDict, MutableDictCached
from test_cache_records import record


def _triple(tmp_path: pathlib.Path) -> tuple[MutableDictCached[int], FileDirDict]:
    main: FileDirDict = FileDirDict(base_dir=str(tmp_path / "main"), serialization_format="json")
    cache: FileDirDict = FileDirDict(base_dir=str(tmp_path / "cache"), serialization_format="json")
    etags: FileDirDict = FileDirDict(base_dir=str(tmp_path / "etags"))
    return MutableDictCached(main_dict=main, data_cache=cache, etag_cache=etags), cache


def _truncate(raw: bytes) -> bytes:
    return raw[:-3]


def _extend(raw: bytes) -> bytes:
    return raw + b"99"


def _flip(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


@pytest.mark.parametrize("damage", [_truncate, _extend, _flip])
def test_a_damaged_record_is_a_miss(
    tmp_path: pathlib.Path, damage: Callable[[bytes], bytes]
) -> None:
    d, cache = _triple(tmp_path)
    d["k"] = 1234567890
    assert d["k"] == 1234567890  # the record is in the cache now
    path = path_for_key(cache, "k")
    path.write_bytes(damage(path.read_bytes()))
    assert d["k"] == 1234567890
    assert d.get("k") == 1234567890
    assert list(d.values()) == [1234567890]
    assert d["k"] == 1234567890  # healed: the next mirror replaced the damaged file


def test_append_only_key_the_cache_refuses_never_reaches_main(tmp_path: pathlib.Path) -> None:
    """A 250-character component fits main (RAM) but not the cache's file name (+ digest)."""
    main: LocalDict = LocalDict(append_only=True)
    cache: FileDirDict = FileDirDict(base_dir=str(tmp_path / "c"), append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=cache)
    with pytest.raises(ValueError):
        d["x" * 250] = 1
    with pytest.raises(ValueError):
        d.setdefault("x" * 250, 1)
    assert len(main) == 0
    d["ok"] = 1
    assert d["ok"] == 1 and list(main.keys()) == [("ok",)]


def test_a_cache_file_replaced_by_a_symlink_is_neither_served_nor_followed(
    tmp_path: pathlib.Path,
) -> None:
    d, cache = _triple(tmp_path)
    d["k"] = 1234567890
    assert d["k"] == 1234567890
    foreign = tmp_path / "foreign"
    main_etag = d.etag("k")
    foreign.write_bytes(record(main_etag, 666, "json"))  # a whole record, under main's etag
    path = path_for_key(cache, "k")
    path.unlink()
    path.symlink_to(foreign)
    assert d["k"] == 1234567890
    d["k"] = 5
    assert d["k"] == 5 and foreign.read_bytes() == record(main_etag, 666, "json")  # left alone


def test_append_only_junk_cache_file_is_no_key(tmp_path: pathlib.Path) -> None:
    """``in`` agrees with reads: a cache file that is no whole record is a miss for both."""
    main: FileDirDict = FileDirDict(base_dir=str(tmp_path / "m"), append_only=True)
    cache: FileDirDict = FileDirDict(base_dir=str(tmp_path / "c"), append_only=True)
    d = AppendOnlyDictCached(main_dict=main, data_cache=cache)
    d["real"] = 1
    assert d["real"] == 1  # cached now
    path_for_key(cache, "real").write_bytes(b"junk")  # damaged: main still holds the key
    junk = path_for_key(cache, "ghost")
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"junk")  # no record, and main has no such key
    assert "ghost" not in d
    with pytest.raises(KeyError):
        d["ghost"]
    assert "real" in d and d["real"] == 1
