"""The history check: hand-made histories, and real runs against broken stores."""

from __future__ import annotations

import time
from typing import Any

import pytest

from persidict import (
    BackendError,
    LocalDict,
    OperationResult,
    PersiDict,
)
from persidict.stress.cli import Options, run_stress
from persidict.stress.crosskey import Listing, check_empty_claims, check_listings
from persidict.stress.history import History
from persidict.stress.linearize import explain, format_window, search
from persidict.stress.model import Op
from persidict.stress.stores import StoreSpec, make_store

BUDGET = 100_000


def op(wid: int, f: str, start: int, end: int | None, res: Any = None, **args: Any) -> Op:
    return Op(wid, f, args, start, end, res)


def verdict(ops: list[Op]) -> str:
    return search(ops, BUDGET).status


def cas(wid: int, start: int, end: int, value: int, expected: str | None, *, won: bool,
        actual: str | None, new: str | None) -> Op:  # fmt: skip
    """A set_item_if(ETAG_IS_THE_SAME) as the workers log it."""
    nv = value if won else "\x00NR"
    res = {"s": won, "a": actual, "re": new if won else actual, "nv": nv}
    return op(wid, "sif", start, end, res, v=value, c="same", x=expected)


# ------------------------------------------------------ hand-made histories


def test_concurrent_increments_and_reads_linearize() -> None:
    ops = [
        op(0, "incr", 0, 10, {"v": 1, "re": "e1"}),
        op(1, "incr", 5, 15, {"v": 2, "re": "e2"}),
        op(2, "gwe", 1, 20, {"v": 1, "e": "e1"}),  # read between the two
        op(2, "get", 21, 22, {"v": 2}),
        op(3, "final", 30, 31, {"v": 2}),
    ]
    assert verdict(ops) == "ok"


def test_lost_update_is_a_violation() -> None:
    # Both increments read 0 and both wrote 1: one was lost.
    ops = [op(0, "incr", 0, 10, {"v": 1, "re": "e1"}), op(1, "incr", 5, 15, {"v": 1, "re": "e2"})]
    assert verdict(ops) == "violation"
    # The same lost update by hand: two CAS rounds both won against the same etag.
    ops = [
        op(0, "gwe", 0, 1, {"v": 1, "e": "e1"}),
        op(1, "gwe", 0, 1, {"v": 1, "e": "e1"}),
        cas(0, 2, 5, 2, "e1", won=True, actual="e1", new="e2"),
        cas(1, 3, 6, 2, "e1", won=True, actual="e1", new="e3"),
    ]
    assert verdict([op(9, "set", -5, -4, {"ok": True}, v=1), *ops]) == "violation"


def test_stale_read_after_completed_write() -> None:
    ops = [
        op(0, "set", 0, 1, {"ok": True}, v="a"),
        op(0, "set", 2, 3, {"ok": True}, v="b"),
        op(1, "get", 4, 5, {"v": "a"}),
    ]
    assert verdict(ops) == "violation"
    ops[2].start = 2  # overlapping the second write: "a" is fine
    assert verdict(ops) == "ok"


def test_two_winners_of_an_insert() -> None:
    ins = {"c": "same", "x": None}
    ops = [
        op(0, "sif", 0, 10, {"s": True, "a": None, "re": "e1", "nv": "a"}, v="a", **ins),
        op(1, "sdif", 1, 11, {"s": True, "a": None, "re": "e2", "nv": "b"}, v="b", **ins),
    ]
    assert verdict(ops) == "violation"
    ops[1].res = {"s": False, "a": "e1", "re": "e1", "nv": "a"}  # the loser saw the winner
    assert verdict(ops) == "ok"


def test_etag_of_another_value_cannot_be_bound() -> None:
    # A plain write leaves its etag unseen; a CAS with the *old* version's
    # etag must not pass as the new version's: that was the old value's etag.
    ops = [
        op(0, "gwe", 0, 1, {"v": 1, "e": "e1"}),
        op(1, "set", 2, 3, {"ok": True}, v=7),
        cas(0, 4, 5, 2, "e1", won=True, actual="e1", new="e2"),
    ]
    assert verdict([op(9, "set", -2, -1, {"ok": True}, v=1), *ops]) == "violation"


def _history(*calls: tuple[int, str, int, int | None, Any, str | None, dict[str, Any]]) -> History:
    history = History()
    for wid, f, start, end, res, exc, args in calls:
        rec = {"ns": "n", "k": "k", "f": f, "a": args, "t": start}
        history.add(wid, rec, end, res, exc)
    return history


