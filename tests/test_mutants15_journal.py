"""The crash journal: duties found unchecked by mutation testing (round 15).

Recovery deletes files, so each verdict is tested on real processes: a live
writer whose thread count and memory change after it named its temp (what
a wrong /proc field would mistake for pid reuse), one whose command name
holds ')' and spaces, a zombie, and non-temp entries in the journal.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from persidict.concurrency.journal import Journal, Owner, parse_temp_name, temp_name, verdict

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
