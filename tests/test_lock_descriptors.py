"""Lock descriptors: one per (lock file, thread), clean errors, clear refusals.

Catches (issue 9.4): one descriptor per store *instance* per thread, so
1,100 live subdicts written from one thread exhausted ``ulimit -n 1024``;
and ``_Descriptor.__del__`` printing "Exception ignored ... AttributeError"
after every failed open. (Issue 9.7): a filesystem that refuses record
locks gave a bare ``OSError(37)`` naming nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import subprocess
import sys
import threading

import pytest

from persidict import FileDirDict, NonEmptySafeStrTuple
from persidict.concurrency import locks
from persidict.concurrency.locks import META_DIR, LocksUnsupportedError
from persidict.engine.errors import LockTimeoutError

_OFD_ONLY = pytest.mark.skipif(
    locks.BACKEND != "ofd",
    reason="inspects the OFD lock file (one file, one descriptor per thread); "
    "test_lock_backends.py covers the flock stripes",
)

_MANY_SUBDICTS = """
import os, resource, sys
from persidict import FileDirDict
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
d = FileDirDict(base_dir=sys.argv[1], durable=False)
subs = [d.get_subdict(f"s{i}") for i in range(1100)]
for i, s in enumerate(subs):
    s["k"] = i
assert [s["k"] for s in subs] == list(range(1100))
print(len(os.listdir("/proc/self/fd")))
"""


@pytest.mark.timeout(120)
def test_live_subdicts_share_one_descriptor(tmp_path: pathlib.Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MANY_SUBDICTS, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""
    assert int(out.stdout) < 20  # stdio, the lock file, a few of the interpreter's


_UNOPENABLE = """
import resource, sys
from persidict import FileDirDict
d = FileDirDict(base_dir=sys.argv[1], durable=False)
how = sys.argv[2]
if how == "emfile":
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    hog = []
    try:
        while True:
            hog.append(open("/dev/null"))
    except OSError:
        pass
for attempt in range(3):
    try:
        d["k"] = attempt
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc, flush=True)
    else:
        print("wrote", flush=True)
"""


@_OFD_ONLY
@pytest.mark.parametrize("how", ["lock file is a directory", "emfile"])
def test_unopenable_lock_file_gives_a_clean_error(tmp_path: pathlib.Path, how: str) -> None:
    base = tmp_path / "s"
    FileDirDict(base_dir=base)
    if how != "emfile":
        (base / META_DIR / "lock").mkdir()  # O_RDWR on a directory: EISDIR
    out = subprocess.run(
        [sys.executable, "-c", _UNOPENABLE, str(base), how.split()[0]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no "Exception ignored in ... __del__"
    lines = out.stdout.splitlines()
    want = errno.EMFILE if how == "emfile" else errno.EISDIR
    assert len(lines) == 3 and all(f" {want} " in line for line in lines), lines
    assert all(str(base) in line for line in lines), lines  # names the store


def test_two_threads_still_exclude_each_other(tmp_path: pathlib.Path) -> None:
    """Sharing is per thread: a lock held by one thread blocks another thread
    of the same process, even through the same instance."""
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 0
    _, key_locks, offset = d.byte_store.where(NonEmptySafeStrTuple("k"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with key_locks.hold_at(offset, "k"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        d.lock_timeout = 0.2
        with pytest.raises(LockTimeoutError):
            d["k"] = 1
        other = FileDirDict(base_dir=tmp_path / "s", durable=False)
        other.lock_timeout = 0.2
        with pytest.raises(LockTimeoutError):
            other["k"] = 2
    finally:
        release.set()
        t.join(10)
    assert d["k"] == 0
    d["k"] = 3  # released: both instances write again, in this thread
    other["k"] = 4
    assert d["k"] == 4


@_OFD_ONLY
def test_descriptor_closes_with_the_last_store(tmp_path: pathlib.Path) -> None:
    def fds() -> int:
        """Descriptors of this store's files (other tests' sockets and files come and go)."""
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path))
        return n

    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 1
    opened = fds()
    subs = [d.get_subdict(f"s{i}") for i in range(50)]
    for s in subs:
        s["k"] = 1
    assert fds() == opened
    del d, subs, s
    assert fds() == opened - 1  # nothing keeps the lock file open any more


@_OFD_ONLY
@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EINVAL, errno.ENOSYS])
def test_filesystem_without_locks_is_named(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    real = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: object = 0) -> object:
        if cmd == fcntl.F_OFD_SETLK:
            raise OSError(code, os.strerror(code))
        return real(fd, cmd, arg)  # type: ignore[call-overload]

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    with pytest.raises(OSError) as ei:
        d["k"] = 1
    assert isinstance(ei.value, LocksUnsupportedError) and ei.value.errno == code
    message = str(ei.value)
    assert str(tmp_path / "s") in message and "local filesystem" in message, message
    assert "k" not in d


def test_forked_child_does_not_share_the_parents_lock(tmp_path: pathlib.Path) -> None:
    """The shared descriptor is not shared across fork: a child forked while
    the parent holds a key's lock must wait for it like any other process."""
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = "parent"
    _, key_locks, offset = d.byte_store.where(NonEmptySafeStrTuple("k"))
    with key_locks.hold_at(offset, "k"):
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 3
            try:
                d.lock_timeout = 0.2
                try:
                    d["k"] = "child"
                    code = 1  # took a lock the parent holds
                except LockTimeoutError:
                    d["other"] = "child"
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (d["k"], d["other"]) == ("parent", "child")