def test_raised_op_that_took_effect_is_a_violation() -> None:
    history = _history(
        (0, "set", 0, 1, {"ok": True}, None, {"v": "a"}),
        (1, "pop", 2, 3, None, "BackendError", {}),  # raised: "did not happen"...
        (2, "final", 10, 11, {"v": None}, None, {}),  # ... yet the item is gone
    )
    assert history.raised == {"pop: BackendError": 1}
    checked = history.check(0)
    assert [v["check"] for v in checked["violations"]] == ["history-linearizability"]
    detail = checked["violations"][0]["detail"]
    assert "  pop(" not in detail  # the raised call is no op in the history ...
    assert "1 on this key" in detail  # ... but it is named as a suspect


@pytest.mark.parametrize(("seen", "ok"), [("a", True), ("b", True), (None, False)])
def test_outcome_unknown_may_or_may_not_have_happened(seen: str | None, ok: bool) -> None:
    history = _history(
        (0, "set", 0, 1, {"ok": True}, None, {"v": "a"}),
        (1, "set", 2, 3, None, "OutcomeUnknownError", {"v": "b"}),
        (2, "get", 5, 6, {"v": seen}, None, {}),
    )
    assert history.unknown == 1
    assert (history.check(0)["violations"] == []) is ok


def test_unknown_op_takes_effect_only_after_its_start() -> None:
    ops = [
        op(0, "set", 0, 1, {"ok": True}, v="a"),
        op(2, "get", 2, 3, {"v": "b"}),  # sees "b" before anyone started writing it
        op(1, "set", 4, None, None, v="b"),
    ]
    assert verdict(ops) == "violation"


def test_unfinished_call_of_a_killed_worker_is_unknown() -> None:
    history = History()
    history.feed(0, {"hs": 1, "ns": "n", "k": "k", "f": "set", "a": {"v": "x"}, "t": 5})
    history.finish_feeding()
    history.add(1, {"ns": "n", "k": "k", "f": "get", "a": {}, "t": 10}, 11, {"v": "x"}, None)
    assert history.unknown == 1
    assert history.check(0)["violations"] == []


def test_budget_runs_out_as_undecided_not_violation() -> None:
    ops = [op(w, "incr", 0, 100, {"v": w + 1, "re": f"e{w}"}) for w in range(8)]
    assert search(ops, 5).status == "undecided"
    assert search(ops, BUDGET).status == "ok"


def test_violation_is_explained_by_a_short_window() -> None:
    ops = [op(0, "incr", 10 * i, 10 * i + 5, {"v": i + 1, "re": f"e{i}"}) for i in range(50)]
    ops += [op(1, "get", 495, 496, {"v": 50}), op(2, "get", 600, 601, {"v": 49})]  # stale
    outcome = search(ops, BUDGET)
    assert outcome.status == "violation" and ops[outcome.failed_op].res == {"v": 49}
    lines = format_window(ops, explain(ops, outcome), t0=0)
    assert len(outcome.window) == 1, lines
    assert "value=50" in lines[0] and "<- no linearization" in lines[1]


# ------------------------------------------------------------ cross-key


def _keys(**per_key: list[Op]) -> dict[tuple[str, str], list[Op]]:
    return {("n", k): v for k, v in per_key.items()}


def test_popitem_keyerror_while_a_key_was_surely_present() -> None:
    claim = op(1, "popitem", 10, 20)
    ops = _keys(a=[op(0, "set", 0, 1, {"ok": True}, v="x")])
    assert [v["check"] for v in check_empty_claims(ops, [("n", claim)], 0)] == [
        "history-popitem-empty"
    ]
    # A pop of that key that overlaps the claim: the store may have been empty.
    ops[("n", "a")].append(op(2, "popk", 15, 25, {"v": "x"}))
    assert check_empty_claims(ops, [("n", claim)], 0) == []


def test_popitem_keyerror_counted_against_creations_and_removals() -> None:
    # 3 fresh keys created before the claim, 2 concurrent pops: one key remains.
    ops = _keys(**{f"k{i}": [op(0, "set", i, i + 1, {"ok": True}, v=i)] for i in range(3)})
    ops[("n", "k0")].append(op(1, "popk", 5, 30, {"v": 0}))
    ops[("n", "k1")].append(op(2, "popk", 5, 30, {"v": 1}))
    ops[("n", "k2")].append(op(3, "maybepop", 5, None))  # unknown outcome: may remove
    claim = op(4, "popitem", 10, 20)
    assert check_empty_claims(ops, [("n", claim)], 0) == []
    del ops[("n", "k2")][1]
    assert [v["check"] for v in check_empty_claims(ops, [("n", claim)], 0)] == [
        "history-popitem-empty"
    ]


