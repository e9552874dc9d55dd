"""Adversary of write_atomic computing the target's directory only where it
needs it: a temp directory on another filesystem (EXDEV fallback, then
remembered), a target directory removed before a durable write, fsyncs of
the right directories."""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from persidict.concurrency import atomic


@pytest.fixture
def other_fs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory on another filesystem than tmp_path (/dev/shm), else skip."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    where = pathlib.Path(tempfile.mkdtemp(dir="/dev/shm"))
    if os.stat(where).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the filesystem of tmp_path")
    yield where
    for name in os.listdir(where):
        os.unlink(where / name)
    os.rmdir(where)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories fsync_dir is asked to sync, in order."""
    calls: list[str] = []
    real = atomic.fsync_dir

    def spy(path: str) -> None:
        calls.append(path)
        real(path)

    monkeypatch.setattr(atomic, "fsync_dir", spy)
    return calls


@pytest.mark.parametrize("durable", [False, True])
def test_a_temp_dir_on_another_filesystem(
    tmp_path: pathlib.Path, other_fs: pathlib.Path, synced: list[str],
    monkeypatch: pytest.MonkeyPatch, durable: bool,
) -> None:
    monkeypatch.setattr(atomic, "_cross_device", set())
    target = tmp_path / "a" / "b"
    target.parent.mkdir()
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic.write_atomic(str(target), b"one", durable=durable, tmp_dir=str(other_fs))
    assert target.read_bytes() == b"one" and os.listdir(other_fs) == []
    assert atomic._cross_device == {str(target.parent)}
    assert [os.path.dirname(s) for s, _ in renames] == [str(other_fs), str(target.parent)]
    assert synced == ([str(target.parent)] if durable else [])
    # Remembered: the next write of that directory goes there at once.
    renames.clear()
    atomic.write_atomic(str(target), b"two", durable=durable, tmp_dir=str(other_fs))
    assert target.read_bytes() == b"two" and os.listdir(other_fs) == []
    assert [os.path.dirname(s) for s, _ in renames] == [str(target.parent)]
    # Another directory is not taken for a cross-device one.
    (tmp_path / "c").mkdir()
    atomic.write_atomic(str(tmp_path / "c" / "d"), b"x", durable=durable, tmp_dir=str(tmp_path))
    assert [os.path.dirname(s) for s, _ in renames][-1] == str(tmp_path)
    assert sorted(os.listdir(target.parent)) == ["b"]


@pytest.mark.parametrize("own_tmp", [False, True])
def test_a_durable_write_into_a_removed_directory(
    tmp_path: pathlib.Path, synced: list[str], own_tmp: bool
) -> None:
    """The target's directories are gone (a pruner): re-created, each new
    entry fsynced, the target's directory fsynced after the rename."""
    journal = tmp_path / "journal"
    journal.mkdir()
    target = tmp_path / "x" / "y" / "k"
    atomic.write_atomic(str(target), b"v", durable=True,
                        tmp_dir=None if own_tmp else str(journal))
    assert target.read_bytes() == b"v" and os.listdir(journal) == []
    assert str(target.parent) in synced and synced[-1] == str(target.parent)
    assert str(tmp_path) in synced and str(tmp_path / "x") in synced  # the new entries
    assert sorted(os.listdir(target.parent)) == ["k"]

