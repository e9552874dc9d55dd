"""concurrency/listing.py and backends/file_walk.py: cases found by mutation testing.

A fake ``getdents64`` around the real one plays the filesystems and races
the snapshot logic must handle: a buffer too small, short reads, an entry
moved between two calls.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persidict import FileDirDict, NonEmptySafeStrTuple
from persidict.concurrency import listing

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")

_N = 600


def _filled(directory: Path, n: int = _N) -> set[str]:
    directory.mkdir()
    names = {f"name-{i:04d}" for i in range(n)}
    for name in names:
        (directory / name).write_bytes(b"")
    return names


def _fake(
    monkeypatch: pytest.MonkeyPatch, fake: Callable[[Any, int, ctypes.Array[Any], int], int]
) -> list[tuple[int, int]]:
    """Route getdents64 through ``fake(real, fd, buf, size)``; (size, n) per call."""
    real = listing._getdents
    assert real is not None
    calls: list[tuple[int, int]] = []

    def wrapped(fd: int, buf: ctypes.Array[Any], size: int) -> int:
        n = fake(real, fd, buf, size)
        calls.append((size, n))
        return n

    monkeypatch.setattr(listing, "_getdents", wrapped)
    return calls


def test_a_directory_larger_than_the_first_buffer_is_read_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buffer grows until ONE call returns every record: that is the snapshot."""
    names = _filled(tmp_path / "d")
    monkeypatch.setattr(listing, "_MIN_BUF", 1024)
    # st_size 1 (some filesystems report 0 or a block count): start small.
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((0,) * 6 + (1,) + (0,) * 3))
    calls = _fake(monkeypatch, lambda real, fd, buf, size: real(fd, buf, size))
    listed = listing.list_dir(str(tmp_path / "d"))
    assert listed is not None and sorted(listed[0]) == sorted(names)
    whole = max(n for _, n in calls)
    assert calls[-1][1] == 0 and calls[-2][1] == whole  # the last read had it all ...
    assert sum(n for _, n in calls[:-1] if n == whole) >= whole  # ... in one call


def test_short_reads_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem returning fewer records than fit: every name is still listed once."""
    names = _filled(tmp_path / "d")
    _fake(monkeypatch, lambda real, fd, buf, size: real(fd, buf, min(size, 2048)))
    listed = listing.list_dir(str(tmp_path / "d"))
    assert listed is not None
    assert sorted(listed[0]) == sorted(names)


def _record(name: bytes) -> bytes:
    """One linux_dirent64 record of a regular file."""
    size = (19 + len(name) + 1 + 7) // 8 * 8
    return struct.pack("<QqHB", 1, 0, size, 8) + name + b"\0" * (size - 19 - len(name))


def test_an_entry_moved_between_two_calls_is_reread_as_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename between the read and the probe, on a filesystem that moves the
    renamed entry after the read position (tmpfs before stable offsets): the
    probe finds it, so the directory is read again. Never both names."""
    directory = tmp_path / "d"
    _filled(directory, 50)
    moved = b"zz-moved"
    state = {"probed": False}

    def rename_before_probe(real: Any, fd: int, buf: ctypes.Array[Any], size: int) -> int:
        if size == listing._MAX_RECLEN and not state["probed"]:
            state["probed"] = True
            os.rename(directory / "name-0000", directory / moved.decode())
            record = _record(moved)
            ctypes.memmove(buf, record, len(record))
            return len(record)
        return int(real(fd, buf, size))

    _fake(monkeypatch, rename_before_probe)
    listed = listing.list_dir(str(directory))
    assert state["probed"] and listed is not None
    files = set(listed[0])
    assert len(files) == 50 and "zz-moved" in files and "name-0000" not in files


