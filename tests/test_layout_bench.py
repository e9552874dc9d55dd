"""benchmarks/scaling.py runs end to end in --smoke mode (no timing asserted)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_scaling_benchmark_smoke(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out),
         "--sections", "scaling"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "## scaling (fast mode" in proc.stdout
    facts = json.loads(out.read_text())["facts"]["scaling"]
    runs = {f"{p}/{lay}" for p in json.loads(out.read_text())["places"]
            for lay in ("direct", "hashed")}
    assert set(facts["runs"]) == runs
    for per_size in facts["runs"].values():
        assert set(per_size) == {str(n) for n in facts["sizes"]}
        for figures in per_size.values():
            assert figures["peak_iter_bytes"] > 0
            assert figures["len"] > 0 and figures["len floor"] > 0
    assert set(facts["growth"]) == runs
