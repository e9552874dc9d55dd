"""Adversary of the locked transform: processes using every API, forks inside a
transform, SIGKILL at random instants, flock stripes (see
test_adversary_update13.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from persidict import DELETE_CURRENT, ITEM_NOT_AVAILABLE, FileDirDict


def _store(tmp_path: pathlib.Path, **kw: Any) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False, **kw)


# Every value is a fresh token (a str no write ever repeats). An operation
# whose outcome depended on the state it found "consumes" that state's token:
# a transform (its new value, or its delete), a CAS write, a conditional
# delete, a pop. A state can be consumed once at most: two consumers of one
# token means one of them committed over (or removed) a state that was gone.
# Blind writes and deletes (d[k] = v, del, setdefault inserts) consume nothing.
_KEYS: list[Any] = ["k", ("a", "b")]


def _token_worker(base: str, me: int, n: int, start: Any, kw: dict[str, Any]) -> None:
    import random

    from persidict import ETAG_IS_THE_SAME, KEEP_CURRENT

    d: FileDirDict[str] = FileDirDict(base_dir=base, durable=False, **kw)
    rng = random.Random(me)
    log: list[list[Any]] = []  # [op, key index, consumed token or None, written token or None]
    start.wait(30)
    for i in range(n):
        ki = rng.randrange(len(_KEYS))
        k = _KEYS[ki]
        tok = f"w{me}.{i}"
        op = rng.choice(["t", "t", "t", "t", "tdel", "tkeep", "cas", "sdi", "sd", "dif",
                         "pop", "set", "del"])
        if op.startswith("t"):
            saw: list[Any] = []

            def tr(v: Any, op: str = op, tok: str = tok, saw: list[Any] = saw) -> Any:
                saw[:] = [v]
                return {"t": tok, "tdel": DELETE_CURRENT, "tkeep": KEEP_CURRENT}[op]

            r = d.transform_item(k, transformer=tr, n_retries=None)
            old = None if saw[0] is ITEM_NOT_AVAILABLE else saw[0]
            if op == "t":
                assert r.new_value == tok, (r, tok)
                log.append([op, ki, old, tok])
            elif op == "tdel":
                assert r.new_value is ITEM_NOT_AVAILABLE
                log.append([op, ki, old, None])
            else:
                assert r.new_value == saw[0]
        elif op in ("cas", "dif"):
            seen = d.get_with_etag(k)
            if seen.new_value is ITEM_NOT_AVAILABLE:
                continue
            if op == "cas":
                c = d.set_item_if(k, value=tok, condition=ETAG_IS_THE_SAME,
                                  expected_etag=seen.actual_etag)
            else:
                c = d.discard_if(k, condition=ETAG_IS_THE_SAME, expected_etag=seen.actual_etag)
            if c.condition_was_satisfied:
                log.append([op, ki, seen.new_value, tok if op == "cas" else None])
        elif op == "sdi":
            c = d.setdefault_if(k, default_value=tok, condition=ETAG_IS_THE_SAME,
                                expected_etag=ITEM_NOT_AVAILABLE)
            if c.new_value == tok:
                log.append([op, ki, None, tok])
        elif op == "sd":
            if d.setdefault(k, tok) == tok:
                log.append([op, ki, None, tok])
        elif op == "pop":
            got = d.pop(k, None)
            if got is not None:
                log.append([op, ki, got, None])
        elif op == "set":
            d[k] = tok
            log.append([op, ki, None, tok])
        else:
            d.discard(k)
    with open(f"{base}.log{me}", "w") as f:
        json.dump(log, f)


def _check_tokens(base: str, logs: list[list[list[Any]]], kw: dict[str, Any]) -> None:
    """No state consumed twice, none consumed that nobody wrote, the stored ones unconsumed."""
    from collections import Counter

    d: FileDirDict[str] = FileDirDict(base_dir=base, durable=False, **kw)
    for ki, k in enumerate(_KEYS):
        ops = [op for log in logs for op in log if op[1] == ki]
        consumed = Counter(op[2] for op in ops if op[2] is not None)
        written = {op[3] for op in ops if op[3] is not None}
        twice = {t: c for t, c in consumed.items() if c > 1}
        assert not twice, (k, twice, [op for op in ops if op[2] in twice][:6])
        assert set(consumed) <= written, (k, set(consumed) - written)
        stored = d.get(k)
        assert stored is None or (stored in written and stored not in consumed), (k, stored)


def _run_token_workers(base: str, n_procs: int, n: int, kw: dict[str, Any]) -> None:
    import multiprocessing

    FileDirDict(base_dir=base, durable=False, **kw)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_token_worker, args=(base, me, n, start, kw))
             for me in range(n_procs)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n_procs
    logs = []
    for me in range(n_procs):
        with open(f"{base}.log{me}") as f:
            logs.append(json.load(f))
    assert sum(len(log) for log in logs) > n_procs * n // 3
    _check_tokens(base, logs, kw)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kw", [{}, {"layout": "hashed"}, {"serialization_format": "json"}],
                         ids=["direct", "hashed", "json"])
def test_processes_using_every_api_consume_each_state_once(
    tmp_path: pathlib.Path, kw: dict[str, Any]
) -> None:
    _run_token_workers(str(tmp_path / "s"), 4, 1500, kw)


def test_a_child_forked_inside_the_transformer_waits_for_the_commit(
    tmp_path: pathlib.Path,
) -> None:
    """The child inherits the thread's grants, but not the lock: its write of the
    key waits for the parent's commit instead of slipping under it."""
    import os

    d = _store(tmp_path)
    d["k"] = 0
    pids: list[int] = []

    def tr(v: Any) -> Any:
        if not pids:
            pid = os.fork()
            if pid == 0:  # the child: its own transform of the key, then out
                code = 1
                try:
                    d.transform_item("k", transformer=lambda w: w + 100)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        return v + 1

    r = d.transform_item("k", transformer=tr, n_retries=0)
    _, status = os.waitpid(pids[0], 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert r.new_value == 1 and d["k"] == 101


def test_a_child_forked_while_another_thread_transforms_waits(tmp_path: pathlib.Path) -> None:
    import os
    import threading

    d = _store(tmp_path)
    d["k"] = 0
    inside, go = threading.Event(), threading.Event()

    def tr(v: Any) -> Any:
        inside.set()
        go.wait(20)
        return v + 1

    t = threading.Thread(target=lambda: d.transform_item("k", transformer=tr))
    t.start()
    assert inside.wait(20)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            d.transform_item("k", transformer=lambda w: w + 100)
            code = 0
        finally:
            os._exit(code)
    go.set()
    t.join(20)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert d["k"] == 101


def _count_forever(base: str, pad: int, out: Any) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=True)
    while True:
        r = d.transform_item("c", transformer=lambda v: (v[0] + 1, v[1]))
        out.send(r.new_value[0])  # told committed


