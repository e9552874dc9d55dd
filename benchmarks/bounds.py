"""What bounds the misses vs diskcache: each cost layer of an operation, timed together.

    .venv/bin/python -m benchmarks.bounds [--dir /dev/shm] [--reps 7] [--keys 2000]

Two operations built up from the bare system calls to our public call,
interleaved in one run (harness.py), so that each step's cost is the
difference of two rows (the first trails diskcache; the second did until
repeated listings reused the checks of an unchanged snapshot, walk_memo):

- ``transform_item`` +1 vs ``incr``: read + loads + dumps + temp write +
  rename in bare ``os`` calls; the same under the key's OFD lock (every
  writer of a file-per-key store must exclude the others: two fcntl calls);
  our crash-safe primitives composed by hand (the lock context,
  ``read_file``, ``write_atomic`` with its journaled temp name); the
  whole increment inlined by hand in one function (the same system
  calls, the etag and the result, without the layers, the error mapping
  and the re-entry grant); and ``transform_item`` itself.
- iterating 10k keys vs ``list(iter(cache))``: one ``getdents64`` snapshot
  of the directory parsed into names (``list_dir``); an ``os.scandir`` walk;
  ``list(iter(d))``.

Speed-ups are diskcache's time / the row's (> 1: faster than diskcache).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import pickle
import struct
import sys
import tempfile
from collections.abc import Callable

import diskcache

from persidict import FileDirDict
from persidict.concurrency.atomic import read_file, write_atomic
from persidict.concurrency.journal import temp_name
from persidict.concurrency.listing import list_dir
from persidict.concurrency.locks_common import Hold
from persidict.engine.keys import to_key
from persidict.engine.results import OperationResult

from .harness import Body, Case, Timing, interleave
from .listing import scandir_walk

_FLOCK = struct.Struct("hhqqi4x")
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def _loop(keys: list[str], op: Callable[[str], object]) -> Body:
    def body() -> None:
        for k in keys:
            op(k)
    return body


def transform_cases(root: str, n: int) -> list[Case]:
    """The layers of one increment, each a case over ``n`` keys."""
    d: FileDirDict[int] = FileDirDict(base_dir=f"{root}/ours", durable=False)
    cache = diskcache.Cache(f"{root}/dc")
    keys = [f"c{i}" for i in range(n)]
    for k in keys:
        d[k] = 0
        cache.set(k, 0)
    fb = d.byte_store
    where = {k: fb.where(to_key(k)) for k in keys}  # type: ignore[attr-defined]
    bare = f"{root}/bare"
    os.makedirs(bare)
    for k in keys:
        with open(f"{bare}/{k}", "wb") as f:
            f.write(pickle.dumps(0))
    lock_fd = os.open(f"{root}/bare.lock", os.O_RDWR | os.O_CREAT, 0o666)

    def floor(k: str) -> None:
        path, tmp = f"{bare}/{k}", f"{bare}/@{k}"
        fd = os.open(path, os.O_RDONLY)
        data = os.read(fd, 65536)
        os.close(fd)
        new = pickle.dumps(pickle.loads(data) + 1, protocol=pickle.HIGHEST_PROTOCOL)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        os.write(fd, new)
        os.close(fd)
        os.replace(tmp, path)

    def locked_floor(k: str) -> None:
        offset = hash(k) & 0xFFFFFF
        fcntl.fcntl(lock_fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, 0, offset, 1, 0))
        try:
            floor(k)
        finally:
            fcntl.fcntl(lock_fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, 0, offset, 1, 0))

    def primitives(k: str) -> None:
        path, locks, offset = where[k]
        with locks.hold_at(offset, k):
            data = read_file(path)
            assert data is not None
            new = pickle.dumps(pickle.loads(data) + 1, protocol=pickle.HIGHEST_PROTOCOL)
            write_atomic(path, new, durable=False, tmp_dir=fb.journal.directory)

    def inc(v: int) -> int:
        return v + 1

    tmp_dir = fb.journal.directory

    def inlined(k: str) -> OperationResult[int]:
        # What transform_item does here, in one function: no layers, no
        # error mapping, no re-entry grant; the EOF-confirming read kept.
        key = to_key(k)
        path, locks, offset = fb.where(key)  # type: ignore[attr-defined]
        with Hold(locks, offset, key):
            fd = os.open(path, _READ)
            try:
                data = os.read(fd, 65536)
                os.read(fd, 65536)
            finally:
                os.close(fd)
            new = inc(pickle.loads(data))
            encoded = pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL)
            etag = hashlib.sha256(encoded).hexdigest()[:32]
            tmp = f"{tmp_dir}/{temp_name()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                os.write(fd, encoded)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        return OperationResult(etag, new)  # type: ignore[arg-type]

    def fixed(body: Body) -> Callable[[int], Body]:
        return lambda rep: body

    return [
        Case("diskcache incr", fixed(_loop(keys, cache.incr)), n),
        Case("bare os: read + write + rename", fixed(_loop(keys, floor)), n),
        Case("bare os + OFD key lock", fixed(_loop(keys, locked_floor)), n),
        Case("our primitives (lock, read_file, write_atomic)", fixed(_loop(keys, primitives)), n),
        Case("transform_item inlined by hand (Hold, os calls, etag, result)",
             fixed(_loop(keys, inlined)), n),
        Case("transform_item", fixed(_loop(keys, lambda k: d.transform_item(k, transformer=inc))),
             n),
    ]


def iteration_cases(root: str, n: int) -> list[Case]:
    """The layers of listing ``n`` one-component keys."""
    d: FileDirDict[int] = FileDirDict(base_dir=f"{root}/list", durable=False)
    cache = diskcache.Cache(f"{root}/dc-list")
    for i in range(n):
        d[f"key{i}"] = 0
        cache.set(f"key{i}", 0)
    base = d.base_dir

    def fixed(body: Body) -> Callable[[int], Body]:
        return lambda rep: body

    return [
        Case("diskcache list(iter(cache))", fixed(lambda: list(iter(cache))), n),
        Case("one getdents64 snapshot, parsed (list_dir)", fixed(lambda: list_dir(base)), n),
        Case("os.scandir walk", fixed(lambda: scandir_walk(base)), n),
        Case("list(iter(d))", fixed(lambda: list(iter(d))), n),
    ]


def table(title: str, timings: dict[str, Timing], peer: str) -> list[str]:
    """Markdown rows: per-op wall and CPU time, speed-up vs ``peer`` on both."""
    p = timings[peer]
    lines = [f"## {title}", "", "| layer | wall us/op | cpu us/op | speed-up vs diskcache "
             "(wall) | (cpu) |", "|---|---:|---:|---:|---:|"]
    for label, t in timings.items():
        lines.append(f"| {label} | {t.wall_us:.2f} | {t.cpu_us:.2f} | "
                     f"{p.wall_us / t.wall_us:.2f}x | {p.cpu_us / t.cpu_us:.2f}x |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    """Run both groups and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--keys", type=int, default=2000, help="keys per increment pass")
    ap.add_argument("--list-keys", type=int, default=10_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        inc = interleave(transform_cases(root, args.keys), args.reps)
        listed = interleave(iteration_cases(root, args.list_keys), args.reps)
    print("\n".join(table("transform_item +1 vs incr", inc, "diskcache incr")
                    + table(f"iterating {args.list_keys} keys", listed,
                            "diskcache list(iter(cache))")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
