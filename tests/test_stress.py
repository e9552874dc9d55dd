"""The stress harness runs clean on the real stores and fails on broken ones."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from persidict import ANY_ETAG, LocalDict, PersiDict
from persidict.stress import cli
from persidict.stress.cli import Options, run_stress
from persidict.stress.oracle import Oracle, check_blob, make_blob
from persidict.stress.report import Histogram
from persidict.stress.stores import StoreSpec, make_store
from persidict.stress.tally import Tally
from persidict.stress.workers import KINDS

_SCRIPT = Path(sys.executable).with_name("persidict-stress")
# The console script when installed, else the same entry point via -m.
STRESS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "persidict.stress.cli"]


def assert_clean(report: dict[str, Any]) -> None:
    assert report["violations"] == []
    assert report["ok"] is True
    for kind in KINDS:
        assert report["ops_by_kind"][kind] > 0, kind
    assert report["ops_total"] == sum(report["ops_by_kind"].values())
    assert report["latency_ms"]["overall"]["p50"] is not None
    history = report["history"]
    assert history["checked"] and history["undecided"] == [], history
    assert history["ops_checked"] > 0 and history["listings"] > 0


# ------------------------------------------------------------ clean runs


def test_cli_file_backend_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*STRESS, "--workers", "2", "--duration", "3", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert_clean(report)
    assert report["settings"]["backend"] == "file"
    # Workers really raced: some inserts lost and some CAS attempts retried.
    assert report["races_lost"]["insert"] > 0
    assert "ops/s" in proc.stderr  # the progress line


def test_cli_text_report_memory() -> None:
    proc = subprocess.run(
        [*STRESS, "--backend", "memory", "--workers", "2", "--duration", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "violations: 0" in proc.stdout
    assert "RESULT: PASS" in proc.stdout
    assert proc.stderr == ""


def test_memory_backend_in_process() -> None:
    report = run_stress(Options(backend="memory", workers=4, duration=2, seed=7, progress=False))
    assert_clean(report)


# --------------------------------------------- the oracle can fail at all


class IgnoresConditionDict(LocalDict):
    """A broken store: set_item_if writes whatever the condition says."""

    def set_item_if(self, key: Any, *, value: Any, condition: Any, **kwargs: Any) -> Any:
        return super().set_item_if(key, value=value, condition=ANY_ETAG, **kwargs)


def broken_factory(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
    store = make_store(spec, namespace)
    if namespace in ("counters", "inserts"):
        store.__class__ = IgnoresConditionDict  # same RAM data, broken writes
    return store


def test_harness_catches_store_ignoring_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    report = run_stress(
        Options(
            backend="memory",
            workers=4,
            duration=2,
            seed=3,
            progress=False,
            store_factory=broken_factory,
        )
    )
    assert report["ok"] is False
    checks = {v["check"] for v in report["violations"]}
    assert checks & {"inserts-final", "inserts-loser-saw", "inserts-two-winners"}, checks
    # ... and the console script turns that into exit status 1.
    monkeypatch.setattr(cli, "make_store", broken_factory)
    rc = cli.main(["--backend", "memory", "--workers", "4", "--duration", "1", "--quiet"])
    assert rc == 1


def feed(oracle: Oracle, worker: int, seq: int, ns: str, keys: list[str], **rec: Any) -> None:
    oracle.feed(worker, {"begin": seq, "ns": ns, "keys": keys})
    oracle.feed(worker, {"seq": seq, **rec})


def test_oracle_detects_lost_counter_update() -> None:
    oracle = Oracle()
    # Both workers were told their increment 0 -> 1 succeeded; the store holds 1.
    feed(oracle, 0, 1, "counters", ["c0"], op="counter_cas", key="c0", val=1)
    feed(oracle, 1, 1, "counters", ["c0"], op="counter_transform", key="c0", val=1)
    checks = {v["check"] for v in oracle.check_final({"counters": {"c0": 1}})}
    assert checks == {"counter-duplicate", "counter-total"}


def test_oracle_accepts_consistent_history() -> None:
    oracle = Oracle()
    feed(oracle, 0, 1, "counters", ["c0"], op="counter_cas", key="c0", val=1)
    feed(oracle, 1, 1, "counters", ["c0"], op="counter_transform", key="c0", val=2)
    feed(oracle, 0, 2, "inserts", ["k"], op="insert_race", key="k", tok="a", won=True)
    feed(oracle, 1, 2, "inserts", ["k"], op="insert_race", key="k", tok="b", won=False, seen="a")
    feed(oracle, 0, 3, "pops", ["p0"], op="popitem_race", key="p0", tok="x", pk="p1", pv="y")
    feed(oracle, 1, 3, "pops", ["p1"], op="popitem_race", key="p1", tok="y")
    feed(oracle, 0, 4, "discards", ["d", "d"], op="discard_race", key="d", tok="t", put=True,
         removed=True, dkey="d", rtok="t")  # fmt: skip
    blob = make_blob("w0.0.5", b"z" * 1000)
    feed(oracle, 0, 5, "blobs", ["b0"], op="blob_write", key="b0", tok="w0.0.5")
    final = {
        "counters": {"c0": 2},
        "inserts": {"k": "a"},
        "pops": {"p0": "x"},
        "blobs": {"b0": blob},
    }
    assert oracle.check_final(final) == []


@pytest.mark.parametrize(
    ("records", "final", "expected"),
    [
        (  # two processes both won the same insert-if-absent
            [("inserts", dict(op="insert_race", key="k", tok="a", won=True)),
             ("inserts", dict(op="insert_race", key="k", tok="b", won=True))],
            {"inserts": {"k": "b"}},
            "inserts-two-winners",
        ),
        (  # the append-only value changed after the insert
            [("append", dict(op="append_race", key="k", tok="a", won=True))],
            {"append": {"k": "a-overwrite"}},
            "append-final",
        ),
        (  # one key was removed by two processes with one insert
            [("discards", dict(op="discard_race", key="d", tok="t", put=True, removed=True)),
             ("discards", dict(op="discard_race", key="d", tok="u", put=False, removed=True))],
            {},
            "discard-count",
        ),
        (  # one item popped by two workers
            [("pops", dict(op="popitem_race", key="p", tok="x", pk="p", pv="x")),
             ("pops", dict(op="popitem_race", key="q", tok="y", pk="p", pv="x"))],
            {"pops": {"q": "y"}},
            "popitem-twice",
        ),
        (  # an item vanished although nobody popped it
            [("pops", dict(op="popitem_race", key="p", tok="x"))],
            {"pops": {}},
            "popitem-lost",
        ),
        (  # a torn large value
            [("blobs", dict(op="blob_write", key="b0", tok="w"))],
            {"blobs": {"b0": make_blob("w", b"a" * 100)[:-1] + b"b"}},
            "blob-torn",
        ),
        (  # a worker saw a torn read
            [("blobs", dict(op="blob_read", key="b0", viol="torn read of b0"))],
            {},
            "blob_read",
        ),
    ],
)  # fmt: skip
def test_oracle_detects(
    records: list[tuple[str, dict[str, Any]]], final: Any, expected: str
) -> None:
    oracle = Oracle()
    for seq, (ns, rec) in enumerate(records):
        feed(oracle, seq % 2, seq, ns, [rec["key"]], **rec)
    checks = {v["check"] for v in oracle.check_final(final)}
    assert expected in checks, checks


def test_unfinished_op_makes_its_keys_unknown_not_violations() -> None:
    oracle = Oracle()
    # The worker logged its intent and died: whether it incremented is unknown.
    oracle.feed(0, {"begin": 1, "ns": "counters", "keys": ["c0"]})
    feed(oracle, 1, 1, "counters", ["c0"], op="counter_cas", key="c0", val=1)
    assert oracle.check_final({"counters": {"c0": 2}}) == []


def test_blob_codec_and_histogram() -> None:
    blob = make_blob("tok", bytes(range(256)) * 4)
    assert check_blob(blob) == ("tok", "")
    assert check_blob(blob[:-1])[0] is None
    assert check_blob(blob[:-1] + b"\x00")[0] is None
    hist = Histogram()
    for micros in range(1, 1001):
        hist.add(micros * 1000)
    p50, p99 = hist.percentile_ms(50), hist.percentile_ms(99)
    assert p50 is not None and abs(p50 - 0.5) < 0.03
    assert p99 is not None and abs(p99 - 0.99) < 0.05
    assert Histogram.from_json(json.loads(json.dumps(hist.to_json()))).count == 1000


# ------------------------------------------------------- bounded in time


_RELEASE = threading.Event()  # ends the hanging reads once the test has checked
_HANGING: list[int] = []  # reads that are hanging now (one entry each)


class HangingDict(LocalDict):
    """A store whose reads hang until the test releases them (or for 60 s)."""

    def get(self, key: Any, default: Any = None) -> Any:
        _HANGING.append(1)
        try:
            _RELEASE.wait(60)
        finally:
            _HANGING.pop()
        return super().get(key, default)


def hanging_factory(spec: StoreSpec, namespace: str) -> PersiDict[Any]:
    store = make_store(spec, namespace)
    if namespace == "blobs":
        store.__class__ = HangingDict
    return store


def test_stuck_thread_worker_is_reported() -> None:
    opts = Options(
        backend="memory",
        workers=2,
        duration=0.5,
        grace=0.5,
        progress=False,
        store_factory=hanging_factory,
    )
    _RELEASE.clear()
    try:
        report = run_stress(opts)
        # Returned while a read still hangs: the run is bounded by its grace,
        # not by its workers (no wall-clock bound, which a loaded machine can miss).
        assert _HANGING, "the run waited for the hanging reads to end"
    finally:
        _RELEASE.set()
    assert "straggler" in {v["check"] for v in report["violations"]}


def test_stuck_worker_process_is_killed_and_reported() -> None:
    proc = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,))
    proc.start()
    oracle = Oracle()
    try:
        cli._check_workers(Options(grace=0), Tally(oracle), [proc], oracle)
        assert not proc.is_alive()
    finally:
        proc.kill()
    assert [v["check"] for v in oracle.violations] == ["straggler"]
    assert "killed" in oracle.violations[0]["detail"]


# ------------------------------------------------- setup errors (exit 2)


def _no_aws_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, **extra)  # fmt: skip
    return env


@pytest.mark.parametrize(
    ("env", "cause"),
    [
        (_no_aws_env(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s"), "EndpointConnectionError"),
        (_no_aws_env(), "NoCredentialsError"),
    ],
)
def test_unreachable_s3_is_one_setup_error(env: dict[str, str], cause: str) -> None:
    # Port 9 (discard) is closed on loopback: nothing listens there.
    proc = subprocess.run(
        [*STRESS, "--backend", "s3", "--endpoint-url", "http://127.0.0.1:9",
         "--region", "us-east-1", "--workers", "4", "--duration", "5"],
        capture_output=True, text=True, timeout=20, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if "setup error" in line]
    assert len(lines) == 1, proc.stderr
    assert "127.0.0.1:9" in lines[0] and cause in lines[0]
    assert "Traceback" not in proc.stderr and "violation" not in proc.stderr


def test_unusable_dir_is_a_setup_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    rc = cli.main(["--dir", str(not_a_dir), "--duration", "1", "--quiet"])
    assert rc == 2
