"""Adversary of FileDirDict's locked transform (FileBytes.update, no etag compared).

The commit trusts that nothing but this thread's own re-entry changed the key
since the read. Each test tries one way to break that trust (a signal handler
writing at random instants, the transformer touching the key through other
APIs, handles and spellings, processes using every other API, kills, faults)
and counts what every caller was told against what is stored.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from persidict import ITEM_NOT_AVAILABLE, FileDirDict
from persidict.backends.key_grants import held
from persidict.engine.keys import to_key

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
    deadline = time.monotonic() + 6
    for _ in range(3000):
        if time.monotonic() > deadline:
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


def _store(tmp_path: pathlib.Path, **kw: Any) -> FileDirDict[Any]:
    return FileDirDict(base_dir=str(tmp_path / "s"), durable=False, **kw)


def test_a_transformer_discarding_the_absent_key_commits(tmp_path: pathlib.Path) -> None:
    """A discard that finds nothing changes nothing: the commit must not lose to it
    (it did, every attempt, until ConcurrencyConflictError)."""
    d = _store(tmp_path)

    def clears_first(v: Any) -> Any:
        d.discard("k")
        return 1 if v is ITEM_NOT_AVAILABLE else v + 1

    assert d.transform_item("k", transformer=clears_first, n_retries=3).new_value == 1
    # Present: the nested discard deletes it (the first commit loses), the retry commits.
    assert d.transform_item("k", transformer=clears_first, n_retries=3).new_value == 1
    assert d["k"] == 1 and held() == {}
    assert not d.discard("gone")


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
    deadline = time.monotonic() + 5
    for i in range(3000):
        if time.monotonic() > deadline:
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


# Every value is a fresh token (a str no write ever repeats). An operation
# whose outcome depended on the state it found "consumes" that state's token:
# a transform (its new value, or its delete), a CAS write, a conditional
# delete, a pop. A state can be consumed once at most: two consumers of one
# token means one of them committed over (or removed) a state that was gone.
# Blind writes and deletes (d[k] = v, del, setdefault inserts) consume nothing.
_KEYS: list[Any] = ["k", ("a", "b")]


def _token_worker(base: str, me: int, n: int, start: Any, kw: dict[str, Any]) -> None:
    import random

    from persidict import DELETE_CURRENT, ETAG_IS_THE_SAME, KEEP_CURRENT

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


def _handles(tmp_path: pathlib.Path) -> list[tuple[FileDirDict[Any], Any]]:
    """(store, key) pairs that all name one file: ('a', 'b') of the store, 'b' of
    its subdict 'a', of a second handle, of a handle through a symlinked base_dir."""
    d = _store(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "s")
    other = FileDirDict(base_dir=str(tmp_path / "s") + "/", durable=False)
    linked = FileDirDict(base_dir=str(link), durable=False)
    return [(d, ("a", "b")), (d.get_subdict("a"), "b"), (other, ("a", "b")),
            (linked.get_subdict(["a"]), ["b"])]


def test_a_nested_write_through_another_handle_makes_the_commit_lose(
    tmp_path: pathlib.Path,
) -> None:
    """Every handle of the file shares its grant: the nested write is seen (the
    outer retries on it), not overwritten, refused or deadlocked."""
    pairs = _handles(tmp_path)
    for (outer, ok), (inner, ik) in [(p, q) for p in pairs for q in pairs]:
        outer[ok] = 0
        calls: list[Any] = []

        def tr(v: Any, inner: Any = inner, ik: Any = ik, calls: list[Any] = calls) -> Any:
            calls.append(v)
            if len(calls) == 1:
                inner[ik] = 10  # the transformer's own write, through another handle
            return v + 1

        r = outer.transform_item(ok, transformer=tr, n_retries=1)
        assert calls == [0, 10] and r.new_value == 11 == inner[ik], (outer, inner, calls)
        assert r.resulting_etag == inner.etag(ik)
        assert held() == {}


def test_threads_transforming_through_every_handle_lose_nothing(tmp_path: pathlib.Path) -> None:
    import threading

    pairs = _handles(tmp_path)
    pairs[0][0][pairs[0][1]] = 0
    errors: list[BaseException] = []

    def run(store: Any, key: Any) -> None:
        try:
            for _ in range(150):
                store.transform_item(key, transformer=lambda v: v + 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pairs[i % len(pairs)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert pairs[0][0][pairs[0][1]] == 8 * 150


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


@pytest.mark.timeout(60)
def test_enospc_mid_transform_on_a_full_tmpfs(tmp_path: pathlib.Path) -> None:
    """Growing a value by transform on a 1 MiB tmpfs until the disk is full: the
    failing transform raises ENOSPC and stores nothing, leaves no temp file and
    no grant, and a transform that fits commits afterwards."""
    import errno
    import os

    from persidict import BackendError
    from persidict.cli import main

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        d: FileDirDict[Any] = FileDirDict(base_dir=str(mnt / "s"), durable=True)
        told = ""
        with pytest.raises(BackendError) as info:
            for _ in range(100):
                told = d.transform_item(("a", "k"), transformer=lambda v: (
                    "" if v is ITEM_NOT_AVAILABLE else v) + "y" * 60_000).new_value
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
        assert len(told) > 0 and d["a", "k"] == told and held() == {}
        tmp = mnt / "s" / "@persidict" / "tmp"
        assert not tmp.exists() or os.listdir(tmp) == []
        r = d.transform_item(("a", "k"), transformer=lambda v: v[:10])
        assert r.new_value == "y" * 10 == d["a", "k"] and r.resulting_etag == d.etag(("a", "k"))
        assert main(["check", str(mnt / "s")]) == 0
    finally:
        # -l: the lock file's descriptors (thread-locals) may still be open.
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_nested_keep_and_delete_combinations(tmp_path: pathlib.Path) -> None:
    """Outer and inner transforms of one key, each keeping, deleting or writing:
    an inner change makes the outer retry on it; an inner no-op does not."""
    from persidict import DELETE_CURRENT, KEEP_CURRENT

    d = _store(tmp_path)
    results = {"keep": KEEP_CURRENT, "delete": DELETE_CURRENT, "write": "inner"}
    for start in ("x", None):
        for inner in results:
            for outer in ("keep", "delete", "write"):
                if start is None:
                    d.discard("k")
                else:
                    d["k"] = start
                calls: list[Any] = []

                def tr(v: Any, inner: str = inner, outer: str = outer,
                       calls: list[Any] = calls) -> Any:
                    calls.append(v)
                    if len(calls) == 1:
                        d.transform_item("k", transformer=lambda w: results[inner])
                    return {"keep": KEEP_CURRENT, "delete": DELETE_CURRENT,
                            "write": "outer"}[outer]

                r = d.transform_item("k", transformer=tr, n_retries=1)
                inner_changed = inner == "write" or (inner == "delete" and start is not None)
                case = (start, inner, outer, calls)
                assert len(calls) == (2 if inner_changed else 1), case
                after_inner = ("inner" if inner == "write" else
                               None if inner == "delete" else start)
                assert calls[-1] == (ITEM_NOT_AVAILABLE if after_inner is None
                                     else after_inner), case
                want = {"keep": after_inner, "delete": None, "write": "outer"}[outer]
                assert d.get("k") == want, case
                if want is None:
                    assert r.new_value is ITEM_NOT_AVAILABLE is r.resulting_etag, case
                else:
                    assert r.new_value == want and r.resulting_etag == d.etag("k"), case
                assert held() == {}


def test_a_thread_timing_out_on_the_lock_holds_nothing_after(tmp_path: pathlib.Path) -> None:
    import threading

    from persidict import LockTimeoutError

    d = _store(tmp_path)
    d["k"] = 0
    inside, go = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def slow(v: Any) -> Any:
        inside.set()
        go.wait(20)
        return v + 1

    t = threading.Thread(target=lambda: d.transform_item("k", transformer=slow))
    t.start()
    assert inside.wait(20)

    def impatient() -> None:
        waiter: FileDirDict[Any] = FileDirDict(base_dir=str(tmp_path / "s"), durable=False)
        waiter.lock_timeout = 0.2
        try:
            waiter.transform_item("k", transformer=lambda v: v + 100)
        except LockTimeoutError:
            outcome.append(held() == {})
        go.set()  # the holder commits; this thread's lock is taken afresh
        waiter.lock_timeout = 10
        outcome.append(waiter.transform_item("k", transformer=lambda v: v + 10).new_value)

    w = threading.Thread(target=impatient)
    w.start()
    w.join(20)
    t.join(20)
    assert d["k"] == 11 and outcome == [True, 11]


def test_a_planted_directory_symlink_is_refused_and_outside_untouched(
    tmp_path: pathlib.Path,
) -> None:
    import os

    from persidict import DELETE_CURRENT, BackendError

    d = _store(tmp_path)
    d["a", "k"] = 1
    path = pathlib.Path(d.byte_store.location(to_key(("a", "k"))))
    outside = tmp_path / "outside"
    path.parent.rename(outside)
    os.symlink(outside, path.parent)  # the key's directory, now a link out of the store
    before = (outside / path.name).read_bytes()
    seen: list[Any] = []
    with pytest.raises(BackendError, match="symlink"):
        d.transform_item(("a", "k"), transformer=lambda v: seen.append(v) or 2)
    r = d.transform_item(("a", "k"), transformer=lambda v: DELETE_CURRENT)
    assert r.new_value is ITEM_NOT_AVAILABLE
    assert seen == [ITEM_NOT_AVAILABLE] and (outside / path.name).read_bytes() == before
    assert held() == {}


def test_a_transformer_raising_after_its_nested_write_keeps_that_write(
    tmp_path: pathlib.Path,
) -> None:
    d = _store(tmp_path)
    d["k"] = 0

    def tr(v: Any) -> Any:
        d["k"] = 5
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        d.transform_item("k", transformer=tr)
    assert d["k"] == 5 and held() == {}
    r = d.transform_item("k", transformer=lambda v: v + 1, n_retries=0)
    assert r.new_value == 6 and r.resulting_etag == d.etag("k")


def test_write_once_and_append_only_transforms(tmp_path: pathlib.Path) -> None:
    from persidict import DELETE_CURRENT, KEEP_CURRENT, MutationPolicyError, WriteOnceDict

    for d in (_store(tmp_path, append_only=True),
              WriteOnceDict(wrapped_dict=_store(tmp_path / "w", append_only=True))):
        r = d.transform_item("k", transformer=lambda v: 1 if v is ITEM_NOT_AVAILABLE else v)
        assert r.new_value == 1 == d["k"] and r.resulting_etag == d.etag("k")
        for change in (lambda v: v + 1, lambda v: v, lambda v: DELETE_CURRENT):
            with pytest.raises(MutationPolicyError):
                d.transform_item("k", transformer=change)
        assert d.transform_item("k", transformer=lambda v: KEEP_CURRENT).new_value == 1
        assert d.transform_item("gone", transformer=lambda v: DELETE_CURRENT).new_value is (
            ITEM_NOT_AVAILABLE)
        with pytest.raises(TypeError):
            d.transform_item("k", transformer=lambda v: KEEP_CURRENT, n_retries="x")
        assert d["k"] == 1 and held() == {}


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


# The token histories of test_processes_using_every_api_consume_each_state_once,
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
    deadline = time.monotonic() + 6
    for _ in range(3000):
        if time.monotonic() > deadline:
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
    deadline = time.monotonic() + 6
    for _ in range(300):
        if time.monotonic() > deadline:
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


def test_a_directory_or_fifo_planted_at_the_key_path(tmp_path: pathlib.Path) -> None:
    """Not values: the transformer sees the key absent; writing over a planted
    directory fails mapped (nothing held after), a FIFO is replaced, not opened."""
    import os

    from persidict import DELETE_CURRENT, BackendError

    d = _store(tmp_path)
    path = d.byte_store.location(to_key("k"))
    os.makedirs(path)
    seen: list[Any] = []
    with pytest.raises(BackendError):
        d.transform_item("k", transformer=lambda v: seen.append(v) or 1)
    assert seen == [ITEM_NOT_AVAILABLE] and os.path.isdir(path) and held() == {}
    assert d.transform_item("k", transformer=lambda v: DELETE_CURRENT).new_value is (
        ITEM_NOT_AVAILABLE)
    os.rmdir(path)
    os.mkfifo(path)
    r = d.transform_item("k", transformer=lambda v: [v])
    assert r.new_value == [ITEM_NOT_AVAILABLE] == d["k"] and r.resulting_etag == d.etag("k")


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


def test_nested_operations_that_change_nothing_do_not_make_the_commit_lose(
    tmp_path: pathlib.Path,
) -> None:
    """Reads, refused conditionals and deletes that find nothing, of the key and
    of an absent one of its directory: the commit wins at the first attempt."""
    from persidict import ETAG_HAS_CHANGED, ETAG_IS_THE_SAME, KEEP_CURRENT

    d = _store(tmp_path)
    d["a", "k"] = 1
    sub = d.get_subdict("a")

    def quiet(v: Any) -> Any:
        etag = d.etag(("a", "k"))
        assert sub.setdefault("k", 99) == 1
        assert not sub.set_item_if("k", value=7, condition=ETAG_HAS_CHANGED,
                                   expected_etag=etag).condition_was_satisfied
        assert not d.discard_if(("a", "k"), condition=ETAG_IS_THE_SAME,
                                expected_etag=ITEM_NOT_AVAILABLE).condition_was_satisfied
        assert sub.set_item_if("k", value=KEEP_CURRENT, condition=ETAG_IS_THE_SAME,
                               expected_etag=etag).condition_was_satisfied
        assert not sub.setdefault_if("k", default_value=5, condition=ETAG_IS_THE_SAME,
                                     expected_etag=ITEM_NOT_AVAILABLE).condition_was_satisfied
        assert ("a", "k") in d and sub.get_with_etag("k").new_value == 1
        for absent in (("a", "gone"), "gone"):
            assert not d.discard(absent)
            assert d.pop(absent, None) is None
            with pytest.raises(KeyError):
                del d[absent]
        return v + 1

    r = d.transform_item(("a", "k"), transformer=quiet, n_retries=0)
    assert r.new_value == 2 == d["a", "k"] and r.resulting_etag == d.etag(("a", "k"))
    assert held() == {}
