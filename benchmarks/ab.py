"""A/B: the same benchmark sections against two persidict source trees.

    .venv/bin/python -m benchmarks.ab --a src --b /tmp/patched/src
    .venv/bin/python -m benchmarks.ab --a src --b /tmp/patched/src --sections memory --rounds 3

Runs ``benchmarks.run`` alternately with ``PYTHONPATH`` set to each tree
(A B A B ...), then prints, per operation, the median over rounds of our
CPU and wall time per op under A and under B, and B/A. This is how a
proposed change is measured before it lands: a loaded machine moves both
sides alike when they alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tree: str, sections: str, reps: int, smoke: bool, out: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    cmd = [sys.executable, "-m", "benchmarks.run", "--json", out, "--sections", sections,
           "--reps", str(reps)]
    if smoke:
        cmd.append("--smoke")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   timeout=3600)
    with open(out, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _ours(figures: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    """(section, op) -> (cpu, wall) of ours; facts become rows too.

    Contended runs: us per completed operation (1e6 / goodput) as "wall",
    CPU per operation as "cpu". Streaming: first-pass us/key as both, and
    the tracemalloc peak in KiB as both.
    """
    out = {}
    for row in figures["rows"]:
        t = row["timings"].get("ours")
        if t:
            out[(row["section"], row["op"])] = (t["cpu_us"], t["wall_us"])
    facts = figures.get("facts", {})
    for kind, by in (facts.get("contended") or {}).get("runs", {}).items():
        for procs, r in by.items():
            out[("contended", f"{kind} x{procs}")] = (r["cpu_us_per_op"], 1e6 / r["goodput"])
    stream = facts.get("stream") or {}
    for which in ("small", "big"):
        f = stream.get(which)
        if f:
            out[("stream", f"first pass us/key, {f['keys']} keys")] = (f["cold_us_per_key"],) * 2
            out[("stream", f"peak KiB, {f['keys']} keys")] = (f["peak_bytes"] / 1024,) * 2
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="source tree A (the directory holding persidict/)")
    ap.add_argument("--b", required=True, help="source tree B")
    ap.add_argument("--sections", default="files,listing,memory")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[tuple[str, str], tuple[float, float]]]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in ("a", "b"):
                print(f"round {r + 1}/{args.rounds}: {side}", file=sys.stderr, flush=True)
                figures = _run(getattr(args, side), args.sections, args.reps, args.smoke,
                               os.path.join(tmp, f"{side}{r}.json"))
                runs[side].append(_ours(figures))
    print(f"A = {args.a}\nB = {args.b}\n")
    print("| section | operation | A cpu us | B cpu us | B/A cpu | A wall us | B wall us |"
          " B/A wall |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key in runs["a"][0]:
        if not all(key in x for x in runs["a"] + runs["b"]):
            continue
        a_cpu = statistics.median(x[key][0] for x in runs["a"])
        b_cpu = statistics.median(x[key][0] for x in runs["b"])
        a_wall = statistics.median(x[key][1] for x in runs["a"])
        b_wall = statistics.median(x[key][1] for x in runs["b"])
        print(f"| {key[0]} | {key[1]} | {a_cpu:.1f} | {b_cpu:.1f} | {b_cpu / max(a_cpu, 1e-9):.2f}x"
              f" | {a_wall:.1f} | {b_wall:.1f} | {b_wall / max(a_wall, 1e-9):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
