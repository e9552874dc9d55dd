"""The shared-cache table of issue 14: 4 processes x 20 keys x 0.2 s, computations counted.

    .venv/bin/python -m benchmarks.memo_table            # about a minute
    .venv/bin/python -m benchmarks.memo_table --s3       # and memoize on S3 (test server)
    .venv/bin/python -m benchmarks.memo_table --smoke    # seconds: 2 keys, 0.05 s

Each approach runs in fresh spawned processes that start together (a go
file) and each call f(x) once for every x in 0..keys-1, in two orders:
*same* (all in the order 0, 1, 2, ...: every key contended by every process
at once, as in the issue) and *rotated* (process i starts at key
i*keys/procs: the work can spread over the processes). The computations
are counted outside every cache: each appends a line to an O_APPEND log.
Wall time is from the go signal until the last process ends.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from persidict import ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, FileDirDict, PersiDict, memoize

_log = ""
_delay = 0.2


def _expensive(x: int) -> int:
    fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{x} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(_delay)
    return x * x


def _diskcache_memoize(where: str) -> Callable[[int], int]:
    import diskcache

    cache = diskcache.Cache(where)
    return cache.memoize(name="expensive")(_expensive)  # type: ignore[no-any-return]


def _diskcache_barrier(where: str) -> Callable[[int], int]:
    import diskcache

    cache = diskcache.Cache(where)
    inner = cache.memoize(name="expensive")(_expensive)
    return diskcache.barrier(cache, diskcache.Lock, name="expensive-barrier")(inner)  # type: ignore[no-any-return]


def _file_store(where: str) -> PersiDict[Any]:
    return FileDirDict(base_dir=where)


def _by_hand(where: str) -> Callable[[int], int]:
    store = _file_store(where)

    def f(x: int) -> int:
        key = ("expensive", str(x))
        if key in store:
            return store[key]  # type: ignore[no-any-return]
        return store.setdefault(key, _expensive(x))  # type: ignore[no-any-return]

    return f


def _claim_key(where: str) -> Callable[[int], int]:
    store = _file_store(where)

    def f(x: int) -> int:
        key, claim = ("expensive", str(x)), ("claim", str(x))
        while True:
            if key in store:
                return store[key]  # type: ignore[no-any-return]
            won = store.set_item_if(claim, value=os.getpid(), condition=ETAG_IS_THE_SAME,
                                    expected_etag=ITEM_NOT_AVAILABLE).condition_was_satisfied
            if won:  # a claim of a dead process would block every other one forever
                store[key] = value = _expensive(x)
                return value
            time.sleep(0.01)

    return f


def _memoize_file(where: str) -> Callable[[int], int]:
    return memoize(_file_store(where), name="expensive")(_expensive)


def _memoize_s3(where: str) -> Callable[[int], int]:
    from persidict import BasicS3Dict

    endpoint, prefix = where.split("|")
    store = BasicS3Dict(bucket_name="persidict-bench", root_prefix=prefix, region="us-east-1",
                        endpoint_url=endpoint)
    return memoize(store, name="expensive", lease_timeout=10.0)(_expensive)


APPROACHES: dict[str, Callable[[str], Callable[[int], int]]] = {
    "diskcache `@cache.memoize()`": _diskcache_memoize,
    "diskcache `barrier(cache, Lock)` around `memoize`": _diskcache_barrier,
    "persidict `get` + `setdefault`, by hand": _by_hand,
    "persidict, hand-written claim key via `setdefault_if`": _claim_key,
    "`persidict.memoize` on FileDirDict": _memoize_file,
}


def _worker(
    approach: str, where: str, log: str, delay: float, keys: int, go: str, start: int
) -> None:
    global _log, _delay
    _log, _delay = log, delay
    f = (APPROACHES | {"s3": _memoize_s3})[approach](where)
    while not os.path.exists(go):
        time.sleep(0.001)
    for j in range(keys):
        x = (start + j) % keys
        assert f(x) == x * x


def measure(
    approach: str, where: str, procs: int, keys: int, delay: float, rotated: bool
) -> tuple[int, float]:
    """(computations, wall seconds) of ``procs`` processes calling f on every key."""
    ctx = multiprocessing.get_context("spawn")
    scratch = tempfile.mkdtemp(prefix="memo-table-")
    log, go = os.path.join(scratch, "log"), os.path.join(scratch, "go")
    try:
        workers = [
            ctx.Process(target=_worker, args=(approach, where, log, delay, keys, go,
                                              i * keys // procs if rotated else 0))
            for i in range(procs)
        ]
        for w in workers:
            w.start()
        time.sleep(2.0)  # let every process import and open its cache
        t0 = time.monotonic()
        open(go, "w").close()
        for w in workers:
            w.join()
        wall = time.monotonic() - t0
        if any(w.exitcode for w in workers):
            raise RuntimeError(f"{approach}: a worker failed")
        with open(log) as f:
            return sum(1 for _ in f), wall
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Print the table (markdown)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memo_table")
    p.add_argument("--smoke", action="store_true", help="2 keys, 0.05 s: seconds")
    p.add_argument("--s3", action="store_true", help="add memoize on BasicS3Dict (test server)")
    p.add_argument("--procs", type=int, default=4)
    args = p.parse_args(argv)
    keys, delay = (2, 0.05) if args.smoke else (20, 0.2)
    rows = list(APPROACHES)
    print(f"{args.procs} processes x {keys} keys x {delay} s per computation "
          f"(ideal: {keys} computations)\n")
    print("| approach | computations, same order | wall s | computations, rotated | wall s |")
    print("|---|---:|---:|---:|---:|")
    for name in rows:
        cells = []
        for rotated in (False, True):
            where = tempfile.mkdtemp(prefix="memo-table-store-", dir="/var/tmp")
            try:
                n, wall = measure(name, where, args.procs, keys, delay, rotated)
            finally:
                shutil.rmtree(where, ignore_errors=True)
            cells += [str(n), f"{wall:.1f}"]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    if args.s3:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from s3_server import CREDENTIALS_ENV, get_server, stop_server

        os.environ.update(CREDENTIALS_ENV)
        try:
            server = get_server()
            cells = []
            for rotated in (False, True):
                where = f"{server.endpoint_url}|memo-table-{os.getpid()}-{rotated}"
                n, wall = measure("s3", where, args.procs, keys, delay, rotated)
                cells += [str(n), f"{wall:.1f}"]
            label = "`persidict.memoize` on BasicS3Dict (SeaweedFS, loopback)"
            print(f"| {label} | {' | '.join(cells)} |")
        finally:
            stop_server()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
