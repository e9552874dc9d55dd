"""benchmarks/memo_table.py runs (smoke size) and memoize computes each key once in it."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_memo_table_smoke() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memo_table", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:6]
            for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    memo = rows["`persidict.memoize` on FileDirDict"]
    assert [memo[0].strip(), memo[2].strip()] == ["2", "2"]  # 2 keys: 2 computations each way
    # The baseline without single-flight computes more, or the table measures nothing.
    assert int(rows["diskcache `@cache.memoize()`"][0]) > 2
