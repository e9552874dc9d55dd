"""BasicS3Dict after lost requests and lost replies (real server, real dropped connections).

A FaultProxy sits between boto3 and SeaweedFS. It drops one request before
the server sees it, or lets the server apply it and drops the reply. Either
way the client only sees a closed connection and retries. What each caller
was told is recorded and checked against what the server ends up storing:
a success must have happened, exactly once; only OutcomeUnknownError may
leave it open.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _s3_plugin import BUCKET, fresh_prefix
from faultproxy import FaultProxy
from persidict import (
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    BasicS3Dict,
    OutcomeUnknownError,
)
from persidict.backends.s3_transport import RetryPolicy
from s3_server import REGION, S3Server

QUICK = RetryPolicy(max_attempts=3, max_seconds=10.0, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    p = FaultProxy(s3_server.endpoint_url)
    yield p
    p.stop()


@pytest.fixture
def stores(s3_server: S3Server, proxy: FaultProxy) -> tuple[BasicS3Dict, BasicS3Dict]:
    """(ours, through the proxy; another writer's, straight to the server), one prefix."""
    prefix = fresh_prefix()
    ours = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                       endpoint_url=proxy.endpoint_url)
    ours.retry_policy = QUICK
    theirs = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                         endpoint_url=s3_server.endpoint_url)
    return ours, theirs


def path(d: BasicS3Dict, key: str) -> str:
    return f"/{BUCKET}/{d.root_prefix}{key}.pkl"


