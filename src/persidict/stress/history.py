"""The history check: every logged call, checked key by key for linearizability.

Workers log each call (see record.py): mutating calls once before they start
and every call when it ends, with ``time.monotonic_ns()`` stamps. On Linux
that is CLOCK_MONOTONIC, one clock for every process and thread of the
machine, so stamps of different workers compare. A call that raised did not
happen, except OutcomeUnknownError and a call whose worker died before it
ended: those may take effect at any point after their start, or never.
KeyError is a result where it means "absent" (``d[k]``, ``pop``, ``del``,
``popitem``), and so is MutationPolicyError for an append-only insert.

A successful ``popitem`` is a ``pop`` in the history of the key it returned;
one of unknown outcome may have popped any key of its namespace. The
cross-key claims (a ``popitem`` KeyError, a listing) are checked in
crosskey.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .crosskey import Listing, check_empty_claims, check_listings
from .linearize import explain, format_window, search
from .model import Op, describe

MAX_CALLS = 600_000  # above this the history is not kept (bounded memory): check skipped
MAX_KEY_OPS = 200_000  # a key with more ops is left undecided
KEY_BUDGET = 3_000_000  # model steps per key before a key is left undecided
PARENT = -1  # worker id of calls the parent makes (setup writes, the final read)

Key = tuple[str, str]


@dataclass
class History:
    """Collects calls from the worker logs and checks them at the end."""

    limit: int = MAX_CALLS
    ops: dict[Key, list[Op]] = field(default_factory=dict)
    calls: int = 0
    raised: Counter[str] = field(default_factory=Counter)
    unknown: int = 0
    refused: int = 0
    raised_at: dict[Key, int] = field(default_factory=dict)  # (ns, key or "*") -> count
    empties: list[tuple[str, Op]] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)
    unknown_popitems: list[tuple[str, Op]] = field(default_factory=list)
    _started: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def over_limit(self) -> bool:
        return self.calls > self.limit

    def feed(self, wid: int, rec: Mapping[str, Any]) -> None:
        """Consume one log record (only call records matter here)."""
        if "hs" in rec:
            self._started[(wid, rec["hs"])] = dict(rec)
        elif "he" in rec:
            self._started.pop((wid, rec["he"]), None)
            self.add(wid, rec, rec["t1"], rec.get("r"), rec.get("x"))

    def finish_feeding(self) -> None:
        """Calls that started and never ended: their worker died mid-call."""
        for (wid, _), rec in sorted(self._started.items()):
            self.add(wid, rec, None, None, "unfinished")
        self._started.clear()

    def add(
        self, wid: int, rec: Mapping[str, Any], end: int | None, res: Any, exc: str | None
    ) -> None:
        """Add one call (``rec`` has ns, k, f, a, t) with its result or exception."""
        self.calls += 1
        if self.over_limit:
            self.ops.clear()
            return
        f, ns = rec["f"], rec["ns"]
        if exc in ("OutcomeUnknownError", "unfinished"):
            self.unknown += 1
            end, res = None, None
        elif exc == "KeyError" and f in _KEYERROR_RESULT:
            res = dict(_KEYERROR_RESULT[f])
        elif exc == "MutationPolicyError" and f == "ins":
            res = {"ok": False}
        elif exc == "MutationPolicyError" and f in ("del", "disc"):
            self.refused += 1  # append-only: refused whatever the state, so no claim
            return
        elif exc is not None:
            self.raised[f"{f}: {exc}"] += 1
            where = (ns, rec["k"] or "*")  # popitem: its key is not known
            self.raised_at[where] = self.raised_at.get(where, 0) + 1
            return  # it raised, so it did not happen
        op = Op(wid, f, dict(rec.get("a", {})), rec["t"], end, res)
        if f == "popitem":
            self._add_popitem(ns, op)
        elif f == "keys":
            if res is not None:
                self.listings.append(Listing(ns, op, list(res["ks"])))
        elif res is not None or f not in ("get", "gwe", "in"):
            self.ops.setdefault((ns, rec["k"]), []).append(op)

    def _add_popitem(self, ns: str, op: Op) -> None:
        if op.res is None:
            self.unknown_popitems.append((ns, op))
        elif op.res.get("empty"):
            self.empties.append((ns, op))
        else:
            popped = Op(op.wid, "popk", {}, op.start, op.end, {"v": op.res["v"]})
            self.ops.setdefault((ns, op.res["k"]), []).append(popped)

    def add_final(self, final: Mapping[str, Mapping[str, Any]], start: int, end: int) -> None:
        """The end state as a read of every key (present keys with their values)."""
        keys = set(self.ops) | {(ns, k) for ns, values in final.items() for k in values}
        for ns, key in sorted(keys):
            value = final.get(ns, {}).get(key)
            rec = {"ns": ns, "k": key, "f": "final", "t": start}
            self.add(PARENT, rec, end, {"v": value}, None)

    def check(
        self, t0: int, reread: Callable[[str, str], Any] | None = None
    ) -> dict[str, Any]:
        """Run every check; return the report section (violations included)."""
        summary: dict[str, Any] = {
            "checked": not self.over_limit,
            "calls": self.calls,
            "raised_not_counted": dict(sorted(self.raised.items())),
            "outcome_unknown": self.unknown,
            "refused_by_policy": self.refused,
        }
        if self.over_limit:
            summary["note"] = (
                f"skipped: {self.calls} calls > {self.limit} (run shorter or with fewer workers)"
            )
            summary["violations"] = []
            return summary
        self._spread_unknown_popitems()
        violations: list[dict[str, str]] = []
        undecided: list[str] = []
        checked = 0
        for (ns, key), ops in sorted(self.ops.items()):
            name = f"{ns}/{key}"
            if len(ops) > MAX_KEY_OPS:
                undecided.append(f"{name} ({len(ops)} ops > {MAX_KEY_OPS})")
                continue
            checked += len(ops)
            outcome = search(ops, KEY_BUDGET)
            if outcome.status == "violation" and reread is not None:
                outcome = self._recheck_final(ns, key, ops, outcome, reread, violations)
            if outcome.status == "undecided":
                undecided.append(f"{name} (search budget of {KEY_BUDGET} steps spent)")
            elif outcome.status == "violation":
                explain(ops, outcome)
                lines = format_window(ops, outcome, t0) + self._raised_note(ns, key)
                violations.append({
                    "check": "history-linearizability",
                    "detail": f"{name}: no linearization; offending sub-history of "
                    f"{len(outcome.window)} ops (of {len(ops)}):\n" + "\n".join(lines),
                })  # fmt: skip
        violations += check_empty_claims(self.ops, self.empties, t0)
        violations += check_listings(self.ops, self.listings, t0)
        summary.update(
            keys=len(self.ops),
            ops_checked=checked,
            popitem_empty_claims=len(self.empties),
            listings=len(self.listings),
            undecided=undecided,
            violations=violations,
        )
        return summary

    def _raised_note(self, ns: str, key: str) -> list[str]:
        """Calls that raised there: taken as not done, they may be what broke the key."""
        here, anywhere = self.raised_at.get((ns, key), 0), self.raised_at.get((ns, "*"), 0)
        if not here and not anywhere:
            return []
        return [f"(calls that raised, taken as not done: {here} on this key, "
                f"{anywhere} popitem() calls in {ns})"]

    def _spread_unknown_popitems(self) -> None:
        """A popitem of unknown outcome may have popped any key of its namespace."""
        for ns, op in self.unknown_popitems:
            for (key_ns, _), ops in self.ops.items():
                if key_ns == ns:
                    ops.append(Op(op.wid, "maybepop", {}, op.start, None, None))

    def _recheck_final(
        self,
        ns: str,
        key: str,
        ops: list[Op],
        outcome: Any,
        reread: Callable[[str, str], Any],
        violations: list[dict[str, str]],
    ) -> Any:
        """If only the final snapshot (a listing) disagrees, ask the key itself."""
        failed = ops[outcome.failed_op]
        if failed.f != "final" or failed.res is None:
            return outcome
        direct = reread(ns, key)
        if direct == failed.res["v"]:
            return outcome
        violations.append({
            "check": "history-final-listing",
            "detail": f"{ns}/{key}: the final listing says {failed.res['v']!r}, "
            f"a direct read says {direct!r}",
        })  # fmt: skip
        failed.res = {"v": direct}
        return search(ops, KEY_BUDGET)


_KEYERROR_RESULT: dict[str, dict[str, Any]] = {
    "get": {"v": None},
    "pop": {"v": None},
    "del": {"ok": False},
    "popitem": {"empty": True},
}

__all__ = ["History", "describe"]
