"""Adversary of ``Hold`` and ``FileBytes.update`` under real signals, on both
lock backends: a SIGALRM landing at a random instant of a transform_item, of
a ``lock(key)`` block or of a transform nested in one, whose handler either
raises or itself increments a key (the one its thread is writing, one of the
same flock stripe, or another).

Every increment that returned is stored, and nothing else is, except those
whose caller got the interrupt (applied or not); a handler's write refused as
a re-entry (RuntimeError) changes nothing. Afterwards no lock is held: while
the child is still alive, this process takes every key's lock at once.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from persidict import FileDirDict
from persidict.concurrency import locks_flock, locks_ofd
from persidict.concurrency.locks_common import lock_offset
from persidict.engine.keys import to_key

pytestmark = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"),
                                reason="needs signal.setitimer")

_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import FileDirDict
    from persidict.backends.key_grants import held
    from persidict.concurrency import locks, locks_flock
    from persidict.concurrency.locks_common import lock_offset
    from persidict.engine.errors import LockTimeoutError
    from persidict.engine.keys import to_key

    class Interrupt(Exception):
        pass

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    # A handler waiting for a key the other process holds while that one's
    # handler waits for ours is a lock-order deadlock: bounded, counted.
    d.lock_timeout = 0.5
    rng = random.Random(int(sys.argv[2]))
    by = {}
    for i in range(5000):  # two names of one flock stripe, and two others
        by.setdefault(lock_offset(f"n{i}") % locks_flock.STRIPES, []).append(f"n{i}")
    pair = next(v for v in by.values() if len(v) >= 2)[:2]
    keys = pair + [v[0] for v in by.values() if v[0] not in pair][:2]
    c = {"done": {k: 0 for k in keys}, "unsure": {k: 0 for k in keys},
         "refused": 0, "handler": 0, "interrupts": 0, "timeouts": 0}
    current = [keys[0]]

    def inc(v):
        return v + 1

    def handler(signum, frame):
        roll = rng.random()
        if roll < 0.4:
            raise Interrupt
        k = current[0] if roll < 0.7 else rng.choice(keys)
        try:
            d.transform_item(k, transformer=inc)
        except RuntimeError as exc:  # a re-entry of a lock this thread holds
            assert "already held" in str(exc), exc
            c["refused"] += 1
            return
        except LockTimeoutError:  # raised before anything was taken or written
            c["timeouts"] += 1
            return
        c["handler"] += 1
        c["done"][k] += 1

    signal.signal(signal.SIGALRM, handler)
    deadline = time.monotonic() + 5
    for i in range(4000):
        if time.monotonic() > deadline:
            break
        k = current[0] = rng.choice(keys)
        op = i % 3
        other = pair[1] if k == pair[0] else pair[0]
        target = k if op < 2 else other
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 150e-6))
                if op == 0:
                    d.transform_item(k, transformer=inc)
                elif op == 1:
                    with d.byte_store.lock(to_key(k)):
                        d.transform_item(k, transformer=inc)
                else:  # under k's lock, a key of its stripe (or k itself)
                    with d.byte_store.lock(to_key(k)):
                        d.transform_item(other, transformer=inc)
                c["done"][target] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Interrupt:
            c["interrupts"] += 1
            c["unsure"][target] += 1
        except LockTimeoutError:
            c["timeouts"] += 1
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    held_offsets = []
    for k in keys:
        _, kl, offset = d.byte_store.where(to_key(k))
        held_offsets += sorted(kl._held(offset))
    c["held"] = held_offsets
    c["grants"] = len(held())
    c["backend"] = locks.BACKEND
    print(json.dumps(c), flush=True)
    sys.stdin.read()  # alive (with its descriptors) until the parent has checked
    """
)


def _keys() -> list[str]:
    """The child's keys: two names of one flock stripe, and two others."""
    by: dict[int, list[str]] = {}
    for i in range(5000):
        by.setdefault(lock_offset(f"n{i}") % locks_flock.STRIPES, []).append(f"n{i}")
    pair = next(v for v in by.values() if len(v) >= 2)[:2]
    return pair + [v[0] for v in by.values() if v[0] not in pair][:2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["ofd", "flock"])
@pytest.mark.parametrize("seed", [1, 2])
def test_handlers_that_raise_or_write_at_random_instants(
    tmp_path: pathlib.Path, backend: str, seed: int
) -> None:
    """Two such processes at once: the holds under the handlers' chaos still
    exclude each other (no increment of one lost under the other's)."""
    base = tmp_path / "s"
    d = FileDirDict(base_dir=base, durable=False)
    for k in _keys():
        d[k] = 0
    env = dict(os.environ, PERSIDICT_LOCKS=backend)
    children = [subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(base), str(seed + 100 * i)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) for i in range(2)]
    reports = []
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, child.communicate(timeout=20)[1][-3000:]
            c = json.loads(line)
            assert c["backend"] == backend
            assert c["interrupts"] > 20 and c["handler"] > 20, c  # the handler did land
            assert c["held"] == [] and c["grants"] == 0, c
            reports.append(c)
        # Both children are alive: a lock one leaked would still be held.
        kind = locks_ofd.KeyLocks if backend == "ofd" else locks_flock.KeyLocks
        for k in _keys():
            _, ofd, offset = d.byte_store.where(to_key(k))
            with kind(ofd.lock_path, timeout=0.5).hold_at(offset, k):
                pass
    finally:
        errs = [child.communicate(timeout=20)[1] for child in children]
    for child, err in zip(children, errs, strict=True):
        assert child.returncode == 0, err[-3000:]
        assert "Exception ignored" not in err, err[-3000:]  # e.g. from a Hold's __del__
    for k in _keys():
        done = sum(c["done"][k] for c in reports)
        unsure = sum(c["unsure"][k] for c in reports)
        assert done <= d[k] <= done + unsure, (k, d[k], reports)