def test_listing_claims() -> None:
    ops = _keys(
        a=[op(0, "set", 0, 1, {"ok": True}, v=1), op(0, "set", 12, 13, {"ok": True}, v=2)],
        b=[op(0, "set", 0, 1, {"ok": True}, v=1), op(1, "disc", 11, 12, {"ok": True})],
        c=[op(0, "set", 15, 16, {"ok": True}, v=1)],
    )
    listing = op(2, "keys", 10, 20)
    assert check_listings(ops, [Listing("n", listing, ["a"])], 0) == []  # b, c: maybe not
    assert check_listings(ops, [Listing("n", listing, ["a", "b", "c"])], 0) == []
    found = check_listings(ops, [Listing("n", listing, ["b", "c", "c", "zz"])], 0)
    details = " | ".join(v["detail"] for v in found)
    assert "missed 1 keys" in details and "['a']" in details
    assert "more than once" in details and "nobody wrote" in details


# ------------------------------------------------ real runs, broken stores


class NonAtomicTransform(LocalDict):
    """Broken: transform_item reads, thinks, then writes unconditionally."""

    def transform_item(self, key: Any, *, transformer: Any, n_retries: Any = 6) -> Any:
        current = self.get_with_etag(key).new_value
        new = transformer(current)
        time.sleep(0.0005)
        self[key] = new
        return OperationResult(self.get_with_etag(key).actual_etag, new)


class ErrorAfterCommit(LocalDict):
    """Broken: every delete is done, then reported as a failure."""

    def _remove(self, key: Any, *, if_match: Any) -> bool:
        removed = super()._remove(key, if_match=if_match)
        if removed:
            raise BackendError("reply lost", backend="test", operation="remove", key=key)
        return removed


class PopitemGivesUp(LocalDict):
    """Broken: popitem lists once and gives up when others popped what it saw."""

    def popitem(self) -> Any:
        keys = list(self.keys())
        time.sleep(0.0005)
        for key in keys[:1]:
            value = self.pop(key, None)
            if value is not None:
                return key, value
        raise KeyError("popitem(): dictionary is empty")


class ListingRepeats(LocalDict):
    """Broken: a listing yields its first key again at the end."""

    def keys(self) -> Any:
        keys = list(super().keys())
        return iter(keys + keys[:1])


def _broken(cls: type[LocalDict], namespaces: tuple[str, ...]) -> Any:
    def factory(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
        store = make_store(spec, namespace)
        if namespace in namespaces:
            store.__class__ = cls  # same RAM data, broken operation
        return store

    return factory


def _history_checks(factory: Any) -> set[str]:
    opts = Options(backend="memory", workers=4, duration=1.5, seed=11, progress=False,
                   store_factory=factory)  # fmt: skip
    report = run_stress(opts)
    assert report["history"]["checked"], report["history"]
    return {v["check"] for v in report["violations"] if v["check"].startswith("history-")}


def test_history_flags_non_atomic_read_modify_write() -> None:
    assert "history-linearizability" in _history_checks(
        _broken(NonAtomicTransform, ("counters",))
    )


def test_history_flags_error_raised_after_commit() -> None:
    assert "history-linearizability" in _history_checks(
        _broken(ErrorAfterCommit, ("pops", "discards"))
    )


def test_history_flags_popitem_keyerror_on_a_store_never_empty() -> None:
    assert "history-popitem-empty" in _history_checks(_broken(PopitemGivesUp, ("pops",)))


def test_history_flags_listing_that_repeats_a_key() -> None:
    assert "history-listing" in _history_checks(_broken(ListingRepeats, ("listing",)))


def test_correct_store_passes_the_history_check() -> None:
    report = run_stress(Options(backend="memory", workers=4, duration=1.5, seed=5,
                                progress=False))  # fmt: skip
    history = report["history"]
    assert report["violations"] == [], report["violations"]
    assert history["checked"] and history["undecided"] == []
    assert history["ops_checked"] > 1000 and history["listings"] > 0
    assert report["ops_by_kind"]["list_keys"] > 0


def test_no_history_flag_turns_it_off() -> None:
    report = run_stress(Options(backend="memory", workers=2, duration=0.5, seed=5,
                                progress=False, history=False))  # fmt: skip
    assert report["history"] == {"checked": False, "note": "off (--no-history)", "violations": []}


def test_history_over_its_limit_is_skipped_with_a_note() -> None:
    history = History(limit=2)
    for t in range(3):
        history.add(0, {"ns": "n", "k": "k", "f": "set", "a": {"v": t}, "t": t}, t, {}, None)
    checked = history.check(0)
    assert checked["checked"] is False and "skipped: 3 calls > 2" in checked["note"]
    assert history.ops == {} and checked["violations"] == []
