"""The bounded wait for a busy key lock, against a lock another process holds.

The wait runs on a virtual clock (its ``time`` is replaced by one that
advances by exactly what each sleep asks), so the checks are on counts and
requested sleeps, never on measured times; the locks and every attempt are
real, on both backends (OFD bytes and flock stripes). Catches a wait that
ran past its deadline by up to one sleep (2 ms) before LockTimeoutError
(failed on the code before its fix), and guards the bounds the wait
promises: no sleep over MAX_DELAY, so a lock freed while its waiter sleeps
stays unclaimed at most that long, and about 500 attempts per second.
"""

from __future__ import annotations

import multiprocessing
import pathlib
import types
from typing import Any

import pytest

from persidict.concurrency import locks_common, locks_flock
from persidict.concurrency.locks_common import MAX_DELAY, KeyLocksBase, lock_offset
from persidict.engine.errors import LockTimeoutError

BACKENDS = ["flock"]
try:
    from persidict.concurrency import locks_ofd

    BACKENDS.append("ofd")
except (ImportError, AttributeError):  # no OFD locks on this platform
    locks_ofd = None  # type: ignore[assignment]

OFFSET = lock_offset("hot")
TIMEOUT = 60.0


def _locks(backend: str, path: str, timeout: float) -> KeyLocksBase:
    module: Any = locks_ofd if backend == "ofd" else locks_flock
    return module.KeyLocks(path, timeout=timeout)  # type: ignore[no-any-return]


def _holder(backend: str, path: str, conn: Any) -> None:
    """Hold the key's lock until told, release it, say so, then wait to be told to exit."""
    locks = _locks(backend, path, 5.0)
    locks.acquire(OFFSET, "hot")
    conn.send("held")
    if conn.recv() == "release":
        locks.release(OFFSET)
        conn.send("released")
        conn.recv()


class Clock:
    """A monotonic clock that only sleeps move; records every requested sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Any = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0.0
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(self)
        self.now += seconds


@pytest.fixture(params=BACKENDS)
def held(request: Any, tmp_path: pathlib.Path, monkeypatch: Any) -> Any:
    """(backend, lock path, clock, pipe to a process that holds the key's lock)."""
    path = str(tmp_path / "locks")
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_holder, args=(request.param, path, theirs))
    proc.start()
    try:
        assert mine.poll(30) and mine.recv() == "held"
        clock = Clock()
        monkeypatch.setattr(locks_common, "time", types.SimpleNamespace(
            monotonic=clock.monotonic, sleep=clock.sleep))
        yield request.param, path, clock, mine
    finally:
        monkeypatch.undo()
        mine.send("exit")
        proc.join(30)
        if proc.is_alive():  # pragma: no cover - only if the holder hangs
            proc.kill()
    assert proc.exitcode == 0


def test_a_wait_ends_at_its_deadline_with_capped_sleeps(held: Any) -> None:
    """Held past the timeout: LockTimeoutError at the deadline, not after it;
    no sleep longer than MAX_DELAY; about 1 / MAX_DELAY attempts per second waited."""
    backend, path, clock, _ = held
    start = clock.now
    with pytest.raises(LockTimeoutError):
        _locks(backend, path, TIMEOUT).acquire(OFFSET, "hot")
    assert max(clock.sleeps) <= MAX_DELAY
    assert TIMEOUT <= clock.now - start <= TIMEOUT + 1e-9
    assert len(clock.sleeps) <= TIMEOUT / MAX_DELAY + 20  # each sleep is one real attempt


def test_a_freed_lock_is_taken_by_the_next_attempt(held: Any) -> None:
    """The holder releases during a wait that has slept long enough to reach the
    longest sleep: the attempt after that sleep takes the lock, so the lock
    stays free at most MAX_DELAY (of requested sleep) with a waiter present."""
    backend, path, clock, conn = held
    released: list[int] = []

    def release_once(c: Clock) -> None:
        if not released and c.now - start >= 0.5:
            conn.send("release")
            assert conn.poll(30) and conn.recv() == "released"
            released.append(len(c.sleeps))

    start = clock.now
    clock.on_sleep = release_once
    locks = _locks(backend, path, TIMEOUT)
    locks.acquire(OFFSET, "hot")
    try:
        assert released == [len(clock.sleeps)]  # no sleep after the one it was freed in
        assert clock.sleeps[-1] <= MAX_DELAY
    finally:
        locks.release(OFFSET)
