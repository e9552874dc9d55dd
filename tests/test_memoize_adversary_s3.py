"""memoize leases on S3 (the SeaweedFS test server), attacked with SIGSTOP and SIGKILL.

Processes stand for machines; the oracle is the O_APPEND log of
``test_memoize_adversary_procs``. A lease holder stopped past the lease
timeout may be duplicated (the documented limit) but nothing worse: right
results, no hang, no exception, no lease left. A holder killed right after
its store write leaves a lease that nobody renews: ``evict`` removes it.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import signal
import time
import types

import pytest

import test_memoize_adversary_procs as procs
from _s3_plugin import BUCKET, fresh_prefix
from persidict import BasicS3Dict, LocalDict, PersiDict, S3Dict, eviction
from persidict.eviction import evict
from persidict.memoization import LEASE_PREFIX, MemoizedFunction, memoize
from s3_server import REGION, S3Server

CTX = multiprocessing.get_context("spawn")
LEASE = 1.0
# Where a live lease must look live: seconds of margin for a loaded machine
# (S3 gives whole seconds, so a lease may look up to a second older).
LONG_LEASE = 3.0


@pytest.fixture(params=["basic", "cached"])
def shared(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: pathlib.Path
) -> PersiDict:
    if request.param == "basic":
        return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                           endpoint_url=s3_server.endpoint_url)
    return S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                  base_dir=str(tmp_path / "cache"), endpoint_url=s3_server.endpoint_url)


def _wait_for(log: str, word: str, count: int = 1, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while sum(1 for line in procs.read_log(log) if line[0] == word) < count:
        assert time.monotonic() < deadline, procs.read_log(log)
        time.sleep(0.02)


def _leases(store: PersiDict) -> list[object]:
    return [k for k in store if k.strings[0] == LEASE_PREFIX]


def test_a_stopped_holder_is_taken_over_and_resumes_harmlessly(
    shared: PersiDict, tmp_path: pathlib.Path
) -> None:
    log = str(tmp_path / "log")
    holder = CTX.Process(target=procs.worker, args=(shared, log, [5], 1.5, LEASE))
    holder.start()
    _wait_for(log, "start")
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        waiter = CTX.Process(target=procs.worker, args=(shared, log, [5], 0.1, LEASE))
        waiter.start()
        waiter.join(30)  # takes over after LEASE seconds without renewal
        assert waiter.exitcode == 0, procs.read_log(log)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    holder.join(30)
    assert holder.exitcode == 0, procs.read_log(log)
    got = [line for line in procs.read_log(log) if line[0] == "got"]
    assert sorted(line[3] for line in got) == ["26", "26"], got
    finished = {line[1]: line[2:] for line in procs.read_log(log) if line[0] == "finished"}
    assert finished[str(waiter.pid)] == ["1", "0", "1"], procs.read_log(log)  # a takeover
    assert not _leases(shared)


def kill_after_write(store: PersiDict, log: str) -> None:
    """Compute key 1, and die by SIGKILL right after the store write (lease still held)."""
    f = memoize(store, name=procs.NAME, lease_timeout=LONG_LEASE)(procs.compute)
    original = MemoizedFunction._count

    def count_then_die(self: MemoizedFunction[..., int], what: str) -> None:
        if what == "misses":
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, what)

    MemoizedFunction._count = count_then_die  # type: ignore[method-assign]
    f(1, log)


def test_a_lease_left_by_a_killed_holder_is_evicted_once_dead(
    shared: PersiDict, tmp_path: pathlib.Path
) -> None:
    log = str(tmp_path / "log")
    dying = CTX.Process(target=kill_after_write, args=(shared, log))
    dying.start()
    dying.join(30)
    assert dying.exitcode == -signal.SIGKILL
    f = memoize(shared, name=procs.NAME, lease_timeout=LONG_LEASE)(procs.compute)
    assert f(1, log) == 2 and f.stats()["hits"] == 1  # the result was stored
    assert len(_leases(shared)) == 1  # nobody renews it, nobody removes it
    assert not _leases(shared) or evict(shared).removed == []  # still live-looking: kept
    time.sleep(LONG_LEASE + 2.1)  # past its timeout, with a second for S3's clock
    report = evict(shared)
    assert _leases(shared) == [] and len(report.removed) == 1, report
    assert f(1, log) == 2 and len(shared) == 1  # the result itself stays


def test_an_error_on_s3_reaches_its_caller_only_and_frees_the_lease(
    shared: PersiDict, tmp_path: pathlib.Path
) -> None:
    log, flag = str(tmp_path / "log"), str(tmp_path / "flag")
    pathlib.Path(flag).touch()
    assert procs._four(shared, log, flag, None) == ["10", "10", "10", "error flaky"]
    words = [line[0] for line in procs.read_log(log)]
    assert words.count("raised") == 1 and words.count("done") == 1, procs.read_log(log)
    assert not _leases(shared)


def test_an_expired_result_on_s3_is_recomputed_once(
    shared: PersiDict, tmp_path: pathlib.Path
) -> None:
    log, flag = str(tmp_path / "log"), str(tmp_path / "no-flag")
    assert procs.call_flaky(shared, log, flag, 6.0) == "10"
    # Past expire (a second more for S3's clock); the recomputed result stays young
    # for 6 s, longer than the four calls take.
    assert procs._four(shared, log, flag, 6.0, pause=7.1) == ["10"] * 4
    assert [line[0] for line in procs.read_log(log)].count("done") == 2, procs.read_log(log)
    assert not _leases(shared)


def test_random_sigkills_of_lease_holders(shared: PersiDict, tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "log")
    survivors, killed = procs.run_with_kills(shared, log, workers=4, keys=4, kills=2, delay=0.3,
                                             lease=3.0, seed=7)
    assert len(killed) == 2
    procs.check_log(log, survivors, 4)
    if not _leases(shared):
        return
    time.sleep(3.0 + 2.1)  # leases of holders killed after their writes: dead by now
    evict(shared)
    assert not _leases(shared)


def test_a_store_whose_base_class_refuses_leases_is_refused_up_front(
    s3_server: S3Server,
) -> None:
    ints = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                       endpoint_url=s3_server.endpoint_url, base_class_for_values=int)
    with pytest.raises(ValueError, match="base_class_for_values"):
        memoize(ints, name="square")  # not a TypeError about a lease at every call
    texts = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                        endpoint_url=s3_server.endpoint_url, base_class_for_values=str)
    shout = memoize(texts, name="shout", lease_timeout=LEASE)(str.upper)
    assert shout("a") == "A" and shout("a") == "A" and shout.stats()["misses"] == 1


def test_evict_never_removes_a_live_lease(shared: PersiDict, tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "log")
    holder = CTX.Process(target=procs.worker, args=(shared, log, [4], LONG_LEASE + 1.0, LONG_LEASE))
    holder.start()
    _wait_for(log, "start")
    waiter = CTX.Process(target=procs.worker, args=(shared, log, [4], 0.0, LONG_LEASE))
    waiter.start()
    removed = []
    while holder.is_alive():  # evicts the whole time the holder renews its lease
        removed += evict(shared).removed
        time.sleep(0.2)
    holder.join(30)
    waiter.join(30)
    assert (holder.exitcode, waiter.exitcode) == (0, 0)
    assert removed == []
    words = [line[0] for line in procs.read_log(log)]
    assert words.count("done") == 1, procs.read_log(log)


def test_a_lease_is_evicted_only_a_second_past_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second of slack S3's whole-second times need, on a virtual clock
    (the S3 tests above use leases long enough for a loaded machine)."""
    store = LocalDict()
    lease = (LEASE_PREFIX, "k")
    store[lease] = "token~2.0"  # a lease whose holder set lease_timeout=2.0
    written = store.timestamp(lease)
    for age, kept in [(2.9, True), (3.1, False)]:
        clock = types.SimpleNamespace(time=lambda age=age: written + age)
        monkeypatch.setattr(eviction, "time", clock)  # eviction's own clock only
        assert (evict(store).removed == []) is kept, age
        assert (lease in store) is kept, age
