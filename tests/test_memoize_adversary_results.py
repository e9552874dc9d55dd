"""memoize results, attacked: BaseException in f, results that cannot be stored, odd values.

Waiting threads must never hang on a computation that could not store its
result, and nothing may be left claimed or cached.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict, PersiDict
from persidict.memoization import LEASE_PREFIX, memoize


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("no pickling, on purpose")


@pytest.fixture(params=["file", "local"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> PersiDict:
    if request.param == "file":
        return FileDirDict(base_dir=str(tmp_path / "store"))
    return LocalDict()


def _together(f: Any, n: int, *args: Any) -> list[Any]:
    """``n`` threads call ``f(*args)`` at once: their results or exceptions."""
    barrier = threading.Barrier(n)
    out: list[Any] = []

    def call() -> None:
        barrier.wait()
        try:
            out.append(f(*args))
        except BaseException as exc:
            out.append(exc)

    pool = [threading.Thread(target=call) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not any(t.is_alive() for t in pool), "a caller hangs"
    return out


def test_a_result_that_cannot_be_stored_fails_every_waiter_and_stores_nothing(
    store: PersiDict,
) -> None:
    calls: list[int] = []

    @memoize(store, name="unstorable")
    def make(x: int) -> Unpicklable:
        calls.append(x)
        time.sleep(0.1)
        return Unpicklable()

    out = _together(make, 4, 1)
    if isinstance(store, LocalDict) and all(isinstance(o, Unpicklable) for o in out):
        pytest.skip("this LocalDict keeps objects without pickling them")
    assert all(isinstance(o, TypeError) for o in out), out
    assert len(calls) == 4  # errors are not cached: each waiter computed in turn
    assert len(store) == 0


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_a_base_exception_in_f_frees_the_claim(store: PersiDict, error: type) -> None:
    first = threading.Event()

    @memoize(store, name="interrupted")
    def f(x: int) -> int:
        if not first.is_set():
            first.set()
            time.sleep(0.2)
            raise error()
        return x + 1

    out = _together(f, 3, 1)
    assert sorted(map(repr, out)) == sorted([repr(error()), "2", "2"]), out
    assert f(1) == 2 and f.stats()["misses"] == 1


@pytest.mark.parametrize("value", [None, 0, "", False, [], b"\0" * (1 << 20)])
def test_falsy_and_large_results_are_hits(store: PersiDict, value: Any) -> None:
    calls: list[int] = []

    @memoize(store, name="odd")
    def f(x: int) -> Any:
        calls.append(x)
        return value

    assert _together(f, 4, 5) == [value] * 4 and f(5) == value
    assert calls == [5]


def test_a_base_exception_on_s3_leaves_no_lease(s3_server: Any, tmp_path: pathlib.Path) -> None:
    from _s3_plugin import BUCKET, fresh_prefix
    from persidict import BasicS3Dict
    from s3_server import REGION

    shared = BasicS3Dict(bucket_name=BUCKET, region=REGION, root_prefix=fresh_prefix(),
                         endpoint_url=s3_server.endpoint_url)

    @memoize(shared, name="interrupted", lease_timeout=60.0)
    def f(x: int) -> int:
        if os.environ.get("ADV_INTERRUPT"):
            raise KeyboardInterrupt
        return x

    os.environ["ADV_INTERRUPT"] = "1"
    try:
        with pytest.raises(KeyboardInterrupt):
            f(1)
    finally:
        del os.environ["ADV_INTERRUPT"]
    assert [k for k in shared if k.strings[0] == LEASE_PREFIX] == []
    assert f(1) == 1
