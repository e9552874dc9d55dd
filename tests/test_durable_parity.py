"""A durable write makes the fsync floor's file syscalls and no others (issue 13).

Issue 13 asks durable writes to stay within 1.1x of bare
write+fsync+rename+fsync-dir. Timing cannot be asserted, but the work can:
a child process under ``strace -e trace=%file,%desc`` writes a new key and
overwrites one with ``FileDirDict(durable=True)``, then does the same with
bare ``os`` calls, between marker syscalls. Apart from taking and releasing
the key's lock, ours must issue the same file and descriptor syscalls in the
same order, and write each value in one whole ``write`` (no second
encoding, no copy written in pieces, no read of the old file, no extra
fsync or stat).
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from _strace import Call, traced, window

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")

_SCRIPT = r"""
import os, pickle, sys
from persidict import FileDirDict
root, size = sys.argv[1], int(sys.argv[2])
value = bytes(range(256)) * (size // 256) or b"v" * size
d = FileDirDict(base_dir=root + "/ours", durable=True)
os.mkdir(root + "/floor")
n = 0
def floor(key):
    global n
    n += 1
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = f"{root}/floor/@tmp-{n}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, f"{root}/floor/{key}.pkl")
    dfd = os.open(root + "/floor", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
d["old"] = value  # imports, lock file and journal directory exist from here on
floor("old")
def mark(name):
    os.access("/persidict-parity-" + name, os.F_OK)
mark("ours-new"); d["new"] = value
mark("floor-new"); floor("new")
mark("ours-overwrite"); d["old"] = value
mark("floor-overwrite"); floor("old")
mark("end")
"""

_LOCKS = ("F_OFD_SETLK", "F_SETLK", "F_OFD_SETLKW", "F_SETLKW")


def _trace(tmp_path: pathlib.Path, size: int) -> list[Call]:
    return traced(tmp_path, ["-s", "0", "-e", "trace=%file,%desc"], _SCRIPT,
                  str(tmp_path), str(size))


def _window(calls: list[Call], start: str, end: str) -> list[Call]:
    return window(calls, "persidict-parity", start, end)


def _is_lock(sc: str, args: str) -> bool:
    return sc == "flock" or (sc == "fcntl" and any(x in args for x in _LOCKS))


def _io(window: list[tuple[str, str, str]]) -> tuple[list[str], list[int]]:
    """(syscall names without the lock's, the sizes of the writes)."""
    names = [sc for sc, args, _ in window if not _is_lock(sc, args)]
    return names, [int(ret) for sc, _, ret in window if sc == "write"]


@pytest.mark.parametrize("size", [100, 1 << 20])
def test_durable_write_makes_the_floors_syscalls(tmp_path: pathlib.Path, size: int) -> None:
    calls = _trace(tmp_path, size)
    for op, nxt in (("new", "overwrite"), ("overwrite", "end")):
        ours = _window(calls, f"ours-{op}", f"floor-{op}")
        floor = _window(calls, f"floor-{op}", f"ours-{nxt}" if nxt != "end" else "end")
        ours_names, ours_writes = _io(ours)
        floor_names, floor_writes = _io(floor)
        assert ours_names == floor_names, (op, ours, floor)
        assert ours_writes == floor_writes and len(ours_writes) == 1, (op, ours, floor)
        locks = [args for sc, args, _ in ours if _is_lock(sc, args)]
        assert len(locks) == 2, (op, ours)  # the key's lock, taken and released
