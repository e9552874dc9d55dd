"""memoize leases on S3 with requests lost on the wire (tests/faultproxy.py).

Each lease write or delete, and the result's write, gets its reply lost
(the server applied it) or its request lost (the server never saw it).
The caller must then get the right result, or the error of its own
result's write, never a lease error; a lease whose fate is unknown may be
left behind, but then it is dead and ``evict`` removes it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from _adversary import proxy, stores
from persidict import BasicS3Dict
from persidict.eviction import evict
from persidict.memoization import LEASE_PREFIX, memoize

__all__ = ["proxy", "stores"]  # fixtures
LEASE = 1.0


def _leases(store: BasicS3Dict) -> list[Any]:
    return [k for k in store if k.strings[0] == LEASE_PREFIX]


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("what", ["insert", "heartbeat", "delete"])
def test_a_lost_lease_request_never_breaks_the_call(
    stores: Any, proxy: Any, mode: str, what: str
) -> None:
    ours, theirs = stores
    computed: list[int] = []
    faults: list[Any] = []
    method = "DELETE" if what == "delete" else "PUT"

    @memoize(ours, name="square", lease_timeout=LEASE)
    def square(x: int) -> int:
        computed.append(x)
        if what == "heartbeat":  # the lease is in: its next PUT is a renewal
            faults.append(proxy.arm(mode, "PUT", f"/{LEASE_PREFIX}/"))
            # Until a renewal met the fault (due every LEASE / 4; a loaded machine
            # may take longer), then time for the next renewals.
            faults[-1].fired.wait(60)
            time.sleep(LEASE / 2)
        return x * x

    if what != "heartbeat":
        faults.append(proxy.arm(mode, method, f"/{LEASE_PREFIX}/"))
    assert square(7) == 49
    assert faults[0].fired.is_set(), proxy.log
    assert square(7) == 49 and computed == [7]
    assert theirs[square.key_for(7)] == 49
    if _leases(theirs):  # its delete lost, or its last renewal unknown: left behind
        time.sleep(LEASE + 2.1)  # dead by now (a second more for S3's clock)
        evict(theirs)
    assert not _leases(theirs)


@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_lost_result_write_still_returns_the_result(
    stores: Any, proxy: Any, mode: str
) -> None:
    ours, theirs = stores
    computed: list[int] = []

    @memoize(ours, name="square", lease_timeout=LEASE)
    def square(x: int) -> int:
        computed.append(x)
        return x * x

    fault = proxy.arm(mode, "PUT", "/square/")
    assert square(7) == 49
    assert fault.fired.is_set(), proxy.log
    assert square(7) == 49 and len(computed) <= 2
    assert theirs[square.key_for(7)] == 49
    assert not _leases(theirs)
