"""Is one key's history linearizable? A Wing-Gong search, linearizing just in time.

Calls and returns are replayed in time order. A *configuration* is a model
state plus the set of ops that have been called but not yet linearized. At a
call, the op joins every configuration's pending set; at the return of op o,
each configuration that has not linearized o yet is expanded depth-first by
linearizing pending ops (those that may change the state) until o is
linearized. Configurations are deduplicated (the memo of Wing-Gong /
Porcupine: pending set x state), so the work per event is bounded by the
concurrency, not the history length. An op of unknown outcome never returns:
it stays pending, free to take effect at any later point or never. When no
configuration survives a return, the history is not linearizable.

Pending unknown ops of one kind with the same arguments (say, 30 increments
whose replies were lost) are interchangeable once called: only the one of
lowest index is tried, so configurations differ by how many of them took
effect, not by which (2**30 subsets otherwise).

Ties in time count as overlap (calls sort before returns), so clock
granularity can hide a violation but never invent one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Etags, Op, State, describe, etag_table, mutates, step

Config = tuple[State, frozenset[int]]

SHRINK_ATTEMPTS = 120
SHRINK_BUDGET = 50_000
PRUNE_ABOVE = 16


@dataclass
class Outcome:
    """The verdict on one key: ``ok``, ``violation`` or ``undecided`` (budget spent)."""

    status: str
    steps: int = 0
    failed_op: int | None = None  # the op whose return no configuration survived
    # Last point before the failure with one configuration and no known op pending.
    quiet_time: int | None = None
    quiet_config: Config | None = None
    window: list[int] = field(default_factory=list)  # the offending sub-history
    initial: State = None


def search(
    ops: list[Op],
    budget: int,
    initial: State = None,
    pending: frozenset[int] = frozenset(),
    etags: Etags | None = None,
) -> Outcome:
    """Decide whether ``ops`` (all on one key) linearize from ``initial``."""
    table = etag_table(ops) if etags is None else etags
    events: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        if i not in pending:
            events.append((op.start, 0, i))
        if op.end is not None:
            events.append((op.end, 1, i))
    events.sort()
    known = [op.end is not None for op in ops]
    twin = _twin_classes(ops)
    configs: set[Config] = {(initial, pending)}
    out = Outcome("ok", quiet_time=None, quiet_config=(initial, pending))
    steps = 0
    for t, kind, i in events:
        if kind == 0:
            configs = {(s, p | {i}) for s, p in configs}
            continue
        survivors: set[Config] = set()
        for config in configs:
            if i not in config[1]:
                survivors.add(config)
                continue
            stack = [config]
            seen = {config}
            while stack:
                state, pend = stack.pop()
                for j in _candidates(pend, twin):
                    steps += 1
                    for nxt in step(state, ops[j], table):
                        c = (nxt, pend - {j})
                        if j == i:
                            survivors.add(c)
                        elif c not in seen:
                            seen.add(c)
                            stack.append(c)
                if steps > budget:
                    out.status, out.steps = "undecided", steps
                    return out
        if not survivors:
            out.status, out.steps, out.failed_op = "violation", steps, i
            return out
        configs = _prune(survivors, known) if len(survivors) > PRUNE_ABOVE else survivors
        if len(configs) == 1:
            (only,) = configs
            if all(not known[j] for j in only[1]):
                out.quiet_time, out.quiet_config = t, only
    out.steps = steps
    return out


def _twin_classes(ops: list[Op]) -> list[int | None]:
    """Per op: a class id shared by interchangeable unknown ops, None for a known op."""
    classes: dict[tuple[str, str], int] = {}
    out: list[int | None] = []
    for op in ops:
        if op.res is not None:
            out.append(None)
        else:
            out.append(classes.setdefault((op.f, repr(sorted(op.args.items()))), len(classes)))
    return out


def _candidates(pend: frozenset[int], twin: list[int | None]) -> list[int]:
    """The pending ops worth linearizing next: every known one, one per twin class."""
    out: list[int] = []
    lowest: dict[int, int] = {}
    for j in pend:
        c = twin[j]
        if c is None:
            out.append(j)
        elif j < lowest.get(c, j + 1):
            lowest[c] = j
    return out + list(lowest.values())


def _prune(configs: set[Config], known: list[bool]) -> set[Config]:
    """Drop a configuration whose pending unknown ops are a subset of another's.

    With the same state and the same known ops pending, the one that still may
    apply more unknown ops can do everything the other can.
    """
    groups: dict[tuple[State, frozenset[int]], list[frozenset[int]]] = {}
    for state, pend in configs:
        known_part = frozenset(j for j in pend if known[j])
        groups.setdefault((state, known_part), []).append(pend - known_part)
    kept: set[Config] = set()
    for (state, known_part), unknowns in groups.items():
        for u in unknowns:
            if not any(u < other for other in unknowns):
                kept.add((state, known_part | u))
    return kept


def explain(ops: list[Op], outcome: Outcome) -> Outcome:
    """Cut a violation down to a short offending window (bounded work).

    The window starts at the last quiet point before the failure (a unique
    state, nothing known pending) and ends at the failing return; then ops that
    changed nothing (reads, failed conditions) are dropped one at a time while
    the window stays non-linearizable.
    """
    assert outcome.failed_op is not None and outcome.quiet_config is not None
    fail_t = ops[outcome.failed_op].end
    assert fail_t is not None
    initial, pend = outcome.quiet_config
    since = outcome.quiet_time if outcome.quiet_time is not None else -1
    window = sorted(
        (i for i, op in enumerate(ops) if i in pend or since < op.start <= fail_t),
        key=lambda i: ops[i].start,
    )
    table = etag_table(ops)
    attempts = 0
    for i in list(window):
        if attempts >= SHRINK_ATTEMPTS:
            break
        if mutates(ops[i]) or i == outcome.failed_op:
            continue
        attempts += 1
        trial = [j for j in window if j != i]
        if _fails(ops, trial, initial, pend, table):
            window = trial
    outcome.window, outcome.initial = window, initial
    return outcome


def _fails(
    ops: list[Op], window: list[int], initial: State, pend: frozenset[int], table: Etags
) -> bool:
    sub = [ops[i] for i in window]
    sub_pending = frozenset(k for k, i in enumerate(window) if i in pend)
    return search(sub, SHRINK_BUDGET, initial, sub_pending, table).status == "violation"


def format_window(ops: list[Op], outcome: Outcome, t0: int) -> list[str]:
    """The offending sub-history, one op per line, times in seconds after ``t0``."""
    lines = [f"from state {_state(outcome.initial)}:"]
    for i in outcome.window:
        op = ops[i]
        end = "   (no end)" if op.end is None else f"{(op.end - t0) / 1e9:+.6f}s"
        mark = "  <- no linearization" if i == outcome.failed_op else ""
        who = "parent" if op.wid < 0 else f"w{op.wid}"
        lines.append(f"  {(op.start - t0) / 1e9:+.6f}s..{end} {who} {describe(op)}{mark}")
    return lines


def _state(state: State) -> str:
    if state is None:
        return "absent"
    return f"value={state[0]!r} etag={state[1] if state[1] is not None else '(not seen)'}"
