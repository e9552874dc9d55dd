"""backends/walk_memo.py: a directory's checked names reused while its snapshot is unchanged.

Adversarial: every memo hit is checked against a fresh parse of the very
bytes it matched, while other processes create, delete and replace keys;
the memo's key, its compare, its eviction, its bound, its lock and its
refusal of lstat-judged records each have a test that a broken one fails.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.backends.walk_memo import Entry, Key, ListingMemo
from persidict.concurrency import listing
from persidict.engine.names import unsign_runs

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")


class Checked(ListingMemo):
    """A memo that re-parses the bytes of every hit and asserts the entry is that parse."""

    def __init__(self, budget: int = walk_memo.BUDGET) -> None:
        super().__init__(budget)
        self.hits = 0

    def get(self, key: Key, raw: bytes) -> Entry | None:
        entry = super().get(key, raw)
        if entry is not None:
            self.hits += 1
            directory, suffix, digest_len, _ = key
            parsed = listing._parse(raw, directory)
            assert parsed is not None
            files, dirs = parsed
            assert entry.found == unsign_runs(files, [(None, len(files))], digest_len, suffix)
            assert entry.subdirs == list(file_walk._subdirs(directory, dirs, digest_len, None))
        return entry


@pytest.fixture
def shm() -> Iterator[str]:
    parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(dir=parent, prefix="persidict-memo-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> Checked:
    table = Checked()
    monkeypatch.setattr(file_walk, "MEMO", table)
    return table


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many names were checked (unsign_runs) since the list was last cleared."""
    counted: list[int] = []
    real = unsign_runs

    def counting(names: list[bytes], *args: Any) -> list[bytes]:
        counted.append(len(names))
        return real(names, *args)

    monkeypatch.setattr(file_walk, "unsign_runs", counting)
    return counted


def fresh(d: FileDirDict[Any]) -> list[Any]:
    """The keys of ``d`` as a listing without the memo finds them."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(file_walk, "MEMO", ListingMemo(0))
        return sorted(d)


def _mutator(base: str, worker: int, rounds: int) -> None:
    """Create, replace and delete keys k500.. (k0..k499 and the 'g' level stay)."""
    d = FileDirDict(base_dir=base, durable=False)
    for r in range(rounds):
        i = 500 + (worker * 7919 + r * 31) % 1000
        d[f"k{i}"] = r  # a replace (new inode) or a create
        d.pop(f"k{(i + 500) % 1000 + 500}", None)
        d[f"n{worker}_{r}"] = r


def test_hits_are_fresh_parses_while_processes_mutate(shm: str, memo: Checked) -> None:
    base = f"{shm}/s"
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    for i in range(1500):
        d[f"k{i}"] = i
    for i in range(300):
        d[("g", f"n{i}")] = i
    stable = {(f"k{i}",) for i in range(500)} | {("g", f"n{i}") for i in range(300)}
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_mutator, args=(base, w, 400)) for w in range(2)]
    for w in workers:
        w.start()
    listings = 0
    while any(w.is_alive() for w in workers) and listings < 300:
        listed = [k.strings for k in d]
        assert len(listed) == len(set(listed))
        assert stable <= set(listed)
        assert len(d) >= len(stable)
        listings += 1
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(d) == fresh(d) == sorted(d)
    assert memo.hits > 0  # the unchanged 'g' directory at least


def test_a_replaced_and_a_renamed_file_are_seen(shm: str, memo: Checked, parses: list[int]
                                                ) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(50):
        d[f"a{i}"] = i
    first = sorted(d)
    d["a7"] = 7  # same name, same size, new inode
    assert sorted(d) == first == fresh(d)
    parses.clear()
    del d["a8"]
    d["a9"] = "x"
    d["b8"] = 8  # the same name length as a8's: the records keep their size
    after = sorted(d)
    assert parses  # checked afresh
    assert after == fresh(d)
    assert ("b8",) in after and ("a8",) not in after


def test_a_junk_name_added_between_listings_is_rejected(shm: str, memo: Checked,
                                                        parses: list[int]) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(20):
        d[f"a{i}"] = i
    before = sorted(d)
    parses.clear()
    assert sorted(d) == before and not parses  # a hit
    name = file_walk.path_parts(("a3",), 4, ".pkl", False)[-1]
    forged = name.replace("a3_", "a4_")  # a4's name with a3's digest: not a key
    with open(f"{d.base_dir}/{forged}", "wb") as f:
        f.write(b"junk")
    assert sorted(d) == before == fresh(d)
    assert len(d) == 20


def test_hits_reuse_the_keys_built_by_the_first(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(300):
        d[("g", f"k{i}")] = i
    first, second, third = list(d), list(d), list(d)
    assert first == second == third
    assert all(a is b for a, b in zip(second, third, strict=True))  # reused, not built again
    sub = d.get_subdict("g")
    assert sorted(k.strings for k in sub) == sorted((f"k{i}",) for i in range(300))
    assert sorted(k.strings for k in sub) == sorted((f"k{i}",) for i in range(300))
    assert sorted(d) == fresh(d)  # the parent's keys again, not the sub-dict's


def test_the_memo_is_used_by_len_and_iteration(shm: str, memo: Checked, parses: list[int]
                                               ) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(5000):
        d[("g", f"k{i}")] = i if i % 2 else None
        d[f"t{i}"] = i
    assert len(d) == 10000
    parses.clear()
    keys = list(d)  # len() for the size hint, then iteration: both hit
    assert not parses and len(keys) == 10000 and keys == list(iter(d))
    assert sorted(keys) == fresh(d)


def test_the_key_holds_every_parse_parameter(shm: str, memo: Checked) -> None:
    """Stores of two formats, a sub-dict, another digest length: same bytes, other keys."""
    base = f"{shm}/s"
    pkl: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    js: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False, serialization_format="json")
    pkl["p"] = 1
    pkl[("x", "y")] = 2
    js["j"] = 3
    assert sorted(k.strings for k in pkl) == [("p",), ("x", "y")]
    assert [k.strings for k in js] == [("j",)]
    assert [k.strings for k in pkl.get_subdict("x")] == [("y",)]
    assert sorted(k.strings for k in pkl) == [("p",), ("x", "y")]
    walk = [k.strings for k in file_walk.iter_keys(base, (), ".pkl", 4, False)]
    nodigest = [k.strings for k in file_walk.iter_keys(base, (), ".pkl", 0, False)]
    assert sorted(walk) == [("p",), ("x", "y")] and walk != nodigest
    assert len(nodigest) == 2 and ("p",) not in nodigest  # the digest is part of the name
    assert memo.hits > 0


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


def _zero_types(raw: bytes) -> bytes:
    """``raw`` with every record's d_type DT_UNKNOWN (what some filesystems report)."""
    out, at = bytearray(raw), 0
    while at < len(out):
        out[at + 18] = 0
        at += int.from_bytes(out[at + 16 : at + 18], "little")
    return bytes(out)


