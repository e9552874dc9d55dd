"""file_reads._read's system calls, seen by strace (mutation round 14).

Reads below base check for planted symlinks in the open itself (openat2
RESOLVE_NO_SYMLINKS) when base's own path has none; when base is reached
through the user's symlink, openat2 would fail on it every time, so reads
go straight to the lstat walk instead. Both are pinned by syscall counts
(issue 13: a get's hot path), not by timing.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from _strace import traced, window
from persidict.concurrency import atomic

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None or atomic.open_no_symlinks is None,
    reason="needs strace and openat2",
)

_SCRIPT = """
import os, sys
from persidict import FileDirDict
d = FileDirDict(base_dir=sys.argv[1], durable=False)
d[("a", "k")] = 1
assert d[("a", "k")] == 1
os.access("/m14-start", 0)
for _ in range(3):
    assert d[("a", "k")] == 1
os.access("/m14-end", 0)
"""

_STATS = {"lstat", "newfstatat", "stat", "statx", "readlink", "readlinkat"}


def _reads(tmp_path: pathlib.Path, base: pathlib.Path) -> list[tuple[str, str, str]]:
    calls = traced(tmp_path, [], _SCRIPT, str(base))
    return window(calls, "m14", "start", "end")


def test_a_deep_read_is_one_openat2_and_no_stat(tmp_path: pathlib.Path) -> None:
    calls = _reads(tmp_path, tmp_path / "s")
    opens = [c for c in calls if c[0] == "openat2"]
    assert len(opens) == 3 and all(int(c[2]) >= 0 for c in opens)
    assert not [c for c in calls if c[0] in _STATS]


def test_a_read_below_a_linked_base_tries_no_openat2(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    calls = _reads(tmp_path, tmp_path / "link" / "s")
    assert not [c for c in calls if c[0] == "openat2"]
    assert len([c for c in calls if c[0] in ("openat", "open")]) == 3
