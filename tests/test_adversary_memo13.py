"""Adversary of backends/walk_memo.py: listings that reuse checked names must stay right.

Every listing is compared with an oracle that shares no code with the walk:
os.listdir, lstat, and its own digest check (base32 MD5, the safe-character
regex). Listings run three times each (a miss, a hit, a hit reusing keys).
Most tests document attacks that failed; the deep-key one found a hole in
the memory bound (keys of many components cost more than ``_cost`` said).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import multiprocessing as mp
import os
import re
import shutil
import stat
import tempfile
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from _listing_memo import Checked, fresh, scratch
from persidict import FileDirDict
from persidict.backends import file_walk, walk_memo
from persidict.backends.walk_memo import ListingMemo
from persidict.concurrency import listing

pytestmark = pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")

_SAFE = re.compile(r"[A-Za-z0-9()_\-~.=]+")
Keys = list[tuple[str, ...]]


def _component(stem: str, digest_len: int) -> str | None:
    """The key component ``stem`` names, or None (the oracle's own digest check)."""
    if digest_len:
        comp, sep, dig = stem.rpartition("_")
        want = base64.b32encode(hashlib.md5(comp.encode()).digest()).decode().lower()
        if not sep or dig != want[:digest_len]:
            return None
    else:
        comp = stem
    return comp if _SAFE.fullmatch(comp) else None


def oracle(base: str, suffix: str = ".pkl", digest_len: int = 4) -> Keys:
    """The keys under ``base``, found without file_walk, listing or the memo."""
    out: Keys = []

    def walk(path: str, prefix: tuple[str, ...]) -> None:
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            try:
                mode = os.lstat(f"{path}/{name}").st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode) and name.endswith(suffix):
                comp = _component(name[: len(name) - len(suffix)], digest_len)
                if comp is not None:
                    out.append((*prefix, comp))
            elif stat.S_ISDIR(mode):
                comp = _component(name, digest_len)
                if comp is not None:
                    walk(f"{path}/{name}", (*prefix, comp))

    walk(base, ())
    return sorted(out)


def listed(d: FileDirDict[Any]) -> Keys:
    """The keys of ``d`` three times (miss, hit, hit): the same each time, no repeats."""
    runs = [[k.strings for k in d] for _ in range(3)]
    counts = [len(d) for _ in range(2)]
    for run in runs:
        assert len(run) == len(set(run)), "a key listed twice"
        assert sorted(run) == sorted(runs[0])
    assert counts == [len(runs[0])] * 2
    return sorted(runs[0])


def agrees(d: FileDirDict[Any], suffix: str = ".pkl", digest_len: int = 4) -> Keys:
    keys = listed(d)
    assert keys == oracle(d.base_dir, suffix, digest_len)
    assert keys == sorted(k.strings for k in fresh(d))
    return keys


@pytest.fixture
def shm() -> Iterator[str]:
    yield from scratch()


