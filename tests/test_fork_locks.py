"""A fork() while other threads hold a LocalDict's lock must not hang the child."""

from __future__ import annotations

import os
import signal
import threading
import time

from persidict import LocalDict

CHILD_SECONDS = 10.0


def _fork_and_use(d: LocalDict) -> int | None:
    """Fork; the child writes and reads ``d``. The child's exit code, None if it hung."""
    pid = os.fork()
    if pid == 0:  # the child: only this thread survives the fork
        code = 1
        try:
            d["k"] = "child"
            code = 0 if d["k"] == "child" and len(d) >= 1 else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def fork_while_held(d: LocalDict) -> int | None:
    """Fork while another thread holds ``d``'s store lock; the child's exit code (None: hung)."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with d.get_params()["backend"].store.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        return _fork_and_use(d)
    finally:
        release.set()
        t.join()


def test_fork_while_another_thread_holds_the_lock() -> None:
    d = LocalDict()
    d["k"] = "parent"
    assert fork_while_held(d) == 0
    assert d["k"] == "parent"  # the child's writes stay in the child


def test_fork_while_threads_write() -> None:
    d = LocalDict()
    stop = threading.Event()

    def writer(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 200_000:
            d[f"w{i}"] = n
            n += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        codes = [_fork_and_use(d) for _ in range(20)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert codes == [0] * 20
