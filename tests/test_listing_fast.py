"""The listing's bulk paths: names checked a chunk (and many buckets) at a time,
records parsed without d_reclen, file names kept as bytes. Each must agree
with the plain per-name rule, whatever junk sits among the valid names."""

from __future__ import annotations

import ctypes
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends import file_walk
from persidict.concurrency import listing
from persidict.engine.keys import is_safe_component, to_key
from persidict.engine.names import (
    BUCKET_PREFIX,
    bucket_of,
    decoded,
    sign_component,
    unsign_names,
    unsign_runs,
)

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _plain(name: str, digest_len: int, bucket: str | None, suffix: str) -> str | None:
    """The rule, name by name: the component whose signed name is exactly ``name``."""
    if not name.endswith(suffix):
        return None
    stem = name[: len(name) - len(suffix)]
    component = stem[: -digest_len - 1] if digest_len else stem
    if not component or not is_safe_component(component):
        return None
    if sign_component(component, digest_len) != stem:
        return None
    if bucket is not None and bucket_of(component) != bucket:
        return None
    return component


def _near_misses(name: str, digest_len: int, suffix: str, rng: random.Random) -> list[str]:
    """``name`` with one digest character changed, each position once, and other junk."""
    stem = name[: len(name) - len(suffix)]
    out = []
    for i in range(len(stem) - digest_len, len(stem)):
        other = rng.choice([c for c in _B32 if c != stem[i]])
        out.append(stem[:i] + other + stem[i + 1 :] + suffix)
    out += [name.upper(), name + "x", "@" + name, "x" + name, name[1:], "ü" + name]
    return out


@pytest.mark.parametrize("digest_len", [0, 1, 2, 4, 7, 8, 16, 24, 25, 26])
def test_unsign_agrees_with_the_plain_rule_among_junk(digest_len: int) -> None:
    rng = random.Random(digest_len)
    for suffix in ("", ".pkl"):
        for bucket in (None, "+aa", "+7q", "+00"):
            components = [f"k{i}" for i in range(300)] + [".", "..", "a.b", "x_y"]
            names = [sign_component(c, digest_len) + suffix for c in components]
            junk = [m for name in names[:20] for m in _near_misses(name, digest_len, suffix, rng)]
            mixed = names + junk
            rng.shuffle(mixed)
            want = [c for c in (_plain(s, digest_len, bucket, suffix) for s in mixed) if c]
            assert unsign_names(mixed, digest_len, bucket, suffix) == want
            if bucket is None:  # every true name is found; '.' and '..' are never keys
                assert set(want) >= set(components) - {".", ".."}
                assert "." not in want and ".." not in want


def test_the_26th_digest_character_keeps_its_two_zero_bits() -> None:
    """b32encode pads the MD5's 128 bits with two zero bits: a last character
    that agrees in its top 3 bits only is no digest."""
    name = sign_component("key", 26)
    last = _B32.index(name[-1])
    assert last & 3 == 0
    for low in (1, 2, 3):
        forged = name[:-1] + _B32[last | low]
        assert unsign_names([name, forged], 26) == ["key"]


def test_runs_check_each_name_against_its_own_bucket() -> None:
    """One call over many bucket directories: a name with a good digest in the
    wrong bucket is dropped, and only it."""
    by_bucket: dict[str, list[str]] = {}
    for i in range(20000):
        by_bucket.setdefault(bucket_of(f"k{i}"), []).append(f"k{i}")
    buckets = sorted(by_bucket)[:6]
    names: list[bytes] = []
    runs: list[tuple[str | None, int]] = []
    want: list[str] = []
    for j, b in enumerate(buckets):
        own = by_bucket[b][:5]
        stray = by_bucket[buckets[(j + 1) % len(buckets)]][0]  # belongs in the next bucket
        batch = [*own[:2], stray, *own[2:]]
        names += [(sign_component(c, 4) + ".pkl").encode() for c in batch]
        runs.append((b, len(batch)))
        want += own
    assert all(len(by_bucket[b]) >= 5 for b in buckets)
    assert decoded(unsign_runs(names, runs, 4, ".pkl")) == want
    runs[2] = (BUCKET_PREFIX + "!!", runs[2][1])  # no bucket at all: none of its names
    assert len(unsign_runs(names, runs, 4, ".pkl")) == len(want) - 5


