"""concurrency/atomic.py: cases found by mutation testing.

Each test pins one duty of the write/read primitives that the broader
suites did not check: which directories get fsynced, what a read returns
for odd paths and short reads, and that no temp file outlives a failure.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from persidict.concurrency import atomic


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = atomic.fsync_dir

    def recording(path: str) -> None:
        calls.append(path)
        real(path)

    monkeypatch.setattr(atomic, "fsync_dir", recording)
    return calls


def test_sync_after_commit_fsyncs_the_nearest_existing_ancestor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory was pruned after our commit: its removal, an entry of
    the nearest existing ancestor, is what must reach the disk."""
    calls = _record_fsyncs(monkeypatch)
    gone = tmp_path / "pruned" / "deeper"
    with caplog.at_level(logging.WARNING, logger="persidict"):
        atomic.sync_after_commit(str(gone))
    assert calls == [str(gone), str(gone.parent), str(tmp_path)]
    assert caplog.records == []


def test_make_dirs_fsyncs_each_parent_that_gained_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_fsyncs(monkeypatch)
    atomic.make_dirs(str(tmp_path / "a" / "b" / "c"), durable=True)
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert calls == [str(tmp_path), str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    calls.clear()
    atomic.make_dirs(str(tmp_path / "a" / "x"), durable=False)
    assert calls == [] and (tmp_path / "a" / "x").is_dir()


def test_make_dirs_made_meanwhile_by_another_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent writer's mkdir wins: no error, and the parent is still
    fsynced (that writer may not have done it yet)."""
    calls = _record_fsyncs(monkeypatch)
    real_mkdir = os.mkdir

    def raced_mkdir(path: str, *args: object, **kwargs: object) -> None:
        real_mkdir(path)  # the other writer, just before us
        raise FileExistsError(errno.EEXIST, "File exists", path)

    monkeypatch.setattr(os, "mkdir", raced_mkdir)
    atomic.make_dirs(str(tmp_path / "a" / "b"), durable=True)
    assert (tmp_path / "a" / "b").is_dir()
    assert calls == [str(tmp_path), str(tmp_path / "a")]


def test_read_file_of_a_large_value_is_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 65536 + 17)  # past the first 64 KiB read
    path = str(tmp_path / "big")
    atomic.write_atomic(path, data, durable=False)
    assert atomic.read_file(path) == data


def test_read_file_after_a_short_read_reads_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short read is EOF on local disks, not on every mount (FUSE, NFS)."""
    path = tmp_path / "v"
    path.write_bytes(b"x" * 1000)
    real_read = os.read

    def short_read(fd: int, n: int) -> bytes:
        return real_read(fd, min(n, 100))

    monkeypatch.setattr(os, "read", short_read)
    assert atomic.read_file(str(path)) == b"x" * 1000


def test_read_file_of_what_is_no_regular_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"v")
    assert atomic.read_file(str(tmp_path / "dir")) is None
    assert atomic.read_file(str(tmp_path / "file" / "below")) is None  # ENOTDIR
    assert atomic.read_file(str(tmp_path / "missing")) is None


def test_read_file_no_symlinks_raises_for_the_caller_to_judge(tmp_path: Path) -> None:
    if atomic.open_no_symlinks is None:
        pytest.skip("openat2 unavailable here")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v").write_bytes(b"v")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    path = str(tmp_path / "link" / "v")
    assert atomic.read_file(path) == b"v"  # a directory link above: followed
    with pytest.raises(OSError) as info:
        atomic.read_file(path, no_symlinks=True)
    assert info.value.errno == errno.ELOOP


def test_interrupted_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (KeyboardInterrupt, no Exception) in mid-write: target untouched, temp gone."""
    path = tmp_path / "k"
    path.write_bytes(b"old")

    def interrupted(fd: int, data: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(str(path), b"new", durable=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]
    assert path.read_bytes() == b"old"
