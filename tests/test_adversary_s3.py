"""Adversarial S3 fault tests: what every caller was told against what is stored.

A MoreFaultProxy (tests/faultproxy_more.py) sits between our store and the
real SeaweedFS server; another writer ("theirs") talks to the server
directly. Rules checked: a call that returned must have taken effect exactly
once; a call that raised anything but OutcomeUnknownError changed nothing;
OutcomeUnknownError says what is known.

The resend attacks: once an attempt of a write may have been applied, a
second copy of the request can apply it twice (the first one applied, then
undone by another writer, or still in flight at the server: a zombie).
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from _s3_plugin import BUCKET, fresh_prefix
from faultproxy_more import MoreFaultProxy
from persidict import (
    ANY_ETAG,
    ETAG_HAS_CHANGED,
    ETAG_IS_THE_SAME,
    ITEM_NOT_AVAILABLE,
    VALUE_NOT_RETRIEVED,
    BackendError,
    BasicS3Dict,
    OutcomeUnknownError,
)
from persidict.backends.s3_cached import S3Dict_FileDirCached
from persidict.backends.s3_transport import RetryPolicy
from s3_server import REGION, S3Server

QUICK = RetryPolicy(max_attempts=3, max_seconds=10.0, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[MoreFaultProxy]:
    p = MoreFaultProxy(s3_server.endpoint_url)
    yield p
    p.stop()


def through(proxy: MoreFaultProxy, prefix: str, **client_config: Any) -> BasicS3Dict:
    client = None
    if client_config:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name=REGION,
                              config=Config(retries={"total_max_attempts": 1},
                                            s3={"addressing_style": "path"}, **client_config))
    d = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                    endpoint_url=proxy.endpoint_url, client=client)
    d.retry_policy = QUICK
    return d


@pytest.fixture
def stores(s3_server: S3Server, proxy: MoreFaultProxy) -> tuple[BasicS3Dict, BasicS3Dict]:
    prefix = fresh_prefix()
    theirs = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                         endpoint_url=s3_server.endpoint_url)
    return through(proxy, prefix), theirs


def path(d: BasicS3Dict, key: str) -> str:
    return f"/{BUCKET}/{d.root_prefix}{key}.pkl"


def told(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result), ("unknown", error) or ("error", error) for any other exception."""
    try:
        return "ok", fn()
    except OutcomeUnknownError as exc:
        return "unknown", exc
    except Exception as exc:
        return "error", exc


def insert(d: BasicS3Dict, key: str, value: Any) -> Any:
    return d.setdefault_if(key, default_value=value, condition=ETAG_IS_THE_SAME,
                           expected_etag=ITEM_NOT_AVAILABLE)


# -- a write applied, its reply lost, then undone by another writer --------------


