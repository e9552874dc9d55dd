"""What the crash journal costs per write, and what a durable write's Python costs.

1. Journal vs baseline. Baseline: the pre-journal write - a temp file in the
   target's own directory (pid + random name), write, [fsync], rename,
   [fsync dir]. Journal: persidict's ``write_atomic`` with the temp in
   ``@persidict/tmp`` and the owner's identity in its name. Both write the
   same 1 KiB values, alternating write by write (A B B A ...) so that load
   from other processes and the filesystem's state hit both alike; the median
   wall and CPU time per write of each is printed, durable and not, on
   /dev/shm (tmpfs) and on disk.
2. Cold Python. The same pure-Python chunk (a LocalDict write) timed warm
   and right after a durable disk write: the kernel's fsync path and the
   sleep in it leave the CPU caches cold, so every line of Python in a
   durable write costs several times what it does on tmpfs.

    python benchmarks/journal_cost.py [--writes N] [--disk-dir DIR]
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

from persidict import LocalDict
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


def measure(root: str, durable: bool, writes: int) -> dict[str, tuple[float, float]]:
    """Variant -> (median wall, median CPU) seconds per write, alternating write by write."""
    store = os.path.join(root, "store")
    journal = os.path.join(store, "@persidict", "tmp")
    keys = os.path.join(store, "k_abcd")
    os.makedirs(journal, exist_ok=True)
    os.makedirs(keys, exist_ok=True)
    data = os.urandom(1024)
    variants: dict[str, Callable[[str], None]] = {
        "baseline": lambda p: baseline_write(p, data, durable=durable),
        "journal": lambda p: write_atomic(p, data, durable=durable, tmp_dir=journal),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in variants}
    order = list(variants)
    for i in range(writes + 20):
        path = os.path.join(keys, f"key{i % 100}_abcd.pkl")
        for name in order if i % 2 else order[::-1]:
            c0, w0 = time.thread_time(), time.perf_counter()
            variants[name](path)
            w1, c1 = time.perf_counter(), time.thread_time()
            if i >= 20:  # the first writes warm up both paths (dentries, allocator)
                times[name][0].append(w1 - w0)
                times[name][1].append(c1 - c0)
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def cold_python(root: str, rounds: int) -> dict[str, float]:
    """Median CPU seconds of one LocalDict write: warm, after a sleep, after a durable write.

    Without CONFIG_IRQ_TIME_ACCOUNTING the interrupts served meanwhile are
    charged to the running task too: part of "cold" may be other I/O.
    """
    d = LocalDict()
    value = {"id": 1, "name": "x" * 40}
    target = os.path.join(root, "k")
    after: dict[str, Callable[[], object]] = {
        "warm": lambda: None,
        "after a 0.5 ms sleep": lambda: time.sleep(0.0005),
        "after a durable write": lambda: baseline_write(target, b"v", durable=True),
    }
    times: dict[str, list[float]] = {name: [] for name in after}
    for i in range(rounds):
        for name, before in after.items():
            d[f"k{i % 50}"] = value  # warms the chunk's code and data
            before()
            c0 = time.thread_time()
            d[f"k{(i + 1) % 50}"] = value
            times[name].append(time.thread_time() - c0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes per variant (non-durable)")
    parser.add_argument("--disk-dir", default=os.path.expanduser("~"), help="a disk directory")
    args = parser.parse_args()
    places = [("tmpfs", "/dev/shm"), ("disk", args.disk_dir)]
    print("per-write median microseconds, wall / CPU; write by write alternation")
    print(f"{'where':6} {'durable':8} {'baseline':>15} {'journal':>15} {'wall cost':>10}")
    for where, parent in places:
        if not os.path.isdir(parent):
            continue
        for durable in (False, True):
            root = tempfile.mkdtemp(prefix="persidict-journal-bench-", dir=parent)
            try:
                writes = args.writes if not durable else max(100, args.writes // 3)
                got = measure(root, durable, writes)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            (bw, bc), (jw, jc) = got["baseline"], got["journal"]
            print(
                f"{where:6} {durable!s:8} {bw * 1e6:7.1f}/{bc * 1e6:6.1f} "
                f"{jw * 1e6:7.1f}/{jc * 1e6:6.1f} {(jw / bw - 1) * 100:9.1f}%"
            )
    if os.path.isdir(args.disk_dir):
        root = tempfile.mkdtemp(prefix="persidict-cold-bench-", dir=args.disk_dir)
        try:
            cold = cold_python(root, 300)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        warm = cold["warm"]
        print("\none LocalDict write, median CPU: " + ", ".join(
            f"{name} {t * 1e6:.1f} us ({t / warm:.1f}x)" for name, t in cold.items()
        ))


if __name__ == "__main__":
    main()
