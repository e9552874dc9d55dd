"""Claims about a whole namespace: ``popitem`` KeyError and listings.

Both rest on one sound test, "key k was present at every instant of
[s, e]": some completed op W whose result shows k present after it (a read
that saw it, a write) ended before s, and every op that may have removed k
(a successful removal, or one of unknown outcome; a popitem of unknown
outcome counts as one on every key of its namespace) and started before e ended before
W started, so it linearized before W.

- ``popitem()`` raising KeyError claims the namespace was empty at some
  instant of its call. It is a violation if some key was present throughout,
  or if at every instant t of the call more keys were surely created before
  t (writes whose result shows they created their key, and a first write to
  a fresh key, that ended before t) than ops that may have removed one had
  started by t: the number of keys at t is at least that difference. The
  difference only drops at the start of a removal, so it is evaluated at s
  and at each removal start inside [s, e].
- A listing (``keys()``) must yield a key present throughout it exactly
  once, and any key at most once.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .model import COND, REMOVALS, Op, mutates

INF = float("inf")


@dataclass
class Listing:
    """One ``keys()`` call and the keys it yielded."""

    ns: str
    op: Op
    keys: list[str]


def _present_spans(ops: Sequence[Op]) -> list[tuple[float, float]]:
    """Spans (a, b): the key was present throughout any [s, e] with a < s, e < b.

    One per witness W: a = W's end, b = the earliest start of a removal that
    did not end before W started (it may follow W); INF if there is none.
    """
    removals = [
        (op.start, INF if op.end is None else op.end)
        for op in ops
        if op.f in REMOVALS and (op.res is None or mutates(op))
    ]
    best: dict[float, float] = {}
    for w in ops:
        if w.end is None or not _shows(w):
            continue
        b = min((start for start, end in removals if end >= w.start), default=INF)
        if w.end < b:
            best[b] = min(best.get(b, INF), w.end)
    return sorted((a, b) for b, a in best.items())


def _throughout(spans: list[tuple[float, float]], s: int, e: int) -> bool:
    return any(a < s and e < b for a, b in spans)


def _shows(op: Op) -> bool:
    """Does the op's result show the key present right after it?"""
    r = op.res
    if r is None:
        return False
    if op.f in ("get", "final", "gwe"):
        return r["v"] is not None
    if op.f == "in":
        return r["b"] is True
    if op.f in COND:
        return r["re"] is not None
    return op.f in ("set", "ins", "incr", "sd")


def _created(op: Op, first: bool) -> bool:
    """Did the op surely turn an absent key present?"""
    r = op.res
    if r is None or op.end is None:
        return False
    if op.f in ("sif", "sdif"):
        return r["a"] is None and r["re"] is not None
    if op.f == "ins":
        return bool(r["ok"])
    if op.f == "sd":
        return bool(r["v"] == op.args["v"])  # its own (unique) default came back
    return op.f == "set" and first


def _at(t: int, t0: int) -> str:
    return f"{(t - t0) / 1e9:+.6f}s"


def check_empty_claims(
    ops: Mapping[tuple[str, str], list[Op]],
    empties: list[tuple[str, Op]],
    t0: int,
) -> list[dict[str, str]]:
    """Every ``popitem`` KeyError must have had an empty instant to see."""
    out: list[dict[str, str]] = []
    for ns in sorted({ns for ns, _ in empties}):
        keys = {k: v for (n, k), v in ops.items() if n == ns}
        created, removed = [], []
        for key_ops in keys.values():
            first = min(key_ops, key=lambda op: op.start)
            alone = first.end is not None and not any(
                op is not first and op.start < first.end for op in key_ops
            )
            for op in key_ops:
                if op.end is not None and _created(op, alone and op is first):
                    created.append(op.end)
                if op.f in REMOVALS and (op.res is None or mutates(op)):
                    removed.append(op.start)
        created.sort()
        removed.sort()
        spans = {k: _present_spans(v) for k, v in keys.items()}
        for _, claim in (item for item in empties if item[0] == ns):
            s, e = claim.start, claim.end
            assert e is not None
            surely = _fewest_keys(created, removed, s, e)
            present = [k for k, sp in spans.items() if _throughout(sp, s, e)]
            if surely > 0 or present:
                why = f"key {present[0]} was present throughout" if present else (
                    f"at least {surely} keys were present at every instant of it (keys "
                    "surely created by then, minus every removal begun by then)"
                )
                out.append({
                    "check": "history-popitem-empty",
                    "detail": f"{ns}: popitem() by w{claim.wid} raised KeyError during "
                    f"{_at(s, t0)}..{_at(e, t0)}, but {why}",
                })  # fmt: skip
    return out


def _fewest_keys(created: list[int], removed: list[int], s: int, e: int) -> int:
    """A lower bound on the number of keys at every instant of [s, e]."""
    first, last = bisect.bisect_right(removed, s), bisect.bisect_right(removed, e)
    instants = [s, *removed[first:last]]
    return min(bisect.bisect_left(created, t) - bisect.bisect_right(removed, t) for t in instants)


def check_listings(
    ops: Mapping[tuple[str, str], list[Op]],
    listings: list[Listing],
    t0: int,
) -> list[dict[str, str]]:
    """Each key present throughout a listing is yielded once; no key twice.

    A sweep in start order keeps only the spans begun before the listing and
    not over yet, so each listing looks at the keys alive then, not at all.
    """
    out: list[dict[str, str]] = []
    for ns in sorted({listing.ns for listing in listings}):
        spans = sorted(
            (a, b, key)
            for (n, key), key_ops in ops.items()
            if n == ns
            for a, b in _present_spans(key_ops)
        )
        active: list[tuple[float, float, str]] = []  # heap by span end
        nxt = 0
        for listing in sorted((x for x in listings if x.ns == ns), key=lambda x: x.op.start):
            s, e = listing.op.start, listing.op.end
            assert e is not None
            while nxt < len(spans) and spans[nxt][0] < s:
                heapq.heappush(active, (spans[nxt][1], spans[nxt][0], spans[nxt][2]))
                nxt += 1
            while active and active[0][0] < s:
                heapq.heappop(active)
            counts = Counter(listing.keys)
            missed = sorted({key for b, _, key in active if e < b and not counts[key]})
            twice = sorted(k for k, n in counts.items() if n > 1)
            phantom = sorted(k for k in counts if (ns, k) not in ops)
            problems = [
                (f"missed {len(missed)} keys present throughout, e.g. {missed[:5]}", missed),
                (f"yielded {len(twice)} keys more than once, e.g. {twice[:5]}", twice),
                (f"yielded {len(phantom)} keys nobody wrote, e.g. {phantom[:5]}", phantom),
            ]
            for text, found in problems:
                if found:
                    out.append({
                        "check": "history-listing",
                        "detail": f"{ns}: keys() by w{listing.op.wid} during "
                        f"{_at(s, t0)}..{_at(e, t0)} {text}",
                    })  # fmt: skip
    return out
