"""The crash journal: duties found unchecked by mutation testing (round 15).

Recovery deletes files, so each verdict is tested on real processes: a live
writer whose thread count and memory change after it named its temp (what
a wrong /proc field would mistake for pid reuse), one whose command name
holds ')' and spaces, a zombie, and non-temp entries in the journal.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from persidict import FileDirDict
from persidict.backends.file_bytes import FileBytes
from persidict.concurrency.journal import (
    FOREIGN_STALE_SECONDS,
    Journal,
    Owner,
    parse_temp_name,
    temp_name,
    verdict,
)

# Names a temp, then changes what /proc/<pid>/stat says about it besides its
# start time (threads, memory), then waits for stdin to close.
_LIVE_WRITER = r"""
import sys, threading
comm = sys.argv[1]
if comm:
    with open("/proc/self/comm", "w") as f:
        f.write(comm)
from persidict.concurrency.journal import temp_name
name = temp_name()
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(3)]
for t in threads:
    t.start()
ballast = bytearray(64 << 20)
print(name, flush=True)
sys.stdin.read()
stop.set()
"""


def _start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, split after the command's last ')' (proc(5))."""
    raw = pathlib.Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2 :].split()[19])


def _live_writer(comm: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, comm],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _judge_live_writer(tmp_path: pathlib.Path, comm: str) -> None:
    journal = tmp_path / "@persidict" / "tmp"
    journal.mkdir(parents=True)
    proc = _live_writer(comm)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().decode().strip()
        owner = parse_temp_name(name)
        assert owner is not None and owner.pid == proc.pid
        assert owner.start == _start_time(proc.pid), "the owner's start time is field 22"
        temp = journal / name
        temp.write_bytes(b"in flight")
        assert verdict(owner) == "alive"
        assert Journal(str(tmp_path / "@persidict")).recover() == []
        assert temp.read_bytes() == b"in flight"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    assert verdict(owner) == "dead"
    assert Journal(str(tmp_path / "@persidict")).recover() == [str(temp)]


def test_a_live_writer_whose_threads_and_memory_changed_is_alive(
    tmp_path: pathlib.Path,
) -> None:
    _judge_live_writer(tmp_path, "")


def test_a_live_writer_named_with_parentheses_and_spaces_is_alive(
    tmp_path: pathlib.Path,
) -> None:
    """The command name may hold ') ' and numbers: fields are counted after the last ')'."""
    _judge_live_writer(tmp_path, "w) 1 2 3 (x) 4")


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_without_proc_start_times_a_gone_pid_is_dead_and_reclaimed(
    tmp_path: pathlib.Path,
) -> None:
    """A temp written where /proc was unavailable records start 0: the pid decides."""
    me = parse_temp_name(temp_name())
    assert me is not None
    gone = Owner(me.boot, me.pidns, _exited_pid(), 0)
    alive = Owner(me.boot, me.pidns, os.getpid(), 0)
    assert verdict(gone) == "dead" and verdict(alive) == "alive"
    journal = tmp_path / "@persidict" / "tmp"
    journal.mkdir(parents=True)
    for owner in (gone, alive):
        (journal / f"@tmp-{owner.tag}-abc0").write_bytes(b"x")
    assert Journal(str(tmp_path / "@persidict")).recover() == [
        str(journal / f"@tmp-{gone.tag}-abc0")
    ]
    assert (journal / f"@tmp-{alive.tag}-abc0").exists()


