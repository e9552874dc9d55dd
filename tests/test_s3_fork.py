"""A process forked while another thread is inside the S3 modules' locks still works.

A real os.fork() from a process where another thread holds the lock around
boto3 client creation (or any module-level lock of the S3 backend); the child
builds a BasicS3Dict and does a set and a get. The parent waits a bounded
time, kills a child that hangs, and fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from _s3_plugin import BUCKET, fresh_prefix
from persidict import BasicS3Dict
from persidict.backends import s3, s3_transport
from s3_server import REGION, S3Server

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_TIMEOUT = 20.0  # seconds; a healthy child needs well under one


def fork_and_use(endpoint_url: str) -> None:
    """Fork; the child sets and gets a key through a new store and exits 0."""
    prefix = fresh_prefix()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            d = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                            endpoint_url=endpoint_url)
            d["k"] = os.getpid()
            code = 0 if d["k"] == os.getpid() else 3
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung for {CHILD_TIMEOUT:g} s (killed)")
        time.sleep(0.02)


@contextlib.contextmanager
def in_thread(inside: Callable[[threading.Event, threading.Event], None]) -> Iterator[None]:
    """Run ``inside(entered, release)`` in a thread; the block runs once it has entered."""
    entered, release = threading.Event(), threading.Event()
    t = threading.Thread(target=inside, args=(entered, release), daemon=True)
    t.start()
    try:
        assert entered.wait(10), "the thread never got inside"
        yield
    finally:
        release.set()
        t.join(timeout=10)


DUMMY = "http://127.0.0.1:9"  # never contacted: building a client sends nothing


def test_fork_while_another_thread_builds_a_client(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    real_client = boto3.client
    gate: list[tuple[threading.Event, threading.Event]] = []

    def slow_client(*args: Any, **kwargs: Any) -> Any:
        if os.getpid() == parent and kwargs.get("endpoint_url") == DUMMY:
            entered, release = gate[0]
            entered.set()  # inside make_client, with whatever lock it holds
            release.wait(30)
        return real_client(*args, **kwargs)

    monkeypatch.setattr(boto3, "client", slow_client)

    def build(entered: threading.Event, release: threading.Event) -> None:
        gate.append((entered, release))
        s3_transport.make_client(DUMMY, REGION)

    with in_thread(build):
        fork_and_use(s3_server.endpoint_url)


def test_fork_while_another_thread_holds_any_module_lock(s3_server: S3Server) -> None:
    lock_type = type(threading.Lock())
    locks = [v for m in (s3, s3_transport) for v in vars(m).values()
             if isinstance(v, lock_type)]
    assert locks  # the modules do keep locks: each must survive a fork

    with contextlib.ExitStack() as stack:
        for lock in locks:
            def hold(entered: threading.Event, release: threading.Event,
                     lock: Any = lock) -> None:
                with lock:
                    entered.set()
                    release.wait(30)

            stack.enter_context(in_thread(hold))
        fork_and_use(s3_server.endpoint_url)
