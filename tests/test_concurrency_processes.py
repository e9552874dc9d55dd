"""FileDirDict shared by real OS processes (multiprocessing 'spawn').

Workers start together on a multiprocessing.Barrier and report what they did;
the oracle compares the reports with each other and with the end state read
by a fresh store in the parent. Each test names the bug it exists to catch.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # spawn children import _workers by name

import _workers as w
from persidict import FileDirDict

N_PROC = 4


def _store(base: Path, **kw: object) -> FileDirDict:
    return w.open_store(w.file_spec(base, **kw))


def _assert_counter_history(results: list[dict], final: object, key: str) -> None:
    """Each successful +1 wrote a distinct value; together exactly 1..total."""
    written = [v for r in results for v in r["written"]]
    total = len(written)
    assert total > 0
    dupes = [v for v, c in Counter(written).items() if c > 1]
    assert not dupes, f"{key}: values written twice (lost update): {dupes[:10]}"
    assert sorted(written) == list(range(1, total + 1)), f"{key}: gaps in history"
    assert final == total, f"{key}: final {final} != {total} reported increments"


# Catches: transform_item's write not conditional on the etag it read (lost
# update), a conflict error raised after the write went through (final >
# reported), and per-key locks that do not exclude other processes.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("durable", [False, True], ids=["fast", "durable"])
def test_no_lost_updates_transform_item(tmp_path: Path, durable: bool) -> None:
    base = tmp_path / "store"
    n_incr = 60 if durable else 150
    spec = w.file_spec(base, durable=durable)
    results = w.run_processes(
        w.w_increment_transform,
        [dict(store=spec, key="counter", n_incr=n_incr, time_limit=20.0)] * N_PROC,
        tmp_path / "results",
    )
    final = _store(base)["counter"]
    _assert_counter_history(results, final, "counter")
    print("conflicts:", [r["conflicts"] for r in results], "calls:", [r["calls"] for r in results])


# Catches: a set_item_if(ETAG_IS_THE_SAME) that checks and writes as two
# steps (two processes both succeed from the same etag), and results whose
# actual/resulting etags contradict the outcome.
@pytest.mark.timeout(120)
def test_no_lost_updates_cas_loop(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base)
    results = w.run_processes(
        w.w_increment_cas,
        [dict(store=spec, key=("cnt", "cas"), n_incr=200, time_limit=20.0)] * N_PROC,
        tmp_path / "results",
    )
    anomalies = [a for r in results for a in r["anomalies"]]
    assert not anomalies, anomalies[:10]
    final = _store(base)[("cnt", "cas")]
    _assert_counter_history(results, final, "cnt/cas")
    print("misses:", [r["misses"] for r in results])


def _check_single_winner(rows_by_worker: list[list[tuple]]) -> dict[str, str]:
    """Exactly one winner per key; everybody saw the winner's value."""
    by_key: dict[str, list[tuple]] = {}
    for rows in rows_by_worker:
        for row in rows:
            by_key.setdefault(row[0], []).append(row)
    winners_of: dict[str, str] = {}
    for key, rows in by_key.items():
        winners = [r for r in rows if r[3]]
        assert len(winners) == 1, f"{key} ({rows[0][1]}): {len(winners)} winners: {rows}"
        win = winners[0][2]
        winners_of[key] = win
        for _k, method, mine, won, seen, after in rows:
            assert after == win, f"{key}: worker {mine} read {after!r}, winner wrote {win!r}"
            if not won:
                assert seen == win, f"{key} {method}: loser {mine} was told {seen!r}, not {win!r}"
    return winners_of


# Catches: insert-if-absent implemented as exists()-then-write (two winners,
# or a loser whose write silently overwrote the winner's value), and a
# setdefault that returns the caller's default instead of the stored value.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("durable", [False, True], ids=["fast", "durable"])
def test_exactly_one_insert_winner(tmp_path: Path, durable: bool) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base, durable=durable)
    n_rounds = 60
    results = w.run_processes(
        w.w_insert_race, [dict(store=spec, n_rounds=n_rounds)] * N_PROC, tmp_path / "results"
    )
    winners = _check_single_winner(results)
    assert len(winners) == n_rounds
    d = _store(base)
    for key, win in winners.items():
        assert d[key] == win, f"{key}: stored {d[key]!r}, winner {win!r}"
    assert len(d) == n_rounds


