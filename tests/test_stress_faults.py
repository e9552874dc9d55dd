"""persidict-stress --expect-faults: errors are outcomes, judged by the oracle and the history.

In-process (memory backend) runs on a LocalDict that raises like a store
behind a lossy network, plus hand-fed oracle records and hand-made
histories. BackendError means "did not happen", OutcomeUnknownError "may
have happened": an honest flaky store passes, one that lies is caught.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from persidict import BackendError, LocalDict, OutcomeUnknownError, PersiDict
from persidict.stress.cli import Options, parse_args, run_stress
from persidict.stress.linearize import search
from persidict.stress.model import Op
from persidict.stress.oracle import Oracle
from persidict.stress.stores import StoreSpec, make_store

FAULT_RATE = 0.04
_rng = random.Random(1)
_rng_lock = threading.Lock()


def _draw() -> float:
    with _rng_lock:
        return _rng.random()


class FlakyDict(LocalDict):
    """Half its faults strike before a write (BackendError), half after it (unknown)."""

    def _fault(self, applied: bool, operation: str) -> BackendError:
        if applied:
            return OutcomeUnknownError("reply lost", backend="memory", operation=operation)
        return BackendError("request lost", backend="memory", operation=operation)

    def _put(self, key: Any, value: Any, **kwargs: Any) -> Any:
        r = _draw()
        if r < FAULT_RATE / 2:
            raise self._fault(False, "put")
        etag = super()._put(key, value, **kwargs)
        if r < FAULT_RATE:
            raise self._fault(True, "put")
        return etag

    def _remove(self, key: Any, **kwargs: Any) -> bool:
        r = _draw()
        if r < FAULT_RATE / 2:
            raise self._fault(False, "remove")
        removed = super()._remove(key, **kwargs)
        if r < FAULT_RATE:
            raise self._fault(True, "remove")
        return removed


class LyingDict(FlakyDict):
    """Its "after" faults claim that the applied write did not happen."""

    def _fault(self, applied: bool, operation: str) -> BackendError:
        return BackendError("request lost", backend="memory", operation=operation)


def _factory(cls: type[LocalDict]) -> Any:
    def factory(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
        store = make_store(spec, namespace)
        if threading.current_thread() is not threading.main_thread():
            store.__class__ = cls  # a worker's: same RAM data, faulty requests
        return store  # the parent's (setup, final read) is sound

    return factory


def _run(cls: type[LocalDict], *, expect_faults: bool = True) -> dict[str, Any]:
    opts = Options(backend="memory", workers=4, duration=1.5, seed=2, progress=False,
                   expect_faults=expect_faults, store_factory=_factory(cls))  # fmt: skip
    return run_stress(opts)


def test_honest_flaky_store_passes_and_its_faults_are_counted() -> None:
    report = _run(FlakyDict)
    assert report["violations"] == [], report["violations"]
    history = report["history"]
    assert history["checked"] and history["undecided"] == [], history
    assert history["outcome_unknown"] >= 5 and report["faults"]["OutcomeUnknownError"] >= 5
    assert sum(history["raised_not_counted"].values()) >= 5, history
    assert report["faults"]["BackendError"] >= 5, report["faults"]


def test_without_expect_faults_a_fault_is_a_violation() -> None:
    report = _run(FlakyDict, expect_faults=False)
    assert "unexpected-error" in {v["check"] for v in report["violations"]}
    assert report["faults"] is None


def test_store_calling_an_applied_write_undone_is_caught() -> None:
    checks = {v["check"] for v in _run(LyingDict)["violations"]}
    assert "history-linearizability" in checks, checks


# ------------------------------------------------------------ oracle records


def feed(oracle: Oracle, worker: int, seq: int, ns: str, keys: list[str], **rec: Any) -> None:
    oracle.feed(worker, {"begin": seq, "ns": ns, "keys": keys})
    oracle.feed(worker, {"seq": seq, **rec})


def fault(ns: str, key: str | None, unknown: bool) -> dict[str, Any]:
    return {"fault": "OutcomeUnknownError" if unknown else "BackendError", "fns": ns,
            "fkey": key}


def test_oracle_counter_with_unknown_increments() -> None:
    def check(final: int, acked: list[int]) -> set[str]:
        oracle = Oracle()
        for seq, v in enumerate(acked):
            feed(oracle, 0, seq, "counters", ["c0"], op="counter_cas", key="c0", val=v)
        for seq in (10, 11):  # two increments of unknown outcome
            feed(oracle, 1, seq, "counters", ["c0"], op="counter_transform", key="c0",
                 **fault("counters", "c0", True))
        feed(oracle, 1, 12, "counters", ["c0"], op="counter_transform", key="c0",
             **fault("counters", "c0", False))  # did not happen: no room made for it
        return {v["check"] for v in oracle.check_final({"counters": {"c0": final}})}

    assert check(4, [1, 2, 4]) == set()  # 3 was one of the unknown ones
    assert check(5, [1, 2, 4]) == set()
    assert check(6, [1, 2, 4]) == {"counter-total"}  # 3 more than acknowledged
    assert check(4, [1, 2, 5]) == {"counter-sequence"}  # 5 acknowledged, then lost


def test_oracle_insert_race_with_faults() -> None:
    def check(final: dict[str, Any], *, winner: bool) -> set[str]:
        oracle = Oracle()
        if winner:
            feed(oracle, 0, 1, "inserts", ["i0"], op="insert_race", key="i0", tok="a",
                 won=True)
        feed(oracle, 1, 1, "inserts", ["i0"], op="insert_race", key="i0", tok="b",
             won=False, **fault("inserts", "i0", True))
        feed(oracle, 2, 1, "inserts", ["i0"], op="insert_race", key="i0", tok="c",
             won=False, **fault("inserts", "i0", False))
        return {v["check"] for v in oracle.check_final({"inserts": final})}

    assert check({}, winner=False) == set()  # nobody won, nobody was told so
    assert check({"i0": "b"}, winner=False) == set()  # the unknown insert won
    assert check({"i0": "a"}, winner=True) == set()
    # an acknowledged winner leaves no room for the unknown one, faults or not
    assert check({"i0": "b"}, winner=True) == {"inserts-final"}


def test_oracle_popitem_race_whose_insert_raised() -> None:
    def check(unknown: bool, final: dict[str, Any]) -> set[str]:
        oracle = Oracle()
        feed(oracle, 0, 1, "pops", ["p0"], op="popitem_race", key="p0", tok="x",
             **fault("pops", "p0", unknown))
        return {v["check"] for v in oracle.check_final({"pops": final})}

    assert check(False, {}) == set()  # its insert did not happen: nothing vanished
    assert check(False, {"p0": "x"}) == {"popitem-phantom"}  # ... yet it is stored
    assert check(True, {}) == set()
    assert check(True, {"p0": "x"}) == set()


# ---------------------------------------------------------- history search


def test_many_unknown_increments_are_decided_cheaply() -> None:
    """30 increments whose replies were lost: 2**30 subsets, one search per count."""
    unknown = [Op(w, "incr", {}, w, None, None) for w in range(30)]

    def verdict(seen: int) -> str:
        read = Op(99, "get", {}, 100, 101, {"v": seen})
        return search([*unknown, read], 20_000).status

    assert verdict(17) == "ok" and verdict(30) == "ok"
    assert verdict(31) == "violation"


def test_unknown_compare_and_swap_applies_only_on_its_etags_value() -> None:
    """A lost-reply set_item_if(If-Match e5) cannot apply over the 8 of another lost write."""

    def verdict(seen: int) -> str:
        ops = [
            Op(0, "set", {"v": 5}, 0, 1, {"ok": True}),
            Op(0, "gwe", {}, 1, 2, {"v": 5, "e": "e5"}),
            Op(1, "sif", {"v": 6, "c": "same", "x": "e5"}, 2, None, None),
            Op(0, "incr", {}, 3, 4, {"v": 6, "re": "e6"}),
            Op(0, "incr", {}, 5, 6, {"v": 7, "re": "e7"}),
            Op(2, "incr", {}, 7, None, None),
            Op(0, "get", {}, 9, 10, {"v": seen}),
        ]
        return search(ops, 20_000).status

    assert verdict(7) == "ok" and verdict(8) == "ok"
    assert verdict(6) == "violation"


def test_command_line_flags() -> None:
    opts = parse_args(["--backend", "s3", "--endpoint-url", "http://127.0.0.1:1",
                       "--worker-endpoint-url", "http://127.0.0.1:2", "--expect-faults"])
    assert opts.endpoint_url == "http://127.0.0.1:1"
    assert opts.worker_endpoint_url == "http://127.0.0.1:2" and opts.expect_faults
    assert not parse_args([]).expect_faults