def test_keys_skip_a_file_deleted_between_listing_and_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timestamps are read after the listing: a key gone by then is not yielded."""
    d = FileDirDict(base_dir=str(tmp_path / "store"))
    d["stays"] = 1
    d["goes"] = 2
    real_lstat = os.lstat
    gone: list[str] = []

    def lstat_after_delete(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(p).endswith(".pkl") and "goes" in str(p) and not gone:
            gone.append(str(p))
            os.unlink(p)
        return real_lstat(p, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat_after_delete)
    assert [k.strings for k in d.newest_keys()] == [("stays",)]
    assert gone


def test_an_interrupted_call_is_retried_not_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EINTR (a signal during the call) means "try again": still one snapshot."""
    import errno

    names = _filled(tmp_path / "d", 20)
    interrupted: list[bool] = []

    def eintr_once(real: Any, fd: int, buf: ctypes.Array[Any], size: int) -> int:
        if not interrupted:
            interrupted.append(True)
            ctypes.set_errno(errno.EINTR)
            return -1
        return int(real(fd, buf, size))

    _fake(monkeypatch, eintr_once)

    def no_fallback(path: str) -> Any:
        raise AssertionError("fell back to os.scandir: not a snapshot")

    monkeypatch.setattr(listing, "_list_scandir", no_fallback)
    listed = listing.list_dir(str(tmp_path / "d"))
    assert interrupted and listed is not None and sorted(listed[0]) == sorted(names)


class _Entries:
    """os.scandir's context manager over given entries."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self.entries = entries

    def __enter__(self) -> list[os.DirEntry[str]]:
        return self.entries

    def __exit__(self, *exc: object) -> None:
        return None


def test_fallback_yields_each_name_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """readdir in chunks can return a renamed entry twice: the fallback dedups."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "f").write_bytes(b"")
    with os.scandir(tmp_path) as it:
        entries = list(it)
    monkeypatch.setattr(listing, "_getdents", None)
    monkeypatch.setattr(os, "scandir", lambda path: _Entries(entries + entries))
    assert listing.list_dir(str(tmp_path)) == (["f"], ["sub"])


def test_fallback_lists_no_file_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = FileDirDict(base_dir=str(tmp_path / "store"))
    d["real"] = 1
    d["linked"] = 2
    target = tmp_path / "outside.pkl"
    link = Path(d.byte_store.path(NonEmptySafeStrTuple(("linked",))))
    link.rename(target)
    link.symlink_to(target)  # a key's own file name, as a symlink
    monkeypatch.setattr(listing, "_getdents", None)
    listed = listing.list_dir(str(link.parent))
    assert listed is not None and link.name not in listed[0]
    assert [k.strings for k in d] == [("real",)] and len(d) == 1


def test_len_counts_what_keys_yields(tmp_path: Path) -> None:
    """len() and keys() judge names alike: other formats' files and '@' entries
    (ours, or a stray one that looks like a key inside) are no keys."""
    base = str(tmp_path / "store")
    d = FileDirDict(base_dir=base, digest_len=0)
    FileDirDict(base_dir=base, digest_len=0, serialization_format="json")["other"] = 1
    d[("a", "k")] = 1
    stray = Path(base) / "@stray"
    stray.mkdir()
    (stray / "k.pkl").write_bytes(b"")
    assert [k.strings for k in d] == [("a", "k")]
    assert len(d) == 1


def test_a_reused_buffer_smaller_than_the_first_size_is_never_overrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-thread spare buffer may be smaller than _MIN_BUF (made while it
    was patched smaller, as above): getdents64 is never told it holds more."""
    names = _filled(tmp_path / "d")
    small = (ctypes.create_string_buffer(1024), ctypes.create_string_buffer(listing._MAX_RECLEN))
    monkeypatch.setattr(listing._spare, "pair", small, raising=False)
    overruns: list[tuple[int, int]] = []

    def checked(real: Any, fd: int, buf: ctypes.Array[Any], size: int) -> int:
        if size > len(buf):
            overruns.append((size, len(buf)))
            return -1  # the real call would write past the buffer
        return int(real(fd, buf, size))

    _fake(monkeypatch, checked)
    listed = listing.list_dir(str(tmp_path / "d"))
    assert overruns == []
    assert listed is not None and sorted(listed[0]) == sorted(names)