def test_records_judged_by_lstat_are_not_memoized(shm: str, memo: Checked,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(30):
        d[("g", f"k{i}")] = i
    real = listing._read_whole
    monkeypatch.setattr(listing, "_read_whole", lambda fd: _zero_types(real(fd) or b""))
    assert len(list(d)) == 30 and len(d) == 30
    assert not memo.entries
    monkeypatch.setattr(listing, "_read_whole", real)
    assert len(d) == 30 and memo.entries


def test_threads_share_it_while_a_process_mutates(shm: str, memo: Checked) -> None:
    base = f"{shm}/s"
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    for i in range(1500):
        d[f"k{i}"] = i
    for i in range(200):
        d[("g", f"n{i}")] = i
    stable = {(f"k{i}",) for i in range(500)} | {("g", f"n{i}") for i in range(200)}
    errors: list[BaseException] = []

    def lister() -> None:
        try:
            for _ in range(40):
                listed = [k.strings for k in d]
                assert len(listed) == len(set(listed)) and stable <= set(listed)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = mp.get_context("fork").Process(target=_mutator, args=(base, 0, 300))
    worker.start()
    threads = [threading.Thread(target=lister) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    worker.join(timeout=60)
    assert worker.exitcode == 0 and not errors
    assert memo.used_bytes == sum(e.cost for e in memo.entries.values())
    assert sorted(d) == fresh(d)


def _child_lists(base: str, queue: Any) -> None:
    table = vars(file_walk)["MEMO"]
    assert isinstance(table, Checked)
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    hits = table.hits
    first = len(list(d))
    d["child"] = 1
    table.entries.clear()
    table.used_bytes = 0
    second = len(list(d))
    queue.put((table.hits > hits, first, second, len(table.entries)))


def test_a_forked_child_keeps_using_it_even_if_the_lock_was_held(shm: str, memo: Checked
                                                                 ) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(100):
        d[f"k{i}"] = i
    list(d)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    with walk_memo._lock:  # another thread of the parent holds it as the child is forked
        child = ctx.Process(target=_child_lists, args=(d.base_dir, queue))
        child.start()
    hit, first, second, entries = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert hit and first == 100 and second == 101
    assert entries == 1  # the child admitted a listing: its lock is its own


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
