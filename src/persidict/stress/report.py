"""Latency histograms, percentiles and the final report (text or JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# Buckets grow geometrically by 5 %: a percentile is off by at most that much,
# and a histogram of any number of samples stays a few hundred ints.
_GROWTH = 1.05
_LOG_GROWTH = math.log(_GROWTH)


class Histogram:
    """A mergeable log-bucketed latency histogram (nanosecond samples)."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, nanoseconds: int) -> None:
        """Record one sample."""
        micros = max(nanoseconds / 1000.0, 1.0)
        index = int(math.log(micros) / _LOG_GROWTH)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: Histogram) -> None:
        """Add all samples of ``other`` to this histogram."""
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count

    def percentile_ms(self, q: float) -> float | None:
        """Return the ``q``-th percentile (0..100) in milliseconds, or None if empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                # Geometric middle of the bucket [g**i, g**(i+1)) microseconds.
                return float(_GROWTH ** (index + 0.5) / 1000.0)
        raise AssertionError("unreachable: rank <= count")

    def to_json(self) -> dict[str, int]:
        """Serialize (JSON object keys must be strings)."""
        return {str(i): n for i, n in self.buckets.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Histogram:
        """Inverse of :meth:`to_json`."""
        hist = cls()
        for index, n in data.items():
            hist.buckets[int(index)] = int(n)
            hist.count += int(n)
        return hist


def latency_summary(hists: Mapping[str, Histogram]) -> dict[str, dict[str, float | None]]:
    """Return p50/p99 per kind plus an ``overall`` entry over all kinds."""
    overall = Histogram()
    out: dict[str, dict[str, float | None]] = {}
    for kind in sorted(hists):
        hist = hists[kind]
        overall.merge(hist)
        out[kind] = {"p50": hist.percentile_ms(50), "p99": hist.percentile_ms(99)}
    out["overall"] = {"p50": overall.percentile_ms(50), "p99": overall.percentile_ms(99)}
    return out


def build_report(
    *,
    settings: Mapping[str, Any],
    elapsed_s: float,
    ops_by_kind: Mapping[str, int],
    hists: Mapping[str, Histogram],
    conflicts: Mapping[str, int],
    races_lost: Mapping[str, int],
    violations: list[dict[str, str]],
    history: Mapping[str, Any] | None = None,
    faults: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Assemble the machine-readable report (the text report renders this)."""
    total = sum(ops_by_kind.values())
    return {
        "settings": dict(settings),
        "elapsed_s": round(elapsed_s, 3),
        "ops_total": total,
        "ops_per_s": round(total / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "ops_by_kind": dict(sorted(ops_by_kind.items())),
        "latency_ms": latency_summary(hists),
        "conflicts": dict(sorted(conflicts.items())),
        "races_lost": dict(sorted(races_lost.items())),
        "history": dict(history or {"checked": False, "note": "not run"}),
        "faults": None if faults is None else dict(sorted(faults.items())),
        "violations": violations,
        "ok": not violations,
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def format_text(report: Mapping[str, Any]) -> str:
    """Render the report for humans."""
    settings = report["settings"]
    lines = [
        "persidict-stress report",
        "  " + "  ".join(f"{k}={v}" for k, v in settings.items()),
        f"operations: {report['ops_total']} in {report['elapsed_s']:.1f} s"
        f" = {report['ops_per_s']:.1f} ops/s",
        f"  {'kind':<20} {'ops':>9} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9}",
    ]
    latency = report["latency_ms"]
    elapsed = max(report["elapsed_s"], 1e-9)
    rows = [*report["ops_by_kind"].items(), ("overall", report["ops_total"])]
    for kind, n in rows:
        lat = latency.get(kind, {"p50": None, "p99": None})
        lines.append(
            f"  {kind:<20} {n:>9} {n / elapsed:>9.1f} {_ms(lat['p50']):>9} {_ms(lat['p99']):>9}"
        )
    conflicts = report["conflicts"]
    lines.append(
        "conflicts retried: "
        + ", ".join(f"{k}={v}" for k, v in conflicts.items())
        + f" (total {sum(conflicts.values())})"
    )
    lines.append("races lost: " + ", ".join(f"{k}={v}" for k, v in report["races_lost"].items()))
    lines += _LEGEND
    faults = report.get("faults")
    if faults is not None:
        lines.append("ops ended by an expected fault (--expect-faults): "
                     + (", ".join(f"{k}={v}" for k, v in faults.items()) or "none")
                     + " (OutcomeUnknownError: may have happened; any other: did not)")
    lines += _history_lines(report.get("history", {}))
    violations = report["violations"]
    lines.append(f"violations: {len(violations)}")
    for v in violations[:200]:
        lines.append(f"  [{v['check']}] " + v["detail"].replace("\n", "\n    "))
    if len(violations) > 200:
        lines.append(f"  ... and {len(violations) - 200} more")
    lines.append("RESULT: " + ("PASS" if report["ok"] else "FAIL"))
    return "\n".join(lines)


_LEGEND = [
    "  (conflicts retried: lost compare-and-swap rounds that were retried; cas_gave_up: "
    "hand-written CAS loops that stopped after their attempt limit, writing nothing)",
    "  (races lost: ops that correctly lost a race, proving the races happened; "
    "popitem_empty: popitem() raised KeyError; the pops store is never empty (seeded, and "
    "every op inserts before it pops), so each is also a history-popitem-empty violation)",
    "  (end-state checks: counters = acknowledged increments, one winner per insert race, "
    "append-only values never change, each item popped or discarded at most once, "
    "large values never torn)",
]


def _history_lines(history: Mapping[str, Any]) -> list[str]:
    if not history.get("checked"):
        return [f"history check: {history.get('note', 'not run')}"]
    undecided = history.get("undecided", [])
    lines = [
        f"history check: {history['ops_checked']} ops on {history['keys']} keys checked "
        f"for linearizability, {history['popitem_empty_claims']} popitem KeyErrors "
        f"checked for an empty instant, {history['listings']} listings checked; "
        f"{len(undecided)} keys undecided, {history['outcome_unknown']} calls of "
        f"unknown outcome ({history.get('check_s', 0):.1f} s)",
        "  (each call is placed at one instant between its start and end so that every "
        "key behaves like one sequential key; a call that raised did not happen)",
    ]
    lines += [f"  undecided: {u}" for u in undecided[:20]]
    if history.get("refused_by_policy"):
        lines.append(f"  {history['refused_by_policy']} deletes refused by the append-only "
                     "policy (as they must be; no op)")
    raised = history.get("raised_not_counted", {})
    if raised:
        lines.append("  raised (taken as not done): "
                     + ", ".join(f"{k} x{n}" for k, n in raised.items()))
    return lines


def format_json(report: Mapping[str, Any]) -> str:
    """Render the report as JSON."""
    return json.dumps(report, indent=2, sort_keys=False)
