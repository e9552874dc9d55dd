"""Adversarial S3 tests, continued: cached stores, fork, a work queue under faults.

See test_adversary_s3.py for the rules checked.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import boto3
from botocore.config import Config

from _adversary import QUICK, insert, path, proxy, stores, told
from _s3_plugin import BUCKET, fresh_prefix
from persidict import BackendError, BasicS3Dict, OutcomeUnknownError
from persidict.backends.s3_cached import S3Dict_FileDirCached
from s3_server import REGION, S3Server

__all__ = ["proxy", "stores"]  # fixtures


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
        pops = 0
        while pops < 200:
            kind, r = told(ours.popitem)
            if kind == "error" and isinstance(r, KeyError):
                if not producing.is_set():
                    return
                time.sleep(0.005)
                continue  # empty while producers (slowed by the faults) may still add: uncounted
            pops += 1
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
    for exc in popped["error"]:  # refused (e.g. SlowDown past the retries): not done,
        assert isinstance(exc, BackendError) and not isinstance(exc, OutcomeUnknownError), exc
        if exc.key is not None:  # so its item is still there, or popped later
            key = exc.key.strings[0]
            assert key in left or key in popped["ok"] or key in popped["unknown"], (key, popped)
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
