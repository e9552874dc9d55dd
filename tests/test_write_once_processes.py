"""WriteOnceDict across real processes: the first value wins and never changes.

Several processes, started together on a barrier, each write their *own*
value to the same keys, round after round, and read every key back. The
oracle is what each worker reports, compared with the other workers' reports
and with the files read around the store (``conftest.read_ground_truth``):

- all workers read the same value for a key, in every round;
- that value is one of the written values and is what is on disk;
- later rounds never change it;
- with ``p_consistency_checks=1`` exactly one worker per key has its writes
  accepted (the winner, whose value is stored) and every other write raises
  ValueError; the consistency-check counters add up exactly.
"""

from __future__ import annotations

import multiprocessing
import pathlib
import pickle
import sys
from typing import Any

import pytest

from conftest import read_ground_truth
from persidict import FileDirDict, WriteOnceDict

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawn children import workers by name
import _wrapper_workers as ww

N_WORKERS = 4
N_KEYS = 25
N_ROUNDS = 3
JOIN_TIMEOUT = 120.0


def run_writers(d: WriteOnceDict, keys: list[str]) -> dict[int, dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WORKERS)
    queue = ctx.Queue()
    payload = pickle.dumps(d)
    procs = [
        ctx.Process(
            target=ww.write_once_writer,
            args=(i, payload, keys, N_ROUNDS, barrier, queue),
        )
        for i in range(N_WORKERS)
    ]
    for p in procs:
        p.start()
    reports: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    try:
        for _ in procs:
            status, worker_id, payload_ = queue.get(timeout=JOIN_TIMEOUT)
            if status == "ok":
                reports[worker_id] = payload_
            else:
                errors.append(f"worker {worker_id}: {payload_}")
    finally:
        for p in procs:
            p.join(timeout=JOIN_TIMEOUT)
            if p.is_alive():  # only our own children, by object
                p.kill()
                p.join(timeout=JOIN_TIMEOUT)
    assert not errors, "\n".join(errors)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return reports


@pytest.mark.parametrize("p", [1.0, 0.0], ids=["append-only-files-p1", "append-only-files-p0"])
def test_concurrent_writers_first_value_wins(tmp_path: pathlib.Path, p: float) -> None:
    root = FileDirDict(base_dir=str(tmp_path / "wo"), append_only=True)
    d = WriteOnceDict(wrapped_dict=root, p_consistency_checks=p)
    keys = [f"k{i}" for i in range(N_KEYS)]
    reports = run_writers(d, keys)
    assert sorted(reports) == list(range(N_WORKERS))

    on_disk = read_ground_truth(root)
    assert set(on_disk) == {(k,) for k in keys}
    written = {k: {f"w{i}:{k}" for i in range(N_WORKERS)} for k in keys}
    problems: list[str] = []
    for k in keys:
        stored = on_disk[(k,)]
        if stored not in written[k]:
            problems.append(f"{k}: stored {stored!r} was never written")
        for rnd in range(N_ROUNDS):
            seen = {reports[i]["read"][rnd][k] for i in range(N_WORKERS)}
            if seen != {stored}:
                problems.append(f"{k} round {rnd}: workers read {seen}, stored {stored!r}")
    assert not problems, "\n".join(problems)
    assert {tuple(key): v for key, v in d.items()} == on_disk

    for i in range(N_WORKERS):
        assert reports[i]["errors"] == []
    if p == 0.0:  # nothing is checked: every write is silently accepted
        for i in range(N_WORKERS):
            assert all(len(ok) == N_KEYS for ok in reports[i]["accepted"])
            assert reports[i]["checks"] == (0, 0)
        return

    # p=1: a write is accepted iff it carries the stored value, i.e. only the
    # winner's; every write is checked, the winner's inserting one included.
    for i in range(N_WORKERS):
        won = {k for k in keys if on_disk[(k,)] == f"w{i}:{k}"}
        for rnd in range(N_ROUNDS):
            assert set(reports[i]["accepted"][rnd]) == won, (i, rnd)
        attempted, passed = reports[i]["checks"]
        assert attempted == N_ROUNDS * N_KEYS, i
        assert passed == N_ROUNDS * len(won), i
    winners = [
        sum(on_disk[(k,)] == f"w{i}:{k}" for i in range(N_WORKERS)) for k in keys
    ]
    assert winners == [1] * N_KEYS


def test_later_writers_never_change_a_stored_value(tmp_path: pathlib.Path) -> None:
    """A key written before the race keeps its value whatever the racers write."""
    root = FileDirDict(base_dir=str(tmp_path / "wo"), append_only=True)
    d = WriteOnceDict(wrapped_dict=root, p_consistency_checks=0)
    keys = [f"k{i}" for i in range(N_KEYS)]
    for k in keys[::2]:
        d[k] = f"pre:{k}"
    reports = run_writers(d, keys)
    on_disk = read_ground_truth(root)
    for k in keys[::2]:
        assert on_disk[(k,)] == f"pre:{k}"
        for i in range(N_WORKERS):
            assert all(r[k] == f"pre:{k}" for r in reports[i]["read"])
    for k in keys[1::2]:
        assert on_disk[(k,)] in {f"w{i}:{k}" for i in range(N_WORKERS)}
        assert {r[k] for i in range(N_WORKERS) for r in reports[i]["read"]} == {on_disk[(k,)]}
