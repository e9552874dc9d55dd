"""Run every benchmark in one go and print the report with the targets.

    .venv/bin/python -m benchmarks.run            # full run, a few minutes
    .venv/bin/python -m benchmarks.run --smoke    # seconds: every path, tiny counts

Options: ``--json FILE`` (all figures), ``--markdown FILE`` (the report),
``--sections files,durable-pairs,listing,memory,contended,stream,s3,scaling``, ``--disk DIR``
(where the disk-filesystem runs happen; default: the first non-RAM of
/var/tmp, $TMPDIR, cwd), ``--keep`` (leave the scratch directories).

Exit status: 0, or 2 if a contended run lost an update (a correctness
failure; slowness never fails the run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Any

import diskcache

from .common import Config, Scratch, find_places, fs_type
from .contended import run_contended
from .durable_pairs import run_durable_pairs
from .files import run_files
from .harness import Results, fmt_ratio, fmt_us
from .listing import run_listing, run_stream
from .memory import run_memory
from .s3 import run_s3
from .scaling import run_scaling, scaling_lines
from .targets import judge

SECTIONS = (*Config.sections, "scaling")  # scaling: 10k to 1M keys (issue 17), minutes


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _header(cfg: Config, places: dict[str, str], elapsed: float,
            load: tuple[float, float, float], load_end: tuple[float, float, float]) -> list[str]:
    where = ", ".join(f"{k}: {v} ({fs_type(v)})" for k, v in places.items())
    return [
        "# persidict benchmark report",
        "",
        f"- {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"diskcache {diskcache.__version__}",
        f"- filesystems: {where}",
        f"- mode: {'SMOKE (figures meaningless)' if cfg.smoke else 'full'}; median of "
        f"{cfg.reps} interleaved repetitions ({cfg.reps_durable_disk} for durable mode on disk);"
        f" run took {elapsed:.0f} s",
        f"- load average (1/5/15 min) at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
        f"at end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} "
        "(other work on the machine inflates wall times, not CPU times)",
        "- `fast` = FileDirDict(durable=False), compared with diskcache's defaults (no fsync);"
        " `durable` = durable=True (fsync of file and directory per write), compared with the"
        " fsync floor",
        "- floor = the same work as bare `os` calls in pure Python (see each row's note);"
        " diskcache = `diskcache.Cache` defaults on the same filesystem",
        "- times are wall us per operation (median); `cpu` is this process's CPU time;"
        " ratios are of wall times",
        "",
    ]


def _tables(results: Results) -> list[str]:
    out: list[str] = []
    sections: list[str] = []
    for r in results.rows:
        if r.section not in sections:
            sections.append(r.section)
    for section in sections:
        rows = [r for r in results.rows if r.section == section]
        peer = any("diskcache" in r.timings for r in rows)
        out += [f"## {section}", ""]
        head = "| operation | ours | floor | ours/floor | ours cpu | floor cpu | cpu ratio |"
        rule = "|---|---:|---:|---:|---:|---:|---:|"
        if peer:
            head += " diskcache | ours/diskcache | diskcache cpu |"
            rule += "---:|---:|---:|"
        out += [head + " notes |", rule + "---|"]
        for r in rows:
            line = (f"| {r.op} | {fmt_us(r.us('ours'))} | {fmt_us(r.us('floor'))}"
                    f" | {fmt_ratio(r.ratio('ours', 'floor'))} | {fmt_us(r.cpu('ours'))}"
                    f" | {fmt_us(r.cpu('floor'))} | {fmt_ratio(r.cpu_ratio('ours', 'floor'))} |")
            if peer:
                dc = fmt_ratio(r.ratio("ours", "diskcache"))
                line += f" {fmt_us(r.us('diskcache'))} | {dc} | {fmt_us(r.cpu('diskcache'))} |"
            out.append(line + f" {r.note} |")
        out.append("")
    return out


def _contended_table(c: Any) -> list[str]:
    if not c:
        return []
    out = [f"## contended ({c['place']}, fast mode, {c['total_ops_per_run']} operations per run,"
           f" {c['cpus']} CPUs)", "",
           "| workload | processes | goodput ops/s | vs 1 process | cpu us/op | lost updates |"
           " retries | goodput of each run |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for kind, by in c["runs"].items():
        one = by.get("1", {}).get("goodput")
        for procs, r in by.items():
            rel = f"{r['goodput'] / one:.0%}" if one else "-"
            out.append(f"| {kind} | {procs} | {r['goodput']:.0f} | {rel} | "
                       f"{r['cpu_us_per_op']:.1f} | {r.get('lost_updates', '-')} | "
                       f"{r.get('retries', '-')} | {r['goodput_runs']} |")
    return [*out, ""]


def _stream_lines(s: Any) -> list[str]:
    if not s:
        return []
    lines = ["## iterating in a fresh interpreter (fast mode, tmpfs)", "",
             "| keys | tracemalloc peak | RSS growth | first pass, ours | first pass, floor |"
             " ours/floor |", "|---:|---:|---:|---:|---:|---:|"]
    for which in ("small", "big"):
        f = s[which]
        ratio = f["cold_us_per_key"] / f["floor_us_per_key"]
        lines.append(f"| {f['keys']} | {f['peak_bytes'] / 1024:.0f} KiB | "
                     f"{f['rss_growth_bytes'] / 1024:.0f} KiB | "
                     f"{f['cold_us_per_key']:.2f} us/key | {f['floor_us_per_key']:.2f} us/key |"
                     f" {ratio:.2f}x |")
    return [*lines, ""]


def report(cfg: Config, places: dict[str, str], results: Results, elapsed: float,
           load: tuple[float, float, float]) -> str:
    """The whole report as Markdown."""
    lines = _header(cfg, places, elapsed, load, os.getloadavg()) + _tables(results)
    lines += _contended_table(results.facts.get("contended"))
    lines += _stream_lines(results.facts.get("stream"))
    lines += scaling_lines(results.facts.get("scaling"))
    s3 = results.facts.get("s3")
    if isinstance(s3, dict) and "skipped" in s3:
        lines += ["## s3", "", f"skipped: {s3['skipped']}", ""]
    verdicts = judge(results)
    lines += ["## targets", "",
              "Verdicts are on wall time, as the issue states them; the last column applies"
              " the same limit to CPU time, which a loaded machine cannot inflate"
              " (not applicable to fsync-bound and multi-process figures).", "",
              "| # | target | figure | limit | verdict | on cpu |",
              "|---:|---|---|---|---|---|"]
    for i, v in enumerate(verdicts, 1):
        lines.append(f"| {i} | {v.target} | {v.figure} | {v.limit} | **{v.word}** |"
                     f" {v.cpu_word} |")
    met = sum(v.met is True for v in verdicts)
    missed = sum(v.met is False for v in verdicts)
    lines += ["", f"**{met} MET, {missed} NOT MET, "
                  f"{len(verdicts) - met - missed} SKIPPED**", ""]
    results.facts["targets"] = [v.__dict__ | {"verdict": v.word} for v in verdicts]
    return "\n".join(lines)


def lost_updates(results: Results) -> int:
    """The worst lost-update count of any contended run (0 if none ran)."""
    c: Any = results.facts.get("contended") or {"runs": {}}
    return max((r.get("lost_updates", 0) for by in c["runs"].values() for r in by.values()),
               default=0)


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny counts (CI): seconds, not minutes")
    ap.add_argument("--json", help="write every figure to this JSON file")
    ap.add_argument("--markdown", help="write the report to this file too")
    ap.add_argument("--sections", help="comma-separated subset of: " + ",".join(SECTIONS))
    ap.add_argument("--disk", help="directory on a disk filesystem for the disk runs")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 5, smoke 2)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = ap.parse_args(argv)
    cfg = Config.smoke_config() if args.smoke else Config()
    cfg.sections = SECTIONS
    if args.sections:
        wanted = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        unknown = set(wanted) - set(SECTIONS)
        if unknown:
            ap.error(f"unknown sections {sorted(unknown)}")
        cfg.sections = wanted
    if args.reps:
        cfg.reps = cfg.reps_durable_disk = args.reps
    cfg.keep = args.keep
    places = find_places(args.disk)
    if not places:
        ap.error("found neither /dev/shm nor a writable disk directory")
    scratch = Scratch(keep=cfg.keep)
    results = Results()
    started, load = time.perf_counter(), os.getloadavg()
    try:
        if "files" in cfg.sections:
            run_files(cfg, places, scratch, results, _log)
        if "durable-pairs" in cfg.sections:
            run_durable_pairs(cfg, places, scratch, results, _log)
        if "listing" in cfg.sections:
            run_listing(cfg, places, scratch, results, _log)
        if "memory" in cfg.sections:
            run_memory(cfg, results, _log)
        if "contended" in cfg.sections:
            run_contended(cfg, places, scratch, results.facts, _log)
        if "stream" in cfg.sections:
            run_stream(cfg, places, scratch, results, _log)
        if "s3" in cfg.sections:
            run_s3(cfg, results, _log)
        if "scaling" in cfg.sections:
            run_scaling(cfg, places, scratch, results, _log)
    finally:
        scratch.cleanup()
    text = report(cfg, places, results, time.perf_counter() - started, load)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results.as_dict() | {"smoke": cfg.smoke, "places": places}, f, indent=1,
                      default=str)
    if lost_updates(results):
        _log(f"LOST UPDATES: {lost_updates(results)}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
