"""memoize on S3 (the SeaweedFS test server): leases across processes, takeover after SIGKILL.

Processes stand for machines: nothing but the bucket is shared between
them. The oracle is the computations' O_APPEND log (``_memo_workers``).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pathlib
import signal
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import _memo_workers as w
from _s3_plugin import BUCKET, fresh_prefix
from persidict import BasicS3Dict, PersiDict, S3Dict
from persidict.memoization import LEASE_PREFIX, memoize
from s3_server import REGION, S3Server

CTX = multiprocessing.get_context("spawn")
# Seconds: short, so a takeover comes quickly; long enough that a loaded
# machine's stalls (a renewal is due every LEASE / 4) do not look like death.
LEASE = 2.0


@pytest.fixture(params=["basic", "cached"])
def shared(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path: pathlib.Path
) -> PersiDict:
    if request.param == "basic":
        return BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                           endpoint_url=s3_server.endpoint_url)
    return S3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                  base_dir=str(tmp_path / "cache"), endpoint_url=s3_server.endpoint_url)


def _done(log: str) -> collections.Counter[str]:
    return collections.Counter(line[1] for line in w.read_log(log) if line[0] == "done")


def _wait_for(log: str, word: str, count: int = 1, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while sum(1 for line in w.read_log(log) if line[0] == word) < count:
        assert time.monotonic() < deadline, f"no {word!r} line in {limit} s: {w.read_log(log)}"
        time.sleep(0.02)


def test_four_processes_compute_each_key_once(shared: PersiDict, tmp_path: pathlib.Path) -> None:
    log = str(tmp_path / "log")
    keys = list(range(8))
    with ProcessPoolExecutor(4, mp_context=CTX) as pool:
        outs = [f.result(timeout=240) for f in
                [pool.submit(w.run_keys, shared, log, keys, 0.2, 5.0) for _ in range(4)]]
    done = _done(log)
    assert sorted(done) == sorted(str(k) for k in keys)
    assert set(done.values()) == {1}, done
    assert sum(o["stats"]["misses"] for o in outs) == len(keys)
    assert all(o["results"] == {k: k * k for k in keys} for o in outs)
    # Leases are gone once their computations are done; results stay.
    assert not [k for k in shared if k.strings[0] == LEASE_PREFIX]
    assert len(shared) == len(keys)


def test_sigkill_of_the_lease_holder_lets_a_waiter_take_over(
    shared: PersiDict, tmp_path: pathlib.Path
) -> None:
    log = str(tmp_path / "log")
    computer = CTX.Process(target=w.call_once, args=(shared, log, 3, 3600.0, LEASE))
    computer.start()
    _wait_for(log, "start")
    waiter = CTX.Process(target=w.call_once, args=(shared, log, 3, 0.0, LEASE))
    waiter.start()
    _wait_for(log, "calling", 2)
    time.sleep(2 * LEASE)  # the holder renews meanwhile: the waiter must keep waiting
    assert [line[0] for line in w.read_log(log)].count("start") == 1
    assert computer.pid is not None
    os.kill(computer.pid, signal.SIGKILL)
    computer.join(30)
    waiter.join(60)
    if waiter.is_alive():  # stuck: it never took over
        waiter.kill()
        waiter.join()
    assert waiter.exitcode == 0
    returned = [line for line in w.read_log(log) if line[0] == "returned"]
    assert returned == [["returned", "3", str(waiter.pid), "9", "1", "0"]], w.read_log(log)
    assert _done(log) == {"3": 1}
    f = memoize(shared, name="tests.expensive")(w.expensive)
    assert shared[f.key_for(3, log)] == 9
    assert not [k for k in shared if k.strings[0] == LEASE_PREFIX]
