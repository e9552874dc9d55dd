"""The speed targets of issue #6, judged from one run's figures.

Each target is a figure, a limit and a verdict (MET / NOT MET). A target
whose inputs did not run (e.g. no disk filesystem) is SKIPPED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .files import OPS_BY_KIND, READ_OPS, WRITE_OPS
from .harness import Results
from .memory import OPS as MEMORY_OPS

# FileDirDict operation -> the diskcache operation it must be at least as fast as.
PEER_OPS = {
    "get": "get",
    "set new": "set (new key)",
    "overwrite": "set (existing key)",
    "in": "in",
    "set_item_if": "transact(get; set)",
    "setdefault_if insert": "add",
    "transform_item +1": "incr",
}


@dataclass
class Verdict:
    """One line of the targets table."""

    target: str
    figure: str
    limit: str
    met: bool | None  # on wall time; None: not measured in this run
    cpu_met: bool | None = None  # the same limit on CPU time; None: not applicable

    @property
    def word(self) -> str:
        """MET / NOT MET / SKIPPED (the verdict, on wall time)."""
        return {True: "MET", False: "NOT MET", None: "SKIPPED"}[self.met]

    @property
    def cpu_word(self) -> str:
        """The same verdict on CPU time (what a loaded machine cannot inflate)."""
        return {True: "met", False: "not met", None: "-"}[self.cpu_met]


def _ratio_target(results: Results, section: str, op: str, label: str, baseline: str,
                  limit: float, name: str, cpu: bool = True) -> Verdict:
    row = results.row(section, op)
    ratio = None if row is None else row.ratio(label, baseline)
    if row is None or ratio is None:
        return Verdict(name, "not measured", f"<= {limit:.2f}x", None)
    figure = f"{ratio:.2f}x ({_us(row.us(label))} vs {_us(row.us(baseline))})"
    cpu_ratio = row.cpu_ratio(label, baseline) if cpu else None
    if cpu_ratio is not None:
        figure += f"; cpu {cpu_ratio:.2f}x"
    return Verdict(name, figure, f"<= {limit:.2f}x", ratio <= limit,
                   None if cpu_ratio is None else cpu_ratio <= limit)


def _us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.1f} ms" if us >= 10_000 else f"{us:.1f} us"


def judge(results: Results) -> list[Verdict]:
    """Every target, in the order of the issue."""
    out: list[Verdict] = []
    fast = "tmpfs/fast/pkl100"
    for op, peer_op in PEER_OPS.items():
        out.append(_ratio_target(results, fast, op, "ours", "diskcache", 1.0,
                                 f"tmpfs fast {op} <= diskcache {peer_op}"))
    for kind, ops in OPS_BY_KIND.items():
        for op in ops:
            what = "write" if op in WRITE_OPS else "read" if op in READ_OPS else None
            if what is None:
                continue
            out.append(_ratio_target(results, f"tmpfs/fast/{kind}", op, "ours", "floor", 2.0,
                                     f"tmpfs fast {kind} {op} <= 2x {what} floor"))
    for section in ("disk/durable/pkl100", "disk/durable/pkl1MiB"):
        for row in (r for r in results.rows if r.section == section):
            out.append(_ratio_target(results, section, row.op, "ours", "floor", 1.2,
                                     f"disk durable {section.rsplit('/', 1)[1]} {row.op} "
                                     "<= 1.2x fsync floor", cpu=False))
    out.extend(_contended_targets(results.facts.get("contended")))
    for section in sorted({r.section for r in results.rows if "keys" in r.section}):
        for op in ("len", "iterate keys", "list(d)"):
            out.append(_ratio_target(results, section, op, "ours", "floor", 2.0,
                                     f"{section} {op} <= 2x os.scandir walk"))
    out.append(_stream_target(results.facts.get("stream")))
    for op in MEMORY_OPS:
        out.append(_ratio_target(results, "memory/LocalDict", op, "ours", "floor", 3.0,
                                 f"LocalDict {op} <= 3x dict+Lock"))
    out.extend(_scaling_targets(results))
    return out


def _scaling_targets(results: Results) -> list[Verdict]:
    """Issue 17: hashed lookups flat (<= 1.5x from the smallest size to the largest);
    len and iteration within 2x of a scandir walk at every size, both layouts."""
    s = results.facts.get("scaling")
    if not s:
        return []
    out = []
    for run, growth in s["growth"].items():
        if run.endswith("/hashed"):
            g = growth.get("get (random key)")
            out.append(Verdict(f"scaling {run} get growth {s['sizes'][0]} -> {s['sizes'][-1]}",
                               "not measured" if g is None else f"{g:.2f}x", "<= 1.50x",
                               None if g is None else g <= 1.5))
    for section in sorted({r.section for r in results.rows if r.section.startswith("scaling/")}):
        for op in ("len", "iterate keys"):
            out.append(_ratio_target(results, section, op, "ours", "floor", 2.0,
                                     f"{section} {op} <= 2x os.scandir walk"))
    return out


def _contended_targets(c: Any) -> list[Verdict]:
    if not c:
        return [Verdict("contended targets", "not measured", "", None)]
    runs = c["runs"]
    ours, peer = runs.get("ours transform_item", {}), runs.get("diskcache incr", {})
    most = max(ours, key=int) if ours else None
    out = []
    if most is not None and most in peer:
        o, p = ours[most]["goodput"], peer[most]["goodput"]
        out.append(Verdict(f"{most} procs, one key: transform_item goodput >= diskcache incr",
                           f"{o:.0f} vs {p:.0f} ops/s ({o / p:.2f}x)", ">= 1.00x", o >= p))
    if most is not None and "1" in ours:
        o, one = ours[most]["goodput"], ours["1"]["goodput"]
        out.append(Verdict(f"{most} procs, one key: goodput >= 50 % of 1 process",
                           f"{o:.0f} vs {one:.0f} ops/s ({o / one:.0%})", ">= 50 %",
                           o >= 0.5 * one))
    gave = [r["gave_up"] for r in ours.values() if "gave_up" in r]
    out.append(Verdict("workers giving up (transform_item, default n_retries)",
                       f"{max(gave) if gave else None} (max over {len(gave)} runs)", "= 0",
                       max(gave) == 0 if gave else None))
    lost = {f"{kind} x{p}": r["lost_updates"] for kind, by in runs.items()
            for p, r in by.items() if "lost_updates" in r}
    worst = max(lost.values()) if lost else None
    out.append(Verdict("lost updates, every contended run (ours and diskcache)",
                       f"{worst} (max over {len(lost)} runs)", "= 0",
                       None if worst is None else worst == 0))
    return out


def _stream_target(s: Any) -> Verdict:
    name = "memory flat while iterating (tracemalloc peak, fresh interpreter)"
    if not s:
        return Verdict(name, "not measured", "", None)
    small, big = s["small"]["peak_bytes"], s["big"]["peak_bytes"]
    figure = (f"{big / 1024:.0f} KiB for {s['big_keys']} keys vs {small / 1024:.0f} KiB "
              f"for {s['small_keys']} ({big / max(small, 1):.2f}x)")
    return Verdict(name, figure, "<= 2x (10x more keys)", big <= 2 * small)
