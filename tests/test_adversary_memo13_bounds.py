"""Adversary of backends/walk_memo.py: the memory bound (tracemalloc) and the budget edge.

The deep-key and small-directory tests failed before: the memo held up to
4x its budget while counting less than it (see each test).
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from _adversary_memo13 import listed
from _listing_memo import fresh
from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.backends.walk_memo import ListingMemo
from persidict.concurrency import listing

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")



def test_a_directory_near_the_budget_edge(shm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(800):
        d[f"key{i:05d}"] = None
    raw = listing._snapshot(d.base_dir)
    assert isinstance(raw, bytes)
    probe = ListingMemo()
    monkeypatch.setattr(file_walk, "MEMO", probe)
    len(d)
    cost = probe.entries[(d.base_dir, ".pkl", 4, False)].cost
    guess = walk_memo._guess(raw)  # admitted only with room for the guess, by the exact cost
    for budget in (cost - 1, cost, guess - 1, guess, guess + 1):
        table = ListingMemo(budget)
        monkeypatch.setattr(file_walk, "MEMO", table)
        for _ in range(3):
            assert len(d) == 800 and len(listed(d)) == 800
        assert table.used_bytes <= budget and bool(table.entries) == (budget >= max(guess, cost))
        d["key00000"] = 1  # a replace: new records, the entry goes, then comes back
        assert len(d) == 800


def _held_after_listings(d: FileDirDict[Any], count: int) -> int:
    """The bytes still traced after listing ``d`` three times (the listings dropped)."""
    listing.list_dir(d.base_dir)  # this thread's spare read buffer, made once
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            assert sum(1 for _ in d) == count
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


def test_keys_of_many_components_stay_within_the_budget(shm: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys 200 components deep: each key's tuple holds 200 more slots than one at the top.

    Failed before: the entry's cost counted a one-component key per name, so
    the memo held 3.4 MB of keys while counting 0.4 MB (any number of such
    stores fit the 6 MiB budget by count). Now the cost counts the prefix
    the entry is admitted under, and keys under a longer one are not kept.
    """
    table = ListingMemo(budget=1 << 20)
    monkeypatch.setattr(file_walk, "MEMO", table)
    prefix = tuple("a" for _ in range(200))
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False, digest_len=0)
    for i in range(2000):
        key = (*prefix, f"k{i}")
        d[key] = None
    held = _held_after_listings(d, 2000)
    assert 0 < table.used_bytes <= table.budget
    assert held <= table.budget
    assert held <= 1.2 * table.used_bytes  # the cost estimate is honest
    sub = d.get_subdict(prefix[:150])  # its entries admitted under shorter prefixes
    table.clear()
    assert sum(1 for _ in sub) == 2000
    held = _held_after_listings(d, 2000)  # the parent's long keys are not kept in them
    assert 0 < table.used_bytes <= table.budget
    assert held <= 1.2 * table.used_bytes
    assert sorted(d) == fresh(d)


@pytest.mark.parametrize("levels", [1, 8])
def test_many_small_directories_stay_within_the_budget(shm: str, levels: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Directories of one key each below a base too big to admit, by a short or a long path.

    Failed before: an entry's fixed overhead (its Key, lists, prefix tuple,
    GC headers) was counted as 400 bytes, and the directory string in its Key
    not at all (it was counted only in the parent's entry, here never admitted):
    held 769 kB (short path) and 751 kB (a 1.6 kB path) of a 600 kB budget.
    """
    base = f"{shm}/" + "/".join(["p" * 200] * levels)
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    for i in range(3000):
        d[f"top{i:05d}"] = None
    groups = 1500 if levels == 1 else 300
    for g in range(groups):
        d[(f"g{g}", "k")] = None
    table = ListingMemo(budget=600_000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    held = _held_after_listings(d, 3000 + groups)
    assert (d.base_dir, ".pkl", 4, False) not in table.entries  # its guess does not fit
    assert 0 < table.used_bytes <= table.budget
    assert held <= table.budget
    assert held <= 1.2 * table.used_bytes


def test_stores_listed_in_turn_keep_hitting_when_not_all_fit(
    shm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight stores listed round-robin, room for about six: most listings still hit.

    Failed before: every listing that wanted room swept the entries the last
    two walks had not used, i.e. those of the stores next in turn, so no
    listing ever hit (40 stores of 600 keys under the 6 MiB budget: 0 hits;
    30 such stores: all hit).
    """
    stores = [FileDirDict(base_dir=f"{shm}/s{i}", durable=False) for i in range(8)]
    for d in stores:
        for j in range(200):
            d[f"k{j}"] = None
    probe = ListingMemo()
    monkeypatch.setattr(file_walk, "MEMO", probe)
    len(stores[0])
    one = next(iter(probe.entries.values()))
    table = ListingMemo(budget=6 * walk_memo._guess(one.raw) + 1000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    hits = [0]
    real = table.get

    def counted(key: walk_memo.Key, raw: bytes) -> walk_memo.Entry | None:
        entry = real(key, raw)
        hits[0] += entry is not None
        return entry

    monkeypatch.setattr(table, "get", counted)
    for _ in range(2):  # fill
        for d in stores:
            assert len(d) == 200
    hits[0] = 0
    for _ in range(3):
        for d in stores:
            assert len(d) == 200
    assert hits[0] >= 3 * 5  # five of eight stores hit each round (old: 0)
    assert table.used_bytes <= table.budget


def test_after_a_turn_of_stores_one_store_alone_gets_room_soon(
    shm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn shrinks: entries of stores no longer listed make room again."""
    stores = [FileDirDict(base_dir=f"{shm}/s{i}", durable=False) for i in range(8)]
    for d in stores:
        for j in range(200):
            d[f"k{j}"] = None
    hot: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/hot", durable=False)
    for j in range(200):
        hot[f"h{j}"] = None
    probe = ListingMemo()
    monkeypatch.setattr(file_walk, "MEMO", probe)
    len(stores[0])
    one = next(iter(probe.entries.values()))
    table = ListingMemo(budget=6 * walk_memo._guess(one.raw) + 1000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    for _ in range(3):
        for d in stores:
            assert len(d) == 200
    assert table.turn >= 8
    for _ in range(2 * 8 + 2):
        assert len(hot) == 200
    assert (hot.base_dir, ".pkl", 4, False) in table.entries
    assert table.used_bytes <= table.budget


def test_a_store_listed_after_a_long_pause_makes_no_long_turn() -> None:
    table = ListingMemo()
    table.walked("/a")
    for _ in range(50):
        table.walked("/b")
    table.walked("/a")  # 51 walks since its last, but only two stores take turns
    assert table.turn <= 6
    for _ in range(3):
        for root in ("/a", "/b", "/c", "/d", "/e"):
            table.walked(root)
    assert 5 <= table.turn <= 12
