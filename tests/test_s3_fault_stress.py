"""persidict-stress on S3 under a steady load of injected faults (real server, real drops).

Four worker processes run the normal op mix through a RandomFaultProxy that
faults 3 % of write requests (half dropped before SeaweedFS sees them, half
with the reply dropped after SeaweedFS applied them) and drops 1 % of read
replies. Setup and the final read go straight to the server. A call that
raised OutcomeUnknownError counts as "may have happened", any other error as
"did not happen"; the end-state oracle and the per-key history check must
then find every acknowledged outcome true. The same run with the old
lost-reply logic (tests/_guessing_s3.py) must be caught.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from _guessing_s3 import guessing_factory
from _s3_plugin import BUCKET
from faultproxy_random import RandomFaultProxy
from persidict.stress.cli import Options, run_stress
from persidict.stress.report import format_text
from s3_server import REGION, S3Server

WRITE_RATE = 0.03
READ_RATE = 0.01
# A longer run: PERSIDICT_FAULT_STRESS_S=20 pytest -s tests/test_s3_fault_stress.py -k holds
SECONDS = float(os.environ.get("PERSIDICT_FAULT_STRESS_S", "8"))


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[RandomFaultProxy]:
    p = RandomFaultProxy(s3_server.endpoint_url, write_rate=WRITE_RATE, read_rate=READ_RATE,
                         seed=7)
    yield p
    p.stop()


RUNS = 3  # at most: a further run only while chance left a fault kind under its floor


def faulted_run(
    s3_server: S3Server, proxy: RandomFaultProxy, duration: float, factory: Any = None,
    seed: int = 5,
) -> dict[str, Any]:
    """One stress run whose workers talk to the server through ``proxy``."""
    return run_stress(Options(
        backend="s3", endpoint_url=s3_server.endpoint_url, bucket=BUCKET, region=REGION,
        worker_endpoint_url=proxy.endpoint_url, expect_faults=True, workers=4,
        duration=duration, seed=seed, progress=False, store_factory=factory,
    ))  # fmt: skip


def _covered(injected: Any, unknown: int, raised_unknown: int) -> bool:
    """Enough faults of each kind: writes lost before and after, deletes, unknown outcomes."""
    return (injected["PUT before"] >= 3 and injected["PUT after"] >= 3
            and injected["DELETE before"] + injected["DELETE after"] >= 2
            and unknown >= 3 and raised_unknown >= 3)  # fmt: skip


def test_fault_stress_holds_every_invariant(
    s3_server: S3Server, proxy: RandomFaultProxy
) -> None:
    """Every run holds every invariant; together they saw enough faults of each
    kind (a loaded machine makes fewer requests in a run, so fewer faults)."""
    unknown = raised_unknown = 0
    for run in range(RUNS):
        report = faulted_run(s3_server, proxy, SECONDS, seed=5 + run)
        history = report["history"]
        print(format_text(report))
        print(f"injected {dict(proxy.injected)} in {dict(proxy.requests)}; ops ended by a "
              f"fault {report['faults']}; history {history.get('outcome_unknown')} unknown, "
              f"{history.get('raised_not_counted')} raised")
        assert report["violations"] == [], report["violations"]
        assert history["checked"] and history["undecided"] == [], history
        unknown += history["outcome_unknown"]
        raised_unknown += report["faults"].get("OutcomeUnknownError", 0)
        if _covered(proxy.injected, unknown, raised_unknown):
            break
    assert _covered(proxy.injected, unknown, raised_unknown), (
        dict(proxy.injected), unknown, raised_unknown)


def test_fault_stress_catches_the_old_lost_reply_guesses(
    s3_server: S3Server, proxy: RandomFaultProxy
) -> None:
    """Caught in one of at most RUNS runs (a run may draw no fault the guesses get wrong)."""
    checks: set[str] = set()
    for run in range(RUNS):
        report = faulted_run(s3_server, proxy, 8.0, factory=guessing_factory, seed=5 + run)
        checks |= {v["check"] for v in report["violations"]}
        print(f"injected {dict(proxy.injected)}; violations {len(report['violations'])}: "
              f"{sorted(checks)}")
        if any(c.startswith("history-") for c in checks):
            break
    assert proxy.faults > 0
    assert any(c.startswith("history-") for c in checks), sorted(checks)
