"""Lock backends per platform (issue 12): the choice at import, the flock
stripes, a simulated macOS (fcntl without F_OFD_*) and Windows (no fcntl).

The simulations run in subprocesses that replace ``fcntl`` in sys.modules
before importing persidict, so the choice made at import is the one seen.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import pytest

from persidict.concurrency import locks_flock
from persidict.concurrency.locks_common import LocksUnsupportedError, lock_offset
from persidict.engine.errors import LockTimeoutError

_FAKE_MACOS = """
import fcntl, sys, types
fake = types.ModuleType("fcntl")
for name in dir(fcntl):
    if not name.startswith("F_OFD_"):
        setattr(fake, name, getattr(fcntl, name))
sys.modules["fcntl"] = fake
"""

_FAKE_WINDOWS = """
import os, sys
sys.modules["fcntl"] = None  # import fcntl raises ImportError
del os.register_at_fork
del os.fork
"""

_COUNTERS = """
import os, threading, sys
import persidict
from persidict.concurrency import locks
print("backend", locks.BACKEND)
base, n_keys, n_incr = sys.argv[1], 3, 40

def inc(v):
    return (v if isinstance(v, int) else 0) + 1

def work():
    d = persidict.FileDirDict(base_dir=base, durable=False)
    for i in range(n_incr):
        d.transform_item(f"k{i % n_keys}", transformer=inc, n_retries=None)

pids = []
for _ in range(4):  # 4 processes x 2 threads
    pid = os.fork()
    if pid == 0:
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        os._exit(0)
    pids.append(pid)
for pid in pids:
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
d = persidict.FileDirDict(base_dir=base, durable=False)
print("total", sum(d[f"k{i}"] for i in range(n_keys)))
print("files", sorted(os.listdir(os.path.join(base, "@persidict"))))
"""


def _run(prelude: str, body: str, *args: str, env: dict[str, str] | None = None) -> str:
    code = textwrap.dedent(prelude) + textwrap.dedent(body)
    full_env = {k: v for k, v in os.environ.items() if k != "PERSIDICT_LOCKS"}
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
        env=full_env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_simulated_macos_picks_flock_and_is_atomic(tmp_path: pathlib.Path) -> None:
    out = _run(_FAKE_MACOS, _COUNTERS, str(tmp_path / "s"))
    assert "backend flock" in out, out
    assert "total 320" in out, out  # 4 processes x 2 threads x 40 increments, none lost
    assert "lock-" in out and "'lock'" not in out, out  # stripe files, no OFD lock file


def test_forced_flock_on_linux_is_atomic(tmp_path: pathlib.Path) -> None:
    out = _run("", _COUNTERS, str(tmp_path / "s"), env={"PERSIDICT_LOCKS": "flock"})
    assert "backend flock" in out and "total 320" in out, out


def test_simulated_windows_imports_and_refuses_filedirdict(tmp_path: pathlib.Path) -> None:
    body = """
    import os, sys
    import persidict
    from persidict import BasicS3Dict, FileDirDict, LocalDict
    from persidict.concurrency import locks
    assert locks.BACKEND == "none", locks.BACKEND
    d = LocalDict()
    d["a"] = 1
    assert d["a"] == 1 and d.transform_item("a", transformer=lambda v: v + 1).new_value == 2
    base = os.path.join(sys.argv[1], "s")
    try:
        FileDirDict(base_dir=base)
    except NotImplementedError as exc:
        msg = str(exc)
        assert sys.platform in msg and "LocalDict" in msg and "BasicS3Dict" in msg, msg
        assert "WSL" in msg, msg
    else:
        raise AssertionError("FileDirDict constructed without file locks")
    assert not os.path.exists(base), "refused after making the directory"
    print("ok", BasicS3Dict.__name__)
    """
    assert "ok BasicS3Dict" in _run(_FAKE_WINDOWS, body, str(tmp_path))


@pytest.mark.parametrize(("value", "backend"), [("flock", "flock"), ("OFD", "ofd"), ("", "ofd")])
def test_env_var_selects_the_backend(value: str, backend: str) -> None:
    body = "from persidict.concurrency import locks; print(locks.BACKEND)"
    assert _run("", body, env={"PERSIDICT_LOCKS": value}).split() == [backend]


def test_unknown_env_value_refuses_filedirdict_but_not_import(tmp_path: pathlib.Path) -> None:
    body = """
    import sys
    import persidict
    persidict.LocalDict()["a"] = 1
    try:
        persidict.FileDirDict(base_dir=sys.argv[1])
    except ValueError as exc:
        assert "PERSIDICT_LOCKS='fcntl'" in str(exc), exc
        print("refused")
    """
    assert "refused" in _run("", body, str(tmp_path / "s"), env={"PERSIDICT_LOCKS": "fcntl"})


def test_ofd_forced_without_ofd_refuses(tmp_path: pathlib.Path) -> None:
    body = """
    import sys, persidict
    try:
        persidict.FileDirDict(base_dir=sys.argv[1])
    except ValueError as exc:
        assert "F_OFD_SETLK" in str(exc), exc
        print("refused")
    """
    out = _run(_FAKE_MACOS, body, str(tmp_path / "s"), env={"PERSIDICT_LOCKS": "ofd"})
    assert "refused" in out


def _names_on_one_stripe() -> tuple[str, str]:
    first: dict[int, str] = {}
    for i in range(1000):
        name = f"n{i}"
        stripe = lock_offset(name) % locks_flock.STRIPES
        if stripe in first:
            return first[stripe], name
        first[stripe] = name
    raise AssertionError("unreachable: 1000 names on 64 stripes")


def _free_from_another_thread(locks: locks_flock.KeyLocks, name: str) -> bool:
    out: list[bool] = []

    def probe() -> None:
        try:
            with locks.hold(name):
                out.append(True)
        except LockTimeoutError:
            out.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out[0]


def test_two_names_of_one_stripe_nest_in_one_thread(tmp_path: pathlib.Path) -> None:
    """Nested holds of two names sharing a stripe are no re-entry: no error, no
    self-deadlock, and the stripe stays locked until the outer hold ends."""
    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"), timeout=0.2)
    a, b = _names_on_one_stripe()
    with locks.hold(a):
        with locks.hold(b):
            assert not _free_from_another_thread(locks, a)
        assert not _free_from_another_thread(locks, b)  # inner release kept the flock
        with pytest.raises(RuntimeError, match="already held"), locks.hold(a):
            pass
    assert _free_from_another_thread(locks, a) and _free_from_another_thread(locks, b)


def test_a_thread_keeps_few_stripe_descriptors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "@persidict").mkdir()
    locks = locks_flock.KeyLocks(str(tmp_path / "@persidict" / "lock"))
    before = len(os.listdir("/proc/self/fd"))
    for i in range(500):
        with locks.hold(f"n{i}"):
            pass
    assert len(os.listdir(tmp_path / "@persidict")) == locks_flock.STRIPES
    assert len(os.listdir("/proc/self/fd")) - before <= locks_flock._OPEN_MAX


def test_flock_refused_by_the_filesystem_is_named(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s" / "@persidict").mkdir(parents=True)
    locks = locks_flock.KeyLocks(str(tmp_path / "s" / "@persidict" / "lock"))

    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(locks_flock.fcntl, "flock", refuse)
    with pytest.raises(LocksUnsupportedError) as ei, locks.hold("k"):
        pass
    assert ei.value.errno == errno.ENOLCK
    assert str(tmp_path / "s") in str(ei.value) and "flock(2)" in str(ei.value)
