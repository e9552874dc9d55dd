"""The history checker (stress/linearize.py, model.py, crosskey.py): hand-made
histories found by mutation testing, each on the edge of one rule."""

from __future__ import annotations

from typing import Any

from persidict.stress.crosskey import Listing, check_empty_claims, check_listings
from persidict.stress.linearize import search
from persidict.stress.model import Op

BUDGET = 200_000


def op(wid: int, f: str, start: int, end: int | None, res: Any = None, **args: Any) -> Op:
    return Op(wid, f, args, start, end, res)


def verdict(ops: list[Op]) -> str:
    return search(ops, BUDGET).status


def test_pruned_configurations_keep_every_unknown_write_free_to_land_later() -> None:
    """Six writes of unknown outcome (a crashed worker's): after a read sees
    one, there are more than PRUNE_ABOVE configurations; pruning must keep the
    one where the others are still pending, so a later read of another is fine."""
    ops = [op(0, "set", 0, 1, {"ok": True}, v=0)]
    ops += [op(w, "set", 2, None, None, v=w) for w in range(1, 7)]
    ops += [op(9, "get", 10, 11, {"v": 3}), op(9, "get", 12, 13, {"v": 5})]
    assert verdict(ops) == "ok"
    ops.append(op(9, "get", 14, 15, {"v": 0}))  # 0 was overwritten for good
    assert verdict(ops) == "violation"


NR = "\x00NR"


def _set(v: Any, start: int = 0, end: int = 1) -> Op:
    return op(0, "set", start, end, {"ok": True}, v=v)


def _seen(v: Any, etag: str, start: int = 0, end: int = 1) -> list[Op]:
    """A write of ``v`` and a read that bound its etag."""
    return [_set(v, start - 2, start - 1), op(1, "gwe", start, end, {"v": v, "e": etag})]


def _cas(start: int, res: dict[str, Any]) -> Op:
    """set_item_if(value=2, ETAG_IS_THE_SAME, expected "e9") and what it was told."""
    return op(1, "sif", start, start + 1, res, v=2, c="same", x="e9")


def test_impossible_results_of_each_kind_are_violations() -> None:
    """One call whose logged result no state allows, per kind of call."""
    cases = {
        "refused insert on an absent key": [op(1, "ins", 0, 1, {"ok": False}, v=1)],
        "setdefault that returned a third value": [
            _set(1), op(1, "sd", 2, 3, {"v": 5}, v=9)],
        "pop that found a present key absent": [_set(1), op(1, "pop", 2, 3, {"v": None})],
        "discard that found a present key absent": [_set(1), op(1, "disc", 2, 3, {"ok": False})],
        "write that kept its predecessor's etag": [
            *_seen(1, "e1", 2, 3), op(1, "incr", 4, 5, {"v": 2, "re": "e1"})],
        "failed condition that reported a new etag": [
            *_seen(1, "e1", 2, 3),
            _cas(4, {"s": False, "a": "e1", "re": "e2", "nv": NR})],
        "failed condition that saw a value on an absent key": [
            _cas(0, {"s": False, "a": None, "re": None, "nv": NR})],
    }
    for name, ops in cases.items():
        assert verdict(ops) == "violation", name


def test_unknown_outcomes_apply_only_where_they_could() -> None:
    """An op of unknown outcome may take effect, but only if its own
    condition could hold on the state it lands on."""
    cases = {
        # compare-and-swap on an etag the current version does not have
        "cas on a stale etag": [
            *_seen(1, "e1", 2, 3), op(2, "sif", 4, None, v=2, c="same", x="e9")],
        # ... nor one that belongs to another value, while the current etag is unseen
        "cas on another value's etag": [
            *_seen(1, "e1", 2, 3), _set(7, 4, 5), op(2, "sif", 6, None, v=2, c="same", x="e1")],
        # insert-if-absent on a present key
        "insert-if-absent cas on a present key": [
            _set(7), op(2, "sif", 2, None, v=2, c="same", x=None)],
        "plain insert on a present key": [_set(7), op(2, "ins", 2, None, v=2)],
        "setdefault on a present key": [_set(7), op(2, "sd", 2, None, v=2)],
    }
    for name, ops in cases.items():
        ops.append(op(3, "get", 20, 21, {"v": 2}))
        assert verdict(ops) == "violation", name
    # a conditional delete whose condition failed cannot have removed the key
    ops = [*_seen(1, "e1", 2, 3), op(2, "dif", 4, None, c="same", x="e9"),
           op(3, "get", 20, 21, {"v": None})]  # fmt: skip
    assert verdict(ops) == "violation"
    ops[-2].args["x"] = "e1"  # ... one whose condition held may have
    assert verdict(ops) == "ok"


