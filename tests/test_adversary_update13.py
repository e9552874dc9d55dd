"""Adversary of FileDirDict's locked transform (FileBytes.update, no etag compared).

The commit trusts that nothing but this thread's own re-entry changed the key
since the read. These tests break that trust with a SIGALRM handler that
writes the key at random instants (in a child process, bounded in count and
time) and count what every caller was told against what is stored. The
other adversaries: ``_nested`` (the transformer touching the key through
other APIs, handles and spellings), ``_procs`` (processes, forks, kills,
faults), ``_interrupts`` (handlers that raise).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

_SETITIMER = pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"),
                                reason="needs signal.setitimer")


# A SIGALRM handler that increments the key by 1000 with transform_item while
# the main thread increments it by 1: each caller counts the increments it was
# told committed. The value is padded so its hash and pickle take a while.
_HANDLER_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import FileDirDict

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    pad = "x" * int(sys.argv[3])
    d["k"] = (0, pad)
    rng = random.Random(int(sys.argv[2]))
    told = {"main": 0, "handler": 0, "refused": 0}

    def bump(by):
        return lambda v: (v[0] + by, v[1])

    def handler(signum, frame):
        try:
            d.transform_item("k", transformer=bump(1000))
            told["handler"] += 1
        except RuntimeError:  # re-entry while the file is being replaced: refused
            told["refused"] += 1

    signal.signal(signal.SIGALRM, handler)
    # Past the soft deadline only while short of what the test asserts (a loaded
    # machine); never past the hard one.
    soft, hard = time.monotonic() + 6, time.monotonic() + 35
    for _ in range(3000):
        if time.monotonic() > (soft if told["handler"] > 20 else hard):
            break
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 400e-6))
        d.transform_item("k", transformer=bump(1))
        told["main"] += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    told["stored"] = d["k"][0]
    print(json.dumps(told))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
@pytest.mark.parametrize("pad", [10, 300_000])
def test_a_signal_handler_transform_loses_no_increment(tmp_path: pathlib.Path, pad: int) -> None:
    """A handler's transform of the key, landing anywhere in the main thread's
    transform of it, is either refused or counted; no increment is lost."""
    out = subprocess.run(
        [sys.executable, "-c", _HANDLER_CHILD, str(tmp_path / "s"), "7", str(pad)],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    told = json.loads(out.stdout.strip().splitlines()[-1])
    assert told["handler"] > 20, told  # the handler did land, many times
    assert told["stored"] == told["main"] + 1000 * told["handler"], told


# Append-only: the main thread inserts one key after another with
# transform_item; the handler inserts the key being inserted. Each result's
# new_value is what that caller was told the key holds.
_APPEND_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import ITEM_NOT_AVAILABLE, KEEP_CURRENT, FileDirDict

    d = FileDirDict(base_dir=sys.argv[1], durable=False, append_only=True)
    rng = random.Random(int(sys.argv[2]))
    told = []  # [key, who, new_value]
    cur = [None]

    def insert(who):
        return lambda v: [who] if v is ITEM_NOT_AVAILABLE else KEEP_CURRENT

    def handler(signum, frame):
        try:
            r = d.transform_item(cur[0], transformer=insert("handler"))
            told.append([cur[0], "handler", r.new_value])
        except RuntimeError:
            pass

    signal.signal(signal.SIGALRM, handler)
    # Past the soft deadline only while short of what the test asserts (a loaded
    # machine); never past the hard one.
    soft, hard = time.monotonic() + 5, time.monotonic() + 35
    for i in range(3000):
        if time.monotonic() > (soft if len(told) > 3000 else hard):
            break
        cur[0] = f"k{i}"
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 200e-6))
        r = d.transform_item(cur[0], transformer=insert("main"))
        signal.setitimer(signal.ITIMER_REAL, 0)
        told.append([cur[0], "main", r.new_value])
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    wrong = [t for t in told if d[t[0]] != t[2]]
    print(json.dumps({"told": len(told), "wrong": wrong[:5], "n_wrong": len(wrong)}))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
def test_a_signal_handler_insert_is_not_overwritten_in_an_append_only_store(
    tmp_path: pathlib.Path,
) -> None:
    """Append-only transforms run under lock(key) and compare the etag the read
    noted: a handler's insert between that read and its note must not be lost."""
    out = subprocess.run(
        [sys.executable, "-c", _APPEND_CHILD, str(tmp_path / "s"), "3"],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["told"] > 3000, report  # the handler landed too
    assert report["n_wrong"] == 0, report


# The token histories of test_adversary_update13_procs.py (every API on a key),
# in one process: the main thread transforms, a SIGALRM handler runs every
# other operation on the key at random instants.
_MIXED_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from collections import Counter
    from persidict import (DELETE_CURRENT, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE,
                           FileDirDict)

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    rng = random.Random(int(sys.argv[2]))
    log = []  # [consumed token or None, written token or None]
    n = [0]
    refused = [0]

    def fresh():
        n[0] += 1
        return f"t{n[0]}"

    def transform(tok, delete=False):
        saw = []
        def tr(v):
            saw[:] = [v]
            return DELETE_CURRENT if delete else tok
        d.transform_item("k", transformer=tr, n_retries=None)
        old = None if saw[0] is ITEM_NOT_AVAILABLE else saw[0]
        log.append([old, None if delete else tok])

    def handler(signum, frame):
        tok, op = fresh(), rng.choice(["pop", "cas", "dif", "set", "sd", "t", "tdel"])
        try:
            if op == "pop":
                got = d.pop("k", None)
                if got is not None:
                    log.append([got, None])
            elif op in ("cas", "dif"):
                seen = d.get_with_etag("k")
                if seen.new_value is ITEM_NOT_AVAILABLE:
                    return
                if op == "cas":
                    c = d.set_item_if("k", value=tok, condition=ETAG_IS_THE_SAME,
                                      expected_etag=seen.actual_etag)
                else:
                    c = d.discard_if("k", condition=ETAG_IS_THE_SAME,
                                     expected_etag=seen.actual_etag)
                if c.condition_was_satisfied:
                    log.append([seen.new_value, tok if op == "cas" else None])
            elif op == "set":
                d["k"] = tok
                log.append([None, tok])
            elif op == "sd":
                if d.setdefault("k", tok) == tok:
                    log.append([None, tok])
            else:
                transform(tok, delete=op == "tdel")
        except RuntimeError:  # re-entry while the file is being replaced: refused
            refused[0] += 1

    signal.signal(signal.SIGALRM, handler)
    # Past the soft deadline only while short of what the test asserts (a loaded
    # machine); never past the hard one.
    soft, hard = time.monotonic() + 6, time.monotonic() + 35
    for _ in range(3000):
        if time.monotonic() > (soft if len(log) > 3000 else hard):
            break
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 200e-6))
        transform(fresh())
        signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    consumed = Counter(c for c, _ in log if c is not None)
    written = {w for _, w in log if w is not None}
    stored = d.get("k")
    print(json.dumps({
        "ops": len(log), "refused": refused[0],
        "twice": [t for t, k in consumed.items() if k > 1][:5],
        "phantom": sorted(set(consumed) - written)[:5],
        "stored_bad": stored is not None and (stored in consumed or stored not in written),
    }))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_signal_handler_using_every_api_consumes_each_state_once(
    tmp_path: pathlib.Path, seed: int
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MIXED_CHILD, str(tmp_path / "s"), str(seed)],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["ops"] > 3000, r  # the handler's operations landed too
    assert r["twice"] == [] and r["phantom"] == [] and not r["stored_bad"], r


