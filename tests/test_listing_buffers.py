"""list_dir's reused per-thread buffers: big directories outgrow them, threads
never share them, and a listing inside a listing (a signal handler) gets its own."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

from persidict.concurrency import listing


def _dir(tmp_path: pathlib.Path, name: str, n: int) -> tuple[str, set[str]]:
    d = tmp_path / name
    d.mkdir()
    names = {f"{name}-{i:05d}-" + "x" * (i % 40) for i in range(n)}
    for x in names:
        (d / x).touch()
    return str(d), names


@pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")
def test_big_then_small_directories(tmp_path: pathlib.Path) -> None:
    big, big_names = _dir(tmp_path, "big", 3000)  # ~150 KiB of records: > the 32 KiB buffer
    small, small_names = _dir(tmp_path, "small", 3)
    for _ in range(3):
        files, dirs = listing.list_dir(big)  # type: ignore[misc]
        assert set(files) == big_names and len(files) == len(big_names) and dirs == []
        files, _ = listing.list_dir(small)  # type: ignore[misc]
        assert set(files) == small_names and len(files) == 3


@pytest.mark.skipif(not listing.SNAPSHOTS, reason="getdents64 unavailable")
def test_threads_and_nested_listings_do_not_share_a_buffer(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = [_dir(tmp_path, f"d{i}", 5 + 40 * i) for i in range(4)]
    errors: list[str] = []

    def lister(path: str, names: set[str]) -> None:
        for _ in range(300):
            got = listing.list_dir(path)
            if got is None or set(got[0]) != names or len(got[0]) != len(names):
                errors.append(path)
                return

    threads = [threading.Thread(target=lister, args=d) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    # A listing made while another one holds the buffers (as a signal handler
    # would): the inner call must not write into the outer call's buffer.
    outer_path, outer_names = dirs[3]
    inner_path, inner_names = dirs[0]
    real = listing._getdents
    assert real is not None
    inner: list[object] = []

    def getdents(fd: int, buf: object, size: int) -> int:
        n = real(fd, buf, size)  # type: ignore[arg-type]
        if not inner:
            inner.append(None)  # once: the inner call's own getdents are plain
            inner[0] = listing.list_dir(inner_path)
        return n

    monkeypatch.setattr(listing, "_getdents", getdents)
    files, _ = listing.list_dir(outer_path)  # type: ignore[misc]
    assert set(files) == outer_names and len(files) == len(outer_names)
    assert set(inner[0][0]) == inner_names  # type: ignore[index]
    assert os.path.isdir(outer_path)
