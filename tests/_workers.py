"""Workers and harness for the concurrency and SIGKILL tests.

Everything here lives at module top level so that ``multiprocessing`` can
start it with the 'spawn' and 'forkserver' methods; the same worker functions
also run in threads (``run_threads``), where the store may be one shared
instance instead of a spec that each worker opens itself.

The oracle is independent of the code under test: every worker reports what
*it* did (values it wrote, keys it won, values it read), and the tests compare
those reports with each other and with the end state.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import multiprocessing as mp
import os
import pickle
import random
import struct
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persidict import (
    ANY_ETAG,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    ConcurrencyConflictError,
    FileDirDict,
    MutationPolicyError,
)

BARRIER_TIMEOUT = 60.0
_MISSING = object()

# ---------------------------------------------------------------- harness


class ThreadCounter:
    """A thread-side stand-in for ``multiprocessing.Value('i')``."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class Ctl:
    """What every worker gets: a barrier and a 'workers done' counter."""

    def __init__(self, barrier: Any, done: Any) -> None:
        self.barrier = barrier
        self.done = done

    def wait(self) -> None:
        self.barrier.wait(BARRIER_TIMEOUT)

    def mark_done(self) -> None:
        with self.done.get_lock():
            self.done.value += 1

    def n_done(self) -> int:
        return int(self.done.value)


def open_store(store: Any) -> Any:
    """A spec dict opens a fresh FileDirDict; anything else is a store."""
    if isinstance(store, dict):
        return FileDirDict(**store)
    return store


def file_spec(base_dir: Path | str, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "base_dir": str(base_dir),
        "serialization_format": "pkl",
        "digest_len": 4,
        "durable": False,
    }
    spec.update(kw)
    return spec


def plain(v: Any) -> Any:
    """Flags become their class name so that reports compare across processes."""
    if v is None or isinstance(v, (str, int, bytes, float, tuple, list)):
        return v
    return type(v).__name__


def _entry(fn_name: str, wid: int, ctl: Ctl, result_path: str, kwargs: dict[str, Any]) -> None:
    try:
        fn = globals()[fn_name]
        out: dict[str, Any] = {"ok": True, "result": fn(wid=wid, ctl=ctl, **kwargs)}
    except BaseException:
        out = {"ok": False, "error": traceback.format_exc()}
        with contextlib.suppress(Exception):
            ctl.barrier.abort()  # do not leave the others waiting 60 s
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(out, f)
    os.replace(tmp, result_path)


def _collect(outs: list[dict[str, Any] | None], what: str) -> list[Any]:
    errors = []
    for i, out in enumerate(outs):
        if out is None:
            errors.append(f"worker {i}: no result ({what})")
        elif not out["ok"]:
            errors.append(f"worker {i} raised:\n{out['error']}")
    if errors:
        raise AssertionError("\n".join(errors))
    return [out["result"] for out in outs]  # type: ignore[index]


def run_processes(
    fn: Callable[..., Any],
    kwargs_list: Sequence[dict[str, Any]],
    result_dir: Path,
    timeout: float = 90.0,
    method: str = "spawn",
) -> list[Any]:
    """Run ``fn`` in one real OS process per kwargs dict, started together.

    Returns each worker's result; raises AssertionError with the worker's
    traceback if any worker raised, hung or died.
    """
    ctx = mp.get_context(method)
    n = len(kwargs_list)
    ctl = Ctl(ctx.Barrier(n), ctx.Value("i", 0))
    result_dir.mkdir(parents=True, exist_ok=True)
    paths = [str(result_dir / f"{fn.__name__}-{i}.pkl") for i in range(n)]
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    procs = []
    hung = []
    try:
        for i, kw in enumerate(kwargs_list):
            p = ctx.Process(
                target=_entry, args=(fn.__name__, i, ctl, paths[i], dict(kw)), daemon=True
            )
            p.start()
            procs.append(p)
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
        hung = [i for i, p in enumerate(procs) if p.is_alive()]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(10)
    outs: list[dict[str, Any] | None] = []
    for i, path in enumerate(paths):
        if os.path.exists(path):
            with open(path, "rb") as f:
                outs.append(pickle.load(f))
        else:
            outs.append(None)
            if i not in hung:
                hung.append(i)
    if hung:
        codes = {i: procs[i].exitcode for i in hung if i < len(procs)}
        errs = [o["error"] for o in outs if o is not None and not o["ok"]]
        raise AssertionError(f"workers {hung} hung or died (exit codes {codes}); errors: {errs}")
    return _collect(outs, "process")


