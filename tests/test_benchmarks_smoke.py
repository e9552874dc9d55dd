"""The benchmark runs end to end in --smoke mode and loses no update.

No timing is asserted: machines are noisy. The S3 section is left out here
(the S3 tests cover BasicS3Dict; starting a server would dominate the time).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_smoke_runs_and_loses_no_update(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out),
         "--sections", "files,listing,memory,contended,stream"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "## targets" in proc.stdout
    figures = json.loads(out.read_text())
    runs = figures["facts"]["contended"]["runs"]
    counters = {kind: by for kind, by in runs.items() if kind in
                ("ours transform_item", "diskcache incr")}
    assert set(counters) == {"ours transform_item", "diskcache incr"}
    for kind, by in counters.items():
        assert set(by) >= {"1", "2"}, (kind, by)
        for procs, r in by.items():
            assert r["lost_updates"] == 0, (kind, procs, r)
            assert r["ops"] > 0, (kind, procs, r)
    assert {r["section"] for r in figures["rows"]} >= {"tmpfs/fast/pkl100", "memory/LocalDict"}
