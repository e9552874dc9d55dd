"""memoize: single-flight across threads and real processes, takeover after SIGKILL.

The oracle is the computations' own O_APPEND log (``_memo_workers``), never
the store: a duplicate computation shows as two ``done`` lines for one key.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import _memo_workers as w
from persidict import FileDirDict, LocalDict, MutableDictCached, PersiDict
from persidict.memoization import memoize

CTX = multiprocessing.get_context("spawn")


def _done(log: str) -> collections.Counter[str]:
    return collections.Counter(line[1] for line in w.read_log(log) if line[0] == "done")


def _wait_for(log: str, word: str, count: int = 1, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while sum(1 for line in w.read_log(log) if line[0] == word) < count:
        assert time.monotonic() < deadline, f"no {word!r} line in {limit} s: {w.read_log(log)}"
        time.sleep(0.02)


def _wait_for_lock_file(pid: int, limit: float = 60.0) -> None:
    """Until ``pid`` has the memo lock file open: it opens it right before its
    first attempt at the lock (where /proc is missing, not at all)."""
    fds = f"/proc/{pid}/fd"
    if not os.path.isdir(fds):
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):  # closed meanwhile
                if os.readlink(f"{fds}/{fd}").endswith("/memo-lock"):
                    return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never opened the memo lock file in {limit} s")


@pytest.fixture(params=["file", "local"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> PersiDict:
    if request.param == "file":
        return FileDirDict(base_dir=str(tmp_path / "store"))
    return LocalDict()


def test_four_processes_twenty_keys_compute_each_once(tmp_path: pathlib.Path) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    log = str(tmp_path / "log")
    keys = list(range(20))
    with ProcessPoolExecutor(4, mp_context=CTX) as pool:
        outs = [f.result(timeout=120) for f in
                [pool.submit(w.run_keys, store, log, keys, 0.2) for _ in range(4)]]
    done = _done(log)
    assert sorted(done) == sorted(str(k) for k in keys)
    assert set(done.values()) == {1}, done  # exactly 20 computations
    assert sum(o["stats"]["misses"] for o in outs) == 20
    assert all(o["results"] == {k: k * k for k in keys} for o in outs)


def test_sigkill_of_the_computer_lets_a_waiter_take_over(tmp_path: pathlib.Path) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    log = str(tmp_path / "log")
    computer = CTX.Process(target=w.call_once, args=(store, log, 7, 3600.0, 30.0))
    computer.start()
    _wait_for(log, "start")
    waiter = CTX.Process(target=w.call_once, args=(store, log, 7, 0.0, 30.0))
    waiter.start()
    _wait_for(log, "calling", 2)
    assert waiter.pid is not None
    _wait_for_lock_file(waiter.pid)  # a waiter that comes late computes as a plain miss
    time.sleep(0.5)  # and the attempt that follows the open
    assert computer.pid is not None
    os.kill(computer.pid, signal.SIGKILL)
    computer.join(30)
    waiter.join(60)
    if waiter.is_alive():  # stuck: it never took over
        waiter.kill()
        waiter.join()
    assert waiter.exitcode == 0
    lines = w.read_log(log)
    returned = [line for line in lines if line[0] == "returned"]
    assert returned == [["returned", "7", str(waiter.pid), "49", "1", "0"]], lines
    assert _done(log) == {"7": 1}
    assert store[memoize(store, name="tests.expensive")(w.expensive).key_for(7, log)] == 49


def test_eight_threads_one_key_compute_once(store: PersiDict) -> None:
    computed: list[int] = []
    barrier = threading.Barrier(8)

    @memoize(store)
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.2)
        return -x

    got: list[int] = []

    def call() -> None:
        barrier.wait()
        got.append(slow(5))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == [5]
    assert got == [-5] * 8
    stats = slow.stats()
    assert stats["misses"] == 1 and stats["hits"] + stats["waits"] == 7


def test_expired_entry_is_recomputed_once(store: PersiDict) -> None:
    computed: list[int] = []

    @memoize(store, expire=2.0)
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.1)
        return len(computed)

    assert slow(1) == 1
    assert slow(1) == 1 and computed == [1]
    time.sleep(2.1)
    barrier = threading.Barrier(6)
    got: list[int] = []

    def call() -> None:
        barrier.wait()
        got.append(slow(1))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == [1, 1]
    assert got == [2] * 6


def test_an_exception_is_not_cached_and_a_waiter_computes(store: PersiDict) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(4)

    @memoize(store)
    def flaky(x: int) -> int:
        calls.append(x)
        time.sleep(0.2)
        if len(calls) == 1:
            raise RuntimeError("first computation fails")
        return x + 1

    outcomes: list[Any] = []

    def call() -> None:
        barrier.wait()
        try:
            outcomes.append(flaky(1))
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2, calls
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert sorted(o for o in outcomes if isinstance(o, int)) == [2, 2, 2]
    assert flaky.stats()["takeovers"] == 1
    assert list(store.keys()) == [flaky.key_for(1)]


def test_exception_alone_leaves_nothing_and_the_next_call_computes(store: PersiDict) -> None:
    calls: list[int] = []

    @memoize(store)
    def once_bad(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("bad")
        return x

    with pytest.raises(ValueError, match="bad"):
        once_bad(3)
    assert len(store) == 0
    assert once_bad(3) == 3 and once_bad(3) == 3
    assert calls == [3, 3]
    assert once_bad.stats() == {"hits": 1, "misses": 1, "waits": 0, "takeovers": 0}


def test_keys_are_stable_and_bound_to_the_signature(store: PersiDict) -> None:
    def g(a: int, b: int = 2, *rest: int, c: Any = None, **kw: Any) -> int:
        return a

    f = memoize(store)(g)
    assert f.key_for(1) == f.key_for(a=1) == f.key_for(1, 2)
    assert f.key_for(1, c={"y": 1, "x": 2}) == f.key_for(1, c={"x": 2, "y": 1})
    assert f.key_for(1, c={"a", "b", "c"}) == f.key_for(1, c={"c", "b", "a"})
    s1, s2 = "ab" * 40, "".join(["ab"] * 40)  # equal values, distinct objects
    assert f.key_for(1, c=(s1, s1)) == f.key_for(1, c=(s1, s2))
    assert f.key_for(1) != f.key_for(1, 3)
    name, digest = f.key_for(1).strings
    assert name.endswith("test_keys_are_stable_and_bound_to_the_signature._locals_.g")
    # A fixed value: a digest that changes between runs or versions breaks every cache.
    assert memoize(store, name="n")(g).key_for(1).strings[1] == (
        "9c2094c12ff453336565f6a57274d06b72eb1972"
    )
    assert len(digest) == 40


_KEY_IN_A_FRESH_RUN = """
from persidict import LocalDict
from persidict.memoization import memoize
def g(a, c=None):
    return a
