"""memoize under real processes and SIGKILLs at random instants.

Six processes call one memoized function on the same keys while the test
kills computing processes at random moments (before, during and just
after the computation and its store write). The oracle is an O_APPEND log
outside the store: a key computed twice by processes that were never
killed is a duplicate; every survivor must return correct results and
none may hang.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pathlib
import random
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from _memo_workers import log_line, read_log
from persidict import FileDirDict, PersiDict
from persidict.memoization import memoize

CTX = multiprocessing.get_context("spawn")
NAME = "adv.compute"


def compute(x: int, log: str) -> int:
    """The computation; its duration (ADV_DELAY seconds) is no part of its key."""
    log_line(log, f"start {x} {os.getpid()}")
    time.sleep(float(os.environ.get("ADV_DELAY", "0")))
    log_line(log, f"done {x} {os.getpid()}")
    return x * x + 1


def worker(store: PersiDict, log: str, keys: list[int], delay: float, lease: float) -> None:
    os.environ["ADV_DELAY"] = str(delay)
    f = memoize(store, name=NAME, lease_timeout=lease)(compute)
    for x in keys:
        log_line(log, f"calling {x} {os.getpid()}")
        log_line(log, f"got {x} {os.getpid()} {f(x, log)}")
    s = f.stats()
    log_line(log, f"finished {os.getpid()} {s['misses']} {s['waits']} {s['takeovers']}")


def run_with_kills(
    store: PersiDict, log: str, *, workers: int, keys: int, kills: int, delay: float,
    lease: float = 30.0, seed: int = 0, limit: float = 60.0,
) -> tuple[set[int], set[int]]:
    """Run ``workers`` processes over ``keys`` keys, SIGKILL ``kills``: (survivors, killed)."""
    rng = random.Random(seed)
    order = list(range(keys))
    procs = []
    for n in range(workers):
        mine = order[n % 2 :] + order[: n % 2]  # two orders, so waits and misses mix
        procs.append(CTX.Process(target=worker, args=(store, log, mine, delay, lease)))
    for p in procs:
        p.start()
    by_pid = {p.pid: p for p in procs}
    killed: set[int] = set()
    deadline = time.monotonic() + limit
    while len(killed) < kills and time.monotonic() < deadline:
        busy = [int(line[2]) for line in read_log(log) if line[0] == "start"]
        targets = [pid for pid in busy if pid not in killed and by_pid[pid].is_alive()]
        if targets:
            time.sleep(rng.uniform(0.0, 1.3 * delay))  # before, during or after its write
            victim = rng.choice(targets)
            os.kill(victim, signal.SIGKILL)  # not reaped yet: still our child, even if done
            by_pid[victim].join(30)
            if by_pid[victim].exitcode == -signal.SIGKILL:  # not one that finished first
                killed.add(victim)
        time.sleep(0.01)
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"processes hung: {hung}; log: {read_log(log)}"
    survivors = {p.pid for p in procs if p.exitcode == 0}
    assert survivors == {p.pid for p in procs} - killed, [p.exitcode for p in procs]
    return {pid for pid in survivors if pid is not None}, killed


def check_log(log: str, survivors: set[int], keys: int) -> None:
    lines = read_log(log)
    done_by_survivors = collections.Counter(
        line[1] for line in lines if line[0] == "done" and int(line[2]) in survivors
    )
    assert all(n == 1 for n in done_by_survivors.values()), done_by_survivors
    got = [line for line in lines if line[0] == "got" and int(line[2]) in survivors]
    assert len(got) == keys * len(survivors)
    assert all(int(line[3]) == int(line[1]) ** 2 + 1 for line in got), got


@pytest.mark.parametrize("locks", ["ofd", "flock"])
@pytest.mark.parametrize("sub", [False, True])
def test_random_sigkills_on_files(
    locks: str, sub: bool, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSIDICT_LOCKS", locks)  # read at import by the spawned workers
    store: Any = FileDirDict(base_dir=str(tmp_path / "store"))
    if sub:
        store = store.get_subdict(["deep", "er"])
    log = str(tmp_path / "log")
    survivors, killed = run_with_kills(store, log, workers=6, keys=6, kills=3, delay=0.3,
                                       seed=len(locks) + sub)
    assert len(killed) == 3
    check_log(log, survivors, 6)
    f = memoize(store, name=NAME)(compute)
    assert [f(x, log) for x in range(6)] == [x * x + 1 for x in range(6)]
    assert f.stats()["hits"] == 6  # every result was stored


def flaky(x: int, log: str, flag: str) -> int:
    """``compute``, but the first caller to remove ``flag`` raises after working a while."""
    log_line(log, f"start {x} {os.getpid()}")
    try:
        os.unlink(flag)
    except FileNotFoundError:
        pass
    else:
        time.sleep(0.5)  # the others are waiting meanwhile
        log_line(log, f"raised {x} {os.getpid()}")
        raise RuntimeError("flaky")
    time.sleep(0.1)
    log_line(log, f"done {x} {os.getpid()}")
    return x * x + 1


def call_flaky(store: PersiDict, log: str, flag: str, expire: float | None) -> str:
    f = memoize(store, name=NAME, expire=expire, lease_timeout=5.0)(flaky)
    try:
        return str(f(3, log, flag))
    except RuntimeError as exc:
        return f"error {exc}"


def _age_files(base: str, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d != "@persidict"]
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (t, t))


def _four(store: PersiDict, log: str, flag: str, expire: float | None, pause: float = 0.0,
          ) -> list[str]:
    """Four processes call ``flaky`` at once, ``pause`` seconds after they are all up."""
    with ProcessPoolExecutor(4, mp_context=CTX) as pool:
        assert len({pool.submit(os.getpid).result(timeout=60) for _ in range(8)}) >= 1
        time.sleep(pause)
        return sorted(f.result(timeout=60) for f in
                      [pool.submit(call_flaky, store, log, flag, expire) for _ in range(4)])


@pytest.mark.parametrize("locks", ["ofd", "flock"])
def test_an_error_reaches_its_caller_only_and_one_waiter_recomputes(
    locks: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSIDICT_LOCKS", locks)
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    log, flag = str(tmp_path / "log"), str(tmp_path / "flag")
    pathlib.Path(flag).touch()
    assert _four(store, log, flag, None) == ["10", "10", "10", "error flaky"]
    words = collections.Counter(line[0] for line in read_log(log))
    assert words["raised"] == 1 and words["done"] == 1, read_log(log)


def test_an_expired_result_is_recomputed_once_by_four_processes(tmp_path: pathlib.Path) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    log, flag = str(tmp_path / "log"), str(tmp_path / "no-flag")
    assert call_flaky(store, log, flag, 50.0) == "10"
    _age_files(store.base_dir, 100.0)  # older than expire now
    assert _four(store, log, flag, 50.0) == ["10"] * 4
    assert [line[0] for line in read_log(log)].count("done") == 2, read_log(log)


def threads_worker(store: PersiDict, log: str, threads: int) -> list[int]:
    """``threads`` threads of this process call one key at once; their results."""
    os.environ["ADV_DELAY"] = "0.3"
    f = memoize(store, name=NAME)(compute)
    barrier = threading.Barrier(threads)
    got: list[int] = []

    def call() -> None:
        barrier.wait()
        got.append(f(9, log))

    pool = [threading.Thread(target=call) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return got


@pytest.mark.parametrize("locks", ["ofd", "flock"])
def test_threads_of_several_processes_compute_one_key_once(
    locks: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSIDICT_LOCKS", locks)
    store = FileDirDict(base_dir=str(tmp_path / "store"))
    log = str(tmp_path / "log")
    with ProcessPoolExecutor(3, mp_context=CTX) as pool:
        outs = [f.result(timeout=60) for f in
                [pool.submit(threads_worker, store, log, 4) for _ in range(3)]]
    assert outs == [[82] * 4] * 3
    assert [line[0] for line in read_log(log)].count("start") == 1, read_log(log)


def test_an_append_only_store_computes_once_across_processes(tmp_path: pathlib.Path) -> None:
    store = FileDirDict(base_dir=str(tmp_path / "store"), append_only=True)
    log, flag = str(tmp_path / "log"), str(tmp_path / "flag")
    pathlib.Path(flag).touch()  # the first computer raises: nothing written, a waiter computes
    assert _four(store, log, flag, None) == ["10", "10", "10", "error flaky"]
    assert [line[0] for line in read_log(log)].count("done") == 1, read_log(log)
    with pytest.raises(ValueError, match="append-only"):
        memoize(store, expire=5.0)