# ------------------------------------------------------------ cross-key: ties


def _empty_claim_flagged(**per_key: list[Op]) -> bool:
    """Is ``popitem()`` raising KeyError during [10, 20] flagged?"""
    ops = {("n", k): v for k, v in per_key.items()}
    return bool(check_empty_claims(ops, [("n", op(9, "popitem", 10, 20))], 0))


def _listing_flagged(keys: list[str], **per_key: list[Op]) -> bool:
    """Is ``keys()`` during [10, 20] yielding ``keys`` flagged?"""
    ops = {("n", k): v for k, v in per_key.items()}
    return bool(check_listings(ops, [Listing("n", op(9, "keys", 10, 20), keys)], 0))


def _removed(start: int, end: int) -> Op:
    return op(2, "popk", start, end, {"v": 1})


def test_empty_claims_count_ties_as_overlap() -> None:
    """Equal times may be in either order: a tie never proves presence."""
    # the key's creating write ended as the claim began: it may follow the claim
    assert not _empty_claim_flagged(a=[_set(1, 0, 10)])
    assert _empty_claim_flagged(a=[_set(1, 0, 9)])
    # a removal began as the claim began, or as it ended: it may precede it
    assert not _empty_claim_flagged(a=[_set(1), _removed(10, 30)])
    assert not _empty_claim_flagged(a=[_set(1), _removed(20, 25)])
    assert _empty_claim_flagged(a=[_set(1), _removed(21, 25)])
    # a removal that ended as a read began may follow the read
    assert not _empty_claim_flagged(a=[_set(1), _removed(2, 5), op(1, "get", 5, 6, {"v": 1})])


def test_empty_claims_count_removals_begun_during_the_claim() -> None:
    assert not _empty_claim_flagged(a=[_set(1), _removed(15, 30)])


def test_empty_claims_count_only_sure_creations_and_witnesses() -> None:
    # a second plain write created nothing: the key was there already
    assert not _empty_claim_flagged(a=[_set(1), _set(2, 2, 3), _removed(4, 5)])
    # a setdefault that returned the stored value created nothing
    assert not _empty_claim_flagged(a=[_set(1), op(1, "sd", 2, 3, {"v": 1}, v=9), _removed(4, 5)])
    # "not in", and a failed condition on an absent key, witness absence
    gone = [_set(1), op(2, "disc", 2, 3, {"ok": True})]
    assert not _empty_claim_flagged(a=[*gone, op(1, "in", 4, 5, {"b": False})])
    failed = op(1, "sif", 4, 5, {"s": False, "a": None, "re": None, "nv": None}, v=2, c="same",
                x="e9")  # fmt: skip
    assert not _empty_claim_flagged(a=[*gone, failed])
    # a conditional delete satisfied on an absent key removed nothing
    popped = [_set(1), _removed(2, 3)]
    noop = op(2, "dif", 5, 30, {"s": True, "a": None, "re": None, "nv": None}, c="any", x=None)
    assert _empty_claim_flagged(a=[*popped, noop, _set(2, 6, 9)])


def test_listings_count_ties_as_overlap() -> None:
    assert not _listing_flagged([], a=[_set(1, 0, 10)])  # written as the listing began
    assert _listing_flagged([], a=[_set(1, 0, 9)])
    assert not _listing_flagged([], a=[_set(1), op(2, "disc", 20, 25, {"ok": True})])
    assert _listing_flagged([], a=[_set(1), op(2, "disc", 21, 25, {"ok": True})])


def test_empty_claim_decided_by_counting_when_no_key_was_there_throughout() -> None:
    """Neither key is present for the whole claim, but one is at every instant:
    a from its first write until its pop begins at 15, b (popped at 5) again
    from its re-insert at 13. Plain first writes with nothing overlapping
    them surely created their keys."""
    reinsert = op(1, "sif", 12, 13, {"s": True, "a": None, "re": "e2", "nv": 2}, v=2, c="same",
                  x=None)  # fmt: skip
    a = [_set(1), _removed(15, 30)]
    b = [_set(1), _removed(5, 8), reinsert]
    assert _empty_claim_flagged(a=a, b=b)
