"""The cost of finding a key's file stays flat as a store grows (issue 17).

A get of a key not seen lately signs its components once (one MD5 each:
the bucket is 2 characters of the same digest), computes no lock place (a
read takes no lock), and a hot key stays in the bounded path cache however
many other keys pass through. Work is counted, never timed; the keys are
written by another process, so the reader's caches start cold.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing as mp
import pathlib
import random
import string
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends import file_reads
from persidict.concurrency import lock_tree, marker
from persidict.engine import names
from persidict.engine.keys import MAX_DIGEST_LEN, NonEmptySafeStrTuple
from persidict.engine.recent import Recent


def _b32(component: str) -> str:
    return base64.b32encode(hashlib.md5(component.encode()).digest()).decode().lower()


def _write(base: str, layout: str, keys: list[tuple[str, ...]]) -> None:
    d = FileDirDict(base_dir=base, durable=False, layout=layout)
    for k in keys:
        d[k] = "/".join(k)


def _fill(base: pathlib.Path, layout: str, keys: list[tuple[str, ...]]) -> None:
    """Write ``keys`` (value: the key joined by '/') from another process."""
    p = mp.get_context("fork").Process(target=_write, args=(str(base), layout, keys))
    p.start()
    p.join(60)
    assert p.exitcode == 0


def _increment(v: Any) -> int:
    return v + 1 if isinstance(v, int) else 1


def _fresh_keys(n: int, depth: int) -> list[tuple[str, ...]]:
    """Keys whose components no earlier test (and no warm cache) has seen."""
    tag = uuid.uuid4().hex[:8]
    return [tuple(f"c{tag}{i}x{j}" for j in range(depth)) for i in range(n)]


def test_names_are_the_base32_md5_of_their_component() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "()_-~.="
    components = ["a", "A", "key123", "x" * 200] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(300)
    ]
    for n in range(MAX_DIGEST_LEN + 1):
        for c in components:
            want = f"{c}_{_b32(c)[:n]}" if n else c
            assert names.bucket_and_name(c, n) == (f"+{_b32(c)[:2]}", want)
            assert names.sign_component(c, n) == want
            assert names.component_digest(c, n) == _b32(c)[:n]
        assert names.bucket_of(c) == f"+{_b32(c)[:2]}"


@pytest.mark.parametrize("layout", ["hashed", "direct"])
def test_a_get_hashes_each_component_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    keys = _fresh_keys(200, 3)
    _fill(tmp_path / "s", layout, keys)
    d = FileDirDict(base_dir=tmp_path / "s", durable=False, layout=layout)
    real = names._md5
    hashed: Counter[bytes] = Counter()

    def counting(data: bytes = b"") -> Any:
        hashed[data] += 1
        return real(data)

    monkeypatch.setattr(names, "_md5", counting)
    for k in keys:
        assert d[k] == "/".join(k)
    # Before: two per component in the hashed layout (its bucket, then its digest).
    assert len(hashed) == 3 * len(keys)
    assert set(hashed.values()) == {1}


def test_a_read_computes_no_lock_place(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _fresh_keys(100, 2)
    _fill(tmp_path / "s", "hashed", keys)
    d = FileDirDict(base_dir=tmp_path / "s", durable=False, layout="hashed")
    calls: list[str] = []
    real_offset, real_locate = file_reads.lock_offset, lock_tree.LockTree.locate

    def offset(name: str) -> int:
        calls.append(name)
        return real_offset(name)

    def locate(self: lock_tree.LockTree, dirs: tuple[str, ...], rel: str) -> Any:
        calls.append(rel)
        return real_locate(self, dirs, rel)

    monkeypatch.setattr(file_reads, "lock_offset", offset)
    monkeypatch.setattr(lock_tree.LockTree, "locate", locate)
    for k in keys:
        assert d[k] == "/".join(k)
        assert k in d
        assert d.get_with_etag(k).new_value == "/".join(k)
    assert calls == []
    d[keys[0]] = "changed"  # a write does find its lock
    assert calls


def test_a_hot_key_stays_cached_while_many_keys_pass(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = 3 * file_reads._PATH_CACHE_MAX
    d = FileDirDict(base_dir=tmp_path / "s", durable=False, layout="hashed")
    d["hot"] = 0
    store = d.byte_store
    computed: Counter[tuple[str, ...]] = Counter()
    real = file_reads.path_parts

    def counting(strings: tuple[str, ...], *args: Any) -> list[str]:
        computed[strings] += 1
        return real(strings, *args)

    monkeypatch.setattr(file_reads, "path_parts", counting)
    hot = NonEmptySafeStrTuple("hot")
    for i in range(many):
        assert f"cold{i}" not in d
        assert store.path(hot).endswith(".pkl")
    assert computed[("hot",)] == 0  # before: recomputed each time the cache was cleared
    assert computed[("cold7",)] == 1
    cached = store._paths
    assert len(cached) + len(getattr(cached, "_old", {})) <= 2 * file_reads._PATH_CACHE_MAX


def test_threads_share_caches_whose_generations_turn_over(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_reads, "_PATH_CACHE_MAX", 8)  # turn over every few lookups
    keys = _fresh_keys(300, 2)
    _fill(tmp_path / "s", "hashed", keys)
    d = FileDirDict(base_dir=tmp_path / "s", durable=False, layout="hashed")
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(1500):
                k = rng.choice(keys)
                assert d[k] == "/".join(k)
                assert d.byte_store.path(NonEmptySafeStrTuple(*k)) == d.byte_store.where(
                    NonEmptySafeStrTuple(*k))[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer(me: int) -> None:
        try:
            for i in range(300):
                d[("w", f"{me}-{i % 40}")] = i
                assert d[("w", f"{me}-{i % 40}")] == i
                d.transform_item(("w", "n"), transformer=_increment)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert d[("w", "n")] == 600  # no update lost: each write found the key's one lock


def test_a_hot_directory_is_not_settled_again_while_many_pass(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = FileDirDict(base_dir=tmp_path / "s", durable=False)
    tree = d._lock_tree
    settled: Counter[str] = Counter()

    def settle(directory: str) -> str:
        settled[directory] += 1
        return marker.ABSENT  # no marker: the lock root is the one above

    monkeypatch.setattr(lock_tree, "settle", settle)
    for i in range(3 * lock_tree.LockTree._CACHE_MAX):
        assert tree.locate((f"d{i}",), f"d{i}/k")[1] == f"d{i}/k"
        assert tree.locate(("hot",), "hot/k")[1] == "hot/k"
    assert settled[f"{tree.real_base}/hot"] == 1  # before: again after each clearing
    assert settled[f"{tree.real_base}/d5"] == 1
    assert len(tree._roots) + len(tree._old_roots) <= 2 * lock_tree.LockTree._CACHE_MAX


class _Turning:
    """A key whose ``turn_at``-th hashing turns the cache's generations over first.

    That is what another thread can do between two steps of a lookup (on a
    free-threaded build, or wherever a key's hash runs Python code).
    """

    def __init__(self, cache: Recent[Any, int]) -> None:
        self.cache, self.turn_at = cache, 0

    def __hash__(self) -> int:
        self.turn_at -= 1
        if self.turn_at == 0:
            for i in range(3):  # fills the new generation: it becomes the old one
                self.cache[("other", i)]
        return 1


def test_a_cache_turning_over_during_a_lookup_still_answers() -> None:
    cache: Recent[Any, int] = Recent(lambda k: 7, 2)
    key = _Turning(cache)
    cache[key]
    cache[("a",)], cache[("b",)]  # key moves to the old generation
    assert key in cache._old
    key.turn_at = 2  # 1: the new generation misses; 2: the old one is asked
    assert cache[key] == 7  # before: KeyError, the old generation read twice
