"""Invariant checks from worker reports plus the final state read back.

The oracle never calls the store. It only sees (1) what each worker was told
by the store, replayed from the worker logs, and (2) a plain-dict snapshot of
every namespace taken after all workers stopped. Every invariant is a relation
between those two, so a store that lies consistently still gets caught.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- blob codec

_MAGIC = b"PDSTRESS"
_HEAD = struct.Struct("<8sHQ")  # magic, token length, payload length
_DIGEST = 32


def make_blob(token: str, payload: bytes) -> bytes:
    """Wrap ``payload`` into a self-checking value that names its writer."""
    tok = token.encode()
    digest = hashlib.blake2b(tok + payload, digest_size=_DIGEST).digest()
    return _HEAD.pack(_MAGIC, len(tok), len(payload)) + tok + digest + payload


def check_blob(value: Any) -> tuple[str | None, str]:
    """Return ``(token, "")`` for an intact blob, else ``(None, reason)``."""
    if not isinstance(value, bytes):
        return None, f"not bytes but {type(value).__name__}"
    if len(value) < _HEAD.size:
        return None, f"only {len(value)} bytes"
    magic, tok_len, payload_len = _HEAD.unpack_from(value)
    if magic != _MAGIC:
        return None, f"bad magic {magic!r}"
    start = _HEAD.size + tok_len + _DIGEST
    if len(value) != start + payload_len:
        return None, f"length {len(value)} != expected {start + payload_len}"
    tok = value[_HEAD.size : _HEAD.size + tok_len]
    digest = value[_HEAD.size + tok_len : start]
    if hashlib.blake2b(tok + value[start:], digest_size=_DIGEST).digest() != digest:
        return None, f"digest mismatch (writer claims {tok.decode(errors='replace')})"
    return tok.decode(), ""


# -------------------------------------------------------------------- oracle

UNKNOWN = "OutcomeUnknownError"  # a logged fault whose call may have happened


@dataclass
class _Race:
    """Insert-if-absent / append-only race on one key."""

    winners: list[str] = field(default_factory=list)
    seen_by_losers: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class _Churn:
    """Insert-then-discard race on one key."""

    put_tokens: list[str] = field(default_factory=list)
    removed: int = 0


class Oracle:
    """Accumulates worker outcomes; :meth:`check_final` compares with the end state."""

    def __init__(self) -> None:
        self.violations: list[dict[str, str]] = []
        self._counter_values: dict[str, list[int]] = defaultdict(list)
        self._counter_seen: dict[str, set[int]] = defaultdict(set)
        self._races: dict[str, dict[str, _Race]] = {
            "inserts": defaultdict(_Race),
            "append": defaultdict(_Race),
        }
        self._churn: dict[str, _Churn] = defaultdict(_Churn)
        self._removed_tokens: set[str] = set()
        self._pop_puts: dict[str, str] = {}
        self._popped: dict[str, str] = {}  # token -> key
        self._blob_tokens: dict[str, set[str]] = defaultdict(set)
        self._blob_reads: dict[str, set[str]] = defaultdict(set)
        self._unfinished_pops = 0
        # (namespace, key) whose outcome is unknown: an op raised or never finished.
        self._uncertain: Counter[tuple[str, str]] = Counter()
        self._pending: dict[tuple[int, int], tuple[str, list[str]]] = {}

    def seed_pop(self, key: str, token: str) -> None:
        """An item the parent stored in "pops" before the workers started."""
        self._pop_puts[key] = token

    def violation(self, check: str, detail: str) -> None:
        """Record one broken invariant."""
        self.violations.append({"check": check, "detail": detail})

    # ------------------------------------------------------------ streaming

    def feed(self, worker: int, rec: Mapping[str, Any]) -> None:
        """Consume one log record of ``worker`` (intent, outcome, or other)."""
        if "begin" in rec:
            self._pending[(worker, rec["begin"])] = (rec["ns"], list(rec["keys"]))
            return
        if "op" not in rec:
            return
        intent = self._pending.pop((worker, rec["seq"]), None)
        if "viol" in rec:
            self.violation(rec["op"], f"worker {worker}: {rec['viol']}")
        if "error" in rec:
            self.violation("unexpected-error", f"worker {worker} {rec['op']}: {rec['error']}")
            if intent is not None:
                self._mark_uncertain(*intent)
                self._unfinished_pops += intent[0] == "pops"
            return
        if rec.get("fault") == UNKNOWN:
            # An injected fault (--expect-faults) left the last call's outcome
            # open; any other BackendError means that call did not happen.
            if rec["fkey"] is None:
                self._unfinished_pops += rec["fns"] == "pops"  # popitem: any key
            else:
                self._mark_uncertain(rec["fns"], [rec["fkey"]])
        handler = getattr(self, "_on_" + rec["op"], None)
        if handler is not None:
            handler(worker, rec)

    def _mark_uncertain(self, namespace: str, keys: list[str]) -> None:
        for key in keys:
            self._uncertain[(namespace, key)] += 1

    def finish_feeding(self) -> None:
        """Treat ops that began but never reported (their worker died) as unknown."""
        for namespace, keys in self._pending.values():
            self._mark_uncertain(namespace, keys)
            # An unfinished popitem may have removed any key, not just its own.
            self._unfinished_pops += namespace == "pops"
        self._pending.clear()

    def _on_counter(self, worker: int, rec: Mapping[str, Any]) -> None:
        value = rec.get("val")
        if value is None:  # gave up after conflicts: no write happened
            return
        key = rec["key"]
        if value in self._counter_seen[key]:
            self.violation(
                "counter-duplicate",
                f"{key}: value {value} written twice (lost update; worker {worker})",
            )
        self._counter_seen[key].add(value)
        self._counter_values[key].append(value)

    _on_counter_transform = _on_counter
    _on_counter_cas = _on_counter

    def _on_race(self, namespace: str, worker: int, rec: Mapping[str, Any]) -> None:
        if "fault" in rec and not rec["won"] and "seen" not in rec:
            return  # its insert raised: it took no part in the race
        race = self._races[namespace][rec["key"]]
        if rec["won"]:
            race.winners.append(rec["tok"])
            if len(race.winners) == 2:
                self.violation(
                    f"{namespace}-two-winners",
                    f"{rec['key']}: {race.winners} all won (latest: worker {worker})",
                )
        elif "seen" in rec:
            race.seen_by_losers.append((rec["tok"], rec["seen"]))

    def _on_insert_race(self, worker: int, rec: Mapping[str, Any]) -> None:
        self._on_race("inserts", worker, rec)

    def _on_append_race(self, worker: int, rec: Mapping[str, Any]) -> None:
        self._on_race("append", worker, rec)

    def _on_discard_race(self, worker: int, rec: Mapping[str, Any]) -> None:
        if rec["put"]:
            self._churn[rec["key"]].put_tokens.append(rec["tok"])
        if rec["removed"]:
            dkey = rec.get("dkey", rec["key"])
            self._churn[dkey].removed += 1
            rtok = rec.get("rtok")
            if rtok is not None:
                if rtok in self._removed_tokens:
                    self.violation("discard-twice", f"{dkey}: value {rtok} removed twice")
                self._removed_tokens.add(rtok)

    def _on_popitem_race(self, worker: int, rec: Mapping[str, Any]) -> None:
        stored = "fault" not in rec or rec.get("stored")  # else its insert raised
        if stored or self._uncertain[("pops", rec["key"])]:
            self._pop_puts[rec["key"]] = rec["tok"]
        popped = rec.get("pk")
        if popped is None:
            return
        if rec["pv"] in self._popped:
            self.violation(
                "popitem-twice",
                f"{popped}: value {rec['pv']} popped twice (again by worker {worker})",
            )
        self._popped[rec["pv"]] = popped

    def _on_blob_write(self, worker: int, rec: Mapping[str, Any]) -> None:
        if rec.get("fault") in (None, UNKNOWN):  # written, or maybe
            self._blob_tokens[rec["key"]].add(rec["tok"])

    def _on_blob_read(self, worker: int, rec: Mapping[str, Any]) -> None:
        if "seen" in rec:
            self._blob_reads[rec["key"]].add(rec["seen"])

    # ----------------------------------------------------------------- final

    def check_final(self, final: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
        """Check the end state of every namespace; return all violations."""
        self.finish_feeding()
        self._check_counters(final.get("counters", {}))
        for namespace in ("inserts", "append"):
            self._check_races(namespace, final.get(namespace, {}))
        self._check_churn(final.get("discards", {}))
        self._check_pops(final.get("pops", {}))
        self._check_blobs(final.get("blobs", {}))
        return self.violations

    def _check_counters(self, final: Mapping[str, Any]) -> None:
        for key in sorted(set(final) | set(self._counter_values)):
            values = self._counter_values.get(key, [])
            unknown = self._uncertain[("counters", key)]
            stored = final.get(key, 0)
            if not isinstance(stored, int) or not (len(values) <= stored <= len(values) + unknown):
                self.violation(
                    "counter-total",
                    f"{key}: final value {stored!r} but workers saw {len(values)} "
                    f"successful increments ({unknown} unknown)",
                )
            elif not unknown and sorted(values) != list(range(1, stored + 1)):
                missing = sorted(set(range(1, stored + 1)) - set(values))[:10]
                self.violation(
                    "counter-sequence",
                    f"{key}: increments did not produce 1..{stored} once each "
                    f"(missing e.g. {missing})",
                )
            elif any(not 1 <= v <= stored for v in values):
                beyond = sorted(v for v in values if not 1 <= v <= stored)[:10]
                self.violation(
                    "counter-sequence",
                    f"{key}: final value {stored} but increments acknowledged {beyond}",
                )

    def _check_races(self, namespace: str, final: Mapping[str, Any]) -> None:
        races = self._races[namespace]
        for key in sorted(set(final) | set(races)):
            race = races.get(key)
            # With an acknowledged winner nothing else can have been stored
            # (inserts only), whatever else is of unknown outcome.
            if self._uncertain[(namespace, key)] and not (race and race.winners):
                continue
            if race is None:
                self.violation(f"{namespace}-phantom", f"{key}: stored but nobody wrote it")
                continue
            if not race.winners:
                self.violation(f"{namespace}-no-winner", f"{key}: every insert lost")
                continue
            winner = race.winners[0]
            if len(race.winners) == 1 and final.get(key) != winner:
                self.violation(
                    f"{namespace}-final",
                    f"{key}: final value {final.get(key)!r} != winner's {winner!r}",
                )
            for tok, seen in race.seen_by_losers:
                if seen != final.get(key, winner):
                    self.violation(
                        f"{namespace}-loser-saw",
                        f"{key}: loser {tok} saw {seen!r}, the key holds {winner!r}",
                    )

    def _check_churn(self, final: Mapping[str, Any]) -> None:
        for key in sorted(set(final) | set(self._churn)):
            if self._uncertain[("discards", key)]:
                continue
            churn = self._churn.get(key, _Churn())
            present = 1 if key in final else 0
            if len(churn.put_tokens) - churn.removed != present:
                self.violation(
                    "discard-count",
                    f"{key}: {len(churn.put_tokens)} inserts won, {churn.removed} "
                    f"discards removed it, yet present={bool(present)}",
                )
            elif present and final[key] not in churn.put_tokens:
                self.violation("discard-final", f"{key}: holds unknown value {final[key]!r}")

    def _check_pops(self, final: Mapping[str, Any]) -> None:
        for tok, key in sorted(self._popped.items()):
            if self._pop_puts.get(key) != tok:
                self.violation(
                    "popitem-phantom", f"{key}: popped {tok!r} which was never inserted there"
                )
        popped_keys = set(self._popped.values())
        vanished = []
        for key, tok in sorted(self._pop_puts.items()):
            if key in popped_keys or self._uncertain[("pops", key)]:
                continue
            if key not in final:
                vanished.append(key)
            elif final[key] != tok:
                self.violation("popitem-changed", f"{key}: inserted {tok!r}, holds {final[key]!r}")
        if len(vanished) > self._unfinished_pops:
            self.violation(
                "popitem-lost",
                f"{len(vanished)} items vanished without anyone popping them "
                f"({self._unfinished_pops} pops unfinished), e.g. {vanished[:5]}",
            )
        for key in sorted(final):
            if key in popped_keys and not self._uncertain[("pops", key)]:
                self.violation("popitem-resurrected", f"{key}: popped but still stored")
            elif key not in self._pop_puts:
                self.violation("popitem-phantom", f"{key}: stored but nobody inserted it")

    def _check_blobs(self, final: Mapping[str, Any]) -> None:
        for key, seen in sorted(self._blob_reads.items()):
            ghosts = seen - self._blob_tokens.get(key, set())
            if ghosts and not self._uncertain[("blobs", key)]:
                self.violation(
                    "blob-phantom-read", f"{key}: read {sorted(ghosts)[:5]}, never written"
                )
        for key in sorted(final):
            tok, reason = check_blob(final[key])
            if tok is None:
                self.violation("blob-torn", f"{key}: final value is corrupt: {reason}")
            elif tok not in self._blob_tokens.get(key, ()) and not self._uncertain[("blobs", key)]:
                self.violation("blob-phantom", f"{key}: holds {tok!r}, never written there")
