"""Adversary: a cache that cannot follow main must never make the wrapper lie.

A cache on a read-only mount (EROFS, a real one when we may mount), a full
one (ENOSPC) or one failing for a moment: after this wrapper wrote or
deleted a key in main, ``etag()`` must be main's (the spec allows a stale
etag only when main was changed *behind the wrapper's back*), so that a
compare-and-swap on it succeeds, and reads stay main's.
"""

from __future__ import annotations

import errno
import logging
import pathlib
import subprocess
import threading
from collections.abc import Iterator

import pytest

from persidict import ETAG_IS_THE_SAME, FileDirDict, LocalDict, MutableDictCached
from test_cache_records import FlakyCache, cached_entry


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.WARNING)  # every failing mirror is logged, by design
    yield
    logging.disable(logging.NOTSET)


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode().strip()}")


@pytest.fixture
def read_only_view(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, pathlib.Path]]:
    """(a writable directory, a read-only bind mount of it)."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    _mount("--bind", str(rw), str(ro))
    try:
        _mount("-o", "remount,bind,ro", str(ro))
        yield rw, ro
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _after_own_writes_etag_is_mains(
    d: MutableDictCached[int], main: FileDirDict | LocalDict
) -> None:
    d["k"] = 2
    assert d["k"] == 2
    assert d.etag("k") == main.etag("k")
    swap = d.set_item_if("k", value=3, condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))
    assert swap.condition_was_satisfied and main["k"] == 3
    del d["k"]
    assert "k" not in d and d.get("k") is None
    with pytest.raises(KeyError):
        d.etag("k")


def test_read_only_cache_mount(
    tmp_path: pathlib.Path, read_only_view: tuple[pathlib.Path, pathlib.Path]
) -> None:
    rw, ro = read_only_view
    main = FileDirDict(base_dir=str(tmp_path / "main"))
    etags = FileDirDict(base_dir=str(tmp_path / "etags"))
    filler = MutableDictCached(main_dict=main, data_cache=FileDirDict(base_dir=str(rw / "c")),
                               etag_cache=etags)  # fmt: skip
    filler["k"] = 1
    d = MutableDictCached(main_dict=main, data_cache=FileDirDict(base_dir=str(ro / "c")),
                          etag_cache=etags)  # fmt: skip
    assert d["k"] == 1 and d.etag("k") == main.etag("k")  # served from the read-only record
    with pytest.raises(OSError) as refused:
        FileDirDict(base_dir=str(ro / "c"))["x"] = 0
    assert refused.value.errno == errno.EROFS  # the fault is real
    _after_own_writes_etag_is_mains(d, main)


def test_cache_whose_writes_and_deletes_fail() -> None:
    main: LocalDict = LocalDict()
    cache = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = 1
    cache.broken = True
    _after_own_writes_etag_is_mains(d, main)
    cache.broken = False
    d["k"] = 5  # a cache that works again is used again
    assert d["k"] == 5 and d.etag("k") == main.etag("k")


def test_cache_unreadable_for_one_moment_during_a_write() -> None:
    main: LocalDict = LocalDict()
    cache = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    d["k"] = 1

    def emfile() -> None:
        raise OSError(errno.EMFILE, "Too many open files (injected)")

    cache.hooks.before["read"] = emfile  # the write's look at the cache fails, once
    d["k"] = 2
    assert d.etag("k") == main.etag("k")
    assert d["k"] == 2


def test_full_cache_tmpfs(tmp_path: pathlib.Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small))
    try:
        main = FileDirDict(base_dir=str(tmp_path / "main"))
        d = MutableDictCached(main_dict=main, data_cache=FileDirDict(base_dir=str(small / "c")),
                              etag_cache=LocalDict())  # fmt: skip
        d["k"] = 1
        d["big"] = b"x" * 200_000  # the cache cannot hold it: ENOSPC, main has it
        assert d["big"] == b"x" * 200_000 and d.etag("big") == main.etag("big")
        with open(small / "filler", "wb") as f:  # fill what is left
            try:
                f.write(b"\0" * 100_000)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        _after_own_writes_etag_is_mains(d, main)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_readers_older_mirror_overtaking_a_write_is_not_trusted() -> None:
    """Thread R read main's v1, then thread W wrote v2; R's mirror of v1 lands between W's
    look at the cache and W's mirror, so W's mirror is refused: etag() must not be v1's."""
    main = FlakyCache()  # its hooks pause R right after it read main
    cache = FlakyCache()
    d = MutableDictCached(main_dict=main, data_cache=cache, etag_cache=LocalDict())
    main["k"] = 1  # not cached yet
    r_read, r_go, r_done = threading.Event(), threading.Event(), threading.Event()

    def pause_reader() -> None:
        r_read.set()
        r_go.wait()

    def reader() -> None:
        assert d["k"] == 1
        r_done.set()

    def let_reader_mirror() -> None:
        r_go.set()
        r_done.wait()

    main.hooks.after["read"] = pause_reader
    thread = threading.Thread(target=reader)
    thread.start()
    r_read.wait()
    cache.hooks.before["write"] = let_reader_mirror  # just before W's mirror
    d["k"] = 2
    thread.join()
    assert main.etag("k") != cached_entry(cache, "k")[0]  # type: ignore[index]  # the race happened
    assert d.etag("k") == main.etag("k")
    assert d.set_item_if("k", value=3, condition=ETAG_IS_THE_SAME,
                         expected_etag=d.etag("k")).condition_was_satisfied  # fmt: skip
    assert d["k"] == 3 and d.etag("k") == main.etag("k")
