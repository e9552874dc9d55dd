"""backends/walk_memo.py: its bounds: budget, eviction, sweeping, scan resistance, sizing.

Each test fails on a memo that admits past its budget, keeps a stale
entry, never sweeps, pushes entries out for a scan, or ignores an entry's size.
"""

from __future__ import annotations

import shutil
import tracemalloc
from typing import Any

import pytest

from _listing_memo import Checked, fresh
from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.backends.walk_memo import Entry, ListingMemo
from persidict.concurrency import listing

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")





def test_stores_take_turns_without_evicting_each_other(shm: str, memo: Checked,
                                                       parses: list[int]) -> None:
    stores = [FileDirDict(base_dir=f"{shm}/s{i}", durable=False) for i in range(3)]
    for i, d in enumerate(stores):
        for j in range(30):
            d[f"k{j}"] = i
    for d in stores:
        list(d)
    parses.clear()
    for d in (*stores, *stores):
        assert len(list(d)) == 30
    assert not parses


def test_an_entry_that_differs_is_evicted_before_room_is_judged(
    shm: str, monkeypatch: pytest.MonkeyPatch, parses: list[int]
) -> None:
    """Room for one snapshot of the directory, not two: the stale one must go first."""
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(400):
        d[f"k{i}"] = i
    raw = listing._snapshot(d.base_dir)
    assert isinstance(raw, bytes)
    table = Checked(budget=walk_memo._guess(raw) + 7 * 1024)  # room for one, with growth
    monkeypatch.setattr(file_walk, "MEMO", table)
    for round_ in range(6):
        d[f"new{round_}"] = round_
        assert sum(1 for _ in d) == 401 + round_  # changed: checked afresh, re-admitted
        parses.clear()
        assert len(list(d)) == 401 + round_
        assert not parses, round_
    assert len(table.entries) == 1
    assert table.used_bytes == sum(e.cost for e in table.entries.values()) <= table.budget


def test_memory_stays_within_the_budget(shm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More names than fit: the entries admitted stay under the budget, by tracemalloc too."""
    table = ListingMemo(budget=600_000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for g in range(30):
        for i in range(250):
            d[(f"g{g}", f"key{i:05d}")] = None
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        assert len(d) == 7500
        assert sum(1 for _ in d) == sum(1 for _ in d) == 7500  # the keys are built and kept
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert 0 < table.used_bytes <= table.budget
    assert held <= table.budget
    assert held <= 1.2 * table.used_bytes  # the cost estimate is honest
    names = sum(len(e.found) for e in table.entries.values())
    assert 0 < names < 7500 and len(table.entries) < 31


def test_a_listing_costlier_than_guessed_is_refused(shm: str, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """A directory of many subdirectories with long paths holds more than its records suggest."""
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/{'s' * 150}", durable=False)
    for g in range(300):
        d[(f"g{g}", "k")] = None
    raw = listing._snapshot(d.base_dir)
    parsed = listing._parse(raw, d.base_dir) if isinstance(raw, bytes) else None
    assert isinstance(raw, bytes) and parsed is not None
    table = ListingMemo(budget=walk_memo._guess(raw) + 5000)
    subdirs = list(file_walk._subdirs(d.base_dir, parsed[1], 4, None))
    assert Entry(raw, [], subdirs).cost > table.budget  # more than guessed
    monkeypatch.setattr(file_walk, "MEMO", table)
    assert len(d) == 300
    assert 0 < table.used_bytes <= table.budget
    assert d.base_dir not in {key[0] for key in table.entries}


def test_a_walk_over_more_than_fits_keeps_its_entries(shm: str, monkeypatch: pytest.MonkeyPatch,
                                                      parses: list[int]) -> None:
    """Scan-resistant: repeated walks hit what the first admitted; nothing churns."""
    table = ListingMemo(budget=150_000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    big: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/big", durable=False)
    for g in range(20):
        for i in range(100):
            big[(f"g{g:02d}", f"k{i}")] = None
    list(big)
    kept = set(table.entries)
    assert 1 < len(kept) < 21
    for _ in range(3):
        parses.clear()
        assert sum(1 for _ in big) == 2000
        assert set(table.entries) == kept
        assert sum(parses) == 2000 - sum(len(e.found) for e in table.entries.values())


def test_entries_no_walk_uses_make_room_for_others(shm: str, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    table = ListingMemo(budget=150_000)
    monkeypatch.setattr(file_walk, "MEMO", table)
    gone: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/gone", durable=False)
    live: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/live", durable=False)
    for g in range(20):
        for i in range(100):
            gone[(f"g{g:02d}", f"k{i}")] = None
    for i in range(100):
        live[("g", f"k{i}")] = None
    list(gone)
    shutil.rmtree(f"{shm}/gone")
    for _ in range(3):
        assert len(list(live)) == 100
    assert all(key[0].startswith(f"{shm}/live") for key in table.entries)
    level = file_walk.path_parts(("g",), 4, "", False)[0]
    assert {key[0] for key in table.entries} == {f"{shm}/live", f"{shm}/live/{level}"}


def test_a_big_directory_is_read_by_one_call_sized_from_its_entry(
    shm: str, memo: Checked, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its last size is the first call's (not 32 KiB first); one that outgrew it is read whole."""
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(4000):
        d[f"key{i}"] = None
    assert len(d) == 4000
    real = listing._getdents
    assert real is not None
    calls: list[int] = []

    def counted(fd: int, buf: Any, size: int) -> int:
        calls.append(size)
        return real(fd, buf, size)

    monkeypatch.setattr(listing, "_getdents", counted)
    assert sum(1 for _ in d) == 4000
    assert len(calls) == 2 and calls[0] > listing._MIN_BUF  # the records, then the probe's 0
    for i in range(4000, 7000):
        d[f"key{i}"] = None
    assert len(d) == 7000 and sorted(d) == fresh(d)
