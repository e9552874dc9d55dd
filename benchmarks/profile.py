"""Profile one benchmark workload: where does the time of an operation go?

    .venv/bin/python -m benchmarks.profile set            # py-spy, 5 s
    .venv/bin/python -m benchmarks.profile iter --tool cprofile

Workloads (FileDirDict on tmpfs, durable=False, ~100 B pickled values, unless
prefixed ``local-`` for LocalDict): set, get, in, etag, set_item_if,
setdefault_if, transform, discard_if, len, iter, local-set, local-get,
local-in, local-set_item_if, local-transform, local-iter.

With py-spy (sampling, low overhead) the worker runs in a child process and
only the samples inside the timed loop count; a Python function's *self*
time includes the C calls it makes (so syscalls show up in their caller).
Output: the functions with the largest self and inclusive shares.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from persidict import ANY_ETAG, ETAG_IS_THE_SAME, ITEM_NOT_AVAILABLE, FileDirDict, LocalDict

from .common import SMALL_VALUE

WORKLOADS = ("set", "get", "in", "etag", "set_item_if", "setdefault_if", "transform",
             "discard_if", "len", "iter", "local-set", "local-get", "local-in",
             "local-set_item_if", "local-transform", "local-iter")
_KEYS = 2000
_LISTED = 10_000


def _inc(value: object) -> int:
    return 1 if value is ITEM_NOT_AVAILABLE else value + 1  # type: ignore[operator]


def build(workload: str, scratch: str) -> Callable[[], None]:
    """Set up a store for ``workload``; return one round of operations."""
    local = workload.startswith("local-")
    op = workload.removeprefix("local-")
    d = LocalDict() if local else FileDirDict(base_dir=scratch, durable=False)
    v = SMALL_VALUE
    n = _LISTED if op in ("len", "iter") else _KEYS
    for i in range(n):
        d[f"k{i}"] = v
        if op not in ("len", "iter"):
            d[f"c{i}"] = 0
    keys = [f"k{i}" for i in range(min(n, _KEYS))]
    tags = [(k, d.etag(k)) for k in keys] if op in ("set_item_if", "discard_if") else []
    fresh = iter(range(10**9))

    def one_round() -> None:
        if op == "set":
            for k in keys:
                d[k] = v
        elif op == "get":
            for k in keys:
                d[k]
        elif op == "in":
            for k in keys:
                k in d  # noqa: B015
        elif op == "etag":
            for k in keys:
                d.etag(k)
        elif op == "set_item_if":
            for k, e in tags:
                d.set_item_if(k, value=v, condition=ETAG_IS_THE_SAME, expected_etag=e)
        elif op == "setdefault_if":
            for _ in range(len(keys)):
                d.setdefault_if(f"n{next(fresh)}", default_value=v, condition=ANY_ETAG,
                                expected_etag=ITEM_NOT_AVAILABLE)
        elif op == "transform":
            for i in range(len(keys)):
                d.transform_item(f"c{i}", transformer=_inc)
        elif op == "discard_if":
            for k, e in tags:
                d.discard_if(k, condition=ETAG_IS_THE_SAME, expected_etag=e)
                d[k] = v
        elif op == "len":
            len(d)
        elif op == "iter":
            list(iter(d))
        else:
            raise ValueError(workload)

    return one_round


def _measured(one_round: Callable[[], None], seconds: float) -> int:
    """The timed loop: the only frames the py-spy report counts."""
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        one_round()
        rounds += 1
    return rounds


def worker(workload: str, seconds: float, tool: str) -> None:
    """Run ``workload`` for ``seconds`` (under cProfile if asked)."""
    scratch = tempfile.mkdtemp(prefix="persidict-prof-", dir="/dev/shm")
    try:
        one_round = build(workload, scratch)
        if tool == "cprofile":
            prof = cProfile.Profile()
            prof.enable()
            _measured(one_round, seconds)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        else:
            _measured(one_round, seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _short(frame: str) -> str:
    # py-spy frames look like "func (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("/persidict/", "/python3.11/", "/site-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({os.path.basename(path) if path.startswith('/') else path})"


def summarize(raw_path: str, top: int) -> str:
    """Self and inclusive shares per function of the samples in _measured."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            idx = next((i for i, fr in enumerate(frames) if fr.startswith("_measured ")), None)
            if idx is None or not count.isdigit():
                continue  # imports, setup
            n = int(count)
            inner = [_short(fr) for fr in frames[idx + 1:]] or ["_measured (loop)"]
            total += n
            self_t[inner[-1]] += n
            for fr in set(inner):
                incl[fr] += n
    lines = [f"samples in the timed loop: {total}", "", "self time (incl. the C calls made):"]
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in self_t.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in incl.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tool", choices=("py-spy", "cprofile"), default="py-spy")
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker or args.tool == "cprofile":
        worker(args.workload, args.seconds, args.tool)
        return 0
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "stacks.txt")
        cmd = [spy, "record", "--rate", "1000", "--format", "raw", "--output", raw, "--",
               sys.executable, "-m", "benchmarks.profile", args.workload, "--worker",
               "--seconds", str(args.seconds)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=args.seconds + 300)
        print(f"# {args.workload}: py-spy, {args.seconds:g} s")
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
