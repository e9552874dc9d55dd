"""Settings of a stress run: the command line, and what each worker is given."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from persidict import PersiDict

from .stores import BACKENDS, StoreSpec

StoreFactory = Callable[[StoreSpec, str], PersiDict[Any]]


@dataclass
class Options:
    """Settings of one run (the CLI flags, plus hooks for tests)."""

    backend: str = "file"
    dir: str | None = None
    workers: int = 4
    duration: float = 10.0
    seed: int | None = None
    durable: bool = True
    max_ops: int = 1_000_000
    grace: float = 30.0
    progress: bool = True
    json: bool = False
    endpoint_url: str | None = None  # s3 only
    bucket: str | None = None  # s3 only
    region: str | None = None  # s3 only
    # s3 only: the workers' endpoint (a proxy, say); setup and checks use endpoint_url.
    worker_endpoint_url: str | None = None
    # BackendError from a call is an expected outcome (faults are injected).
    expect_faults: bool = False
    # Build stores with this instead of make_store; worker processes get it
    # pickled, so it must then be a module-level function.
    store_factory: StoreFactory | None = None
    # SIGKILL this many worker processes at random moments (see killer.py).
    kill: int = 0
    history: bool = True  # log every call and check linearizability (history.py)
    scenario: str = "ops"  # or "memoize" (memo.py)


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker needs; must pickle for multiprocessing 'spawn'."""

    wid: int
    spec: StoreSpec
    log_path: str
    go_path: str
    seed: int
    max_ops: int
    incarnation: int = 0
    startup_timeout: float = 120.0
    history: bool = True  # log every store call for the history check
    expect_faults: bool = False  # BackendError is an outcome, not a finding
    factory: StoreFactory | None = None  # None: make_store


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line into :class:`Options`."""
    p = argparse.ArgumentParser(
        prog="persidict-stress",
        description="Hammer one persidict store from many workers and verify that "
        "no conditional operation ever lost or duplicated an update.",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="file",
        help="file: worker processes on a FileDirDict; memory: worker threads on a "
        "LocalDict; s3: worker processes on a BasicS3Dict (--endpoint-url, --bucket)",
    )
    p.add_argument(
        "--dir",
        default=None,
        help="directory to test in, e.g. on an NFS mount (a fresh subdirectory "
        "is created and kept); default: a temp dir, removed afterwards",
    )
    p.add_argument("--workers", type=int, default=4, help="number of workers (default 4)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    p.add_argument("--seed", type=int, default=None, help="seed of the op mix")
    p.add_argument(
        "--durable",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fsync every write (FileDirDict durable=...; default on)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-ops", type=int, default=1_000_000, help="per-worker op limit")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds after the deadline before stuck workers are killed",
    )
    p.add_argument(
        "--kill",
        type=int,
        default=0,
        metavar="N",
        help="SIGKILL N worker processes at random moments (each is replaced); "
        "confirmed outcomes must survive and the run must still report 0 violations",
    )
    p.add_argument(
        "--history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log every call and check that each key's history is linearizable "
        "(default on; skipped, with a note, above a bounded number of calls)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--endpoint-url", default=None, help="s3: the S3 endpoint (default: AWS)")
    p.add_argument("--bucket", default=None,
                   help="s3: bucket (created if missing; default persidict-stress); "
                   "each run writes under its own fresh prefix")
    p.add_argument("--region", default=None, help="s3: region name")
    p.add_argument(
        "--worker-endpoint-url",
        default=None,
        help="s3: the workers send their requests here instead, e.g. through a "
        "fault-injecting proxy in front of --endpoint-url (setup and the final read "
        "still go to --endpoint-url)",
    )
    p.add_argument(
        "--expect-faults",
        action="store_true",
        help="a call raising BackendError (OutcomeUnknownError included) is an expected "
        "outcome, counted and judged by the history check, not a violation",
    )
    p.add_argument(
        "--scenario",
        choices=("ops", "memoize"),
        default="ops",
        help="ops: the op mix of conditional operations (default); memoize: workers share "
        "one memoized function, and no argument may be computed twice",
    )
    ns = p.parse_args(argv)
    if ns.workers < 1 or ns.duration <= 0 or ns.max_ops < 1 or ns.grace < 0:
        p.error("--workers, --duration and --max-ops must be positive, --grace >= 0")
    if ns.kill < 0 or (ns.kill and ns.backend == "memory"):
        p.error("--kill must be >= 0 and needs worker processes (not --backend memory)")
    return Options(
        backend=ns.backend,
        dir=ns.dir,
        workers=ns.workers,
        duration=ns.duration,
        seed=ns.seed,
        durable=ns.durable,
        max_ops=ns.max_ops,
        grace=ns.grace,
        progress=not ns.quiet,
        json=ns.json,
        endpoint_url=ns.endpoint_url,
        bucket=ns.bucket,
        region=ns.region,
        kill=ns.kill,
        history=ns.history,
        worker_endpoint_url=ns.worker_endpoint_url,
        expect_faults=ns.expect_faults,
        scenario=ns.scenario,
    )
