"""Big values in a FileDirDict: reads through the reused spare buffer stay exact.

A plain get of a big pickled value is decoded from a per-thread buffer
(``FileBytes.decoded``) and computes no etag; these tests attack that: sizes
around the 64 KiB first read and the buffer cap, a read nested inside a
decode (the buffer is lent out), threads, and a writer replacing the value
while readers decode it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from persidict import FileDirDict
from persidict.backends import file_bytes, file_reads
from persidict.concurrency.atomic import SPARE_MAX
from persidict.engine.keys import to_key

MiB = 1 << 20


def _blob(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(256)) * (size // 256) + b"x" * (size % 256)


@pytest.mark.parametrize("size", [0, 65535, 65536, 65537, MiB, SPARE_MAX - 1, SPARE_MAX + 1])
def test_sizes_round_trip(tmp_path: Any, size: int) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    small = FileDirDict(base_dir=str(tmp_path), durable=False)
    value = _blob(size, size % 13)
    d["k"] = value
    assert d["k"] == value
    small["s"] = 1  # a small read after a big one: the buffer's old bytes never leak
    assert small["s"] == 1 and d["k"] == value
    assert d.get_with_etag("k").new_value == value


def _nested_read(base_dir: str, key: str) -> bytes:
    got: bytes = FileDirDict(base_dir=base_dir, durable=False)[key]
    return got


class _Nested:
    """Unpickles as the value of another big key, read while the outer decode runs."""

    def __init__(self, base_dir: str, key: str) -> None:
        self.base_dir, self.key = base_dir, key

    def __reduce__(self) -> Any:
        return (_nested_read, (self.base_dir, self.key))


def test_read_nested_in_a_decode_uses_its_own_buffer(tmp_path: Any) -> None:
    base = str(tmp_path)
    d = FileDirDict(base_dir=base, durable=False)
    inner, after = _blob(2 * MiB - 4096, 1), _blob(2 * MiB, 3)
    d["inner"] = inner
    d["outer"] = (_Nested(base, "inner"), after)
    # The outer decode has yet to read `after` from its buffer when the
    # nested get runs: a shared buffer would be overwritten by `inner`.
    assert d["outer"] == (inner, after)


def test_threads_read_their_own_values(tmp_path: Any) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    values = {f"k{i}": _blob(MiB, i) for i in range(4)}
    for k, v in values.items():
        d[k] = v
    wrong: list[str] = []
    barrier = threading.Barrier(len(values))

    def read(k: str) -> None:
        barrier.wait(timeout=30)
        for _ in range(30):
            try:
                if d[k] != values[k]:
                    wrong.append(k)
            except Exception as exc:
                wrong.append(f"{k}: {exc!r}")

    threads = [threading.Thread(target=read, args=(k,)) for k in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert wrong == []


def test_reads_while_a_writer_replaces_the_value(tmp_path: Any) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    versions = [_blob(MiB + 512 * i, i) for i in range(4)]
    d["k"] = versions[0]
    done = threading.Event()
    torn: list[int] = []

    def write() -> None:
        w = FileDirDict(base_dir=str(tmp_path), durable=False)
        for i in range(40):
            w["k"] = versions[i % len(versions)]
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while not done.is_set() or reads < 10:
        got = d["k"]
        if got not in versions:
            torn.append(len(got))
        reads += 1
        if reads > 2000:
            break
    writer.join(timeout=60)
    assert torn == []


def test_plain_get_and_set_compute_no_etag(tmp_path: Any, monkeypatch: Any) -> None:
    """The etag hashes the whole value: a plain get or set must not pay for it."""
    d = FileDirDict(base_dir=str(tmp_path), durable=False)
    d["k"] = _blob(MiB, 5)
    hashed: list[int] = []
    real = file_bytes.content_etag

    def counting(data: bytes) -> Any:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(file_bytes, "content_etag", counting)
    monkeypatch.setattr(file_reads, "content_etag", counting)
    d["k"] = _blob(MiB, 6)
    assert d["k"] == _blob(MiB, 6)
    assert hashed == []
    store = d.byte_store
    assert isinstance(store, file_bytes.FileBytes)
    assert d.get_with_etag("k").resulting_etag == real(store.read_data(to_key("k")) or b"")
    assert hashed  # the etag reads still hash


def test_big_json_value(tmp_path: Any) -> None:
    d = FileDirDict(base_dir=str(tmp_path), durable=False, serialization_format="json")
    value = {"text": "é" * (MiB // 2), "n": list(range(1000))}
    d["k"] = value
    assert d["k"] == value
