"""Replay of the worker logs: feeds the oracle, counts ops, conflicts, latencies."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .history import History
from .oracle import Oracle
from .report import Histogram
from .workers import KINDS


class Tally:
    """Replays worker logs: feeds the oracle and counts ops, conflicts, latencies."""

    def __init__(self, oracle: Oracle, history: History | None = None) -> None:
        self.oracle = oracle
        self.history = history
        self.ops: Counter[str] = Counter({kind: 0 for kind in KINDS})
        self.conflicts: Counter[str] = Counter(
            {"cas_retries": 0, "transform_retries": 0, "conflict_errors": 0, "cas_gave_up": 0}
        )
        self.hists: dict[str, Histogram] = {kind: Histogram() for kind in KINDS}
        # Lost races prove the races really happened (a lone winner proves nothing).
        self.races_lost: Counter[str] = Counter(
            {"insert": 0, "append": 0, "discard_put": 0, "discard_remove": 0, "popitem_empty": 0}
        )
        # Ops ended by an expected BackendError (--expect-faults), by class.
        self.faults: Counter[str] = Counter()
        self.ready: set[int] = set()
        self.done: set[int] = set()
        self._offsets: dict[int, int] = {}
        self._partial: dict[int, bytes] = {}

    def poll(self, logs: dict[int, str]) -> None:
        """Consume every complete line appended to the logs since the last poll."""
        for wid, path in logs.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(wid, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            self._offsets[wid] = self._offsets.get(wid, 0) + len(data)
            lines = (self._partial.pop(wid, b"") + data).split(b"\n")
            if lines[-1]:
                self._partial[wid] = lines[-1]  # a line still being written
            for line in lines[:-1]:
                try:
                    rec = json.loads(line) if line else None
                except json.JSONDecodeError:
                    # Workers write whole lines; garbage means the log itself broke.
                    self.oracle.violation("log-corrupt", f"worker {wid}: {line[:200]!r}")
                    continue
                if rec is not None:
                    self._feed(wid, rec)

    def _feed(self, wid: int, rec: dict[str, Any]) -> None:
        if "hs" in rec or "he" in rec:
            if self.history is not None:
                self.history.feed(wid, rec)
            return
        if "ready" in rec:
            self.ready.add(wid)
        elif "done" in rec:
            self.done.add(wid)
            for kind, data in rec["hist"].items():
                self.hists.setdefault(kind, Histogram()).merge(Histogram.from_json(data))
        elif "op" in rec:
            self.ops[rec["op"]] += 1
            retries = rec.get("retries", 0)
            if rec["op"] == "counter_cas":
                self.conflicts["cas_retries"] += retries
            else:
                self.conflicts["transform_retries"] += retries
            self.conflicts["conflict_errors"] += rec.get("conflict", 0)
            self.conflicts["cas_gave_up"] += rec.get("gave_up", 0)
            if "fault" in rec:
                self.faults[rec["fault"]] += 1  # its race fields only say how far it got
            else:
                self._count_lost(rec)
        self.oracle.feed(wid, rec)

    def _count_lost(self, rec: dict[str, Any]) -> None:
        if rec.get("won") is False:
            self.races_lost["insert" if rec["op"] == "insert_race" else "append"] += 1
        if rec.get("put") is False:
            self.races_lost["discard_put"] += 1
        if rec.get("removed") is False:
            self.races_lost["discard_remove"] += 1
        if rec["op"] == "popitem_race" and "pk" not in rec and "error" not in rec:
            self.races_lost["popitem_empty"] += 1
