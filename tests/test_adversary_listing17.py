"""Adversary of the listing fast paths (issues 13, 17): names parsed by hand.

Every listing is checked against a slow oracle that walks the tree with
os.scandir and accepts a name only if signing its component gives exactly
that name (and, hashed, the component's bucket is the directory's). Trees
hold junk next to keys: near-miss names, invalid UTF-8, '@' names, '.'/'..'
signed, bucket look-alikes, files in the wrong bucket, symlinks, FIFOs,
directories named like files, 255-byte names. Each runs with the kernel's
records as they come, with every d_type made DT_UNKNOWN, with short reads
(a filesystem that stops early), with calls interrupted (EINTR), and with
the scandir fallback.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import hashlib
import multiprocessing as mp
import os
import random
import shutil
import stat
import string
import struct
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persidict import FileDirDict
from persidict.backends.file_bytes import FileBytes
from persidict.concurrency import listing
from persidict.engine import keys as keys_module
from persidict.engine.keys import is_safe_component
from persidict.engine.names import bucket_of, is_bucket, sign_component

_SAFE = string.ascii_letters + string.digits + "()_-~.="
_FORK = mp.get_context("fork")
_PICKLED_1 = b"\x80\x04K\x01."


# -- the oracle ---------------------------------------------------------------


def _b32(component: str) -> str:
    """The lower-cased base32 MD5 of ``component``, by the standard library (no fast path)."""
    return base64.b32encode(hashlib.md5(component.encode()).digest()).decode().lower()


def _ref_sign(component: str, n: int) -> str:
    return f"{component}_{_b32(component)[:n]}" if n else component


def _ref_bucket(component: str) -> str:
    return "+" + _b32(component)[:2]


def _unsign(name: str, n: int, suffix: str) -> str | None:
    if not name.endswith(suffix):
        return None
    stem = name[: len(name) - len(suffix)]
    c = (stem[: -(n + 1)] if len(stem) > n + 1 else "") if n else stem
    if not c or not is_safe_component(c) or _ref_sign(c, n) != stem:
        return None
    return c


def _entries(directory: str) -> list[tuple[str, int]]:
    with os.scandir(directory) as it:
        return [(e.name, os.lstat(e.path).st_mode) for e in it]


def oracle(base: str, n: int, suffix: str, hashed: bool) -> set[tuple[str, ...]]:
    """The keys under ``base``, name by name, by the rule alone (digests by base64)."""
    found: set[tuple[str, ...]] = set()

    def level(directory: str, prefix: tuple[str, ...]) -> None:
        holders: list[tuple[str, str | None]] = [(directory, None)]
        if hashed:
            holders = [(f"{directory}/{name}", name) for name, mode in _entries(directory)
                       if stat.S_ISDIR(mode) and is_bucket(name)]
        for holder, bucket in holders:
            for name, mode in _entries(holder):
                is_file = stat.S_ISREG(mode)
                if not is_file and not stat.S_ISDIR(mode):
                    continue
                c = _unsign(name, n, suffix if is_file else "")
                if c is None or (bucket is not None and _ref_bucket(c) != bucket):
                    continue
                if is_file:
                    found.add((*prefix, c))
                else:
                    level(f"{holder}/{name}", (*prefix, c))

    level(base, ())
    return found


# -- how the kernel's records reach the parser --------------------------------


def _unknown_types(real: Callable[..., int]) -> Callable[..., int]:
    """Every record's d_type DT_UNKNOWN, as some filesystems report."""
    def call(fd: int, buf: Any, size: int) -> int:
        n = real(fd, buf, size)
        at = 0
        while n > 0 and at < n:
            buf[at + 18] = b"\0"
            at += struct.unpack_from("=H", buf, at + 16)[0]
        return n
    return call


