"""Functions the memoize tests run in spawned processes (importable by name).

The oracle is an O_APPEND log beside the store: every computation appends
``start <x> <pid>`` before it works and ``done <x> <pid>`` after, whole
lines in one write each, never through the store under test.
"""

from __future__ import annotations

import os
import time
from typing import Any

from persidict import PersiDict
from persidict.memoization import memoize


def log_line(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(log: str) -> list[list[str]]:
    try:
        with open(log) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def expensive(x: int, log: str) -> int:
    """The computation: logs its start and end; sleeps MEMO_DELAY seconds between."""
    log_line(log, f"start {x} {os.getpid()}")
    time.sleep(float(os.environ.get("MEMO_DELAY", "0.2")))
    log_line(log, f"done {x} {os.getpid()}")
    return x * x


def run_keys(
    store: PersiDict, log: str, keys: list[int], delay: float, lease_timeout: float = 30.0
) -> dict[str, Any]:
    """Call the memoized ``expensive`` on each key in order; return results and stats."""
    os.environ["MEMO_DELAY"] = str(delay)
    f = memoize(store, name="tests.expensive", lease_timeout=lease_timeout)(expensive)
    results = {x: f(x, log) for x in keys}
    return {"results": results, "stats": f.stats()}


def call_once(store: PersiDict, log: str, x: int, delay: float, lease_timeout: float) -> None:
    """One call, announced in the log first (``calling <x> <pid>``), for the kill tests."""
    os.environ["MEMO_DELAY"] = str(delay)
    f = memoize(store, name="tests.expensive", lease_timeout=lease_timeout)(expensive)
    log_line(log, f"calling {x} {os.getpid()}")
    value = f(x, log)
    stats = f.stats()
    log_line(log, f"returned {x} {os.getpid()} {value} {stats['takeovers']} {stats['waits']}")
