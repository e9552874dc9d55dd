"""Durability proven by the syscall order, observed with ``strace -f``.

A child process writes under strace between marker syscalls
(``access("/persidict-marker-…")``). Durable: the temp file is fsynced before
the rename, the key's directory after it, a directory created on the way
is fsynced into its parent, and a delete fsyncs its directory - all before
the call returns (before the next marker). Not durable: no fsync at all.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from _strace import Call, traced, window

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")

_SCRIPT = r"""
import os, sys
from persidict import FileDirDict
d = FileDirDict(base_dir=sys.argv[1], durable=sys.argv[2] == "1", digest_len=0)
d["warm"] = 0  # imports, lock file and journal directory exist from here on
def mark(name):
    os.access("/persidict-marker-" + name, os.F_OK)
mark("new-dir")
d[("sub", "k")] = b"x" * 5000
mark("overwrite")
d["warm"] = 1
mark("delete")
del d["warm"]
mark("end")
"""

_TRACED = ("trace=openat,open,fsync,fdatasync,sync_file_range,rename,renameat,renameat2,"
           "mkdir,mkdirat,unlink,unlinkat,access,faccessat,faccessat2,close")


def _trace(tmp_path: pathlib.Path, durable: bool) -> list[Call]:
    return traced(tmp_path, ["-f", "-s", "256", "-e", _TRACED], _SCRIPT,
                  str(tmp_path / "store"), "1" if durable else "0")


def _window(calls: list[Call], start: str, end: str) -> list[Call]:
    return window(calls, "persidict-marker", start, end)


def _index(calls: list[tuple[str, str, str]], pred: object) -> int:
    hits = [n for n, c in enumerate(calls) if pred(*c)]  # type: ignore[operator]
    assert hits, f"no matching syscall in {calls}"
    return hits[0]


def _opened_fd(calls: list[tuple[str, str, str]], needle: str) -> tuple[int, str]:
    n = _index(calls, lambda sc, args, ret: sc in ("openat", "open") and needle in args
               and int(ret) >= 0)  # fmt: skip
    return n, calls[n][2]


def _check_durable_write(calls: list[tuple[str, str, str]], target: str) -> None:
    """fsync(temp) -> rename(temp, target) -> fsync(target's directory), in order."""
    i_tmp, tmp_fd = _opened_fd(calls, "/@persidict/tmp/@tmp-")
    assert "O_EXCL" in calls[i_tmp][1]
    i_sync_tmp = _index(calls, lambda sc, args, ret: sc == "fsync" and args == tmp_fd)
    i_rename = _index(
        calls, lambda sc, args, ret: sc.startswith("rename") and target in args and ret == "0"
    )
    assert "/@persidict/tmp/@tmp-" in calls[i_rename][1]
    directory = target.rsplit("/", 1)[0]
    after = calls[i_rename + 1 :]
    i_dir, dir_fd = _opened_fd(after, f'"{directory}"')
    assert "O_DIRECTORY" in after[i_dir][1]
    i_sync_dir = _index(after, lambda sc, args, ret: sc == "fsync" and args == dir_fd)
    assert i_tmp < i_sync_tmp < i_rename < i_rename + 1 + i_dir < i_rename + 1 + i_sync_dir


def test_durable_write_fsyncs_temp_before_rename_and_dir_after(tmp_path: pathlib.Path) -> None:
    calls = _trace(tmp_path, durable=True)
    base = str(tmp_path / "store")

    new_dir = _window(calls, "new-dir", "overwrite")
    _check_durable_write(new_dir, f"{base}/sub/k.pkl")
    # The new directory is fsynced into its parent before the call returns.
    i_mkdir = _index(new_dir, lambda sc, args, ret: sc.startswith("mkdir") and "/sub" in args)
    rest = new_dir[i_mkdir + 1 :]
    i_base, base_fd = _opened_fd(rest, f'"{base}"')
    _index(rest[i_base:], lambda sc, args, ret: sc == "fsync" and args == base_fd)

    _check_durable_write(_window(calls, "overwrite", "delete"), f"{base}/warm.pkl")

    delete = _window(calls, "delete", "end")
    i_unlink = _index(delete, lambda sc, args, ret: sc.startswith("unlink") and "warm.pkl" in args)
    after = delete[i_unlink + 1 :]
    i_dir, dir_fd = _opened_fd(after, f'"{base}"')
    _index(after[i_dir:], lambda sc, args, ret: sc == "fsync" and args == dir_fd)


def test_no_fsync_when_not_durable(tmp_path: pathlib.Path) -> None:
    calls = _trace(tmp_path, durable=False)
    window = _window(calls, "new-dir", "end")
    renames = [c for c in window if c[0].startswith("rename") and c[2] == "0"]
    assert len(renames) == 2 and all("/@persidict/tmp/@tmp-" in c[1] for c in renames)
    syncs = [c for c in window if c[0] in ("fsync", "fdatasync", "sync_file_range")]
    assert syncs == [], syncs