def _short_reads(real: Callable[..., int]) -> Callable[..., int]:
    """Calls that return only the first half of the records (a filesystem that
    stops early): the position is set after the last one returned."""
    def call(fd: int, buf: Any, size: int) -> int:
        n = real(fd, buf, size)
        at, keep, next_off = 0, 0, None
        while n > 0 and at < n:
            reclen = struct.unpack_from("=H", buf, at + 16)[0]
            if at + reclen > max(n // 2, reclen):
                break
            next_off = struct.unpack_from("=q", buf, at + 8)[0]
            at += reclen
            keep = at
        if next_off is not None and keep < n:
            os.lseek(fd, next_off, os.SEEK_SET)
            return keep
        return n
    return call


def _interrupted(real: Callable[..., int]) -> Callable[..., int]:
    """Calls that fail with EINTR 40% of the time, half of them after reading a
    little (an interrupted call may have moved the position)."""
    rng = random.Random(3)

    def call(fd: int, buf: Any, size: int) -> int:
        if rng.random() < 0.4:
            if rng.random() < 0.5:
                real(fd, buf, min(size, 4096))
            ctypes.set_errno(errno.EINTR)
            return -1
        return real(fd, buf, size)
    return call


MODES = ["kernel", "unknown", "short", "eintr", "fallback"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    real = listing._getdents
    if real is None:
        pytest.skip("no getdents64 here: every listing is the fallback's")
    if request.param == "unknown":
        monkeypatch.setattr(listing, "_getdents", _unknown_types(real))
    elif request.param == "short":
        monkeypatch.setattr(listing, "_getdents", _short_reads(real))
    elif request.param == "eintr":
        monkeypatch.setattr(listing, "_getdents", _interrupted(real))
    elif request.param == "fallback":
        monkeypatch.setattr(listing, "_getdents", None)
    return str(request.param)


@pytest.fixture
def fast_dir() -> Iterator[str]:
    """A directory on tmpfs when there is one (renames reorder its listings)."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(dir=root, prefix="persidict-adv17-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- trees with junk ------------------------------------------------------------


def _component(rng: random.Random, longest: int = 12) -> str:
    while True:
        c = "".join(rng.choice(_SAFE) for _ in range(rng.randint(1, longest)))
        if c not in (".", ".."):
            return c


def _near_misses(c: str, n: int, suffix: str) -> list[bytes]:
    """Names next to component ``c``'s (the first one is its own)."""
    stem = sign_component(c, n)
    names = [stem + suffix, stem + "x" + suffix, c + "x" + stem[len(c):] + suffix,
             stem + suffix + "~", stem + suffix[:-1], "@" + stem + suffix,
             sign_component(".", n) + suffix, sign_component("..", n) + suffix]
    if n:
        digest = stem[len(c) + 1 :]
        other = "b" if digest[-1] != "b" else "c"
        names += [stem[:-1] + suffix, stem + "a" + suffix, c + suffix,
                  f"{c}_{digest.upper()}{suffix}", f"{c}_{digest[:-1]}{other}{suffix}"]
    raw = [name.encode() for name in names]
    good = raw[0]
    return [*raw, b"\xff" + good, good + b"\xc3", good.replace(b"_", "\u00e9".encode(), 1),
            good[:1] + b"\x80" + good[1:]]


def _plant(path: bytes, kind: str, fmt: str) -> None:
    try:
        if kind == "file":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, _PICKLED_1 if fmt == "pkl" else b"1")
            os.close(fd)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "link":
            os.symlink(b"/etc/hostname", path)
        elif kind == "loop":  # back to the store's top: followed, keys would repeat
            os.symlink(os.path.dirname(path), path)
        else:
            os.mkfifo(path)
    except FileExistsError:
        pass


def _junk_tree(base: str, seed: int, n: int, fmt: str, layout: str) -> set[tuple[str, ...]]:
    """A store's keys plus junk around them; returns the keys written."""
    rng = random.Random(seed)
    suffix = "." + fmt
    d = FileDirDict(base_dir=base, durable=False, digest_len=n, serialization_format=fmt,
                    layout=layout)
    written: set[tuple[str, ...]] = set()
    for _ in range(rng.randint(0, 30)):
        k = tuple(_component(rng) for _ in range(rng.randint(1, 3)))
        d[k] = 1
        written.add(k)
    longest = "L" * (255 - len(suffix) - (n + 1 if n else 0))  # a 255-byte file name
    d[(longest,)] = 1
    written.add((longest,))
    dirs = [base] + [root for root, _, _ in os.walk(base) if "@" not in root]
    for _ in range(rng.randint(0, 20)):
        where = os.fsencode(rng.choice(dirs))
        kind = rng.choice(["file", "file", "dir", "link", "loop", "fifo"])
        for name in rng.sample(_near_misses(_component(rng), n, suffix), 3):
            _plant(os.path.join(where, name), kind, fmt)
    if layout == "hashed":
        for fake in ["+AB", "+a", "+abc", "+ab", "+a2", "+77", "+00", "+"]:
            os.makedirs(f"{base}/{fake}", exist_ok=True)
            c = _component(rng)
            _plant(f"{base}/{fake}/{sign_component(c, n)}{suffix}".encode(), "file", fmt)
        os.makedirs(f"{base}/{bucket_of('x')}", exist_ok=True)
        _plant(f"{base}/{bucket_of('x')}/{sign_component('x', n)}".encode(), "loop", fmt)
        for first in sorted({k[0] for k in written if len(k) > 1})[:1]:  # a key's directory
            inner = f"{base}/{bucket_of(first)}/{sign_component(first, n)}"
            _plant(f"{inner}/+zz".encode(), "loop", fmt)  # a bucket that links to the top
    return written


def _agree(d: FileDirDict[Any], base: str, n: int, fmt: str, hashed: bool,
           written: set[tuple[str, ...]]) -> None:
    want = oracle(base, n, "." + fmt, hashed)
    assert written <= want
    listed = [k.strings for k in d]
    assert Counter(listed).most_common(1)[0][1] == 1 if listed else True
    assert set(listed) == want, set(listed) ^ want
    assert len(d) == len(want)
    assert sorted(k.strings for k, _ in d.keys_and_timestamps()) == sorted(want)
    assert {k.strings for k in d.keys()} == want  # noqa: SIM118 - keys() is its own path
    assert len(list(d.values())) == len(dict(d.items())) == len(want)
    for k in want:
        assert k in d
        assert d[k] == 1
    if want:
        random_key = d.random_key()
        assert random_key is not None and random_key.strings in want
        assert {k.strings for k in d.newest_keys()} == want
        assert len(d.oldest_keys(max_n=2)) == min(2, len(want))
        first = min(want)[0]
        sub = d.get_subdict(first)
        below = {k[1:] for k in want if k[0] == first and len(k) > 1}
        assert {k.strings for k in sub} == below
        assert len(sub) == len(below)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([0, 1, 2, 4, 7, 25, 26]),
       fmt=st.sampled_from(["pkl", "json"]), layout=st.sampled_from(["direct", "hashed"]))
