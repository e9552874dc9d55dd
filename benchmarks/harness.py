"""Timing machinery: interleaved repetitions, medians, wall and CPU time.

Every comparison is a *group* of cases (ours, the floor, the peer) timed in
ONE run, interleaved A B C A B C ... so that drift (other processes, thermal
state, page cache) hits every case alike. Each case reports the median over
the repetitions of its per-operation wall time and CPU time of this process
(``time.process_time``: user + system).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Body = Callable[[], object]
"""A timed body: performs ``Case.ops`` operations."""


@dataclass
class Case:
    """One contender of a group.

    ``prepare(rep)`` does the untimed setup of repetition ``rep`` (fresh keys,
    fetching etags, creating files to delete...) and returns the timed body.
    """

    label: str
    prepare: Callable[[int], Body]
    ops: int


@dataclass
class Timing:
    """Per-operation seconds of every repetition of one case."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_us(self) -> float:
        """Median wall time per operation, in microseconds."""
        return statistics.median(self.wall) * 1e6

    @property
    def cpu_us(self) -> float:
        """Median CPU time per operation, in microseconds."""
        return statistics.median(self.cpu) * 1e6

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly summary."""
        return {"wall_us": self.wall_us, "cpu_us": self.cpu_us, "reps": len(self.wall)}


def time_once(body: Body, ops: int) -> tuple[float, float]:
    """(wall, cpu) seconds per operation of one run of ``body``, GC paused."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        body()
        c1, w1 = time.process_time(), time.perf_counter()
    finally:
        if enabled:
            gc.enable()
    return (w1 - w0) / ops, (c1 - c0) / ops


def interleave(cases: list[Case], reps: int) -> dict[str, Timing]:
    """Time every case ``reps`` times, interleaved; return label -> Timing."""
    timings = {case.label: Timing() for case in cases}
    for rep in range(reps):
        for case in cases:
            body = case.prepare(rep)
            wall, cpu = time_once(body, case.ops)
            timings[case.label].wall.append(wall)
            timings[case.label].cpu.append(cpu)
    return timings


@dataclass
class Row:
    """One line of a report table: an operation and its contenders."""

    section: str
    op: str
    timings: dict[str, Timing]
    note: str = ""

    def us(self, label: str) -> float | None:
        """Median wall microseconds per op of ``label`` (None if absent)."""
        t = self.timings.get(label)
        return None if t is None else t.wall_us

    def cpu(self, label: str) -> float | None:
        """Median CPU microseconds per op of ``label`` (None if absent)."""
        t = self.timings.get(label)
        return None if t is None else t.cpu_us

    def ratio(self, label: str, baseline: str) -> float | None:
        """Wall time of ``label`` divided by that of ``baseline``."""
        a, b = self.us(label), self.us(baseline)
        if a is None or b is None or b <= 0:
            return None
        return a / b

    def cpu_ratio(self, label: str, baseline: str) -> float | None:
        """CPU time of ``label`` divided by that of ``baseline``."""
        a, b = self.cpu(label), self.cpu(baseline)
        if a is None or b is None or b <= 0:
            return None
        return a / b


@dataclass
class Results:
    """Everything one run measured, addressable by (section, op)."""

    rows: list[Row] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Record a row and return it."""
        self.rows.append(row)
        return row

    def row(self, section: str, op: str) -> Row | None:
        """The row of ``op`` in ``section`` (None if that part did not run)."""
        for r in self.rows:
            if r.section == section and r.op == op:
                return r
        return None

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly dump of every figure."""
        return {
            "rows": [
                {
                    "section": r.section,
                    "op": r.op,
                    "note": r.note,
                    "timings": {k: t.as_dict() for k, t in r.timings.items()},
                }
                for r in self.rows
            ],
            "facts": self.facts,
        }


def fmt_us(us: float | None) -> str:
    """Microseconds, compact."""
    if us is None:
        return "-"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 100:
        return f"{us:.0f} us"
    return f"{us:.1f} us"


def fmt_ratio(r: float | None) -> str:
    """A ratio like ``1.23x``."""
    return "-" if r is None else f"{r:.2f}x"
