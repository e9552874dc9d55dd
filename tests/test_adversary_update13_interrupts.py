"""Adversary of the locked transform: SIGALRM handlers that raise, swallowed by
the transformer (see test_adversary_update13.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

_SETITIMER = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"),
                                reason="needs signal.setitimer")


# A SIGALRM handler that raises, landing anywhere in an outer transform whose
# transformer runs an inner transform of the key and swallows the interrupt.
# Counters are raised to "unsure" before a call and turned into "done" after.
_SWALLOW_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import FileDirDict

    class Interrupt(Exception):
        pass

    def handler(signum, frame):
        raise Interrupt

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    d["k"] = 0
    rng = random.Random(int(sys.argv[2]))
    c = {"outer": 0, "outer?": 0, "inner": 0, "inner?": 0, "interrupts": 0}
    calls = [0]
    BIG = 10 ** 6

    def outer(v):
        calls[0] += 1
        if calls[0] == 1:
            c["inner?"] += 1
            try:
                d.transform_item("k", transformer=lambda w: w + BIG)
                c["inner?"] -= 1
                c["inner"] += 1
            except Interrupt:
                c["interrupts"] += 1
        return v + 1

    signal.signal(signal.SIGALRM, handler)
    deadline = time.monotonic() + 6
    for _ in range(2000):
        if time.monotonic() > deadline:
            break
        calls[0] = 0
        c["outer?"] += 1
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 150e-6))
                d.transform_item("k", transformer=outer)
                c["outer?"] -= 1
                c["outer"] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Interrupt:
            c["interrupts"] += 1
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    c["stored"] = d["k"]
    d.transform_item("k", transformer=lambda v: v)  # nothing left held
    print(json.dumps(c))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [1, 2])
def test_an_interrupt_swallowed_inside_a_nested_transform(
    tmp_path: pathlib.Path, seed: int
) -> None:
    """Wherever the interrupt lands (the inner update swapping its mark, its
    commit), the outer neither crashes nor commits over the inner's write."""
    out = subprocess.run(
        [sys.executable, "-c", _SWALLOW_CHILD, str(tmp_path / "s"), str(seed)],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    c = json.loads(out.stdout.strip().splitlines()[-1])
    assert c["interrupts"] > 20, c
    outer, inner = c["stored"] % 10**6, c["stored"] // 10**6
    assert c["outer"] <= outer <= c["outer"] + c["outer?"], c
    assert c["inner"] <= inner <= c["inner"] + c["inner?"], c


# A raising SIGALRM handler lands anywhere in a nested plain write of the key
# inside a transformer, which swallows the interrupt and reads the key back.
# Landing after the rename, the write took effect though its caller got the
# interrupt: the transformer then sees it, and the outer commit must not go
# over it. Invariant: the call that committed found, at its end, the value it
# was called with.
_LATE_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import FileDirDict

    class Interrupt(Exception):
        pass

    def handler(signum, frame):
        raise Interrupt

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    d["k"] = 0
    rng = random.Random(int(sys.argv[2]))
    c = {"runs": 0, "interrupts": 0, "late": 0, "over": []}
    calls = []
    delay = [50e-6]  # steered towards the end of the write: the rename

    def outer(v):
        first = not calls
        calls.append([v, None])
        if first:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.5, 1.0) * delay[0])
                d["k"] = v + 1000
                delay[0] *= 0.9  # the write was done first: earlier
            except Interrupt:
                c["interrupts"] += 1
                late = d["k"] == v + 1000
                c["late"] += late
                delay[0] *= 1.0 if late else 1.1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        calls[-1][1] = d["k"]
        return v + 1

    signal.signal(signal.SIGALRM, handler)
    deadline = time.monotonic() + 6
    for _ in range(3000):
        if time.monotonic() > deadline:
            break
        calls.clear()
        try:
            d.transform_item("k", transformer=outer)
        except Interrupt:  # landed after the nested write's try: not counted
            continue
        c["runs"] += 1
        v, found = calls[-1]
        if found != v:
            c["over"].append(calls[:])
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    c["over"] = c["over"][:3]
    print(json.dumps(c))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
def test_an_interrupt_after_a_nested_write_committed_makes_the_outer_retry(
    tmp_path: pathlib.Path,
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LATE_CHILD, str(tmp_path / "s"), "1"],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    c = json.loads(out.stdout.strip().splitlines()[-1])
    assert c["late"] > 5, c  # interrupts after the rename did happen
    assert c["over"] == [], c