# Inside one transform of the key (which keeps it), the transformer runs CAS
# increments of it (get_with_etag, then set_item_if on that etag): they compare
# with the etag this thread's grant knows. A SIGALRM handler's transform of
# the key between a read and its note must not let a stale etag through.
_NOTE_CHILD = textwrap.dedent(
    """
    import json, random, signal, sys, time
    from persidict import ETAG_IS_THE_SAME, KEEP_CURRENT, FileDirDict

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    pad = "x" * int(sys.argv[3])
    d["k"] = (0, pad)
    rng = random.Random(int(sys.argv[2]))
    told = {"main": 0, "handler": 0, "refused": 0}

    def handler(signum, frame):
        try:
            d.transform_item("k", transformer=lambda v: (v[0] + 1000, v[1]))
            told["handler"] += 1
        except RuntimeError:
            told["refused"] += 1

    calls = [0]

    def cas_loop(v):
        calls[0] += 1
        if calls[0] > 1:  # the retry after the nested writes: keep
            return KEEP_CURRENT
        for _ in range(10):
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 400e-6))
            s = d.get_with_etag("k")
            c = d.set_item_if("k", value=(s.new_value[0] + 1, pad),
                              condition=ETAG_IS_THE_SAME, expected_etag=s.actual_etag)
            signal.setitimer(signal.ITIMER_REAL, 0)
            told["main"] += c.condition_was_satisfied
        return KEEP_CURRENT

    signal.signal(signal.SIGALRM, handler)
    # Past the soft deadline only while short of what the test asserts (a loaded
    # machine); never past the hard one.
    soft, hard = time.monotonic() + 6, time.monotonic() + 35
    for _ in range(300):
        if time.monotonic() > (soft if told["handler"] > 20 else hard):
            break
        calls[0] = 0
        d.transform_item("k", transformer=cas_loop)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    told["stored"] = d["k"][0]
    print(json.dumps(told))
    """
)


@_SETITIMER
@pytest.mark.timeout(60)
def test_a_stale_note_lets_no_nested_cas_overwrite_a_handler_write(
    tmp_path: pathlib.Path,
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _NOTE_CHILD, str(tmp_path / "s"), "4", "300000"],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    told = json.loads(out.stdout.strip().splitlines()[-1])
    assert told["handler"] > 20, told
    assert told["stored"] == told["main"] + 1000 * told["handler"], told
