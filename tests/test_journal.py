"""The crash journal: owner-named temp files in ``@persidict/tmp`` and recovery.

Real processes decide liveness here: a temp named by a process that has
exited must be reclaimed, one named by a running process must never be.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import time

import pytest

from persidict import FileDirDict
from persidict.concurrency import journal
from persidict.concurrency.journal import (
    TEMP_PREFIX,
    Journal,
    Owner,
    me,
    parse_temp_name,
    temp_name,
    verdict,
)

_PRINT_NAME = "from persidict.concurrency.journal import temp_name; print(temp_name(), flush=True)"


def _dead_temp_name() -> str:
    """A temp name recorded by a process that has exited (a real dead owner)."""
    out = subprocess.run([sys.executable, "-c", _PRINT_NAME], capture_output=True, check=True)
    return out.stdout.decode().strip()


def _journal_dir(base: pathlib.Path) -> pathlib.Path:
    return base / "@persidict" / "tmp"


def _seed(directory: pathlib.Path, name: str) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"half a value")
    return path


def test_temp_name_records_this_process() -> None:
    name = temp_name()
    assert name.startswith(TEMP_PREFIX) and "@" not in name[1:]
    owner = parse_temp_name(name)
    assert owner == me()
    assert owner is not None and owner.pid == os.getpid() and owner.start > 0
    assert verdict(owner) == "alive"
    assert temp_name() != name  # unique per call


def test_parse_rejects_foreign_names() -> None:
    for name in ["@tmp-123-abcdef", "@tmp-", "tmp-a.1.2.3-x", "@tmp-a.1.x.3-r", "@persidict"]:
        assert parse_temp_name(name) is None, name


def test_dead_and_recycled_owners_are_dead() -> None:
    dead = parse_temp_name(_dead_temp_name())
    assert dead is not None and verdict(dead) == "dead"
    mine = me()
    recycled = Owner(mine.boot, mine.pidns, mine.pid, mine.start + 1)  # same pid, other start
    assert verdict(recycled) == "dead"
    other_boot = Owner("0" * 12, mine.pidns, mine.pid, mine.start)
    assert verdict(other_boot) == "dead"
    other_ns = Owner(mine.boot, mine.pidns + 1, 1, 1)
    assert verdict(other_ns) == "unknown"  # cannot be judged: left alone
    assert verdict(other_ns, age=journal.FOREIGN_STALE_SECONDS + 1) == "dead"


def test_identity_is_recomputed_after_fork() -> None:
    r, w = os.pipe()
    parent = me()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(w, temp_name().encode())
        finally:
            os._exit(0)
    os.close(w)
    name = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    child = parse_temp_name(name)
    assert child is not None and child.pid == pid != parent.pid
    assert verdict(child) == "dead"  # reaped by now


def test_writes_go_through_the_journal_and_leave_nothing(tmp_path: pathlib.Path) -> None:
    d = FileDirDict(base_dir=tmp_path / "s")
    d[("a", "b", "c")] = 1
    d["x"] = 2
    assert _journal_dir(tmp_path / "s").is_dir()
    assert list(_journal_dir(tmp_path / "s").iterdir()) == []
    assert not list((tmp_path / "s").rglob("@tmp*"))


def test_recovery_on_open_removes_dead_temps_only(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = "v"
    dead = _seed(_journal_dir(base), _dead_temp_name())
    live = _seed(_journal_dir(base), temp_name())  # ours: we are alive
    assert len(d) == 1 and list(d) == [("k",)]  # temps are never keys
    FileDirDict(base_dir=base)  # opening recovers
    assert not dead.exists()
    assert live.exists()
    assert FileDirDict(base_dir=base)["k"] == "v"


def test_live_writer_in_another_process_is_never_touched(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    FileDirDict(base_dir=base)["k"] = 1
    script = _PRINT_NAME + "; import sys; sys.stdin.read()"  # alive until stdin closes
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().decode().strip()
        temp = _seed(_journal_dir(base), name)
        FileDirDict(base_dir=base)
        assert Journal(str(base / "@persidict")).recover() == []
        report = FileDirDict(base_dir=base).check(fix=True)
        assert temp.exists() and report.clean and report.live_temps == 1
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    assert Journal(str(base / "@persidict")).recover() == [str(temp)]
    assert not temp.exists()


def test_lazy_recovery_from_the_write_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base)
    d["k"] = 0
    dead = _seed(_journal_dir(base), _dead_temp_name())  # appears after our open
    d["k"] = 1
    assert dead.exists()  # not yet: lazy recovery is rate limited
    monkeypatch.setattr(d.byte_store.journal, "_next_lazy", time.monotonic() - 1)
    d["k"] = 2
    assert not dead.exists()


def test_subdict_shares_the_root_journal(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    sub = FileDirDict(base_dir=base).get_subdict("p")
    sub["q"] = 1
    assert not (pathlib.Path(sub.base_dir) / "@persidict").exists()
    dead = _seed(_journal_dir(base), _dead_temp_name())
    report = sub.check()
    assert [f.kind for f in report.findings] == ["dead_intent"]
    sub.check(fix=True)
    assert not dead.exists()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second filesystem")
def test_cross_device_key_directory_falls_back_to_a_local_temp(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key directory on another filesystem (a mount point inside the store):
    the rename from the journal fails with EXDEV, injected here because a
    symlink is not a key directory (it is refused) and mounting needs root."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=0)
    (base / "m").mkdir()
    journal_dir = str(_journal_dir(base))
    real_replace = os.replace
    exdev: list[str] = []

    def replace(src: str, dst: str) -> None:
        if str(src).startswith(journal_dir) and os.path.dirname(dst) == str(base / "m"):
            exdev.append(dst)
            raise OSError(errno.EXDEV, "Invalid cross-device link", src)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    d[("m", "k")] = "far"
    d[("m", "k")] = "far 2"
    assert d[("m", "k")] == "far 2"
    assert len(exdev) == 1  # the directory is remembered as cross-device
    assert [p.name for p in (base / "m").iterdir()] == ["k.pkl"]
    assert list(_journal_dir(base).iterdir()) == []


def test_a_failed_write_leaves_no_temp(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, digest_len=0)
    (base / "f").write_bytes(b"a file where a key directory should be")
    with pytest.raises(OSError):
        d[("f", "k")] = 1
    assert list(_journal_dir(base).iterdir()) == []