# Catches: an append-only insert that is not atomic (two successes, or the
# value changing after the first insert), and an overwrite of an existing
# key that is not refused with MutationPolicyError.
@pytest.mark.timeout(120)
def test_append_only_insert_race(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base, append_only=True)
    n_rounds = 50
    results = w.run_processes(
        w.w_append_only_race, [dict(store=spec, n_rounds=n_rounds)] * N_PROC, tmp_path / "results"
    )
    by_key: dict[tuple, list[tuple]] = {}
    for rows in results:
        for row in rows:
            by_key.setdefault(row[0], []).append(row)
    assert len(by_key) == n_rounds
    d = _store(base, append_only=True)
    for key, rows in by_key.items():
        winners = [r for r in rows if r[2]]
        assert len(winners) == 1, f"{key}: {len(winners)} inserts succeeded: {rows}"
        win = winners[0][1]
        assert not any(r[3] for r in rows), f"{key}: an overwrite succeeded: {rows}"
        reads = [v for r in rows for v in r[4]]
        assert set(reads) == {win}, f"{key}: value changed after insert: {set(reads)}"
        assert d[key] == win


# Catches: writes that are not temp-file-and-rename (a reader sees a
# half-written file), and get_with_etag returning the etag of one version
# with the value of another.
@pytest.mark.timeout(120)
def test_no_torn_reads_of_large_values(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base)
    d = _store(base)
    d["big"] = w.make_blob("initial", 1 << 18)
    n_writers = 2
    writer = dict(
        store=spec, key="big", n_writes=40, time_limit=8.0, min_size=1 << 18, max_size=2 << 20
    )
    reader = dict(store=spec, key="big", n_writers=n_writers, max_reads=5000, time_limit=30.0)
    results = w.run_processes(
        w.w_role,
        [{"role": "w_big_writer", **writer}] * n_writers + [{"role": "w_big_reader", **reader}] * 2,
        tmp_path / "results",
    )
    written = {"initial"}
    etag_map: dict[str, str] = {}
    for r in results:
        if r["role"] == "writer":
            written.update(r["tags"])
    for r in results:
        for e, tag in r["etags"].items():
            assert etag_map.setdefault(e, tag) == tag, f"etag {e} names {etag_map[e]} and {tag}"
        if r["role"] == "reader":
            assert not r["errors"], r["errors"][:5]
            assert r["reads"] > 0
            assert set(r["seen"]) <= written, set(r["seen"]) - written
    final = w.check_blob(_store(base)["big"])
    assert final in written
    print("reads:", [r.get("reads") for r in results])


# Catches: stat-based etags (mtime/size/inode) that collide after a same-size
# rewrite or a delete + re-create within one clock tick; and etag checks
# done outside the lock. The positive control catches a set_item_if that
# refuses everything.
@pytest.mark.timeout(120)
def test_stale_etag_never_accepted(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base, digest_len=0)
    _store(base, digest_len=0)["k"] = w._fixed("initial")
    kw = dict(store=spec, key="k", n_iters=400, time_limit=20.0)
    holder, mutator = w.run_processes(
        w.w_role,
        [{"role": "w_stale_holder", **kw}, {"role": "w_stale_mutator", **kw}],
        tmp_path / "results",
    )
    assert not holder["violations"], holder["violations"][:10]
    assert holder["iters"] > 0
    print("iterations:", holder["iters"], mutator["iters"])


def _keys_for_drain(n: int) -> list[tuple[str, ...]]:
    return [(f"k{i:03d}",) if i % 2 else (f"g{i % 5}", f"k{i:03d}") for i in range(n)]


