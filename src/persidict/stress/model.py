"""The sequential model of one persidict key, as the history check sees it.

A state is ``None`` (key absent) or ``(value, etag)``. Etags are opaque: a
write creates a new version whose etag is whatever the op reported, or
``None`` ("not seen yet") when the op reports none (plain ``d[k] = v``) or its
outcome is unknown; the first op that reports an etag for that version binds
it. Binding is checked against every (etag, value) pair the key's history ever
reported: since every write in the stress mix stores a value no other write
stores, one etag belongs to one value, whether the backend's etags are
counters, timestamps or content hashes (same bytes, same etag).

Ops are ``Op`` records of logged calls; ``res is None`` means the outcome is
unknown (OutcomeUnknownError, or the worker died mid-call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

State = tuple[Any, "str | None"] | None
Etags = Mapping[str, frozenset[Any]]  # etag -> values reported with it

NR = "\x00NR"  # VALUE_NOT_RETRIEVED, as logged

# Call kinds (``Op.f``); the workers log these names.
READS = frozenset({"get", "gwe", "in", "final"})
COND = frozenset({"sif", "sdif", "dif"})
REMOVALS = frozenset({"pop", "del", "disc", "dif", "popk", "maybepop"})


@dataclass(slots=True)
class Op:
    """One call on one key: who, what, when (monotonic ns), and what it was told."""

    wid: int
    f: str
    args: dict[str, Any]
    start: int
    end: int | None  # None: may take effect any time after start, or never
    res: dict[str, Any] | None  # None: outcome unknown


def holds(condition: str, expected: str | None, actual: str | None) -> bool:
    """The etag condition (``any``/``same``/``changed``) on logged etags."""
    if condition == "any":
        return True
    if condition == "same":
        return expected == actual
    return expected != actual


def _may_hold(state: State, condition: str, expected: str | None, etags: Etags) -> bool:
    if state is None:
        return holds(condition, expected, None)
    if state[1] is not None:
        return holds(condition, expected, state[1])
    # Etag not seen yet: some fresh etag, never ITEM_NOT_AVAILABLE, and not
    # one that belongs to another value.
    if condition != "same":
        return True
    values = etags.get(expected) if expected is not None else None
    return expected is not None and (not values or state[0] in values)


def _bind(state: State, actual: str | None, etags: Etags) -> tuple[bool, State]:
    """Is ``actual`` the current version's etag? Bind it if not yet seen."""
    if state is None or actual is None:
        return state is None and actual is None, state
    if state[1] is not None:
        return state[1] == actual, state
    values = etags.get(actual)
    if values and state[0] not in values:
        return False, state  # this etag belongs to another value
    return True, (state[0], actual)


def _value_ok(state: State, reported: Any) -> bool:
    if reported == NR:
        return state is not None
    if reported is None:
        return state is None
    return state is not None and state[0] == reported


def _new_version(state: State, value: Any, etag: str | None) -> list[State]:
    """A write's new version; its etag must differ from the one it replaced."""
    if etag is None or (state is not None and state[1] == etag):
        return []
    return [(value, etag)]


def step(state: State, op: Op, etags: Etags) -> list[State]:
    """States after ``op`` runs on ``state``; empty if its logged result is impossible."""
    r = op.res
    if r is None:
        return _effect(state, op, etags)
    f, a = op.f, op.args
    if f in ("get", "final"):
        return [state] if _value_ok(state, r["v"]) else []
    if f == "gwe":
        ok, cur = _bind(state, r["e"], etags)
        return [cur] if ok and _value_ok(cur, r["v"]) else []
    if f == "in":
        return [state] if r["b"] == (state is not None) else []
    if f == "set":
        return [(a["v"], None)]
    if f == "ins":  # append-only d[k] = v: insert-if-absent, refused if present
        if r["ok"]:
            return [(a["v"], None)] if state is None else []
        return [state] if state is not None else []
    if f in COND:
        return _conditional(state, op, r, etags)
    if f == "incr":
        base = 0 if state is None else state[0]
        if not isinstance(base, int) or r["v"] != base + 1:
            return []
        return _new_version(state, r["v"], r["re"])
    if f == "sd":  # setdefault: returns the current value, inserting the default
        if state is None:
            return [(a["v"], None)] if r["v"] == a["v"] else []
        return [state] if r["v"] == state[0] else []
    if f in ("pop", "popk"):
        if r["v"] is None:
            return [None] if state is None else []
        return [None] if _value_ok(state, r["v"]) else []
    if f in ("del", "disc"):
        return [None] if r["ok"] == (state is not None) else []
    raise ValueError(f"unknown op kind {f!r}")


