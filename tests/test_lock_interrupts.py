"""Key locks under signal handlers that raise at arbitrary instants.

A SIGALRM handler that raises (a time limit, KeyboardInterrupt) can land
anywhere inside a write: before the lock is taken, between the take and the
rename, inside the release. Whatever the instant, the interrupted write
either happened or did not, and the key's lock is free afterwards: another
process takes every key's lock at once, and this thread holds nothing.

Runs in a child process (so the timer and handler cannot disturb pytest),
with a bounded number of interrupts and a bounded time.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from persidict import FileDirDict

pytestmark = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"),
                                reason="needs signal.setitimer")

_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import FileDirDict
    from persidict.engine.keys import to_key

    class Interrupt(Exception):
        pass

    def handler(signum, frame):
        raise Interrupt

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    keys = [f"k{i}" for i in range(8)]
    for k in keys:
        d[k] = 0
    rng = random.Random(int(sys.argv[2]))
    signal.signal(signal.SIGALRM, handler)
    done = {k: 0 for k in keys}     # increments that returned
    unsure = {k: 0 for k in keys}   # increments interrupted (applied or not)
    interrupts, deadline = 0, time.monotonic() + 8
    while interrupts < 400 and time.monotonic() < deadline:
        k = rng.choice(keys)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 60e-6))
                d.transform_item(k, transformer=lambda v: v + 1)
                done[k] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Interrupt:
            interrupts += 1
            unsure[k] += 1
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    held = []
    for k in keys:
        _, locks, offset = d.byte_store.where(to_key(k))
        held += sorted(locks._held(offset))
    print(json.dumps({"done": done, "unsure": unsure, "interrupts": interrupts,
                      "held": held}))
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [1, 2])
def test_interrupted_writes_leave_no_lock_held(tmp_path: pathlib.Path, seed: int) -> None:
    base = tmp_path / "s"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(base), str(seed)],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["interrupts"] > 20, report  # the handler did land, many times
    assert report["held"] == [], report  # this thread's descriptor holds no lock
    d = FileDirDict(base_dir=base, durable=False)
    d.lock_timeout = 0.5  # a leaked lock lives in the dead child's descriptor: gone
    for k, done in report["done"].items():
        # Every increment that returned happened; an interrupted one may have.
        assert done <= d[k] <= done + report["unsure"][k], (k, d[k], report)
    # And in another process (the child has exited; its locks died with it),
    # every key's lock can be taken at once.
    for k in report["done"]:
        d.transform_item(k, transformer=lambda v: v)


def test_interrupt_inside_the_release_still_releases(tmp_path: pathlib.Path) -> None:
    """A handler raising during the unlock: the unlock is retried, then the
    exception goes on, and the lock is free (another thread takes it)."""
    import threading

    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 0
    from persidict.engine.keys import to_key

    _, locks, offset = d.byte_store.where(to_key("k"))
    calls = []
    real_release = locks.release_on

    def flaky_release(d: object, off: int) -> None:
        calls.append(off)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as if a signal landed right here
        real_release(d, off)  # type: ignore[arg-type]

    locks.release_on = flaky_release  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), locks.hold_at(offset, "k"):
        pass
    del locks.release_on
    assert calls == [offset, offset]
    took: list[bool] = []

    def other() -> None:
        locks.timeout = 0.5
        with locks.hold_at(offset, "k"):
            took.append(True)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert took == [True]


def test_a_hold_dropped_without_exit_releases(tmp_path: pathlib.Path) -> None:
    """__exit__ interrupted before it could release: dropping the context releases."""
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    d["k"] = 0
    from persidict.engine.keys import to_key

    _, locks, offset = d.byte_store.where(to_key("k"))
    hold = locks.hold_at(offset, "k")
    hold.__enter__()
    assert offset in locks._held(offset)
    del hold  # never exited
    assert offset not in locks._held(offset)
    d["k"] = 1  # the lock is free again for this thread
    assert d["k"] == 1