# Catches: pop/popitem that read and delete in two unguarded steps (two
# processes get the same item), discard/discard_if that report success for a
# key another process already deleted, and popitem that gives up (KeyError)
# while keys remain, or crashes on directories pruned under its feet.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["popitem", "pop", "discard", "discard_if"])
def test_each_key_removed_exactly_once(tmp_path: Path, method: str) -> None:
    base = tmp_path / "store"
    keys = _keys_for_drain(120 if method == "popitem" else 300)
    d = _store(base)
    for k in keys:
        d[k] = ("val", *k)
    spec = w.file_spec(base)
    results = w.run_processes(
        w.w_drain,
        [dict(store=spec, method=method, keys=keys, time_limit=40.0)] * N_PROC,
        tmp_path / "results",
    )
    got = [item for r in results for item in r]
    counts = Counter(k for k, _v in got)
    dupes = [k for k, c in counts.items() if c > 1]
    assert not dupes, f"removed by more than one process: {dupes[:10]}"
    assert set(counts) == set(keys), f"missing {set(keys) - set(counts)}"
    if method in ("popitem", "pop"):
        for k, v in got:
            assert v == ("val", *k), f"{k}: got {v!r}"
    assert len(_store(base)) == 0
    assert list(_store(base).keys()) == []


# Catches: a writer whose mkdir/temp-file creation fails with
# FileNotFoundError because a deleter pruned the (now empty) directory in
# between, and a pruner that removes a directory holding a fresh key.
@pytest.mark.timeout(120)
def test_directory_prune_races(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base)
    n_writers = 3
    results = w.run_processes(
        w.w_role,
        [dict(role="w_dir_writer", store=spec, n_keys=600, time_limit=15.0)] * n_writers
        + [
            dict(
                role="w_dir_deleter",
                store=spec,
                n_writers=n_writers,
                max_rounds=100_000,
                time_limit=30.0,
            )
        ],
        tmp_path / "results",
    )
    written = dict(item for r in results[:n_writers] for item in r)
    deleted = results[n_writers]
    deleted_keys = [k for k, _v in deleted]
    assert len(deleted_keys) == len(set(deleted_keys)), "a key was deleted twice"
    for k, v in deleted:
        assert written.get(k) == v, f"deleter got {k}={v!r}, writer wrote {written.get(k)!r}"
    remaining = {tuple(k): v for k, v in _store(base).items()}
    assert set(remaining).isdisjoint(deleted_keys)
    assert set(remaining) | set(deleted_keys) == set(written), "a written key vanished"
    for k, v in remaining.items():
        assert written[k] == v
    print("written", len(written), "deleted", len(deleted_keys), "remaining", len(remaining))


# Catches: a subdict that locks (or etags) a key under a different name than
# its parent does, so the same file is updated without mutual exclusion.
@pytest.mark.timeout(120)
def test_subdict_and_parent_share_locks(tmp_path: Path) -> None:
    base = tmp_path / "store"
    spec = w.file_spec(base)
    kw = dict(store=spec, n_incr=100, time_limit=20.0)
    results = w.run_processes(
        w.w_increment_transform,
        [dict(kw, key="k", subdict="sub"), dict(kw, key=("sub", "k"))] * 2,
        tmp_path / "results",
    )
    d = _store(base)
    assert d[("sub", "k")] == d.get_subdict("sub")["k"]
    _assert_counter_history(results, d[("sub", "k")], "sub/k")


# Catches: locks scoped to the directory a store was *opened* on. A subdict
# pickled to another process, rebuilt from its get_params() (the
# Parameterizable way to hand a store over) or opened directly on the
# subdirectory names the same files as its parent, so it must take the
# same per-key locks.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pickled", "get_params", "base_dir"])
def test_reopened_subdict_and_parent_share_locks(tmp_path: Path, how: str) -> None:
    base = tmp_path / "store"
    parent = _store(base)
    sub = parent.get_subdict("sub")
    sub_spec: object = {
        "pickled": sub,  # the subdict object itself crosses the process boundary
        "get_params": dict(sub.get_params()),
        "base_dir": w.file_spec(sub.base_dir),
    }[how]
    kw = dict(n_incr=100, time_limit=20.0)
    results = w.run_processes(
        w.w_increment_transform,
        [dict(kw, store=sub_spec, key="k"), dict(kw, store=w.file_spec(base), key=("sub", "k"))]
        * 2,
        tmp_path / "results",
    )
    _assert_counter_history(results, _store(base)[("sub", "k")], "sub/k")