@pytest.mark.parametrize("record_bytes", [128 * 1024, 200])
@pytest.mark.parametrize("layout", ["direct", "hashed"])
def test_store_with_junk_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, record_bytes: int
) -> None:
    """Chunks of 7 names: runs split across chunks and buckets; junk next to
    keys in every directory; two-component keys flush a chunk before descending.
    With 200 bytes of records parsed at a time, every directory is parsed in
    chunks (list_chunks), the level of buckets too."""
    monkeypatch.setattr(file_walk, "_CHUNK", 7)
    monkeypatch.setattr(listing, "_CHUNK_BYTES", record_bytes)
    d = FileDirDict(base_dir=str(tmp_path / "s"), layout=layout)
    keys = {(f"k{i}",) for i in range(120)} | {("sub", f"j{i}") for i in range(30)}
    for k in keys:
        d[k] = 0
    rng = random.Random(7)
    planted = 0
    for k in sorted(keys)[::9]:
        path = d._bytes.path(to_key(k))
        folder, name = os.path.split(path)
        for junk in _near_misses(name, d.digest_len, ".pkl", rng)[:4]:
            Path(folder, junk).write_bytes(b"x")
            planted += 1
    if layout == "hashed":  # a valid name in the wrong bucket is no key
        wrong = next(b for b in os.listdir(d.base_dir) if b.startswith("+"))
        for c in (f"x{i}" for i in range(2000)):
            if bucket_of(c) != wrong:
                Path(d.base_dir, wrong, sign_component(c, d.digest_len) + ".pkl").write_bytes(b"")
                break
    assert planted > 40
    assert {k.strings for k in d} == keys
    assert len(d) == len(keys) == len(list(d.keys()))


def test_records_that_do_not_end_on_a_boundary_fall_back_to_scandir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffer that is no run of kernel records (cut short, or a record whose
    name has no NUL) is not trusted: the listing comes from os.scandir."""
    folder = tmp_path / "d"
    folder.mkdir()
    names = {f"f{i}" for i in range(40)}
    for n in names:
        (folder / n).touch()
    real, original = listing._read_whole, listing._list_scandir
    scanned: list[str] = []

    def spy(path: str) -> Any:
        scanned.append(path)
        return original(path)

    monkeypatch.setattr(listing, "_list_scandir", spy)
    def cut_short(fd: int, cut: int) -> bytes:
        data = real(fd)
        assert data is not None
        return data[:-cut]

    for cut in (1, 5, 21, 27):  # records are 8-aligned: no cut leaves whole records
        monkeypatch.setattr(listing, "_read_whole", lambda fd, cut=cut: cut_short(fd, cut))
        scanned.clear()
        got = listing.list_dir(str(folder))
        assert got is not None and sorted(got[0]) == sorted(names) and scanned == [str(folder)]
    assert listing._parse(b"\x01" * 30, str(folder)) is None  # no NUL at all


@pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")
@pytest.mark.parametrize("record_bytes", [128 * 1024, 64])
def test_a_filesystem_reporting_dt_unknown_still_lists_keys_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_bytes: int
) -> None:
    """Every record's d_type rewritten to DT_UNKNOWN (as some filesystems report):
    files and directories are told apart by lstat; symlinks stay no keys. Whole
    listings and ones parsed in chunks (64 bytes of records: every directory)."""
    monkeypatch.setattr(listing, "_CHUNK_BYTES", record_bytes)
    d = FileDirDict(base_dir=str(tmp_path / "s"), layout="hashed")
    keys = {(f"k{i}",) for i in range(50)} | {("a", "b")}
    for k in keys:
        d[k] = 1
    some = d._bytes.path(next(iter(d)))
    folder = os.path.dirname(some)
    os.symlink(some, os.path.join(folder, sign_component("link", d.digest_len) + ".pkl"))
    real = listing._getdents
    assert real is not None
    rewritten = []

    def unknown_types(fd: int, buf: ctypes.Array[ctypes.c_char], size: int) -> int:
        n = real(fd, buf, size)
        pos = 0
        while pos < n:
            buf[pos + 18] = b"\0"  # d_type = DT_UNKNOWN
            pos += buf[pos + 16][0] | buf[pos + 17][0] << 8  # d_reclen
            rewritten.append(pos)
        return n

    monkeypatch.setattr(listing, "_getdents", unknown_types)
    assert {k.strings for k in d} == keys
    assert len(d) == len(keys)
    assert len(rewritten) > len(keys)


def test_names_given_as_str_never_raise_and_only_ascii_ones_qualify() -> None:
    """unsign_names takes any str: lone surrogates, non-ASCII and even a NUL are
    simply no keys (they are checked as bytes)."""
    good = sign_component("ab", 4)
    odd = ["x\udcff", "\ud800y", "a\0b", good + "é", "é" + good, good.replace("a", "\u0430")]
    assert unsign_names([*odd, good], 4) == ["ab"]
    assert unsign_names(["a\0b", good, "\ud800"], 4, bucket_of("ab")) == ["ab"]


def test_chunked_records_that_turn_out_malformed_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big directory is parsed chunk by chunk: records found not to be the
    kernel's once chunks are out raise an OSError (mapped: it names the store)."""
    d = FileDirDict(base_dir=str(tmp_path / "s"))
    for i in range(10, 70):  # names of 13 bytes: records with 7 bytes of padding
        d[f"kk{i}"] = 0
    monkeypatch.setattr(listing, "_CHUNK_BYTES", 256)
    assert len(d) == 60 and len(list(d)) == 60
    real = listing._read_whole

    def cut_short(fd: int) -> bytes:
        data = real(fd)
        assert data is not None
        return data[:-1]  # inside the last record's padding: its NUL is still there

    monkeypatch.setattr(listing, "_read_whole", cut_short)
    with pytest.raises(OSError, match="malformed"):
        len(d)
    with pytest.raises(OSError, match="malformed"):
        list(d)