def test_insert_applied_then_popped_is_not_inserted_again(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    popped: list[tuple[str, Any]] = []
    proxy.arm("after", "PUT", path(ours, "k"),
              hook=lambda: popped.append(told(lambda: theirs.pop("k"))))
    kind, r = told(lambda: insert(ours, "k", 5))
    assert popped == [("ok", 5)]  # our insert happened once, and its value went to them
    # acknowledged twice, the insert would be back after the pop that took it
    assert "k" not in theirs, (kind, r)
    assert kind == "unknown"


def test_delete_applied_then_rewritten_does_not_delete_their_write(
    stores: Any, proxy: Any
) -> None:
    ours, theirs = stores
    ours["k"] = 1
    proxy.arm("after", "DELETE", path(ours, "k"), hook=lambda: theirs.__setitem__("k", 2))
    kind, r = told(lambda: ours.discard("k"))
    assert theirs.get("k") == 2, (kind, r)  # their acknowledged write survives
    assert kind == "unknown"


def test_swap_applied_then_swapped_back_is_not_applied_twice(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["k"] = "A"
    e_a = ours.etag("k")

    def swap_back() -> None:  # B -> A (the same bytes, so the same etag as before)
        r = theirs.set_item_if("k", value="A", condition=ETAG_IS_THE_SAME,
                               expected_etag=theirs.etag("k"))
        assert r.condition_was_satisfied

    proxy.arm("after", "PUT", path(ours, "k"), hook=swap_back)
    kind, r = told(lambda: ours.set_item_if("k", value="B", condition=ETAG_IS_THE_SAME,
                                            expected_etag=e_a))
    assert theirs["k"] == "A", (kind, r)  # A -> B -> A happened; B again would undo theirs
    assert kind == "unknown"


def test_plain_set_seen_then_overwritten_is_not_written_again(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["k"] = 0
    seen: list[Any] = []

    def read_then_write() -> None:
        seen.append(theirs["k"])
        theirs["k"] = 2

    proxy.arm("after", "PUT", path(ours, "k"), hook=read_then_write)
    kind, r = told(lambda: ours.__setitem__("k", 1))
    assert seen == [1]
    # 1 was read before their 2 was written: our set took effect before theirs
    assert theirs["k"] == 2, (kind, r)
    assert kind == "unknown"


# -- a request held in the network past the client's timeout (a zombie) ---------


def zombie(proxy: MoreFaultProxy, stores: Any, call: Callable[[BasicS3Dict], Any],
           meanwhile: Callable[[BasicS3Dict], Any]) -> tuple[str, Any]:
    """Our call's first request is held; after the call, theirs acts, then it lands."""
    ours, theirs = stores
    slow = through(proxy, ours.root_prefix, read_timeout=1, connect_timeout=2)
    method = "DELETE" if call.__name__.startswith("del") else "PUT"
    fault = proxy.arm("hold", method, path(ours, "k"))
    outcome = told(lambda: call(slow))
    assert fault.fired.is_set()
    meanwhile(theirs)
    fault.release.set()
    assert fault.relayed.wait(10)
    return outcome


def test_zombie_plain_set_does_not_overwrite_a_later_write(stores: Any, proxy: Any) -> None:
    _ours, theirs = stores

    def set_1(d: BasicS3Dict) -> None:
        d["k"] = 1

    kind, r = zombie(proxy, stores, set_1, lambda t: t.__setitem__("k", 2))
    # acknowledged before their write started, ours cannot be the last one
    assert kind == "unknown" or theirs["k"] == 2, (kind, r, theirs["k"])
    assert kind == "unknown"


def test_zombie_insert_does_not_come_back_after_a_pop(stores: Any, proxy: Any) -> None:
    _ours, theirs = stores
    popped: list[Any] = []
    kind, _r = zombie(proxy, stores, lambda d: insert(d, "k", 5),
                     lambda t: popped.append(t.pop("k", None)))
    if kind == "ok" and popped == [5]:
        assert "k" not in theirs  # inserted once, popped once
    assert kind == "unknown"


# -- server errors, cut bodies, proofs lost -------------------------------------


def test_a_refused_write_503_is_resent_and_applied_once(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["n"] = 0
    for _ in range(QUICK.max_attempts - 1):
        proxy.arm("503", "PUT", path(ours, "n"))
    r = ours.transform_item("n", transformer=lambda v: v + 1)
    assert r.new_value == 1 and theirs["n"] == 1 and r.resulting_etag == theirs.etag("n")
    d = told(lambda: ours.discard("absent"))
    assert d == ("ok", False)


def test_a_500_after_the_write_was_applied_is_proven_or_unknown(
    stores: Any, proxy: Any
) -> None:
    ours, theirs = stores
    proxy.arm("after500", "PUT", path(ours, "k"))
    kind, r = told(lambda: insert(ours, "k", 5))
    assert kind == "ok" and r.condition_was_satisfied and theirs["k"] == 5
    ours["d"] = 1
    proxy.arm("after500", "DELETE", path(ours, "d"))
    kind, exc = told(lambda: ours.pop("d"))
    assert kind == "unknown" and exc.value == 1 and "d" not in theirs


def test_a_500_that_was_not_applied_is_unknown_not_failed(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    proxy.arm("500", "PUT", path(ours, "k"))
    kind, exc = told(lambda: insert(ours, "k", 5))
    # a 500 says nothing about whether the write happened; never a plain failure
    assert kind in ("ok", "unknown"), exc
    assert (kind == "ok") == ("k" in theirs)


def test_cut_read_bodies_are_read_again(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    big = "x" * 200_000
    ours["k"] = big
    e = ours.etag("k")
    proxy.arm("cut", "GET", path(ours, "k"))
    assert ours["k"] == big
    proxy.arm("cut", "GET", path(ours, "k"))
    r = ours.get_with_etag("k")
    assert r.new_value == big and r.actual_etag == e
    for _ in range(QUICK.max_attempts):
        proxy.arm("cut", "GET", path(ours, "k"))
    kind, exc = told(lambda: ours["k"])
    assert kind == "error" and isinstance(exc, BackendError), exc


def test_the_proof_head_lost_is_retried_and_then_unknown(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    proxy.arm("after", "PUT", path(ours, "a"))
    proxy.arm("after", "HEAD", path(ours, "a"))
    kind, r = told(lambda: insert(ours, "a", 1))
    assert kind == "ok" and r.condition_was_satisfied and theirs["a"] == 1
    proxy.arm("after", "PUT", path(ours, "b"))
    for _ in range(QUICK.max_attempts):
        proxy.arm("after", "HEAD", path(ours, "b"))
    kind, _exc = told(lambda: insert(ours, "b", 1))
    assert kind == "unknown" and theirs["b"] == 1  # applied, unprovably: never "not done"


# -- every operation with its first request(s) lost ------------------------------

OPS: dict[str, tuple[str, str, Callable[[BasicS3Dict], Any]]] = {
    # name: (method lost, key, the call); "k" holds 1 before each call
    "set": ("PUT", "k", lambda d: d.__setitem__("k", 2)),
    "setdefault": ("PUT", "new", lambda d: d.setdefault("new", 2)),
    "setdefault_if": ("PUT", "new", lambda d: insert(d, "new", 2)),
    "set_item_if same": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))),
    "set_item_if different": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ETAG_HAS_CHANGED, expected_etag="x")),
    "set_item_if any": ("PUT", "k", lambda d: d.set_item_if(
        "k", value=2, condition=ANY_ETAG, expected_etag=ITEM_NOT_AVAILABLE)),
    "transform_item": ("PUT", "k", lambda d: d.transform_item("k", transformer=lambda v: v + 1)),
    "discard_if": ("DELETE", "k", lambda d: d.discard_if(
        "k", condition=ETAG_IS_THE_SAME, expected_etag=d.etag("k"))),
    "pop": ("DELETE", "k", lambda d: d.pop("k")),
    "popitem": ("DELETE", "k", lambda d: d.popitem()),
    "del": ("DELETE", "k", lambda d: d.__delitem__("k")),
    "discard": ("DELETE", "k", lambda d: d.discard("k")),
    "get": ("GET", "k", lambda d: d.get("k")),
    "get_with_etag": ("GET", "k", lambda d: d.get_with_etag("k").new_value),
    "etag": ("HEAD", "k", lambda d: d.etag("k")),
    "in": ("HEAD", "k", lambda d: "k" in d),
    "keys": ("GET", "list-type", lambda d: sorted(d.keys())),
    "len": ("GET", "list-type", lambda d: len(d)),
}


@pytest.mark.parametrize("lost", [1, QUICK.max_attempts])
@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("name", list(OPS))
def test_each_operation_with_lost_requests(
    stores: Any, proxy: Any, name: str, mode: str, lost: int
) -> None:
    ours, theirs = stores
    method, key, call = OPS[name]
    ours["k"] = 1
    before = dict(theirs.items())
    for _ in range(lost):
        proxy.arm(mode, method, key if key == "list-type" else path(ours, key))
    kind, r = told(lambda: call(ours))
    after = dict(theirs.items())
    writes = method in ("PUT", "DELETE")
    if kind == "error":
        assert after == before, (name, r)  # failed: nothing changed
        assert not writes, (name, r)  # a write that may have happened is unknown
    elif kind == "unknown":
        assert writes, (name, r)  # reads are never unknown
        assert r.key is not None and r.key.strings == (key,)
        if name in ("pop", "popitem"):
            assert r.value == 1
    else:
        assert writes or after == before
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        removed = set(before) - set(after)
        if method == "PUT":
            assert changed and not removed, (name, r, before, after)
        if method == "DELETE":
            assert removed == {("k",)} and not changed, (name, r, before, after)
        if name == "transform_item":
            assert after[("k",)] == 2  # applied once


# -- cached wrappers, pickling ---------------------------------------------------


def test_unknown_pickles_with_its_value(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    ours["k"] = {"v": 1}
    proxy.arm("after", "DELETE", path(ours, "k"))
    kind, exc = told(lambda: ours.pop("k"))
    assert kind == "unknown"
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, OutcomeUnknownError) and isinstance(back, BackendError)
    assert back.value == {"v": 1} and back.key == exc.key and str(back) == str(exc)
    assert back.operation == "delete_object" and back.backend == "s3"


def test_cached_store_after_an_unknown_write_reports_what_s3_holds(
    s3_server: S3Server, proxy: Any, tmp_path: Any
) -> None:
    prefix = fresh_prefix()
    d = S3Dict_FileDirCached(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                             base_dir=str(tmp_path / "cache"), endpoint_url=proxy.endpoint_url)
    d.main_dict.retry_policy = QUICK
    theirs = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                         endpoint_url=s3_server.endpoint_url)
    d["k"] = 1
    assert d.etag("k") == theirs.etag("k")  # cached
    obj = f"/{BUCKET}/{prefix}/k.pkl"
    proxy.arm("after", "PUT", obj)  # applied, reply lost ...
    for _ in range(QUICK.max_attempts):
        proxy.arm("after", "HEAD", obj)  # ... and no proof
    kind, exc = told(lambda: d.__setitem__("k", 2))
    assert kind == "unknown", exc
    assert theirs["k"] == 2
    # asked what happened, the store must not answer from its old cache entry
    assert d.etag("k") == theirs.etag("k")
    assert d["k"] == 2 and d.get_with_etag("k").new_value == 2
    # overwritten by another writer after an unknown write: the same
    proxy.arm("after", "PUT", obj, hook=lambda: theirs.__setitem__("k", 3))
    kind, exc = told(lambda: d.__setitem__("k", 4))
    assert kind == "unknown", exc
    assert d.etag("k") == theirs.etag("k") and d["k"] == 3


# -- fork while a thread is mid-request on the shared client ---------------------


def wait_child(pid: int, timeout: float = 20.0) -> int | None:
    """The child's exit code; None (after killing it) if it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_fork_while_a_thread_is_mid_request(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    ours["warm"] = 0  # the client and its pool exist
    fault = proxy.arm("hold", "GET", path(ours, "slow"))
    theirs["slow"] = "s"
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(told(lambda: ours["slow"])))
    reader.start()
    assert fault.fired.wait(10)  # the reader's GET is in flight now
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours["child"] = os.getpid()
            code = 0 if ours["child"] == os.getpid() and ours["warm"] == 0 else 3
        finally:
            os._exit(code)
    code = wait_child(pid)
    fault.release.set()
    reader.join(10)
    assert code == 0
    assert theirs["child"] == pid
    assert got == [("ok", "s")]  # the parent's request was not disturbed


def test_unknown_says_what_is_known_about_the_value(stores: Any, proxy: Any) -> None:
    ours, _ = stores
    ours["k"] = None
    proxy.arm("after", "DELETE", path(ours, "k"))
    kind, popped = told(lambda: ours.pop("k"))
    assert kind == "unknown" and popped.value is None  # a stored None was being removed
    proxy.arm("before", "PUT", path(ours, "k"))
    kind, written = told(lambda: ours.__setitem__("k", 1))
    assert kind == "unknown"
    assert written.value is VALUE_NOT_RETRIEVED  # nothing known, distinct from a None value
    assert pickle.loads(pickle.dumps(written)).value is VALUE_NOT_RETRIEVED


# -- many callers, many kinds of faults: a work queue -----------------------------


def test_a_queue_under_faults_hands_each_item_out_at_most_once(stores: Any, proxy: Any) -> None:
    ours, theirs = stores
    rng = random.Random(16)
    prefix = f"/{BUCKET}/{ours.root_prefix}"
    for _ in range(30):  # the first 30 writes of the queue fail, one way or another
        proxy.arm(rng.choice(["before", "after", "503", "after500"]),
                  rng.choice(["PUT", "DELETE"]), prefix)
    inserted: dict[str, list[str]] = {"ok": [], "unknown": [], "error": []}
    popped: dict[str, list[Any]] = {"ok": [], "unknown": [], "error": []}
    producing = threading.Event()
    lock = threading.Lock()

    def produce(i: int) -> None:
        for j in range(10):
            key = f"item{i}_{j}"
            kind, r = told(lambda key=key: insert(ours, key, key))
            won = kind != "ok" or r.condition_was_satisfied
            with lock:
                inserted[kind if won else "error"].append(key)

    def consume() -> None:
        for _ in range(200):
            kind, r = told(ours.popitem)
            if kind == "error" and isinstance(r, KeyError):
                if not producing.is_set():
                    return
                time.sleep(0.005)
                continue
            with lock:
                popped[kind].append(r[1] if kind == "ok" else getattr(r, "value", r))

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
    consumers = [threading.Thread(target=consume) for _ in range(2)]
    producing.set()
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join(30)
    producing.clear()
    for t in consumers:
        t.join(30)
    assert not any(t.is_alive() for t in producers + consumers)
    proxy.disarm()
    left = {k[0] for k in theirs}
    assert len(popped["ok"]) == len(set(popped["ok"])), popped  # no item handed out twice
    assert not popped["error"], popped
    may_exist = set(inserted["ok"]) | set(inserted["unknown"])
    assert set(popped["ok"]) <= may_exist and left <= may_exist, (inserted, popped, left)
    assert not set(popped["ok"]) & left, (popped, left)  # popped, yet back in the queue
    for key in inserted["ok"]:  # an acknowledged item is popped or still there
        assert key in popped["ok"] or key in popped["unknown"] or key in left, key
    assert len(popped["ok"]) > 0


def test_fork_with_an_injected_client_never_crosses_replies(s3_server: S3Server) -> None:
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name=REGION,
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=5,
                                        s3={"addressing_style": "path"},
                                        max_pool_connections=1))
    d = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                    endpoint_url=s3_server.endpoint_url, client=client)
    d.retry_policy = QUICK
    d["p"], d["c"] = "parent", "child"
    assert d["p"] == "parent"  # one pooled connection, now shared by the fork
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                for _ in range(100):
                    d["c"]
            except BackendError as exc:
                code = 0 if "built in this process" in str(exc) else 4
            else:
                code = 3  # used the parent's connection
        finally:
            os._exit(code)
    wrong = 0
    for _ in range(100):
        try:
            wrong += d["p"] != "parent"
        except BackendError:
            wrong += 1
    code = wait_child(pid)
    assert wrong == 0  # the parent never read the child's replies
    assert code == 0  # the child was told, clearly, instead of using them
