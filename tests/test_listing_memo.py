"""backends/walk_memo.py: a directory's checked names reused while its snapshot is unchanged.

Adversarial: every memo hit is checked against a fresh parse of the very
bytes it matched, while other processes create, delete and replace keys;
the memo's key, its compare, its refusal of lstat-judged records and its
lock each have a test that a broken one fails (the bounds: test_listing_memo_bounds).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from typing import Any

import pytest

from _listing_memo import Checked, fresh, mutator
from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.concurrency import listing

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")





def test_hits_are_fresh_parses_while_processes_mutate(shm: str, memo: Checked) -> None:
    base = f"{shm}/s"
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    for i in range(1500):
        d[f"k{i}"] = i
    for i in range(300):
        d[("g", f"n{i}")] = i
    stable = {(f"k{i}",) for i in range(500)} | {("g", f"n{i}") for i in range(300)}
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=mutator, args=(base, w, 400)) for w in range(2)]
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

    worker = mp.get_context("fork").Process(target=mutator, args=(base, 0, 300))
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