@pytest.mark.timeout(90)
def test_sigkill_at_random_instants_loses_no_told_increment(tmp_path: pathlib.Path) -> None:
    """Each kill lands somewhere in a durable transform: the store holds every
    increment the child was told, at most one more, and `check` finds it clean."""
    import multiprocessing
    import os
    import random
    import signal
    import time

    from persidict.cli import main

    base = str(tmp_path / "s")
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=True)
    d["c"] = (0, "x" * 100_000)
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(5)
    for _ in range(8):
        mine, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_count_forever, args=(base, 0, theirs))
        p.start()
        theirs.close()
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(p.pid, signal.SIGKILL)
        p.join(20)
        told = 0
        while mine.poll():
            try:
                told = mine.recv()
            except EOFError:
                break
        mine.close()
        d.lock_timeout = 5  # the dead child's lock died with it
        n = d["c"][0]
        assert told <= n <= told + 1, (told, n)
        d.transform_item("c", transformer=lambda v: v)
    assert d["c"][0] > 8 * 5  # the children did commit, many times
    FileDirDict(base_dir=base, durable=True)  # opening recovers dead writers' temp files
    assert main(["check", base]) == 0


# Under flock, keys share 64 stripe files: a transformer of A that writes B of
# A's stripe takes and releases B's name. A's stripe must stay locked: another
# process must not get A's lock before A's transform commits.
_STRIPE_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from persidict import FileDirDict, LockTimeoutError
    from persidict.concurrency.locks import BACKEND
    from persidict.engine.keys import to_key

    d = FileDirDict(base_dir=sys.argv[1], durable=False)
    stripe = {}
    for i in range(1000):
        s = d.byte_store.where(to_key(f"k{i}"))[2] % 64
        if s in stripe:
            a, b = stripe[s], f"k{i}"
            break
        stripe[s] = f"k{i}"
    d[a] = 0
    outcome = []

    def tr(v):
        d[b] = "nested"  # B's name taken and released inside A's hold
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                other = FileDirDict(base_dir=sys.argv[1], durable=False)
                other.lock_timeout = 0.3
                other.transform_item(a, transformer=lambda w: w + 100)
                code = 0  # got A's lock while A's transform was still running
            except LockTimeoutError:
                code = 1
            finally:
                os._exit(code)
        outcome.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        return v + 1

    d.transform_item(a, transformer=tr)
    print(json.dumps({"backend": BACKEND, "child": outcome, "a": d[a], "b": d[b]}))
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["ofd", "flock"])
def test_a_nested_write_of_a_stripe_mate_keeps_the_stripe_locked(
    tmp_path: pathlib.Path, backend: str
) -> None:
    import fcntl
    import os

    if backend == "ofd" and not hasattr(fcntl, "F_OFD_SETLK"):
        pytest.skip("no OFD locks here")
    env = dict(os.environ, PERSIDICT_LOCKS=backend)
    out = subprocess.run(
        [sys.executable, "-c", _STRIPE_CHILD, str(tmp_path / "s")],
        capture_output=True, text=True, timeout=50, check=False, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"backend": backend, "child": [1], "a": 1, "b": "nested"}, r



def test_a_child_forked_inside_the_transformer_that_returns_retries_under_its_lock(
    tmp_path: pathlib.Path,
) -> None:
    """A child forked inside the transformer that carries on (returns a value)
    holds no lock: it must not commit as if it did, over the parent's commit.
    Both transforms are kept: the child's, retried under its own lock, sees
    the parent's."""
    import os

    d = _store(tmp_path)
    d["k"] = 0
    out = str(tmp_path / "child")
    child: list[bool] = []
    pids: list[int] = []

    def tr(v: Any) -> Any:
        if child:
            return v + 100
        if not pids:
            pid = os.fork()
            if pid == 0:
                child.append(True)
                return v + 100
            pids.append(pid)
        return v + 1

    try:
        r = d.transform_item("k", transformer=tr)
    finally:
        if child:  # the child: report and leave, whatever happened
            with open(out, "w") as f:
                f.write(repr(r.new_value) if "r" in dir() else "raised")
            os._exit(0)
    _, status = os.waitpid(pids[0], 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with open(out) as f:
        told = f.read()
    assert (r.new_value, told, d["k"]) == (1, "101", 101)