def test_chunks_drop_a_name_repeated_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of several calls may repeat a name: each chunk drops the names
    seen before, and repeats inside it."""
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(30):
        (folder / f"f{i:02d}").touch()
    monkeypatch.setattr(listing, "_CHUNK_BYTES", 100)
    real = listing._read_whole

    def doubled(fd: int) -> bytes:
        data = real(fd)
        assert data is not None
        return listing._Pieced(data + data)  # every record twice, as several calls could

    monkeypatch.setattr(listing, "_read_whole", doubled)
    got = listing.list_chunks(str(folder))
    assert got is not None
    chunks, dirs = got
    names = [n for chunk in chunks for n in chunk]
    assert sorted(names) == sorted(f"f{i:02d}".encode() for i in range(30))
    assert dirs == []


@pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")
def test_the_first_read_fits_the_last_directory_up_to_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory too big for the first read is read again, bigger; the next
    like-sized one is then read in one call. After one bigger than _MIN_BUF
    the first read is small again (a big directory wastes little)."""
    def filled(name: str, n: int) -> str:
        folder = tmp_path / name
        folder.mkdir()
        for i in range(n):
            (folder / f"{name}-{i:05d}-padding").touch()
        return str(folder)

    mid1, mid2, big = filled("m1", 1500), filled("m2", 1500), filled("big", 6000)
    real = listing._getdents
    assert real is not None
    sizes: list[int] = []

    def counted(fd: int, buf: ctypes.Array[ctypes.c_char], size: int) -> int:
        if size != listing._MAX_RECLEN:  # not the probe
            sizes.append(size)
        return real(fd, buf, size)

    monkeypatch.setattr(listing, "_getdents", counted)

    def reads(path: str, n: int) -> list[int]:
        sizes.clear()
        got = listing.list_dir(path)
        assert got is not None and len(got[0]) == n
        return list(sizes)

    def in_a_thread() -> None:
        first = reads(mid1, 1500)
        assert first[0] == listing._FIRST_READ and len(first) > 1  # too small: read again
        assert len(reads(mid1, 1500)) == 1
        assert len(reads(mid2, 1500)) == 1  # fits what mid1 needed
        assert len(reads(big, 6000)) == 2
        assert reads(mid1, 1500)[0] == listing._FIRST_READ  # small again after a big one

    errors: list[BaseException] = []

    def run() -> None:
        try:
            in_a_thread()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)  # a fresh thread: fresh buffers
    thread.start()
    thread.join(timeout=60)
    assert errors == []
