"""What the crash journal costs per write, measured against a baseline in one run.

Baseline: the pre-journal write - a temp file in the target's own directory
(pid + random name), write, [fsync], rename, [fsync dir]. Journal: persidict's
``write_atomic`` with the temp in ``@persidict/tmp`` and the owner's identity
(pid + start time + boot id) in its name. Both write the same 1 KiB values
to the same keys, interleaved in rounds so drift hits both alike; the
median per-write time of each is printed, durable and not, on /dev/shm
(tmpfs) and on disk.

    python benchmarks/journal_cost.py [--writes N] [--rounds R] [--disk-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from persidict.concurrency.atomic import fsync_dir, write_atomic


def baseline_write(path: str, data: bytes, *, durable: bool) -> None:
    """The same-directory temp + rename that persidict used before the journal."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f"@tmp-{os.getpid()}-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def _round(write: Callable[[str], None], paths: list[str]) -> float:
    start = time.perf_counter()
    for p in paths:
        write(p)
    return (time.perf_counter() - start) / len(paths)


def measure(
    root: str, durable: bool, writes: int, rounds: int
) -> tuple[float, float, float, float]:
    """Seconds per write: (baseline min, journal min, baseline median, journal median)."""
    store = os.path.join(root, "store")
    journal = os.path.join(store, "@persidict", "tmp")
    keys = os.path.join(store, "k_abcd")
    os.makedirs(journal, exist_ok=True)
    os.makedirs(keys, exist_ok=True)
    paths = [os.path.join(keys, f"key{i % 100}_abcd.pkl") for i in range(writes)]
    data = os.urandom(1024)

    def base(p: str) -> None:
        baseline_write(p, data, durable=durable)

    def jour(p: str) -> None:
        write_atomic(p, data, durable=durable, tmp_dir=journal)

    _round(base, paths[:20])  # warm up both paths (dentries, allocator)
    _round(jour, paths[:20])
    b, j = [], []
    for r in range(rounds):
        order = [(base, b), (jour, j)] if r % 2 == 0 else [(jour, j), (base, b)]
        for fn, out in order:
            out.append(_round(fn, paths))
    # The minimum is the least disturbed round (other load only adds time).
    return min(b), min(j), statistics.median(b), statistics.median(j)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes per round (non-durable)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--disk-dir", default=os.path.expanduser("~"), help="a disk directory")
    args = parser.parse_args()
    places = [("tmpfs", "/dev/shm"), ("disk", args.disk_dir)]
    print("per-write microseconds, min (median) over rounds")
    print(f"{'where':6} {'durable':8} {'baseline':>16} {'journal':>16} {'cost':>8} {'cost':>7}")
    for where, parent in places:
        if not os.path.isdir(parent):
            continue
        for durable in (False, True):
            root = tempfile.mkdtemp(prefix="persidict-journal-bench-", dir=parent)
            try:
                writes = args.writes if not durable else max(50, args.writes // 10)
                b, j, bm, jm = measure(root, durable, writes, args.rounds)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(
                f"{where:6} {durable!s:8} {b * 1e6:7.1f} ({bm * 1e6:6.1f}) "
                f"{j * 1e6:7.1f} ({jm * 1e6:6.1f}) "
                f"{(j - b) * 1e6:8.1f} {(j / b - 1) * 100:6.1f}%"
            )


if __name__ == "__main__":
    main()