def test_listings_agree_with_the_name_rule_among_junk(
    mode: str, fast_dir: str, seed: int, n: int, fmt: str, layout: str
) -> None:
    base = tempfile.mkdtemp(dir=fast_dir) + "/s"
    written = _junk_tree(base, seed, n, fmt, layout)
    d = FileDirDict(base_dir=base, durable=False, digest_len=n, serialization_format=fmt,
                    layout=layout)
    _agree(d, base, n, fmt, layout == "hashed", written)
    shutil.rmtree(os.path.dirname(base))


# -- sizes at the chunk boundaries --------------------------------------------


def _flat(base: str, count: int, n: int, hashed: bool, long_names: bool, seed: int) -> None:
    """``count`` key files written by hand, 3% of them with a near-miss name."""
    rng = random.Random(seed)
    FileDirDict(base_dir=base, durable=False, digest_len=n, layout="hashed" if hashed else "direct")
    room = 255 - len(".pkl") - (n + 1 if n else 0)
    for i in range(count):
        c = (f"k{i:06d}" + "x" * rng.choice([0, 230] if long_names else [0]))[:room]
        name = sign_component(c, n) + ".pkl"
        where = f"{base}/{bucket_of(c)}" if hashed else base
        if hashed:
            os.makedirs(where, exist_ok=True)
        if rng.random() < 0.03:
            name = f"{name[:-5]}X{name[-4:]}"
        fd = os.open(f"{where}/{name}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, _PICKLED_1)
        os.close(fd)


@pytest.mark.parametrize("count", [0, 1, 4095, 4096, 4097, 9000])
@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_directories_at_chunk_boundaries(
    mode: str, fast_dir: str, count: int, layout: str
) -> None:
    """Long names make records straddle the 32 KiB buffer and the parser's
    128 KiB chunks; counts straddle the 4096 names checked at a time."""
    for n, long_names in ((4, False), (0, True), (26, True)):
        base = f"{fast_dir}/{count}-{n}-{long_names}"
        hashed = layout == "hashed"
        _flat(base, count, n, hashed, long_names, count + n)
        d = FileDirDict(base_dir=base, durable=False, digest_len=n, layout=layout)
        want = oracle(base, n, ".pkl", hashed)
        listed = [k.strings for k in d]
        assert len(listed) == len(set(listed)) == len(d) == len(want)
        assert set(listed) == want
        assert {k.strings for k, _ in d.keys_and_timestamps()} == want


def test_a_directory_of_100k_keys(fast_dir: str) -> None:
    base = f"{fast_dir}/s"
    _flat(base, 100_000, 4, False, False, 7)
    d = FileDirDict(base_dir=base, durable=False)
    want = oracle(base, 4, ".pkl", False)
    listed = [k.strings for k in d]
    assert len(listed) == len(set(listed)) == len(d) == len(want)
    assert set(listed) == want


# -- listings while two processes write --------------------------------------


def _replacer(base: str, layout: str, stable: list[tuple[str, ...]], stop: Any) -> None:
    d = FileDirDict(base_dir=base, durable=False, layout=layout)
    i = 0
    while not stop.is_set() and i < 200_000:
        d[stable[(i * 7919) % len(stable)]] = 1
        i += 1


def _churner(base: str, layout: str, prefix: tuple[str, ...], stop: Any) -> None:
    d = FileDirDict(base_dir=base, durable=False, layout=layout)
    i = 0
    while not stop.is_set() and i < 200_000:
        k = (*prefix, f"churn{i % 500}")
        if (i // 500) % 2 == 0:
            d[k] = 1
        else:
            d.discard(k)
        i += 1


@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_keys_present_throughout_are_listed_once_while_others_churn(
    fast_dir: str, layout: str
) -> None:
    """1500 long-named keys in one directory (several 128 KiB chunks), replaced
    by one process while another adds and removes keys beside them."""
    base = f"{fast_dir}/s"
    d = FileDirDict(base_dir=base, durable=False, layout=layout)
    stable = [("g", f"stable{i:05d}" + "y" * 150) for i in range(1500)]
    for k in stable:
        d[k] = 1
    stop = _FORK.Event()
    procs = [_FORK.Process(target=_replacer, args=(base, layout, stable, stop)),
             _FORK.Process(target=_churner, args=(base, layout, ("g",), stop))]
    for p in procs:
        p.start()
    try:
        wanted = set(stable)
        for _ in range(15):
            listed = Counter(k.strings for k in d)
            assert max(listed.values()) == 1, [k for k, c in listed.items() if c > 1][:3]
            assert wanted <= set(listed), len(wanted - set(listed))
            assert all(k in wanted or k[1].startswith("churn") for k in listed)
            stamped = Counter(k.strings for k, _ in d.keys_and_timestamps())
            assert max(stamped.values()) == 1 and wanted <= set(stamped)
            assert len(wanted) <= len(d) <= len(wanted) + 500
            sub = Counter(k.strings for k in d.get_subdict("g"))
            assert max(sub.values()) == 1 and {k[1:] for k in wanted} <= set(sub)
    finally:
        stop.set()
        for p in procs:
            p.join(60)
    assert all(p.exitcode == 0 for p in procs)


# -- memory --------------------------------------------------------------------


def test_iterating_200k_hashed_keys_keeps_no_growing_cache(fast_dir: str) -> None:
    base = f"{fast_dir}/s"
    _flat(base, 200_000, 4, True, False, 11)
    d = FileDirDict(base_dir=base, durable=False, layout="hashed")
    str_keys = len(keys_module._STR_KEYS) + len(keys_module._STR_KEYS._old)
    tracemalloc.start()
    try:
        seen = 0
        for _ in d:
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == len(oracle(base, 4, ".pkl", True))
    # 200k keys held at once would take ~40 MB; a bucket's listing takes kilobytes.
    assert peak < 8 << 20, peak
    store = d.byte_store
    assert isinstance(store, FileBytes)
    assert len(store._paths) + len(store._paths._old) == 0  # a listing signs no key
    assert len(keys_module._STR_KEYS) + len(keys_module._STR_KEYS._old) == str_keys