_JUDGE_AS_NOBODY = r"""
import os, sys
from persidict.concurrency.journal import Owner, me, verdict
mine = me()
os.setgid(65534)
os.setuid(65534)  # now kill(pid, 0) on a root process fails with EPERM
print(verdict(Owner(mine.boot, mine.pidns, int(sys.argv[1]), 0)), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_live_process_of_another_user_is_alive() -> None:
    """kill(pid, 0) refused (EPERM) proves the process exists: its temp must stay."""
    out = subprocess.run([sys.executable, "-c", _JUDGE_AS_NOBODY, str(os.getpid())],
                         capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().strip() == "alive", out.stderr.decode()


_PRINT_NAME = "from persidict.concurrency.journal import temp_name; print(temp_name(), flush=True)"


def test_a_killed_writer_not_yet_reaped_is_dead(tmp_path: pathlib.Path) -> None:
    """SIGKILLed and left a zombie by its parent: its temp is reclaimed at once."""
    proc = subprocess.Popen([sys.executable, "-c", _PRINT_NAME + "; import time; time.sleep(60)"],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().decode().strip()
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(500):  # until the kernel has made it a zombie (bounded)
            if pathlib.Path(f"/proc/{proc.pid}/stat").read_bytes().split(b") ")[1][:1] == b"Z":
                break
            time.sleep(0.01)
        owner = parse_temp_name(name)
        assert owner is not None and verdict(owner) == "dead"
        journal = tmp_path / "@persidict" / "tmp"
        journal.mkdir(parents=True)
        (journal / name).write_bytes(b"x")
        assert Journal(str(tmp_path / "@persidict")).recover() == [str(journal / name)]
    finally:
        proc.kill()
        proc.wait(30)


def _foreign_temp_name() -> str | None:
    """The temp name of a real process in another pid namespace (None: not permitted)."""
    if not shutil.which("unshare"):
        return None
    out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                          _PRINT_NAME], capture_output=True, timeout=60)
    name = out.stdout.decode().strip()
    return name if out.returncode == 0 and parse_temp_name(name) is not None else None


def test_foreign_namespace_temps_go_only_when_stale_and_non_temps_stay(
    tmp_path: pathlib.Path,
) -> None:
    """Recovery removes a temp of another pid namespace only after FOREIGN_STALE_SECONDS
    untouched, and never an entry that is no temp at all."""
    fresh_name, stale_name = _foreign_temp_name(), _foreign_temp_name()
    if fresh_name is None or stale_name is None:
        pytest.skip("unshare --pid is not permitted here")
    journal = tmp_path / "@persidict" / "tmp"
    journal.mkdir(parents=True)
    fresh, stale, notes = journal / fresh_name, journal / stale_name, journal / "notes"
    for p in (fresh, stale, notes):
        p.write_bytes(b"x")
    old = time.time() - FOREIGN_STALE_SECONDS - 60
    os.utime(stale, (old, old))
    (journal / "@tmp-subdir").mkdir()
    assert Journal(str(tmp_path / "@persidict")).recover() == [str(stale)]
    assert fresh.exists() and notes.exists() and (journal / "@tmp-subdir").is_dir()
    FileDirDict(base_dir=tmp_path)  # opening recovers too
    assert fresh.exists() and notes.exists()


def _dead_names(count: int) -> list[str]:
    code = _PRINT_NAME.replace("print(temp_name()",
                               f"print(*[temp_name() for _ in range({count})]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         timeout=60)
    return out.stdout.decode().split()


def test_an_entry_recovery_cannot_remove_does_not_stop_it(tmp_path: pathlib.Path) -> None:
    """A directory under a dead temp's name (an outside hand's) is left; the rest go."""
    journal = tmp_path / "@persidict" / "tmp"
    journal.mkdir(parents=True)
    names = _dead_names(9)
    (journal / names[0]).mkdir()
    (journal / names[0] / "f").write_bytes(b"not ours")
    for name in names[1:]:
        (journal / name).write_bytes(b"x")
    assert sorted(Journal(str(tmp_path / "@persidict")).recover()) == sorted(
        str(journal / n) for n in names[1:]
    )
    assert (journal / names[0] / "f").read_bytes() == b"not ours"


_LAZY_WRITER = r"""
import os, sys, time
from persidict import FileDirDict
from persidict.backends.file_bytes import FileBytes
base = sys.argv[1]
d = FileDirDict(base_dir=base, durable=False)
d["k"] = 0  # warm-up: every module a write needs is imported now
for dirpath, dirnames, filenames in os.walk(base):
    for n in dirnames + filenames:
        os.chmod(os.path.join(dirpath, n), 0o777 if n in dirnames else 0o666)
os.chmod(base, 0o777)
os.chmod(os.path.join(base, "@persidict", "tmp"), 0o733)  # temps can be made, not listed
os.setgid(65534)
os.setuid(65534)
d.byte_store.journal._next_lazy = time.monotonic() - 1  # the lazy pass is due
d["k"] = 1
print(d["k"], flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_failing_lazy_recovery_never_fails_the_committed_write() -> None:
    """The journal cannot be listed (EACCES) by a writer that may create temps in it."""
    with tempfile.TemporaryDirectory() as top:  # not below pytest's 0o700 directories
        base = pathlib.Path(top) / "s"
        base.mkdir()
        os.chmod(top, 0o755)
        out = subprocess.run([sys.executable, "-c", _LAZY_WRITER, str(base)],
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and out.stdout.decode().strip() == "1", out.stderr.decode()
        assert FileDirDict(base_dir=base)["k"] == 1


def test_a_name_without_its_random_part_is_not_a_temp(tmp_path: pathlib.Path) -> None:
    """'@tmp-<owner>' lacks the '-<salt><n>' every temp has: not ours, never removed."""
    [dead] = _dead_names(1)
    journal = tmp_path / "@persidict" / "tmp"
    journal.mkdir(parents=True)
    bare = journal / dead.rpartition("-")[0]
    bare.write_bytes(b"someone's file")
    assert parse_temp_name(bare.name) is None
    assert Journal(str(tmp_path / "@persidict")).recover() == []
    assert bare.exists()


def test_lazy_recovery_runs_once_per_interval(tmp_path: pathlib.Path) -> None:
    """After a lazy pass the next is LAZY_INTERVAL away: writes do not list the journal."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, durable=False)
    d["k"] = 0
    first, second = (base / "@persidict" / "tmp" / n for n in _dead_names(2))
    first.write_bytes(b"x")
    store = d.byte_store
    assert isinstance(store, FileBytes)
    store.journal._next_lazy = time.monotonic() - 1  # due now
    d["k"] = 1
    assert not first.exists()
    second.write_bytes(b"x")
    for i in range(3):
        d["k"] = i
    assert second.exists()
