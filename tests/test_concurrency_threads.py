"""The process invariants again, with threads of one process.

Stores under test:
- ``local``: one LocalDict instance shared by all threads;
- ``file_shared``: one FileDirDict instance shared by all threads (its lock
  descriptors must not be shared between threads: OFD locks on one open file
  description do not exclude each other);
- ``file_per_thread``: each thread opens its own FileDirDict on the same
  directory (classic POSIX record locks would not exclude them: they belong
  to the process).

Threads start together on a threading.Barrier; the GIL switch interval is
shortened so that threads interleave inside the store's code.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _workers as w
from persidict import FileDirDict, LocalDict, MutationPolicyError

N_THREADS = 4
KINDS = ["local", "file_shared", "file_per_thread"]


@pytest.fixture(autouse=True)
def _fast_thread_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _make(kind: str, tmp_path: Path, **kw: Any) -> tuple[Any, Any]:
    """(what the workers get, a store the test reads the end state from)."""
    if kind == "local":
        d = LocalDict(**kw)
        return d, d
    spec = w.file_spec(tmp_path / "store", **kw)
    reader = FileDirDict(**spec)
    if kind == "file_shared":
        return reader, reader
    return spec, reader


def _history(results: list[dict], final: object) -> None:
    written = [v for r in results for v in r["written"]]
    dupes = [v for v, c in Counter(written).items() if c > 1]
    assert not dupes, f"values written twice (lost update): {dupes[:10]}"
    assert sorted(written) == list(range(1, len(written) + 1))
    assert final == len(written), f"final {final} != {len(written)} reported increments"


# Catches: per-key locks that do not exclude threads of one process (POSIX
# record locks, or one OFD descriptor shared by all threads), and a LocalDict
# whose read-check-write is not done under one lock.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_no_lost_updates_transform_item(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    results = w.run_threads(
        w.w_increment_transform,
        [dict(store=store, key=("c", "t"), n_incr=80, time_limit=15.0)] * N_THREADS,
    )
    _history(results, reader[("c", "t")])


# Catches: set_item_if(ETAG_IS_THE_SAME) whose check and write are not one
# atomic step with respect to other threads.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_no_lost_updates_cas_loop(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    results = w.run_threads(
        w.w_increment_cas, [dict(store=store, key="cas", n_incr=100, time_limit=15.0)] * N_THREADS
    )
    anomalies = [a for r in results for a in r["anomalies"]]
    assert not anomalies, anomalies[:10]
    _history(results, reader["cas"])


# Catches: insert-if-absent as check-then-write between threads (two winners).
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_exactly_one_insert_winner(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    n_rounds = 45
    results = w.run_threads(w.w_insert_race, [dict(store=store, n_rounds=n_rounds)] * N_THREADS)
    by_key: dict[str, list[tuple]] = {}
    for rows in results:
        for row in rows:
            by_key.setdefault(row[0], []).append(row)
    assert len(by_key) == n_rounds
    for key, rows in by_key.items():
        winners = [r for r in rows if r[3]]
        assert len(winners) == 1, f"{key} ({rows[0][1]}): {len(winners)} winners"
        win = winners[0][2]
        for _k, method, mine, won, seen, after in rows:
            assert after == win, f"{key}: {mine} read {after!r}, winner {win!r}"
            if not won:
                assert seen == win, f"{key} {method}: loser {mine} told {seen!r}"
        assert reader[key] == win


# Catches: an append-only insert that two threads both win, or a value that
# changes after the first insert.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_append_only_insert_race(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path, append_only=True)
    results = w.run_threads(w.w_append_only_race, [dict(store=store, n_rounds=40)] * N_THREADS)
    by_key: dict[tuple, list[tuple]] = {}
    for rows in results:
        for row in rows:
            by_key.setdefault(row[0], []).append(row)
    for key, rows in by_key.items():
        winners = [r for r in rows if r[2]]
        assert len(winners) == 1, f"{key}: {len(winners)} inserts succeeded"
        assert not any(r[3] for r in rows), f"{key}: an overwrite succeeded"
        assert {v for r in rows for v in r[4]} == {winners[0][1]}
        assert reader[key] == winners[0][1]
    with pytest.raises(MutationPolicyError):
        reader[("ao", "k0")] = "late"


# Catches: in-place writes (a reader thread sees a partial file) and
# get_with_etag pairing one version's etag with another version's value.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_no_torn_reads(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    reader["big"] = w.make_blob("initial", 1 << 16)
    writer = dict(
        store=store, key="big", n_writes=40, time_limit=6.0, min_size=1 << 16, max_size=1 << 20
    )
    rd = dict(store=store, key="big", n_writers=2, max_reads=3000, time_limit=20.0)
    results = w.run_threads(
        w.w_role, [dict(writer, role="w_big_writer")] * 2 + [dict(rd, role="w_big_reader")] * 2
    )
    written = {"initial"}
    for r in results:
        if r["role"] == "writer":
            written.update(r["tags"])
    etag_map: dict[str, str] = {}
    for r in results:
        for e, tag in r["etags"].items():
            assert etag_map.setdefault(e, tag) == tag, f"etag {e} names {etag_map[e]} and {tag}"
        if r["role"] == "reader":
            assert not r["errors"], r["errors"][:5]
            assert set(r["seen"]) <= written
    assert w.check_blob(reader["big"]) in written


# Catches: etags that can match a different value after a same-size rewrite
# or a delete + re-create (stat-based etags, or LocalDict version counters
# that restart per key).
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_stale_etag_never_accepted(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    reader["k"] = w._fixed("initial")
    kw = dict(store=store, key="k", n_iters=300, time_limit=15.0)
    holder, _mutator = w.run_threads(
        w.w_role, [dict(kw, role="w_stale_holder"), dict(kw, role="w_stale_mutator")]
    )
    assert not holder["violations"], holder["violations"][:10]
    assert holder["iters"] > 0


# Catches: pop/popitem/discard that hand one item to two threads.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["popitem", "pop", "discard", "discard_if"])
@pytest.mark.parametrize("kind", KINDS)
def test_threads_each_key_removed_exactly_once(tmp_path: Path, kind: str, method: str) -> None:
    store, reader = _make(kind, tmp_path)
    keys = [(f"k{i:03d}",) if i % 2 else (f"g{i % 4}", f"k{i:03d}") for i in range(100)]
    for k in keys:
        reader[k] = ("val", *k)
    results = w.run_threads(
        w.w_drain, [dict(store=store, method=method, keys=keys, time_limit=30.0)] * N_THREADS
    )
    got = [item for r in results for item in r]
    counts = Counter(k for k, _v in got)
    dupes = [k for k, c in counts.items() if c > 1]
    assert not dupes, f"removed twice: {dupes[:10]}"
    assert set(counts) == set(keys)
    if method in ("popitem", "pop"):
        assert all(v == ("val", *k) for k, v in got)
    assert len(reader) == 0


# Catches: a writer thread failing because another thread pruned the
# directory it was about to write into.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_directory_prune_races(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    results = w.run_threads(
        w.w_role,
        [dict(role="w_dir_writer", store=store, n_keys=300, time_limit=10.0)] * 3
        + [
            dict(role="w_dir_deleter", store=store, n_writers=3, max_rounds=50_000, time_limit=20.0)
        ],
    )
    written = dict(item for r in results[:3] for item in r)
    deleted = [k for k, _v in results[3]]
    assert len(deleted) == len(set(deleted))
    remaining = {tuple(k): v for k, v in reader.items()}
    assert set(remaining).isdisjoint(deleted)
    assert set(remaining) | set(deleted) == set(written)
    assert all(written[k] == v for k, v in remaining.items())


# Catches: a subdict view whose locking is not shared with its parent.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_threads_subdict_and_parent_share_locks(tmp_path: Path, kind: str) -> None:
    store, reader = _make(kind, tmp_path)
    kw = dict(store=store, n_incr=60, time_limit=15.0)
    results = w.run_threads(
        w.w_increment_transform,
        [dict(kw, key="k", subdict="sub"), dict(kw, key=("sub", "k"))] * 2,
    )
    _history(results, reader[("sub", "k")])


# Catches: two FileDirDict instances on one directory in one process that
# share a lock descriptor (or use process-owned POSIX locks), so that one
# instance's lock does not stop the other instance's thread.
@pytest.mark.timeout(120)
def test_threads_two_instances_one_dir_mixed_with_shared(tmp_path: Path) -> None:
    spec = w.file_spec(tmp_path / "store")
    a, b = FileDirDict(**spec), FileDirDict(**spec)
    stores = [a, a, b, b, spec, spec]
    results = w.run_threads(
        w.w_increment_cas,
        [dict(store=s, key="mixed", n_incr=50, time_limit=15.0) for s in stores],
    )
    _history(results, FileDirDict(**spec)["mixed"])