print(memoize(LocalDict(), name="n")(g).key_for(1, c=[{"x", "y", "zz"}, {"k": frozenset("abc")}]))
"""


def test_keys_of_sets_agree_between_runs_with_other_hash_seeds() -> None:
    keys = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _KEY_IN_A_FRESH_RUN], env=env,
                             capture_output=True, text=True, check=True)
        keys.add(out.stdout)
    assert len(keys) == 1, keys


def test_bad_arguments_are_refused(store: PersiDict) -> None:
    with pytest.raises(TypeError):
        memoize({})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        memoize(store, expire=0)
    with pytest.raises(TypeError):
        memoize(store, lease_timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        memoize(store, name="a/b")


def test_eight_threads_over_a_wrapper_compute_once(tmp_path: pathlib.Path) -> None:
    # A wrapper is no FileDirDict: its claims are leases, written through it to main.
    wrapped = MutableDictCached(main_dict=FileDirDict(base_dir=str(tmp_path / "main")),
                                data_cache=LocalDict(), etag_cache=LocalDict())
    computed: list[int] = []
    barrier = threading.Barrier(8)

    @memoize(wrapped, lease_timeout=5.0)
    def slow(x: int) -> int:
        computed.append(x)
        time.sleep(0.2)
        return x

    def call() -> None:
        barrier.wait()
        assert slow(1) == 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == [1]
    assert list(wrapped.keys()) == [slow.key_for(1)]  # the lease is gone


class _Scaler:
    """Module level, so its instances pickle (``self`` is part of a method's key)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def times(self, x: int) -> int:
        return self.k * x


def test_a_memoized_method_binds_self(store: PersiDict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Scaler, "times", memoize(store)(_Scaler.times))
    Scaler = _Scaler
    assert Scaler(3).times(2) == 6
    assert Scaler(4).times(2) == 8  # self is part of the key
    assert Scaler(3).times(2) == 6


_NESTED_ON_FLOCK = """
import sys, threading, time
from persidict import FileDirDict, memoize
store = FileDirDict(base_dir=sys.argv[1])
inner_started, release = threading.Event(), threading.Event()

@memoize(store, lease_timeout=0.5)
def inner(x):
    if x == 1 and threading.current_thread().name == "holder":
        inner_started.set()
        release.wait(60)  # held until the main thread's outer call is done
    return -x

@memoize(store, lease_timeout=0.5)
def outer(x):
    return inner(1) * 10

holder = threading.Thread(target=inner, args=(1,), name="holder")
holder.start()
inner_started.wait(60)
print(outer(0))  # a nested wait on a held lock: bounded on flock stripes
release.set()
holder.join()
print(outer.stats()["misses"], inner.stats()["misses"])
"""


def test_a_nested_wait_on_flock_stripes_is_bounded(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PERSIDICT_LOCKS": "flock"}
    out = subprocess.run([sys.executable, "-c", _NESTED_ON_FLOCK, str(tmp_path / "s")],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["-10", "1", "2"], out.stdout + out.stderr


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_a_thread_computes_is_not_blocked() -> None:
    store = LocalDict()
    started, release = threading.Event(), threading.Event()

    @memoize(store)
    def slow(x: int) -> int:
        if threading.current_thread().name == "computer":
            started.set()
            release.wait(30)
        return x

    computer = threading.Thread(target=slow, args=(1,), name="computer")
    computer.start()
    started.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: its copy of the store has no result and nobody computing it
        code = 1
        try:
            signal.alarm(20)  # a child stuck on the parent's lock dies instead of hanging
            code = 0 if slow(1) == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    computer.join()
    assert os.waitstatus_to_exitcode(status) == 0