def _conditional(state: State, op: Op, r: dict[str, Any], etags: Etags) -> list[State]:
    a = op.args
    ok, cur = _bind(state, r["a"], etags)
    cond = holds(a["c"], a["x"], r["a"])
    if not ok or r["s"] != cond:
        return []
    writes = {"sif": cond, "sdif": cond and cur is None, "dif": cond and cur is not None}
    if writes[op.f]:
        if op.f == "dif":
            return [None] if r["re"] is None else []
        return _new_version(cur, a["v"], r["re"])
    if r["re"] != r["a"] or not _value_ok(cur, r["nv"]):
        return []
    return [cur]


def _effect(state: State, op: Op, etags: Etags) -> list[State]:
    """States if an op of unknown outcome did take effect (none: it could not have)."""
    f, a = op.f, op.args
    if f == "set" or (f == "sif" and _may_hold(state, a["c"], a["x"], etags)):
        return [(a["v"], None)]
    if f in ("ins", "sd") or (f == "sdif" and holds(a["c"], a["x"], None)):
        return [(a["v"], None)] if state is None else []
    if f == "incr":
        base = 0 if state is None else state[0]
        return [(base + 1, None)] if isinstance(base, int) else []
    if f == "dif" and not _may_hold(state, a["c"], a["x"], etags):
        return []
    if f in REMOVALS:
        return [None] if state is not None else []
    return []  # a read of unknown outcome changes nothing


def mutates(op: Op) -> bool:
    """Whether the op may change the state (by its logged result, if known)."""
    r = op.res
    if r is None:
        return op.f not in READS
    if op.f in READS:
        return False
    if op.f in COND:
        return bool(r["s"]) and r["re"] != r["a"]
    if op.f == "ins":
        return bool(r["ok"])
    if op.f in ("pop", "popk"):
        return r["v"] is not None
    if op.f in ("del", "disc"):
        return bool(r["ok"])
    return True  # set, incr, sd (a setdefault that found the key changes nothing,
    # but whether it did is what the search decides)


def etag_table(ops: list[Op]) -> dict[str, frozenset[Any]]:
    """Every (etag, value) pair the ops of one key reported."""
    table: dict[str, set[Any]] = {}
    for op in ops:
        r = op.res
        if r is None:
            continue
        pairs: list[tuple[Any, Any]] = []
        if op.f == "gwe":
            pairs.append((r["e"], r["v"]))
        elif op.f == "incr":
            pairs.append((r["re"], r["v"]))
        elif op.f in ("sif", "sdif") and r["s"] and r["re"] != r["a"]:
            pairs.append((r["re"], op.args["v"]))
        for etag, value in pairs:
            if etag is not None and value is not None and value != NR:
                table.setdefault(etag, set()).add(value)
    return {etag: frozenset(values) for etag, values in table.items()}


def describe(op: Op) -> str:
    """One readable line: the call and what it returned."""
    args = ", ".join(f"{k}={v!r}" for k, v in op.args.items())
    if op.res is None:
        result = "outcome unknown"
    else:
        result = ", ".join(f"{k}={v!r}" for k, v in op.res.items()).replace(repr(NR), "NR")
    return f"{op.f}({args}) -> {result}"