@pytest.fixture
def ext4() -> Iterator[str]:
    path = tempfile.mkdtemp(dir="/var/tmp", prefix="persidict-advmemo-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> Checked:
    table = Checked()
    monkeypatch.setattr(file_walk, "MEMO", table)
    return table


def _name(key: tuple[str, ...], suffix: str = ".pkl", digest_len: int = 4) -> str:
    return file_walk.path_parts(key, digest_len, suffix, False)[-1]


@pytest.mark.parametrize("where", ["shm", "ext4"])
def test_non_keys_planted_between_listings_are_never_listed(
    where: str, request: pytest.FixtureRequest, memo: Checked
) -> None:
    root = request.getfixturevalue(where)
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{root}/s", durable=False)
    for i in range(40):
        d[f"k{i}"] = i
        d[("g", f"n{i}")] = i
    base, g = d.base_dir, f"{d.base_dir}/{_name(('g',), '')}"
    first = agrees(d)
    plants = [
        lambda: open(f"{base}/junk.pkl", "wb").close(),
        lambda: open(f"{base}/@k1_zzzz.pkl", "wb").close(),
        lambda: open(f"{base}/{_name(('k3',)).replace('k3_', 'k4_')}", "wb").close(),
        lambda: os.symlink(f"{base}/{_name(('k1',))}", f"{base}/{_name(('lnk',))}"),
        lambda: os.mkfifo(f"{base}/{_name(('fifo',))}"),
        lambda: os.mkdir(f"{base}/{_name(('dirk',))}"),  # a directory named like a key file
        lambda: open(f"{g}/{_name(('n1',), '.json')}", "wb").close(),  # another format's
        lambda: open(f"{base}/{_name(('h',), '')}", "wb").close(),  # a file named like a dir
        lambda: os.symlink(g, f"{base}/{_name(('linkdir',), '')}"),  # a symlinked key dir
        lambda: os.mkdir(f"{base}/{_name(('empty',), '')}"),
    ]
    for plant in plants:
        plant()
        assert agrees(d) == first
    assert memo.hits > 0


def test_stores_of_every_parameter_on_one_and_nested_directories(shm: str, memo: Checked) -> None:
    base = f"{shm}/s"
    stores = {
        (".pkl", 4): FileDirDict(base_dir=base, durable=False),
        (".json", 4): FileDirDict(base_dir=base, durable=False, serialization_format="json"),
        (".pkl", 0): FileDirDict(base_dir=base, durable=False, digest_len=0),
        (".pkl", 6): FileDirDict(base_dir=base, durable=False, digest_len=6),
    }
    for n, d in enumerate(stores.values()):
        for i in range(30):
            d[f"s{n}k{i}"] = i
            d[("a", f"s{n}n{i}")] = i
    nested: FileDirDict[Any] = FileDirDict(base_dir=f"{base}/{_name(('a',), '')}", durable=False)
    nested["inner"] = 1
    for _ in range(2):
        for (suffix, dl), d in stores.items():
            agrees(d, suffix, dl)
        assert agrees(nested) == sorted(k.strings for k in stores[(".pkl", 4)].get_subdict("a"))
        assert ("a", "inner") in listed(stores[(".pkl", 4)])
    assert memo.hits > 0


@pytest.mark.parametrize("where", ["shm", "ext4"])
def test_a_store_removed_and_recreated_with_the_same_names(
    where: str, request: pytest.FixtureRequest, memo: Checked
) -> None:
    """Inode reuse can make the new records equal the old ones: then so are the keys."""
    root = request.getfixturevalue(where)
    base = f"{root}/s"
    for rnd in range(6):
        d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
        keys = [f"k{i}" for i in range(20)] + ([("x", "y")] if rnd % 2 else [])
        for k in keys:
            d[k] = rnd
        agrees(d)
        shutil.rmtree(base)
        assert listed(d) == [] == oracle(base)
    assert memo.hits > 0


def test_a_key_directory_replaced_by_a_symlink_or_a_file(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    other: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/o", durable=False)
    for i in range(20):
        d[("g", f"n{i}")] = i
        other[("g", f"m{i}")] = i
    d["top"] = 0
    g = f"{d.base_dir}/{_name(('g',), '')}"
    agrees(d)
    shutil.rmtree(g)
    os.symlink(f"{other.base_dir}/{_name(('g',), '')}", g)
    assert agrees(d) == [("top",)]
    os.unlink(g)
    open(g, "wb").close()
    assert agrees(d) == [("top",)]
    os.unlink(g)
    d[("g", "back")] = 1
    assert agrees(d) == [("g", "back"), ("top",)]


def test_the_base_directory_itself_replaced(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(10):
        d[f"k{i}"] = i
    agrees(d)
    os.rename(d.base_dir, f"{shm}/old")
    os.symlink(f"{shm}/old", d.base_dir)  # the same directory through a link: the same keys
    assert len(agrees(d)) == 10
    os.unlink(d.base_dir)
    open(d.base_dir, "wb").close()
    assert listed(d) == []
    os.unlink(d.base_dir)
    assert listed(d) == []


def test_one_directory_by_several_paths(shm: str, memo: Checked) -> None:
    os.mkdir(f"{shm}/real")
    os.symlink(f"{shm}/real", f"{shm}/link")
    paths = [f"{shm}/real", f"{shm}/real/", f"{shm}/link", f"{shm}/link/", f"{shm}/x/../real"]
    os.mkdir(f"{shm}/x")
    stores = [FileDirDict(base_dir=p, durable=False) for p in paths]
    for i in range(30):
        stores[i % len(stores)][("a", f"k{i}")] = i
    for rnd in range(3):
        for d in stores:
            assert len(agrees(d)) == 30 + rnd
        stores[rnd][("a", f"new{rnd}")] = rnd
    assert len({key[0] for key in memo.entries}) <= 4  # abspath merges '/', not the link


def test_subdicts_and_the_parent_take_turns(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(50):
        d[("a", "b", f"k{i}")] = i
        d[("a", f"j{i}")] = i
    subs = [d.get_subdict("a"), d.get_subdict(("a", "b")), d.get_subdict("a").get_subdict("b")]
    for _ in range(3):
        whole = agrees(d)
        for sub in subs:
            depth = len(sub.base_dir[len(d.base_dir):].strip("/").split("/"))
            got = agrees(sub)
            assert sorted(k[depth:] for k in whole if len(k) > depth) == got
        subs[1][f"s{_}"] = 1
    assert memo.hits > 0


def test_threads_list_while_threads_write(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(300):
        d[f"k{i}"] = i
        d[("g", f"n{i}")] = i
    stable = {(f"k{i}",) for i in range(300)} | {("g", f"n{i}") for i in range(300)}
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(w: int) -> None:
        for r in range(300):
            d[(f"w{w}", f"x{r % 40}")] = r
            d.pop((f"w{w}", f"x{(r + 20) % 40}"), None)
        done.set()

    def lister() -> None:
        try:
            for _ in range(60):
                keys = [k.strings for k in d]
                assert len(keys) == len(set(keys)) and stable <= set(keys)
                assert len(d) >= len(stable)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    threads += [threading.Thread(target=lister) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and done.is_set()
    agrees(d)
    assert memo.used_bytes == sum(e.cost for e in memo.entries.values())


def _child(base: str, conn: Any) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=base, durable=False)
    before = sorted(k.strings for k in d)  # hits on the inherited table
    d["child"] = 1
    del d["k0"]
    d[("g", "cn")] = 2
    conn.send((before, sorted(k.strings for k in d), oracle(base), len(d)))


def test_a_forked_child_with_the_memo_populated_writes(shm: str, memo: Checked) -> None:
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(50):
        d[f"k{i}"] = i
        d[("g", f"n{i}")] = i
    start = agrees(d)
    assert memo.entries
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_child, args=(d.base_dir, there))
    child.start()
    before, after, truth, count = here.recv()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert before == start and after == truth and count == len(truth)
    assert agrees(d) == truth


def test_unknown_types_in_one_directory_only(shm: str, memo: Checked,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory whose records say DT_UNKNOWN for a while: lstat judges; no stale reuse."""
    d: FileDirDict[Any] = FileDirDict(base_dir=f"{shm}/s", durable=False)
    for i in range(20):
        d[f"k{i}"] = i
        d[("g", f"n{i}")] = i
    agrees(d)
    real = listing._read_whole

    def untyped(fd: int) -> bytes | None:
        raw = real(fd)
        if raw is None or not os.readlink(f"/proc/self/fd/{fd}").endswith(d.base_dir):
            return raw
        out, at = bytearray(raw), 0
        while at < len(out):
            out[at + 18] = 0
            at += int.from_bytes(out[at + 16 : at + 18], "little")
        return bytes(out)

    monkeypatch.setattr(listing, "_read_whole", untyped)
    agrees(d)
    os.unlink(f"{d.base_dir}/{_name(('k5',))}")
    os.symlink(f"{d.base_dir}/{_name(('k6',))}", f"{d.base_dir}/{_name(('k5',))}")
    assert ("k5",) not in agrees(d)
    monkeypatch.setattr(listing, "_read_whole", real)
    assert ("k5",) not in agrees(d)


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
        d[(*prefix, f"k{i}")] = None
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
