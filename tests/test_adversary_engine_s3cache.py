"""Adversary: S3Dict's local cache over the test S3 server, with replies lost and processes.

A PUT whose reply is lost (applied, or refused before the server) must not
leave the cache claiming a version; three processes with caches of their
own (two writers of one key, one reader) never see a value older than one
acknowledged before their read began.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pathlib
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from _adversary import QUICK, proxy, told
from _s3_plugin import BUCKET, fresh_prefix
from persidict import ETAG_IS_THE_SAME, BasicS3Dict
from persidict.backends.s3_cached import S3Dict_FileDirCached
from s3_server import REGION, S3Server

__all__ = ["proxy"]  # fixture


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _cached(endpoint: str, prefix: str, base_dir: pathlib.Path) -> S3Dict_FileDirCached[Any]:
    d: S3Dict_FileDirCached[Any] = S3Dict_FileDirCached(
        bucket_name=BUCKET, region=REGION, root_prefix=prefix, base_dir=str(base_dir),
        endpoint_url=endpoint)  # fmt: skip
    d._main.retry_policy = QUICK
    return d


FAULTS = {  # what is lost, max_attempts times over
    "request": [("before", "PUT")], "reply": [("after", "PUT")],
    "500 applied": [("after500", "PUT")], "500 not applied": [("500", "PUT")],
    "reply and proof": [("after", "PUT"), ("after", "HEAD"), ("after", "GET")],  # unknown
}


@pytest.mark.parametrize("lost", list(FAULTS))
def test_a_lost_put_reply_leaves_no_cached_version(
    s3_server: S3Server, proxy: Any, tmp_path: pathlib.Path, lost: str
) -> None:
    prefix = fresh_prefix()
    ours = _cached(proxy.endpoint_url, prefix, tmp_path / "ours")
    truth = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=prefix,
                        endpoint_url=s3_server.endpoint_url)  # fmt: skip
    ours["k"] = 1
    assert ours["k"] == 1  # cached
    where = f"/{BUCKET}/{ours._main.root_prefix}k.pkl"
    faults = [proxy.arm(mode, method, where)
              for mode, method in FAULTS[lost] for _ in range(QUICK.max_attempts)]  # fmt: skip
    before = truth.etag("k")
    kind, _ = told(lambda: ours.set_item_if("k", value=2, condition=ETAG_IS_THE_SAME,
                                            expected_etag=before))  # fmt: skip
    proxy.disarm()
    assert faults[0].fired.is_set()
    assert kind in ("ok", "unknown") and (kind == "unknown" or "proof" not in lost)
    assert ours.etag("k") == truth.etag("k")  # before any read could heal the cache
    assert ours["k"] == truth["k"]
    truth["k"] = 3
    assert ours["k"] == 3 and ours.etag("k") == truth.etag("k")


def _writer(endpoint: str, prefix: str, base_dir: str, me: int, n: int, acks: Any) -> None:
    d = _cached(endpoint, prefix, pathlib.Path(base_dir))
    for i in range(n):
        d["k"] = (me, i)
        with acks.get_lock():
            acks[me] = i + 1  # acknowledged: (me, i) or something newer is main's now


def _reader(endpoint: str, prefix: str, base_dir: str, n: int, acks: Any, bad: Any) -> None:
    d = _cached(endpoint, prefix, pathlib.Path(base_dir))
    for _ in range(n):
        with acks.get_lock():
            floor = (acks[0], acks[1])
        value = d.get("k")
        if value is None:
            continue
        who, i = value
        if i + 1 < floor[who]:  # older than a write of ``who`` acknowledged before we read
            with bad.get_lock():
                bad.value += 1


def test_two_writers_and_a_reader_with_caches_of_their_own(
    s3_server: S3Server, tmp_path: pathlib.Path
) -> None:
    prefix = fresh_prefix()
    ctx = multiprocessing.get_context("spawn")
    acks = ctx.Array("i", 2)
    bad = ctx.Value("i", 0)
    url = s3_server.endpoint_url
    procs = [ctx.Process(target=_writer, args=(url, prefix, str(tmp_path / f"w{m}"), m, 60, acks))
             for m in range(2)]  # fmt: skip
    procs.append(ctx.Process(target=_reader,
                             args=(url, prefix, str(tmp_path / "r"), 150, acks, bad)))  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert bad.value == 0
    final = _cached(url, prefix, tmp_path / "w0")
    assert final["k"] == _cached(url, prefix, tmp_path / "r")["k"]


def _killed_before_mirror(endpoint: str, prefix: str, base_dir: str) -> None:
    d = _cached(endpoint, prefix, pathlib.Path(base_dir))
    cache = d.byte_store.cache  # type: ignore[attr-defined]  # the cache: die as it is written

    def die(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)

    cache.write = die  # type: ignore[method-assign]
    d["k"] = 2


def test_sigkill_between_main_write_and_cache_write(
    s3_server: S3Server, tmp_path: pathlib.Path
) -> None:
    prefix = fresh_prefix()
    url = s3_server.endpoint_url
    d = _cached(url, prefix, tmp_path / "shared")
    d["k"] = 1
    assert d["k"] == 1  # cached, in the directory the killed process shares
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_killed_before_mirror, args=(url, prefix, str(tmp_path / "shared")))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    fresh = _cached(url, prefix, tmp_path / "shared")
    for store in (d, fresh):
        assert store["k"] == 2  # main's, never the record left behind
        assert store.etag("k") == store._main.etag("k")  # healed by the read
