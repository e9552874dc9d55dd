"""Run a Python script under strace and read back its syscalls (shared by the strace tests)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

Call = tuple[str, str, str]
"""(syscall, its arguments as strace prints them, its result)."""

# "openat(AT_FDCWD, ...) = 3", optionally after a pid ("1234 " or "[pid 1234] ") with -f.
_LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")


def traced(tmp_path: pathlib.Path, options: list[str], script: str, *argv: str) -> list[Call]:
    """The syscalls ``python -c script argv...`` makes under ``strace options``."""
    out = tmp_path / "strace.txt"
    cmd = ["strace", "-qq", "-o", str(out), *options, sys.executable, "-c", script, *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and "ptrace" in res.stderr:
        pytest.skip(f"strace cannot trace here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stderr
    calls = []
    for line in out.read_text().splitlines():
        m = _LINE.match(line)
        if m:
            calls.append((m.group(1), m.group(2), m.group(3)))
    return calls


def window(calls: list[Call], marker: str, start: str, end: str) -> list[Call]:
    """The calls between the ``access("/<marker>-<start>")`` and ``-<end>`` markers."""
    names = [args for _, args, _ in calls]
    i = next(n for n, a in enumerate(names) if f"/{marker}-{start}" in a)
    j = next(n for n, a in enumerate(names) if f"/{marker}-{end}" in a)
    return calls[i + 1 : j]