def run_threads(
    fn: Callable[..., Any], kwargs_list: Sequence[dict[str, Any]], timeout: float = 90.0
) -> list[Any]:
    """Run ``fn`` in one thread per kwargs dict, started together on a barrier."""
    n = len(kwargs_list)
    ctl = Ctl(threading.Barrier(n), ThreadCounter())
    outs: list[dict[str, Any] | None] = [None] * n

    def target(i: int, kw: dict[str, Any]) -> None:
        try:
            outs[i] = {"ok": True, "result": fn(wid=i, ctl=ctl, **kw)}
        except BaseException:
            outs[i] = {"ok": False, "error": traceback.format_exc()}
            ctl.barrier.abort()

    threads = [
        threading.Thread(target=target, args=(i, dict(kw)), daemon=True)
        for i, kw in enumerate(kwargs_list)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    if hung:
        ctl.barrier.abort()
        raise AssertionError(f"threads {hung} hung")
    return _collect(outs, "thread")


def w_role(wid: int, ctl: Ctl, role: str, **kw: Any) -> Any:
    """Run the worker function named ``role``: mixed roles in one run."""
    return globals()[role](wid=wid, ctl=ctl, **kw)


# ------------------------------------------------------- self-checking values


def make_blob(tag: str, size: int) -> tuple[str, str, bytes]:
    """A value that proves it is whole: (tag, sha256 of payload, payload)."""
    payload = os.urandom(size)
    return (tag, hashlib.sha256(payload).hexdigest(), payload)


def check_blob(v: Any) -> str:
    """Return the tag of a whole blob; raise AssertionError for a torn one."""
    if not (isinstance(v, tuple) and len(v) == 3):
        raise AssertionError(f"not a blob: {type(v).__name__} {str(v)[:80]}")
    tag, digest, payload = v
    if hashlib.sha256(payload).hexdigest() != digest:
        raise AssertionError(f"torn blob {tag}: {len(payload)} bytes, digest mismatch")
    return str(tag)


def _inc(v: Any) -> int:
    return 1 if v is ITEM_NOT_AVAILABLE else int(v) + 1


# -------------------------------------------------------------- lost updates


def w_increment_transform(
    wid: int,
    ctl: Ctl,
    store: Any,
    key: Any,
    n_incr: int,
    time_limit: float,
    subdict: str | None = None,
    n_retries: int | None = 3,
) -> dict[str, Any]:
    """transform_item(+1) n_incr times; report every value this worker wrote."""
    d = open_store(store)
    if subdict is not None:
        d = d.get_subdict(subdict)
    rnd = random.Random(wid)
    calls = 0

    def inc(v: Any) -> int:
        nonlocal calls
        calls += 1
        if rnd.random() < 0.3:  # widen the read-to-write window
            time.sleep(rnd.random() * 0.002)
        return _inc(v)

    written: list[int] = []
    conflicts = 0
    ctl.wait()
    deadline = time.monotonic() + time_limit
    while len(written) < n_incr and time.monotonic() < deadline:
        try:
            r = d.transform_item(key, transformer=inc, n_retries=n_retries)
        except ConcurrencyConflictError:
            conflicts += 1
            continue
        written.append(plain(r.new_value))
    ctl.mark_done()
    return {"written": written, "conflicts": conflicts, "calls": calls}


def w_increment_cas(
    wid: int, ctl: Ctl, store: Any, key: Any, n_incr: int, time_limit: float
) -> dict[str, Any]:
    """A hand-written CAS loop: get_with_etag, then set_item_if(ETAG_IS_THE_SAME)."""
    d = open_store(store)
    written: list[int] = []
    misses = 0
    anomalies: list[str] = []
    ctl.wait()
    deadline = time.monotonic() + time_limit
    while len(written) < n_incr and time.monotonic() < deadline:
        r = d.get_with_etag(key)
        if r.new_value is ITEM_NOT_AVAILABLE:
            expected, new = ITEM_NOT_AVAILABLE, 1
        else:
            expected, new = r.actual_etag, int(r.new_value) + 1
        res = d.set_item_if(key, value=new, condition=ETAG_IS_THE_SAME, expected_etag=expected)
        if res.condition_was_satisfied:
            written.append(new)
            if res.actual_etag != expected:
                anomalies.append(f"satisfied but actual {res.actual_etag!r} != {expected!r}")
            if res.resulting_etag == expected:
                anomalies.append(f"value {new} written but etag unchanged {expected!r}")
        else:
            misses += 1
            if res.actual_etag == expected:
                anomalies.append(f"not satisfied though actual == expected {expected!r}")
    ctl.mark_done()
    return {"written": written, "misses": misses, "anomalies": anomalies}


# ------------------------------------------------------------ double winners

INSERT_METHODS = ("setdefault_if", "set_item_if", "setdefault")


def w_insert_race(
    wid: int, ctl: Ctl, store: Any, n_rounds: int, prefix: str = "r"
) -> list[tuple[Any, ...]]:
    """Each round every worker tries to insert its own value into one fresh key."""
    d = open_store(store)
    out = []
    for rnd in range(n_rounds):
        key = f"{prefix}{rnd}"
        mine = f"w{wid}-{prefix}{rnd}"
        method = INSERT_METHODS[rnd % len(INSERT_METHODS)]
        ctl.wait()
        if method == "setdefault_if":
            res = d.setdefault_if(
                key, default_value=mine, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
            )
            won = res.actual_etag is ITEM_NOT_AVAILABLE
            seen = plain(res.new_value)
        elif method == "set_item_if":
            res = d.set_item_if(
                key, value=mine, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE
            )
            won = res.condition_was_satisfied
            seen = plain(res.new_value)
        else:
            seen = d.setdefault(key, mine)
            won = seen == mine
        after = d[key]
        out.append((key, method, mine, won, seen, after))
    ctl.mark_done()
    return out


def w_append_only_race(wid: int, ctl: Ctl, store: Any, n_rounds: int) -> list[tuple[Any, ...]]:
    """Append-only store: every worker inserts its value into one fresh key."""
    d = open_store(store)
    out = []
    for rnd in range(n_rounds):
        key = ("ao", f"k{rnd}")
        mine = f"w{wid}-k{rnd}"
        ctl.wait()
        try:
            d[key] = mine
            won = True
        except MutationPolicyError:
            won = False
        reads = [d[key]]
        try:  # an overwrite of an existing key must always be refused
            d[key] = mine + "-again"
            again = True
        except MutationPolicyError:
            again = False
        reads.append(d[key])
        out.append((key, mine, won, again, reads))
    ctl.mark_done()
    return out


# --------------------------------------------------------------- torn reads


def w_big_writer(
    wid: int,
    ctl: Ctl,
    store: Any,
    key: Any,
    n_writes: int,
    time_limit: float,
    min_size: int,
    max_size: int,
) -> dict[str, Any]:
    """Overwrite ``key`` with large self-checking values, three different ways."""
    d = open_store(store)
    rnd = random.Random(1000 + wid)
    etags: dict[str, str] = {}
    tags: list[str] = []
    ctl.wait()
    deadline = time.monotonic() + time_limit
    for seq in range(n_writes):
        if time.monotonic() > deadline:
            break
        v = make_blob(f"w{wid}-{seq}", rnd.randint(min_size, max_size))
        tags.append(v[0])
        if seq % 3 == 0:
            d[key] = v
        elif seq % 3 == 1:
            r = d.set_item_if(key, value=v, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
            etags[plain(r.resulting_etag)] = v[0]
        else:
            t = d.transform_item(key, transformer=lambda _old, v=v: v, n_retries=None)
            etags[plain(t.resulting_etag)] = v[0]
    ctl.mark_done()
    return {"role": "writer", "tags": tags, "etags": etags}


def w_big_reader(
    wid: int, ctl: Ctl, store: Any, key: Any, n_writers: int, max_reads: int, time_limit: float
) -> dict[str, Any]:
    """Read ``key`` until the writers finish; every read must be a whole value."""
    d = open_store(store)
    errors: list[str] = []
    etags: dict[str, str] = {}
    seen: set[str] = set()
    n = 0
    ctl.wait()
    deadline = time.monotonic() + time_limit
    while n < max_reads and time.monotonic() < deadline and ctl.n_done() < n_writers:
        n += 1
        try:
            if n % 2:
                r = d.get_with_etag(key)
                tag = check_blob(r.new_value)
                e = plain(r.actual_etag)
                if etags.setdefault(e, tag) != tag:
                    errors.append(f"etag {e} names both {etags[e]} and {tag}")
            else:
                tag = check_blob(d[key])
            seen.add(tag)
        except Exception as exc:  # a torn read may surface as any error
            errors.append(f"read {n}: {type(exc).__name__}: {exc}"[:300])
            if len(errors) > 20:
                break
    ctl.mark_done()
    return {"role": "reader", "reads": n, "errors": errors, "etags": etags, "seen": sorted(seen)}


# -------------------------------------------------------------- stale etags

STALE_VALUE_LEN = 64


def _fixed(s: str) -> str:
    """Every value in the stale-etag test pickles to the same number of bytes."""
    return s.ljust(STALE_VALUE_LEN, ".")


def w_stale_holder(
    wid: int, ctl: Ctl, store: Any, key: Any, n_iters: int, time_limit: float
) -> dict[str, Any]:
    """Hold an etag while the mutator rewrites the key; use the stale etag."""
    d = open_store(store)
    violations: list[str] = []
    done = 0
    deadline = time.monotonic() + time_limit
    for i in range(n_iters):
        if time.monotonic() > deadline:
            ctl.mark_done()  # tells the mutator, after barrier A, to stop too
        ctl.wait()  # A: read the etag
        if ctl.n_done():
            break
        r = d.get_with_etag(key)
        stale = r.actual_etag
        ctl.wait()  # B: the mutator rewrites the key
        ctl.wait()  # C: the etag is stale now
        mine = _fixed(f"holder-{i}")
        s = d.set_item_if(key, value=mine, condition=ETAG_IS_THE_SAME, expected_etag=stale)
        if s.condition_was_satisfied:
            violations.append(f"iter {i}: set_item_if accepted stale etag {stale!r}")
        g = d.get_item_if(key, condition=ETAG_IS_THE_SAME, expected_etag=stale)
        if g.condition_was_satisfied:
            violations.append(f"iter {i}: get_item_if(ETAG_IS_THE_SAME) matched stale etag")
        h = d.get_item_if(key, condition=ETAG_HAS_CHANGED, expected_etag=stale)
        if not h.condition_was_satisfied:
            violations.append(f"iter {i}: get_item_if(ETAG_HAS_CHANGED) says unchanged")
        x = d.discard_if(key, condition=ETAG_IS_THE_SAME, expected_etag=stale)
        if x.condition_was_satisfied:
            violations.append(f"iter {i}: discard_if accepted stale etag {stale!r}")
            d[key] = _fixed(f"restored-{i}")
        # Positive control (the mutator is idle): a fresh etag must work, so
        # the test cannot pass by set_item_if refusing everything.
        fresh = d.get_with_etag(key)
        ok = d.set_item_if(
            key, value=mine, condition=ETAG_IS_THE_SAME, expected_etag=fresh.actual_etag
        )
        if not ok.condition_was_satisfied:
            violations.append(f"iter {i}: set_item_if refused a fresh etag")
        done += 1
    return {"violations": violations, "iters": done}


def w_stale_mutator(
    wid: int, ctl: Ctl, store: Any, key: Any, n_iters: int, time_limit: float
) -> dict[str, Any]:
    """Rewrite the key with same-size values between the holder's steps."""
    d = open_store(store)
    done = 0
    for i in range(n_iters):
        ctl.wait()  # A
        if ctl.n_done():  # the holder ran out of time
            break
        ctl.wait()  # B
        variant = i % 3
        if variant == 0:  # one same-size overwrite
            d[key] = _fixed(f"mut-{i}-a")
        elif variant == 1:  # two: the second may reuse the first inode
            d[key] = _fixed(f"mut-{i}-a")
            d[key] = _fixed(f"mut-{i}-b")
        else:  # delete and re-create
            del d[key]
            d[key] = _fixed(f"mut-{i}-c")
        ctl.wait()  # C
        done += 1
    return {"iters": done}


# --------------------------------------------------------- discard / pop races


def w_drain(
    wid: int, ctl: Ctl, store: Any, method: str, keys: list[Any], time_limit: float
) -> list[tuple[Any, Any]]:
    """Remove keys with ``method``; report every (key, value) this worker got."""
    d = open_store(store)
    order = list(keys)
    random.Random(wid).shuffle(order)
    got: list[tuple[Any, Any]] = []
    ctl.wait()
    deadline = time.monotonic() + time_limit
    if method == "popitem":
        for _ in range(len(keys) + 1):
            if time.monotonic() > deadline:
                raise AssertionError("popitem drain ran out of time")
            try:
                k, v = d.popitem()
            except KeyError:
                break
            got.append((tuple(k), v))
        else:
            raise AssertionError("popitem returned more items than were inserted")
    else:
        for k in order:
            if method == "pop":
                v = d.pop(k, _MISSING)
                if v is not _MISSING:
                    got.append((tuple(k), v))
            elif method == "discard":
                if d.discard(k):
                    got.append((tuple(k), None))
            elif method == "discard_if":
                r = d.discard_if(k, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
                if r.actual_etag is not ITEM_NOT_AVAILABLE:
                    if not r.condition_was_satisfied or r.resulting_etag is not ITEM_NOT_AVAILABLE:
                        raise AssertionError(f"discard_if(ANY_ETAG) did not delete {k}: {r}")
                    got.append((tuple(k), None))
            else:
                raise ValueError(method)
    ctl.mark_done()
    return got


# ------------------------------------------------------------ directory races


def w_dir_writer(
    wid: int, ctl: Ctl, store: Any, n_keys: int, time_limit: float
) -> list[tuple[Any, Any]]:
    """Create fresh keys in subdirectories that a deleter keeps emptying."""
    d = open_store(store)
    written = []
    ctl.wait()
    deadline = time.monotonic() + time_limit
    for i in range(n_keys):
        if time.monotonic() > deadline:
            break
        key = ("sub", f"d{i % 3}", f"w{wid}-{i}")
        val = f"v-{wid}-{i}"
        m = i % 4
        if m == 0:
            d[key] = val
        elif m == 1:
            r = d.setdefault_if(
                key, default_value=val, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE
            )
            if r.actual_etag is not ITEM_NOT_AVAILABLE:
                raise AssertionError(f"fresh key {key} was not absent: {r}")
        elif m == 2:
            r = d.set_item_if(
                key, value=val, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE
            )
            if not r.condition_was_satisfied:
                raise AssertionError(f"insert of fresh key {key} refused: {r}")
        else:
            t = d.transform_item(key, transformer=lambda _v, val=val: val, n_retries=None)
            if t.new_value != val:
                raise AssertionError(f"transform_item on {key} returned {t.new_value!r}")
        written.append((key, val))
    ctl.mark_done()
    return written


def w_dir_deleter(
    wid: int, ctl: Ctl, store: Any, n_writers: int, max_rounds: int, time_limit: float
) -> list[tuple[Any, Any]]:
    """Delete every key under 'sub' as soon as it shows up (pruning dirs)."""
    d = open_store(store)
    sub = d.get_subdict("sub")
    deleted = []
    ctl.wait()
    deadline = time.monotonic() + time_limit
    for _ in range(max_rounds):
        if ctl.n_done() >= n_writers or time.monotonic() > deadline:
            break
        for k in list(sub.keys()):
            full = ("sub", *tuple(k))
            v = d.pop(full, _MISSING)
            if v is not _MISSING:
                deleted.append((full, v))
    ctl.mark_done()
    return deleted


# ------------------------------------------------------------- SIGKILL tests


def log_line(fd: int, *fields: Any) -> None:
    """One O_APPEND write per record: a SIGKILL cannot tear it."""
    os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())


def kill_writer(
    store: Any,
    keys: list[str],
    log_path: str,
    run: int,
    started: Any,
    max_ops: int = 1_000_000,
    max_size: int = 1 << 20,
) -> None:
    """Hammer overwrites on ``keys`` until SIGKILLed; log intent and completion."""
    d = open_store(store)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rnd = random.Random(run)
    for seq in range(max_ops):
        key = keys[seq % len(keys)]
        size = rnd.choice((100, 4096, max_size // 4, max_size))
        v = (key, run, seq, *make_blob(f"{key}-{run}-{seq}", size))
        log_line(fd, "I", key, run, seq)
        m = seq % 3
        if m == 0:
            d[key] = v
        elif m == 1:
            d.transform_item(key, transformer=lambda _old, v=v: v, n_retries=None)
        else:
            cur = d.get_with_etag(key)
            r = d.set_item_if(
                key, value=v, condition=ETAG_IS_THE_SAME, expected_etag=cur.actual_etag
            )
            if not r.condition_was_satisfied:
                log_line(fd, "F", key, run, seq)  # nobody else writes: a bug
                continue
        log_line(fd, "D", key, run, seq)
        if seq == 0:
            started.set()
    started.set()
    time.sleep(60)  # never exit on our own: the parent kills us


def check_killed_value(v: Any) -> tuple[str, int, int]:
    """A value written by ``kill_writer`` must be whole: return (key, run, seq)."""
    if not (isinstance(v, tuple) and len(v) == 6):
        raise AssertionError(f"not a writer value: {type(v).__name__}")
    key, run, seq, tag, digest, payload = v
    check_blob((tag, digest, payload))
    return key, run, seq


def cas_spinner(store: Any, key: str, max_ops: int, started: Any) -> None:
    """A tight set_item_if loop: most of its life is spent holding the lock."""
    d = open_store(store)
    for i in range(max_ops):
        cur = d.get_with_etag(key)
        d.set_item_if(
            key, value=(key, i), condition=ETAG_IS_THE_SAME, expected_etag=cur.actual_etag
        )
        d.set_item_if(key, value=(key, -i), condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)
        if i == 0:
            started.set()
    time.sleep(60)


def pop_spinner(store: Any, method: str, started: Any) -> None:
    """popitem / clear on a populated store until killed."""
    d = open_store(store)
    started.set()
    if method == "clear":
        d.clear()
    else:
        with contextlib.suppress(KeyError):
            for _ in range(100_000):
                d.popitem()
    time.sleep(60)


def probe_all_keys(store: Any, keys: list[str], out_path: str) -> None:
    """A fresh process: every key must be lockable and writable right away."""
    t0 = time.monotonic()
    try:
        d = open_store(store)
        for key in keys:
            cur = d.get_with_etag(key)
            r = d.set_item_if(
                key,
                value=("probe", key),
                condition=ETAG_IS_THE_SAME,
                expected_etag=cur.actual_etag,
            )
            if not r.condition_was_satisfied:
                raise AssertionError(f"probe set_item_if refused on {key}")
            d.transform_item(key, transformer=lambda _v, key=key: ("probe2", key))
            d[key] = ("probe3", key)
            if d[key] != ("probe3", key):
                raise AssertionError(f"probe read back wrong value for {key}")
        out: dict[str, Any] = {"ok": True, "elapsed": time.monotonic() - t0}
    except BaseException:
        out = {"ok": False, "error": traceback.format_exc()}
    with open(out_path, "wb") as f:
        pickle.dump(out, f)


# ---------------------------------------------------------- lock inspection

_FLOCK = "hhqqi4x"  # struct flock on Linux x86-64/aarch64: type, whence, start, len, pid


def lock_file_is_locked(lock_path: str | os.PathLike[str]) -> bool | None:
    """Ask the kernel whether anybody holds any OFD byte-range lock on the file.

    Independent of persidict: F_OFD_GETLK on our own descriptor. Returns None
    when the lock file does not exist.
    """
    from persidict.concurrency import locks

    if locks.BACKEND == "flock":  # the stripe files lock-00 .. next to it instead
        return stripes_are_locked(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        req = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        res = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, req)
        return struct.unpack(_FLOCK, res)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def stripes_are_locked(lock_path: str | os.PathLike[str]) -> bool | None:
    """Is any flock stripe of ``lock_path`` held? A flock(LOCK_NB) probe on our own
    descriptor of each; None when there is no stripe file."""
    base = os.fspath(lock_path)
    directory, name = os.path.split(base)
    stripes = [f for f in os.listdir(directory) if f.startswith(name + "-")]
    if not stripes:
        return None
    for stripe in stripes:
        fd = os.open(os.path.join(directory, stripe), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # drops our probe's flock with it
    return False


def fork_while_spinning(
    store: Any, key: str, n_children: int, pids_path: str, started: Any
) -> None:
    """Spin set_item_if in a thread while the main thread forks idle children.

    The children never touch the store (think: a worker pool forked by the
    application). They inherit the lock descriptor; if one is forked while
    the spinner holds the key lock, the lock must still die with its holder.
    """
    d = open_store(store)
    stop = threading.Event()

    def spin() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            d.set_item_if(key, value=(key, i), condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    time.sleep(0.05)
    pids = []
    for _ in range(n_children):
        pid = os.fork()
        if pid == 0:  # the child: idle, then leave without cleanup
            time.sleep(30)
            os._exit(0)
        pids.append(pid)
        time.sleep(0.003)
    with open(pids_path, "w") as f:
        f.write(" ".join(map(str, pids)))
    started.set()
    time.sleep(60)


def w_popitem_refill(
    wid: int, ctl: Ctl, store: Any, n_ops: int, time_limit: float
) -> dict[str, Any]:
    """Loop popitem() then insert a fresh key; count the KeyErrors seen.

    Started from more keys than workers, the store is never empty: each
    worker holds at most one popped-but-not-refilled slot at a time.
    """
    d = open_store(store)
    ctl.wait()
    empty = pops = 0
    popped: list[Any] = []
    deadline = time.monotonic() + time_limit
    for i in range(n_ops):
        if time.monotonic() > deadline:
            break
        try:
            _, v = d.popitem()
            pops += 1
            popped.append(v)
        except KeyError:
            empty += 1
        d[f"w{wid}-{i}"] = f"w{wid}-{i}"
    return {"empty": empty, "pops": pops, "popped": popped}
