"""Listings while files are replaced (issue 16.3).

On tmpfs a rename over an existing name moves the entry in readdir order,
so a listing read in several chunks (os.scandir) misses keys that exist
throughout and yields others twice. Required: a key present for the whole
iteration is yielded exactly once, one added or removed during it at most
once; len() counts each present key once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.concurrency import listing

_KEYS = 3000
_ITERATIONS = 20


@pytest.fixture
def shm_dir() -> Iterator[str]:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("needs /dev/shm (tmpfs)")
    path = tempfile.mkdtemp(dir="/dev/shm", prefix="persidict-listing-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _key(i: int, nested: bool) -> Any:
    # Nested: 2 directories of 1,500 keys, each more than glibc's 32 KiB readdir chunk.
    return (f"g{i % 2}", f"k{i}") if nested else f"k{i}"


def _overwriter(base: str, nested: bool, worker: int, started: Any, stop: Any) -> None:
    d = FileDirDict(base_dir=base, durable=False)
    i = worker
    while not stop.is_set():
        d[_key((i * 7919) % _KEYS, nested)] = i
        if i == worker + 200:
            started.set()
        i += 2


def _churner(base: str, nested: bool, stop: Any) -> None:
    """Adds and removes keys outside the stable set: each may be seen at most once."""
    d = FileDirDict(base_dir=base, durable=False)
    i = 0
    while not stop.is_set():
        key = ("g0", f"churn{i % 50}") if nested else f"churn{i % 50}"
        if i % 100 < 50:
            d[key] = i
        else:
            d.discard(key)
        i += 1


def _run(base: str, nested: bool) -> None:
    d = FileDirDict(base_dir=base, durable=False)
    for i in range(_KEYS):
        d[_key(i, nested)] = -1
    expected = set(d.keys())
    assert len(expected) == _KEYS
    ctx = mp.get_context("fork")
    stop, started = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_overwriter, args=(base, nested, w, started, stop))
             for w in range(2)]
    procs.append(ctx.Process(target=_churner, args=(base, nested, stop)))
    for p in procs:
        p.start()
    try:
        assert started.wait(30)
        for _ in range(_ITERATIONS):
            seen = Counter(iter(d))
            stable = {k: n for k, n in seen.items() if "churn" not in k[-1]}
            assert set(stable) == expected, (
                f"missed {len(expected - set(stable))} keys present throughout"
            )
            assert max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:5]
            n = len(d)
            assert _KEYS <= n <= _KEYS + 50
    finally:
        stop.set()
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)


def test_iteration_and_len_while_overwriting_flat(shm_dir: str) -> None:
    _run(os.path.join(shm_dir, "store"), nested=False)


def test_iteration_and_len_while_overwriting_nested(shm_dir: str) -> None:
    _run(os.path.join(shm_dir, "store"), nested=True)


def test_list_dir_snapshot_of_plain_renames(shm_dir: str) -> None:
    """The primitive itself, against a writer renaming over existing names."""
    if not listing.SNAPSHOTS:
        pytest.skip("getdents64 unavailable: list_dir is not a snapshot here")
    directory = os.path.join(shm_dir, "d")
    os.mkdir(directory)
    names = {f"n{i}" for i in range(_KEYS)}
    for name in names:
        open(os.path.join(directory, name), "wb").close()
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    proc = ctx.Process(target=_renamer, args=(shm_dir, directory, stop))
    proc.start()
    try:
        for _ in range(_ITERATIONS):
            listed = listing.list_dir(directory)
            assert listed is not None
            files, dirs = listed
            assert dirs == []
            assert sorted(files) == sorted(names)
    finally:
        stop.set()
        proc.join(30)


def _renamer(scratch: str, directory: str, stop: Any) -> None:
    i = 0
    while not stop.is_set():
        tmp = os.path.join(scratch, f"t{i}")
        open(tmp, "wb").close()
        os.replace(tmp, os.path.join(directory, f"n{(i * 7919) % _KEYS}"))
        i += 1


# -- the parser and the fallback, without concurrency -------------------------


def _record(name: bytes, kind: int) -> bytes:
    size = (19 + len(name) + 1 + 7) // 8 * 8
    return struct.pack("<QqHB", 1, 0, size, kind) + name + b"\0" * (size - 19 - len(name))


def test_parse_records_of_every_type(tmp_path: Any) -> None:
    os.mkdir(tmp_path / "sub")
    (tmp_path / "f").write_bytes(b"")
    data = b"".join([
        _record(b".", 4), _record(b"..", 4), _record(b"a.pkl", 8), _record(b"dir", 4),
        _record(b"link", 10), _record(b"f", 0), _record(b"sub", 0), _record(b"gone", 0),
        _record("é".encode(), 8), _record(b"a.pkl", 8),
    ])
    files, dirs = listing._parse(listing._Pieced(data), str(tmp_path))  # several calls
    assert files == [b"a.pkl", b"f", "é".encode()]  # file names stay bytes (list_raw)
    assert dirs == ["dir", "sub"]


def test_fallback_lists_without_getdents(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "store"))
    keys = {("a", "b"), ("c",), ("a", "d", "e")}
    for k in keys:
        d[k] = 1
    os.symlink(tmp_path, tmp_path / "store" / "link")
    monkeypatch.setattr(listing, "_getdents", None)
    assert {k.strings for k in d} == keys
    assert len(d) == 3
    assert listing.list_dir(str(tmp_path / "missing")) is None