def told(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What a call told its caller: ("ok", result) or ("unknown", the error)."""
    try:
        return "ok", fn()
    except OutcomeUnknownError as exc:
        return "unknown", exc


def check_unknown(outcome: tuple[str, Any], operation: str, key: str) -> OutcomeUnknownError:
    kind, exc = outcome
    assert kind == "unknown", outcome
    assert exc.backend == "s3" and exc.operation == operation
    assert exc.key.strings == (key,)
    assert "may or may not" in str(exc) and repr(key) in str(exc)
    return exc


# -- a reply lost after the server applied the write ---------------------------


def test_insert_whose_reply_was_lost_is_ours(stores: Any, proxy: FaultProxy) -> None:
    ours, _ = stores
    fault = proxy.arm("after", "PUT", path(ours, "k"))
    kind, r = told(lambda: ours.setdefault_if(
        "k", default_value=5, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE))
    assert fault.fired.is_set()
    assert kind == "ok" and r.condition_was_satisfied and r.new_value == 5
    assert r.resulting_etag == ours.etag("k") and ours["k"] == 5


def test_increment_whose_reply_was_lost_is_applied_once(stores: Any, proxy: FaultProxy) -> None:
    ours, _ = stores
    ours["n"] = 0
    calls: list[int] = []

    def inc(v: int) -> int:
        calls.append(v)
        return v + 1

    fault = proxy.arm("after", "PUT", path(ours, "n"))
    kind, r = told(lambda: ours.transform_item("n", transformer=inc))
    assert fault.fired.is_set()
    assert ours["n"] == 1 and calls == [0]
    assert kind == "ok" and r.new_value == 1 and r.resulting_etag == ours.etag("n")


def test_increment_lost_reply_then_theirs_is_not_applied_twice(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, theirs = stores
    ours["n"] = 0
    outcomes: list[tuple[str, Any]] = []
    # our +1 lands, its reply is lost, and another writer's +1 lands before our retry
    proxy.arm("after", "PUT", path(ours, "n"), hook=lambda: outcomes.append(
        told(lambda: theirs.transform_item("n", transformer=lambda v: v + 1))))
    outcomes.append(told(lambda: ours.transform_item("n", transformer=lambda v: v + 1)))
    acked = sum(kind == "ok" for kind, _ in outcomes)
    unknown = sum(kind == "unknown" for kind, _ in outcomes)
    assert acked <= ours["n"] <= acked + unknown, (outcomes, ours["n"])
    assert ours["n"] == 2
    check_unknown(outcomes[1], "put_object", "n")


@pytest.mark.parametrize("op", ["del", "discard", "pop"])
def test_delete_whose_reply_was_lost_is_unknown(
    stores: Any, proxy: FaultProxy, op: str
) -> None:
    ours, _ = stores
    ours["k"] = "v"
    fault = proxy.arm("after", "DELETE", path(ours, "k"))
    calls: dict[str, Callable[[], Any]] = {
        "del": lambda: ours.__delitem__("k"),
        "discard": lambda: ours.discard("k"),
        "pop": lambda: ours.pop("k", "default"),
    }
    try:
        outcome = told(calls[op])
    except KeyError:
        outcome = ("KeyError", None)  # told "there was no such key": a lie
    assert fault.fired.is_set()
    assert "k" not in ours
    exc = check_unknown(outcome, "delete_object", "k")
    if op == "pop":
        assert exc.value == "v"  # what was being removed reaches the caller


# -- a request lost before the server saw it -----------------------------------


def test_same_bytes_inserted_by_another_writer_are_not_ours(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, theirs = stores
    outcomes: dict[str, tuple[str, Any]] = {}

    def insert(d: BasicS3Dict) -> Any:
        return d.setdefault_if("k", default_value=5, condition=ETAG_IS_THE_SAME,
                               expected_etag=ITEM_NOT_AVAILABLE)

    # our insert never reaches the server; meanwhile another writer inserts the same bytes
    proxy.arm("before", "PUT", path(ours, "k"),
              hook=lambda: outcomes.__setitem__("theirs", told(lambda: insert(theirs))))
    outcomes["ours"] = told(lambda: insert(ours))
    won = [who for who, (kind, r) in outcomes.items()
           if kind == "ok" and r.condition_was_satisfied]
    assert won == ["theirs"], outcomes  # exactly one insert happened
    kind, r = outcomes["ours"]
    assert kind == "unknown" or not r.condition_was_satisfied
    assert ours["k"] == 5 and outcomes["theirs"][1].resulting_etag == ours.etag("k")


def test_two_acknowledged_increments_move_the_counter_twice(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, theirs = stores
    ours["n"] = 0
    outcomes: list[tuple[str, Any]] = []
    # our 0 -> 1 is lost on the way; another writer's 0 -> 1 (same bytes) lands
    proxy.arm("before", "PUT", path(ours, "n"), hook=lambda: outcomes.append(
        told(lambda: theirs.transform_item("n", transformer=lambda v: v + 1))))
    outcomes.append(told(lambda: ours.transform_item("n", transformer=lambda v: v + 1)))
    acked = sum(kind == "ok" for kind, _ in outcomes)
    unknown = sum(kind == "unknown" for kind, _ in outcomes)
    assert acked <= ours["n"] <= acked + unknown, (outcomes, ours["n"])


WRITES: dict[str, tuple[str, Callable[[BasicS3Dict], Any], Any]] = {
    # name: (method dropped, the call, the value stored after it; None = absent)
    "set": ("PUT", lambda d: d.__setitem__("k", 2), 2),
    "insert": ("PUT", lambda d: d.setdefault_if(
        "new", default_value=2, condition=ETAG_IS_THE_SAME, expected_etag=ITEM_NOT_AVAILABLE), 2),
    "swap": ("PUT", lambda d: d.set_item_if(
        "k", value=2, condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k")), 2),
    "transform": ("PUT", lambda d: d.transform_item("k", transformer=lambda v: v + 1), 2),
    "del": ("DELETE", lambda d: d.__delitem__("k"), None),
    "pop": ("DELETE", lambda d: d.pop("k"), None),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_write_lost_before_the_server_is_unknown_and_not_resent(
    stores: Any, proxy: FaultProxy, name: str
) -> None:
    # The client cannot tell "lost before" from "applied, reply lost": a
    # second copy could apply the write twice, so it is never sent.
    ours, _ = stores
    method, call, _stored = WRITES[name]
    ours["k"] = 1
    key = "new" if name == "insert" else "k"
    start = len(proxy.log)
    fault = proxy.arm("before", method, path(ours, key))
    outcome = told(lambda: call(ours))
    assert fault.fired.is_set()
    exc = check_unknown(outcome, "put_object" if method == "PUT" else "delete_object", key)
    assert ours.get(key) == (None if name == "insert" else 1)  # it was not applied
    if name == "pop":
        assert exc.value == 1
    sent = [(m, what) for m, p, what in proxy.log[start:] if p == path(ours, key) and m == method]
    assert sent == [(method, "dropped before")]


# -- retries exhausted, first attempts and reads --------------------------------


def test_insert_applied_then_retries_exhausted_is_proven_by_its_token(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, _ = stores
    proxy.arm("after", "PUT", path(ours, "k"))
    for _ in range(QUICK.max_attempts - 1):
        proxy.arm("before", "PUT", path(ours, "k"))
    r = ours.setdefault_if("k", default_value=5, condition=ETAG_IS_THE_SAME,
                           expected_etag=ITEM_NOT_AVAILABLE)
    assert r.condition_was_satisfied and r.resulting_etag == ours.etag("k")


@pytest.mark.parametrize("first", ["after", "before"])
def test_delete_with_retries_exhausted_is_unknown(
    stores: Any, proxy: FaultProxy, first: str
) -> None:
    ours, _ = stores
    ours["k"] = 1
    proxy.arm(first, "DELETE", path(ours, "k"))
    for _ in range(QUICK.max_attempts - 1):
        proxy.arm("before", "DELETE", path(ours, "k"))
    outcome = told(lambda: ours.discard("k"))
    check_unknown(outcome, "delete_object", "k")
    assert ("k" in ours) == (first == "before")


def test_plain_write_with_every_attempt_lost_is_unknown(stores: Any, proxy: FaultProxy) -> None:
    ours, _ = stores
    for _ in range(QUICK.max_attempts):
        proxy.arm("before", "PUT", path(ours, "k"))
    outcome = told(lambda: ours.__setitem__("k", 1))
    check_unknown(outcome, "put_object", "k")
    assert "k" not in ours


def test_a_first_attempt_precondition_failure_is_plain(stores: Any, proxy: FaultProxy) -> None:
    ours, _ = stores
    ours["k"] = 1
    r = ours.setdefault_if("k", default_value=5, condition=ETAG_IS_THE_SAME,
                           expected_etag=ITEM_NOT_AVAILABLE)
    assert not r.condition_was_satisfied and ours["k"] == 1
    assert not ours.discard("absent")
    with pytest.raises(KeyError):
        del ours["absent"]
    mine = [(m, what) for m, p, what in proxy.log if p.startswith(f"/{BUCKET}/{ours.root_prefix}")]
    assert mine[1:3] == [("PUT", "412"), ("GET", "200")]  # no ownership check after a 412
    # a 412 to DELETE If-Match: * is "absent" only once a HEAD agrees (moto 5 sends
    # it for a present key)
    assert mine[4:] == [("DELETE", "412"), ("HEAD", "404")] * 2


def test_a_read_whose_reply_was_lost_is_retried(stores: Any, proxy: FaultProxy) -> None:
    ours, _ = stores
    ours["k"] = 1
    proxy.arm("after", "GET", path(ours, "k"))
    proxy.arm("after", "HEAD", path(ours, "k"))
    assert ours["k"] == 1
    assert ours.etag("k") == ours.get_with_etag("k").actual_etag


# -- many callers, many faults ---------------------------------------------------


def told_any(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Like told(); any other error is recorded as "error" (it must not have happened)."""
    try:
        return told(fn)
    except Exception as exc:
        return "error", exc


def run_threads(n: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def test_concurrent_increments_under_faults_match_what_callers_were_told(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, _ = stores
    ours["n"] = 0
    rng = random.Random(9)
    for _ in range(24):  # the first 24 PUTs of "n" fail, whoever sends them
        proxy.arm(rng.choice(["before", "after"]), "PUT", path(ours, "n"))
    outcomes: list[str] = []

    def work(_: int) -> None:
        for _ in range(10):
            kind, _r = told_any(lambda: ours.transform_item(
                "n", transformer=lambda v: v + 1, n_retries=None))
            outcomes.append(kind)

    run_threads(3, work)
    acked, unknown = outcomes.count("ok"), outcomes.count("unknown")
    assert acked <= ours["n"] <= acked + unknown, (acked, unknown, ours["n"])
    assert acked > 0


def test_concurrent_inserts_under_faults_have_at_most_one_winner(
    stores: Any, proxy: FaultProxy
) -> None:
    ours, theirs = stores
    rng = random.Random(11)
    for round_ in range(6):
        for _ in range(3):
            proxy.arm(rng.choice(["before", "after"]), "PUT", path(ours, "k"))
        outcomes: list[str] = []

        def work(_: int, outcomes: list[str] = outcomes) -> None:
            kind, r = told_any(lambda: ours.setdefault_if(
                "k", default_value=7, condition=ETAG_IS_THE_SAME,
                expected_etag=ITEM_NOT_AVAILABLE))
            outcomes.append("won" if kind == "ok" and r.condition_was_satisfied else kind)

        run_threads(3, work)
        proxy.disarm()
        won, unknown = outcomes.count("won"), outcomes.count("unknown")
        present = "k" in theirs
        assert won <= 1, (round_, outcomes)
        assert present if won else True, (round_, outcomes)
        assert won + unknown >= 1 if present else True, (round_, outcomes)
        theirs.discard("k")
